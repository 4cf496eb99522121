//! `Home`: what a logged-in user may do to their home, priced against their quota: the
//! file-service core that every door calls.
//!
//! It joins a home's [`Storage`] with the quota ledger: each change that adds or removes
//! entries or bytes is measured and charged or credited under the user's names lock, so no
//! request walks the whole home and no two changes are priced on the same state. It knows
//! nothing of frames, HTTP or FTP; the rules here hold whichever door a request came through.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use crate::protocol::ops::Space;
use crate::quota::{ENTRY_COST, QuotaLedger, Reservation, Usage};
use crate::storage::backend::{Storage, Store, StoreUpload, Upload};
use crate::storage::{Entry, EntryKind, WirePath};
use crate::{Error, Result};

/// One user's home, with their quota; cheap to make per request.
#[derive(Debug, Clone)]
pub(crate) struct Home<S = Store> {
    user: String,
    quota: Option<u64>,
    storage: S,
    ledger: QuotaLedger,
    names: Arc<Mutex<()>>,
}

/// An upload that has its go-ahead: the storage's upload, its quota reservation, and what
/// it cost before, so that [`Home::settle`] can book what it really changed.
#[derive(Debug)]
pub(crate) struct Pending<U> {
    /// The storage's upload (the partial file, for a local home).
    pub(crate) upload: U,
    /// Where the upload goes on: bytes already there.
    pub(crate) offset: u64,
    reservation: Reservation,
    /// The upload's cost before it began.
    before: u64,
    /// The cost of the file this upload replaces, credited in the reservation.
    old: u64,
    /// Booked at the commit: the new file, less what it replaced and the shortfall charged.
    committed: Option<i64>,
    /// Counts the upload in `sockit_uploads_in_progress` while it lasts.
    _uploading: crate::ops::metrics::Open,
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl<S: Storage> Home<S> {
    /// `user`'s home in `storage`, with `quota`, priced in `ledger`.
    pub(crate) fn new(user: &str, quota: Option<u64>, storage: S, ledger: &QuotaLedger) -> Home<S> {
        Home {
            user: user.to_owned(),
            quota,
            storage,
            names: ledger.names(user),
            ledger: ledger.clone(),
        }
    }

    async fn names(&self) -> MutexGuard<'_, ()> {
        self.names.lock().await
    }

    /// Lists a whole folder at once, sorted by name (a file lists as itself).
    ///
    /// # Errors
    /// As [`Storage::open_list`] and [`Storage::next_page`].
    // For the doors that list a folder in one answer (WebDAV, the web page).
    pub(crate) async fn list(&self, path: &WirePath) -> Result<Vec<Entry>> {
        let mut listing = self.open_list(path).await?;
        Ok(self.next_page(&mut listing, usize::MAX).await?.0)
    }

    /// Starts listing a folder a page at a time, in name order.
    ///
    /// # Errors
    /// As [`Home::list`].
    pub(crate) async fn open_list(&self, path: &WirePath) -> Result<S::Listing> {
        self.storage.open_list(path).await
    }

    /// The listing's next (up to) `limit` entries, and whether more come after them.
    ///
    /// # Errors
    /// As [`Storage::next_page`].
    pub(crate) async fn next_page(
        &self,
        listing: &mut S::Listing,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool)> {
        self.storage.next_page(listing, limit).await
    }

    /// Describes one path.
    ///
    /// # Errors
    /// As [`Storage::stat`].
    pub(crate) async fn stat(&self, path: &WirePath) -> Result<Entry> {
        self.storage.stat(path).await
    }

    /// The quota, and what the home costs against it now (as the ledger keeps it).
    pub(crate) fn space(&self) -> Space {
        Space {
            quota: self.quota,
            used: self.ledger.used(&self.user).unwrap_or(0),
        }
    }

    /// Creates a folder (with `parents`, the missing ones above it too), each charged
    /// [`ENTRY_COST`] before it is made.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when the folders do not fit; as [`Storage::mkdir`].
    pub(crate) async fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        let _names = self.names().await;
        let missing = self.storage.missing(path).await?;
        let charged = if parents { missing } else { missing.min(1) };
        self.ledger
            .charge(&self.user, self.quota, charged * ENTRY_COST)?;
        let made = self.storage.mkdir(path, parents).await;
        if made.is_err() {
            let left = self.storage.missing(path).await.unwrap_or(missing);
            let created = missing.saturating_sub(left);
            self.ledger
                .credit(&self.user, charged.saturating_sub(created) * ENTRY_COST);
        }
        made
    }

    /// Removes a file, or with `recursive` a folder and all in it; credits what it held.
    ///
    /// # Errors
    /// [`Error::Busy`] while an upload writes inside the folder; as [`Storage::remove`].
    pub(crate) async fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        if path.is_root() {
            // Refused by the storage; not worth a walk of the whole home first.
            return self.storage.remove(path, recursive).await;
        }
        let _names = self.names().await;
        let held = self.storage.usage(path, true).await?.cost();
        let removed = self.storage.remove(path, recursive).await;
        let left = match &removed {
            Ok(()) => 0,
            Err(_) => self
                .storage
                .usage(path, false)
                .await
                .map_or(0, |u| u.cost()),
        };
        self.ledger.credit(&self.user, held.saturating_sub(left));
        removed
    }

    /// Renames `from` to `to`; a file replaced at `to` is credited.
    ///
    /// # Errors
    /// As [`Storage::rename`].
    pub(crate) async fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        let _names = self.names().await;
        let replaced = if from == to {
            0
        } else {
            self.replaced_cost(to).await?
        };
        self.storage.rename(from, to).await?;
        self.ledger.credit(&self.user, replaced);
        Ok(())
    }

    /// Opens a regular file for reading: the reader and its length.
    ///
    /// # Errors
    /// As [`Storage::open_read`].
    pub(crate) async fn open_read(&self, path: &WirePath) -> Result<(S::Reader, u64)> {
        self.storage.open_read(path).await
    }

    /// Starts (or with `resume`, resumes) an upload of `size` bytes to `path`: takes the
    /// one-writer lock and reserves what the finished file will add. A file it replaces is
    /// credited here and checked again at the commit.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`], [`Error::Busy`], and as [`Storage::begin_upload`].
    pub(crate) async fn begin_upload(
        &self,
        path: &WirePath,
        size: u64,
        resume: bool,
    ) -> Result<Pending<S::Upload>> {
        let _names = self.names().await;
        let upload = self.storage.begin_upload(path).await?;
        let before = upload.cost_at_start();
        let have = upload.received();
        let offset = if resume && have <= size { have } else { 0 };
        let old = self.replaced_cost(path).await?;
        // The partial bytes kept (it exists if it did before).
        let kept = if before > 0 { Usage::file(offset) } else { 0 };
        let growth = Usage::file(size).saturating_sub(kept);
        let reservation =
            self.ledger
                .reserve(&self.user, self.quota, growth.saturating_sub(old))?;
        Ok(Pending {
            upload,
            offset,
            reservation,
            before,
            old,
            committed: None,
            _uploading: crate::ops::metrics::upload(),
        })
    }

    /// Reserves `bytes` more for `pending`, an upload whose size was not known when it
    /// began (FTP's `STOR` says none): called before each chunk is written, so the quota
    /// holds while the bytes arrive.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when they do not fit.
    pub(crate) fn reserve_more(&self, pending: &mut Pending<S::Upload>, bytes: u64) -> Result<()> {
        pending.reservation.grow(self.quota, bytes)
    }

    /// What a commit to or a move onto `path` would replace: a file or link there (a
    /// folder is refused by the commit or move itself).
    async fn replaced_cost(&self, path: &WirePath) -> Result<u64> {
        // A folder is never replaced: no walk of what it holds.
        match self.storage.stat(path).await {
            Ok(entry) if entry.kind == EntryKind::Dir => return Ok(0),
            Err(Error::NotFound(_)) => return Ok(0),
            _ => {}
        }
        match self.storage.usage(path, true).await {
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
    /// [`Error::QuotaExceeded`] (the upload's bytes are thrown away); as
    /// [`Storage::commit_upload`].
    pub(crate) async fn commit(&self, pending: &mut Pending<S::Upload>, size: u64) -> Result<()> {
        let _names = self.names().await;
        let target = pending.upload.target().clone();
        let replaced = self.replaced_cost(&target).await?;
        let shortfall = pending.old.saturating_sub(replaced);
        if let Err(e) = self.ledger.charge(&self.user, self.quota, shortfall) {
            drop(self.storage.discard_upload(&mut pending.upload).await);
            return Err(e);
        }
        if let Err(e) = self.storage.commit_upload(&mut pending.upload, size).await {
            self.ledger.credit(&self.user, shortfall);
            return Err(e);
        }
        pending.committed = Some(signed(Usage::file(size)) - signed(replaced) - signed(shortfall));
        Ok(())
    }

    /// Ends an upload, whatever its outcome, booking what it changed in the home: the
    /// partial bytes kept for a resume, or the committed file.
    pub(crate) async fn settle(&self, pending: Pending<S::Upload>) {
        // A committed upload's partial bytes are its file now: they cost nothing as an upload.
        let after = match pending.committed {
            Some(_) => 0,
            None => signed(pending.upload.cost().await),
        };
        let grown = after - signed(pending.before) + pending.committed.unwrap_or(0);
        pending.reservation.settle(grown);
    }

    /// Makes everything written to the home's storage so far durable, in one call (the
    /// group commit of [`crate::service`]'s `write`s).
    ///
    /// # Errors
    /// As [`Storage::sync`].
    pub(crate) async fn sync(&self) -> Result<()> {
        self.storage.sync().await
    }

    /// Measures the home again, after something other than these methods changed it (a
    /// command run by exec).
    ///
    /// # Errors
    /// As [`Storage::usage`].
    pub(crate) async fn remeasure(&self) -> Result<()> {
        let _names = self.names().await;
        let usage = self.storage.usage(&WirePath::root(), false).await?;
        self.ledger.remeasured(&self.user, usage.cost());
        Ok(())
    }
}

/// Where a door's upload writes its bytes, from the offset it starts at: the partial file of
/// a local home, or the parts of an object-store upload (held in the [`Pending`] itself).
#[derive(Debug)]
pub(crate) enum UploadWriter {
    /// The local partial file, opened at the offset.
    Local(tokio::fs::File),
    /// Through the pending upload's own parts.
    Store,
}

impl Home {
    /// Opens `pending` for writing at `offset` (what a local partial file holds past it is
    /// cut), for a file of `size` bytes.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for an offset an object-store upload cannot continue from;
    /// file system and store errors.
    pub(crate) async fn writer(
        &self,
        pending: &mut Pending<StoreUpload>,
        offset: u64,
        size: u64,
    ) -> Result<UploadWriter> {
        match &mut pending.upload {
            StoreUpload::Local(local) => Ok(UploadWriter::Local(tokio::fs::File::from_std(
                local.open_at(offset).await?,
            ))),
            StoreUpload::S3(s3) => {
                s3.start(offset, size, crate::protocol::DigestKind::Blake3)
                    .await?;
                Ok(UploadWriter::Store)
            }
        }
    }

    /// Throws an upload's bytes away (it can never complete, or does not resume).
    pub(crate) async fn discard(&self, pending: &mut Pending<StoreUpload>) {
        drop(self.storage.discard_upload(&mut pending.upload).await);
    }

    /// Runs `then` on a local home's folder handle in one trip to the blocking pool (the
    /// caller keeps the rules: `then` only reads); `None` for a home in an object store.
    ///
    /// # Errors
    /// `then`'s.
    pub(crate) async fn with_local_root<T: Send + 'static>(
        &self,
        then: impl FnOnce(&crate::storage::Root) -> Result<T> + Send + 'static,
    ) -> Option<Result<T>> {
        self.storage.with_local_root(then).await
    }

    /// This home with its storage calls made on the calling thread, for code that runs on
    /// the blocking pool and makes many calls in one trip there; `None` when the storage
    /// cannot (an object store). The quota and its names lock are the same.
    pub(crate) fn inline(&self) -> Option<Home> {
        Some(Home {
            storage: self.storage.inline()?,
            ..self.clone()
        })
    }
}

impl UploadWriter {
    /// Writes the next bytes of `pending`.
    ///
    /// # Errors
    /// File system and store errors.
    pub(crate) async fn write(
        &mut self,
        pending: &mut Pending<StoreUpload>,
        bytes: bytes::Bytes,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        match (self, &mut pending.upload) {
            (UploadWriter::Local(file), _) => Ok(file.write_all(&bytes).await?),
            (UploadWriter::Store, StoreUpload::S3(s3)) => s3.write(bytes).await,
            (UploadWriter::Store, StoreUpload::Local(_)) => {
                Err(Error::Internal("a store writer on a local upload".into()))
            }
        }
    }

    /// Ends this run of writes: the local file flushed; an object-store upload keeps what
    /// can be kept for a later run (its whole parts), and its tail when `last` says the
    /// commit follows.
    ///
    /// # Errors
    /// File system and store errors.
    pub(crate) async fn finish(
        &mut self,
        pending: &mut Pending<StoreUpload>,
        last: bool,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        match (self, &mut pending.upload) {
            (UploadWriter::Local(file), _) => Ok(file.flush().await?),
            (UploadWriter::Store, StoreUpload::S3(s3)) => s3.checkpoint(last).await,
            (UploadWriter::Store, StoreUpload::Local(_)) => Ok(()),
        }
    }
}
