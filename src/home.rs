//! `Home`: what a logged-in user may do to their home, priced against their quota.
//!
//! It joins the jailed folder ([`Root`]) with the quota ledger: each change that adds or
//! removes entries or bytes is measured and charged or credited under the user's names lock,
//! so no request walks the whole home and no two changes can be priced on the same state.
//! It knows nothing of frames or doors; everything here blocks (callers use the blocking
//! pool).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::quota::{ENTRY_COST, QuotaLedger, Reservation, Usage};
use crate::storage::{Entry, PartProbe, PartialFile, Root, WirePath};
use crate::{Error, Result};

/// One user's home, with their quota; cheap to make per request.
#[derive(Debug, Clone)]
pub struct Home {
    user: String,
    quota: Option<u64>,
    root: Arc<Root>,
    ledger: QuotaLedger,
    names: Arc<Mutex<()>>,
}

/// An upload that has its go-ahead: the partial file, its quota reservation, and what it
/// cost before, so that [`Home::settle`] can book what it really changed.
#[derive(Debug)]
pub struct Upload {
    /// The partial file, locked for this upload; `None` once committed or discarded.
    pub partial: Option<PartialFile>,
    /// Where the upload goes on: bytes already there.
    pub offset: u64,
    probe: PartProbe,
    reservation: Reservation,
    /// The partial file's cost before this upload touched it.
    before: u64,
    /// The cost of the file this upload replaces, credited in the reservation.
    old: u64,
    /// Booked at the commit: the replaced file's cost, net of the shortfall charged.
    committed: Option<i64>,
}

impl Home {
    /// `user`'s home at `root`, with `quota`, priced in `ledger`.
    pub fn new(user: &str, quota: Option<u64>, root: Arc<Root>, ledger: &QuotaLedger) -> Home {
        Home {
            user: user.to_owned(),
            quota,
            root,
            names: ledger.names(user),
            ledger: ledger.clone(),
        }
    }

    fn names(&self) -> MutexGuard<'_, ()> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists a folder (see [`Root::list`]).
    ///
    /// # Errors
    /// As [`Root::list`].
    pub fn list(&self, path: &WirePath) -> Result<Vec<Entry>> {
        self.root.list(path)
    }

    /// Describes one path (see [`Root::stat`]).
    ///
    /// # Errors
    /// As [`Root::stat`].
    pub fn stat(&self, path: &WirePath) -> Result<Entry> {
        self.root.stat(path)
    }

    /// Creates a folder (with `parents`, the missing ones above it too), each charged
    /// [`ENTRY_COST`] before it is made.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when the folders do not fit; as [`Root::mkdir`].
    pub fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        let _names = self.names();
        let missing = self.root.missing(path)?;
        let charged = if parents { missing } else { missing.min(1) };
        self.ledger
            .charge(&self.user, self.quota, charged * ENTRY_COST)?;
        let made = self.root.mkdir(path, parents);
        if made.is_err() {
            let left = self.root.missing(path).unwrap_or(missing);
            let created = missing.saturating_sub(left);
            self.ledger
                .credit(&self.user, charged.saturating_sub(created) * ENTRY_COST);
        }
        made
    }

    /// Removes a file, or with `recursive` a folder and all in it; credits what it held.
    ///
    /// # Errors
    /// [`Error::Busy`] while an upload writes inside the folder; as [`Root::remove`].
    pub fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        let _names = self.names();
        let held = self.root.usage_at(path)?.cost();
        let removed = self.root.remove(path, recursive);
        let left = match &removed {
            Ok(()) => 0,
            Err(_) => self.root.usage_at(path).map_or(0, |u| u.cost()),
        };
        self.ledger.credit(&self.user, held.saturating_sub(left));
        removed
    }

    /// Renames `from` to `to`; a file replaced at `to` is credited.
    ///
    /// # Errors
    /// As [`Root::rename`].
    pub fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        let _names = self.names();
        let replaced = if from == to {
            0
        } else {
            match self.root.usage_at(to) {
                Ok(usage) => usage.cost(),
                Err(Error::NotFound(_)) => 0,
                Err(e) => return Err(e),
            }
        };
        self.root.rename(from, to)?;
        self.ledger.credit(&self.user, replaced);
        Ok(())
    }

    /// Opens a regular file for reading (see [`Root::open_read`]).
    ///
    /// # Errors
    /// As [`Root::open_read`].
    pub fn open_read(&self, path: &WirePath) -> Result<(std::fs::File, u64)> {
        self.root.open_read(path)
    }

    /// Starts (or with `resume`, resumes) an upload of `size` bytes to `path`: takes the
    /// one-writer lock and reserves what the finished file will add. A file it replaces is
    /// credited here and checked again at the commit.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`], [`Error::Busy`], and as [`Root::partial`].
    pub fn begin_upload(&self, path: &WirePath, size: u64, resume: bool) -> Result<Upload> {
        let _names = self.names();
        let partial = self.root.partial(path)?;
        let probe = partial.probe()?;
        let before = probe.cost();
        let have = partial.len()?;
        let offset = if resume && have <= size { have } else { 0 };
        let old = self.replaced_cost(path)?;
        // The partial file keeps `offset` bytes (it exists if it did before).
        let kept = if before > 0 { Usage::file(offset) } else { 0 };
        let growth = Usage::file(size).saturating_sub(kept);
        let reservation =
            self.ledger
                .reserve(&self.user, self.quota, growth.saturating_sub(old))?;
        Ok(Upload {
            partial: Some(partial),
            offset,
            probe,
            reservation,
            before,
            old,
            committed: None,
        })
    }

    /// What a commit to `path` would replace: a file or link there (a folder is refused
    /// by the commit itself).
    fn replaced_cost(&self, path: &WirePath) -> Result<u64> {
        match self.root.usage_at(path) {
            Ok(usage) if usage.entries == 1 => Ok(usage.cost()),
            Ok(_) | Err(Error::NotFound(_) | Error::Busy(_) | Error::BadRequest(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Commits a verified upload of `size` bytes under its name. If the file it replaces
    /// went away (moved, removed) since the go-ahead, the credit it was given must now fit
    /// the quota, or the upload is discarded.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] (the partial file is removed); as
    /// [`PartialFile::commit_verified`].
    pub fn commit(&self, upload: &mut Upload, size: u64) -> Result<()> {
        let Some(partial) = upload.partial.take() else {
            return Err(Error::Internal("the upload was already finished".into()));
        };
        let target = partial.target().clone();
        let _names = self.names();
        let replaced = self.replaced_cost(&target)?;
        let shortfall = upload.old.saturating_sub(replaced);
        if let Err(e) = self.ledger.charge(&self.user, self.quota, shortfall) {
            drop(partial.discard());
            return Err(e.into());
        }
        if let Err(e) = partial.commit_verified(size) {
            self.ledger.credit(&self.user, shortfall);
            return Err(e);
        }
        let new = i64::try_from(Usage::file(size)).unwrap_or(i64::MAX);
        let replaced = i64::try_from(replaced).unwrap_or(i64::MAX);
        upload.committed = Some(new - replaced - i64::try_from(shortfall).unwrap_or(0));
        Ok(())
    }

    /// Ends an upload, whatever its outcome, booking what it changed in the home: the
    /// partial file's growth (kept for a resume) or the committed file.
    pub fn settle(&self, upload: Upload) {
        let after = i64::try_from(upload.probe.cost()).unwrap_or(i64::MAX);
        let before = i64::try_from(upload.before).unwrap_or(i64::MAX);
        let grown = after - before + upload.committed.unwrap_or(0);
        upload.reservation.settle(grown);
    }

    /// Measures the home again, after something other than these methods changed it (a
    /// command run by exec).
    ///
    /// # Errors
    /// As [`Root::usage`].
    pub fn remeasure(&self) -> Result<()> {
        let _names = self.names();
        let usage = self.root.usage()?;
        self.ledger.remeasured(&self.user, usage.cost());
        Ok(())
    }
}
