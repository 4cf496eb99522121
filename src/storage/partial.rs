//! `PartialFile`: the upload side of a [`super::Root`]. Bytes land in a hidden partial file
//! next to the target and are renamed into place only after their size and digest match.
//!
//! It owns the partial's name, the one-writer-per-file lock and the commit check; it never
//! writes to the final name except by that one atomic rename.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::sync::{Mutex, PoisonError};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use super::{NO_WAIT, PART_SUFFIX, WirePath, blocking_io, fs_error};
use crate::protocol::Kept;
use crate::{Error, Result};

/// The partial file's name for a target `name`: hidden, and deterministic, so an upload
/// interrupted by a disconnect or a server restart finds it again.
pub(crate) fn part_name(name: &str) -> String {
    format!(".{name}{PART_SUFFIX}")
}

/// Whether a folder entry is one of our partial files (hidden from listings).
pub(crate) fn is_part_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PART_SUFFIX)
}

/// Which file an upload writes: the parent folder's device and inode plus the name, so two
/// paths reaching one folder (through a symlink, or two users' views) share one lock.
type LockKey = (u64, u64, String);

/// Partial files with a writer in this process. One server process per data folder is
/// assumed; two processes would need an OS lock as well.
static ACTIVE: Mutex<BTreeSet<LockKey>> = Mutex::new(BTreeSet::new());

/// Holds one partial file for one writer; released on drop.
#[derive(Debug)]
struct UploadLock {
    key: LockKey,
}

impl UploadLock {
    fn acquire(dir: &Dir, name: &str, target: &WirePath) -> Result<UploadLock> {
        let key = lock_key(dir, name).map_err(|e| fs_error(target, e))?;
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if !active.insert(key.clone()) {
            return Err(Error::Busy(format!(
                "busy: another upload of {target} is in progress"
            )));
        }
        Ok(UploadLock { key })
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        active.remove(&self.key);
    }
}

/// Whether an upload is writing into the folder described by `meta` right now.
#[cfg(unix)]
pub(crate) fn has_writer_in(meta: &cap_std::fs::Metadata) -> bool {
    use cap_std::fs::MetadataExt;
    let (dev, ino) = (meta.dev(), meta.ino());
    let active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    active
        .range((dev, ino, String::new())..)
        .next()
        .is_some_and(|(d, i, _)| (*d, *i) == (dev, ino))
}

#[cfg(unix)]
fn lock_key(dir: &Dir, name: &str) -> io::Result<LockKey> {
    use cap_std::fs::MetadataExt;
    let meta = dir.dir_metadata()?;
    Ok((meta.dev(), meta.ino(), name.to_owned()))
}

#[cfg(not(unix))]
fn lock_key(dir: &Dir, name: &str) -> io::Result<LockKey> {
    // Without inode numbers, lock by name alone: stricter than needed (uploads of one
    // name into two folders wait for each other) but never lets two writers into one file.
    let _ = dir;
    Ok((0, 0, name.to_owned()))
}

/// Measures one upload's partial file: what it costs against the quota now. It holds the
/// upload's one-writer lock too, so nothing else can start writing there (or remove the
/// folder, see [`has_writer_in`]) until the upload is booked.
#[derive(Debug)]
pub(crate) struct PartProbe {
    dir: Dir,
    part: String,
    _lock: std::sync::Arc<UploadLock>,
}

impl PartProbe {
    /// The partial file's cost (its bytes plus one entry), 0 when there is none.
    pub(crate) fn cost(&self) -> u64 {
        match self.dir.symlink_metadata(&self.part) {
            Ok(meta) => crate::quota::Usage::file(meta.len()),
            Err(_) => 0,
        }
    }
}

/// An upload in progress: the hidden partial file of one target, locked for one writer.
#[derive(Debug)]
pub(crate) struct PartialFile {
    dir: Dir,
    target: WirePath,
    name: String,
    part: String,
    /// Shared with this upload's [`PartProbe`]: the upload keeps its name until both end.
    lock: std::sync::Arc<UploadLock>,
    /// Set by [`PartialFile::write_whole`]: the bytes written, with the kept mode and time
    /// already on the file, so a commit after a group sync need not open it again.
    written: Option<u64>,
}

impl PartialFile {
    /// Takes the upload lock for `name` in `dir`; `target` is the wire path for messages.
    pub(crate) fn new(dir: Dir, target: WirePath, name: &str) -> Result<PartialFile> {
        let lock = UploadLock::acquire(&dir, name, &target)?;
        Ok(PartialFile {
            dir,
            target,
            name: name.to_owned(),
            part: part_name(name),
            lock: std::sync::Arc::new(lock),
            written: None,
        })
    }

    /// Bytes already received: where a resumed upload continues. 0 when nothing was (or
    /// when something other than a file is in the partial file's place).
    ///
    /// # Errors
    /// [`Error::Fs`] when the partial file cannot be examined.
    pub(crate) fn len(&self) -> Result<u64> {
        match self.dir.symlink_metadata(&self.part) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(fs_error(&self.target, e)),
        }
    }

    /// A handle that measures this upload's partial file later, whatever becomes of this
    /// value (committed, discarded or dropped).
    ///
    /// # Errors
    /// When the folder handle cannot be duplicated.
    pub(crate) fn probe(&self) -> Result<PartProbe> {
        Ok(PartProbe {
            dir: self
                .dir
                .try_clone()
                .map_err(|e| fs_error(&self.target, e))?,
            part: self.part.clone(),
            _lock: self.lock.clone(),
        })
    }

    /// Opens the partial file for reading and writing at `offset`, creating it if needed and
    /// cutting off anything past `offset` (bytes the client will send again). It is readable
    /// so that a resumed upload can hash the prefix it keeps.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when `offset` is past what was received; [`Error::Fs`] and
    /// friends when the file cannot be opened, cut or positioned.
    pub(crate) fn open_at(&mut self, offset: u64) -> Result<File> {
        // Whatever is written through this handle is not known here.
        self.written = None;
        let err = |e| fs_error(&self.target, e);
        let mut file = self.open_part()?;
        let len = file.metadata().map_err(err)?.len();
        if offset > len {
            return Err(Error::BadRequest(format!(
                "cannot resume {} at byte {offset}: only {len} bytes were received",
                self.target
            )));
        }
        if offset < len {
            file.set_len(offset).map_err(err)?;
        }
        file.seek(SeekFrom::Start(offset)).map_err(err)?;
        Ok(file)
    }

    /// Writes `body`, the whole file, into the partial file (from its start) and gives it
    /// the `kept` mode and time, all through one open. The group sync that follows makes
    /// the attributes durable with the bytes, and the commit only checks and renames.
    ///
    /// # Errors
    /// As [`PartialFile::open_at`], and write errors.
    pub(crate) fn write_whole(&mut self, body: &[u8], kept: Kept) -> Result<()> {
        use std::io::Write;
        let mut file = self.open_at(0)?;
        file.write_all(body)
            .map_err(|e| fs_error(&self.target, e))?;
        self.apply(&file, kept)?;
        self.written = Some(body.len() as u64);
        Ok(())
    }

    /// Gives the partial `file` the kept mode and modification time.
    fn apply(&self, file: &File, kept: Kept) -> Result<()> {
        let err = |e| fs_error(&self.target, e);
        if let Some(mode) = kept.mode {
            // Permission bits only: never set-id or sticky, and always the owner's to read
            // and write (the server must be able to serve and replace what it stored).
            let mode = (mode & 0o777) | 0o600;
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(err)?;
        }
        if let Some(modified) = kept.modified {
            let at = if modified >= 0 {
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(modified.unsigned_abs())
            } else {
                std::time::UNIX_EPOCH - std::time::Duration::from_secs(modified.unsigned_abs())
            };
            file.set_modified(at).map_err(err)?;
        }
        Ok(())
    }

    /// Checks the partial file against the announced size, then renames it to the target in
    /// one atomic step, once it is durable. The caller has already checked the content, with
    /// a digest computed over exactly the bytes it wrote (a mismatch goes to
    /// [`PartialFile::reject`] instead), so the file is not read again.
    ///
    /// On a size mismatch the partial file is removed, so the next attempt starts from zero.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] when the size differs; [`Error::AlreadyExists`] when the
    /// target is a folder (the partial is kept); file system errors otherwise.
    pub(crate) fn commit_verified(self, expected_len: u64, kept: Kept, synced: bool) -> Result<()> {
        if synced && self.written.is_some() {
            // Written whole and already durable: a look at the name is the size check (a
            // folder or anything else swapped into its place is refused by it too).
            let len = match self.dir.symlink_metadata(&self.part) {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => {
                    return Err(self.reject("something other than a file replaced its bytes"));
                }
                Err(e) => return Err(fs_error(&self.target, e)),
            };
            return self.publish(None, len, expected_len);
        }
        let file = self.open_part()?;
        let len = file
            .metadata()
            .map_err(|e| fs_error(&self.target, e))?
            .len();
        if self.written.is_none() {
            self.apply(&file, kept)?;
        }
        // Durable before visible: a crash after the rename must not leave an empty file.
        // (A group commit made it durable already, with one `syncfs` for the group.) A file
        // of the wrong size is not worth it: `publish` refuses it.
        if !synced && len == expected_len {
            file.sync_all().map_err(|e| fs_error(&self.target, e))?;
        }
        self.publish(Some(file), len, expected_len)
    }

    /// Opens the partial file for reading and writing, creating it (so that an empty
    /// upload, which never opened it, commits too). Only a regular file is ever written:
    /// anything else in its place (a FIFO, where writes would block for good; a device; a
    /// symlink) is no upload of ours and is removed first, and the open never waits.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for a folder in its place; file system errors.
    fn open_part(&self) -> Result<File> {
        let err = |e| fs_error(&self.target, e);
        match self.dir.symlink_metadata(&self.part) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::AlreadyExists(format!(
                    "{}: a folder is in the place of its partial file `{}`",
                    self.target, self.part
                )));
            }
            Ok(meta) if !meta.is_file() => self.dir.remove_file(&self.part).map_err(err)?,
            _ => {}
        }
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(NO_WAIT | rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        let file = self.dir.open_with(&self.part, &options).map_err(err)?;
        if !file.metadata().map_err(err)?.is_file() {
            // Swapped in between the look and the open.
            return Err(Error::BadRequest(format!(
                "{}: its partial file `{}` is not a regular file",
                self.target, self.part
            )));
        }
        let file = file.into_std();
        blocking_io(&file).map_err(err)?;
        Ok(file)
    }

    /// Removes the partial file after a failed check of its content, described by
    /// `problem`: returns the error to report.
    pub(crate) fn reject(self, problem: &str) -> Error {
        let message = format!("{}: {problem}; the upload was discarded", self.target);
        match self.discard() {
            Ok(()) => Error::DigestMismatch(message),
            Err(e) => e,
        }
    }

    /// Renames the durable partial file (`file`, when open) of `len` bytes into place, once
    /// that is the announced length.
    fn publish(self, file: Option<File>, len: u64, expected_len: u64) -> Result<()> {
        drop(file);
        if len != expected_len {
            return Err(self.reject(&format!(
                "received {len} bytes but {expected_len} were announced"
            )));
        }
        if self
            .dir
            .symlink_metadata(&self.name)
            .is_ok_and(|m| m.is_dir())
        {
            return Err(Error::AlreadyExists(format!(
                "{} is a folder; the upload is kept: remove the folder and send again to finish",
                self.target
            )));
        }
        // Same folder, so the rename is atomic: readers see the old file or the new one.
        self.dir
            .rename(&self.part, &self.dir, &self.name)
            .map_err(|e| fs_error(&self.target, e))
    }

    /// Removes the partial file (an abandoned upload); missing is fine.
    ///
    /// # Errors
    /// File system errors other than "not found".
    pub(crate) fn discard(self) -> Result<()> {
        match self.dir.remove_file(&self.part) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fs_error(&self.target, e)),
            _ => Ok(()),
        }
    }
}
