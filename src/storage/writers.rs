//! `Writers`: the one-writer-per-file rule across servers that share an object store. Each
//! server keeps its own uploads apart in memory; this keeps two servers apart, through what
//! they share besides the store: their data folder (several servers on one machine: a lock
//! file each, `flock`) or their user database in PostgreSQL (servers anywhere: a session
//! advisory lock). Both are let go by the operating system or the database the moment the
//! server holding them dies, so a resume on another server never waits for a lease to run
//! out.

use std::fs::File;
use std::path::PathBuf;

use crate::Result;
use crate::filecopy::blocking;

/// Where servers sharing a store take their writer locks.
#[derive(Debug, Clone)]
pub(crate) enum Writers {
    /// Lock files in this folder (`DATA/locks`).
    Files(PathBuf),
    /// Advisory locks in the PostgreSQL user database (`--users postgres://…`).
    Postgres(std::sync::Arc<crate::users::WriterLocks>),
}

/// A lock held: let go when dropped.
#[derive(Debug)]
pub(crate) enum Held {
    /// A locked file, removed as it is let go.
    File {
        /// The lock file.
        path: PathBuf,
        /// Its open, locked handle: the lock lasts as long as it is open.
        _file: File,
    },
    /// An advisory lock in PostgreSQL.
    Postgres {
        /// Let go (in the background) as it is dropped.
        _lock: crate::users::WriterLock,
    },
}

impl Drop for Held {
    fn drop(&mut self) {
        match self {
            // Removed while still locked: a server that opened it meanwhile finds, once it
            // gets the lock, that the name now points elsewhere (or nowhere) and tries again.
            Held::File { path, .. } => drop(std::fs::remove_file(path)),
            Held::Postgres { .. } => {}
        }
    }
}

impl Writers {
    /// Takes the lock of `key` if no server holds it: `None` when one does.
    ///
    /// # Errors
    /// The lock folder or file cannot be made or opened.
    pub(crate) async fn try_lock(&self, key: &str) -> Result<Option<Held>> {
        match self {
            Writers::Files(dir) => {
                let path = dir.join(format!(
                    "{}.lock",
                    &blake3::hash(key.as_bytes()).to_hex()[..32]
                ));
                let dir = dir.clone();
                blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    lock_file(path)
                })
                .await
            }
            Writers::Postgres(locks) => Ok(locks
                .try_lock(key)
                .await?
                .map(|lock| Held::Postgres { _lock: lock })),
        }
    }
}

/// Locks the file at `path` (creating it), unless another process holds it.
fn lock_file(path: PathBuf) -> Result<Option<Held>> {
    use rustix::fs::{FlockOperation, flock, fstat, stat};
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
        // The holder before us may have removed the name after we opened it.
        let ours = fstat(&file).map_err(std::io::Error::from)?;
        match stat(&path) {
            Ok(now) if now.st_ino == ours.st_ino && now.st_dev == ours.st_dev => {
                return Ok(Some(Held::File { path, _file: file }));
            }
            Ok(_) => continue,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let writers = Writers::Files(dir.path().join("locks"));
        let held = writers.try_lock("a/b").await.unwrap().expect("free");
        // flock locks belong to the open file: a second open (another server) is refused.
        assert!(writers.try_lock("a/b").await.unwrap().is_none());
        assert!(writers.try_lock("a/c").await.unwrap().is_some());
        drop(held);
        assert!(writers.try_lock("a/b").await.unwrap().is_some());
    }
}
