//! `Writers`: the one-writer-per-file rule across servers that share an object store. Each
//! server keeps its own uploads apart in memory; this keeps two servers apart, through what
//! they share besides the store: their data folder (several servers on one machine: a lock
//! file each, `flock`) or their user database in PostgreSQL (servers anywhere: a session
//! advisory lock). Both are let go by the operating system or the database the moment the
//! server holding them dies, so a resume on another server never waits for a lease to run
//! out.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::filecopy::blocking;
use crate::{Error, Result};

/// Where servers sharing a store take their writer locks.
#[derive(Debug, Clone)]
pub(crate) enum Writers {
    /// Lock files in this folder (`DATA/locks`).
    Files(PathBuf),
    /// Advisory locks in the PostgreSQL user database.
    Postgres(Arc<PgLocks>),
}

/// One connection to PostgreSQL that holds this server's writer locks (session advisory
/// locks, so they end with the connection: when the server dies, at once).
pub(crate) struct PgLocks {
    config: tokio_postgres::Config,
    /// The connection, opened on first use and again after it broke.
    client: Mutex<Option<tokio_postgres::Client>>,
    /// The locks this server's uploads hold.
    held: std::sync::Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for PgLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password: never shown.
        f.debug_struct("PgLocks").finish_non_exhaustive()
    }
}

impl PgLocks {
    /// Locks in the database at `url` (no connection is made yet).
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a URL that does not parse.
    pub(crate) fn new(url: &str) -> Result<PgLocks> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| Error::BadRequest("--users: not a PostgreSQL URL".into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        config.application_name("sockit-locks");
        Ok(PgLocks {
            config,
            client: Mutex::new(None),
            held: std::sync::Mutex::default(),
        })
    }

    /// The lock's number for `key`: the first 8 bytes of its BLAKE3.
    fn id(key: &str) -> i64 {
        let hash = blake3::hash(key.as_bytes());
        let mut first = [0; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        i64::from_le_bytes(first)
    }

    async fn call(&self, sql: &str, id: i64) -> Result<bool> {
        let unavailable = |e: tokio_postgres::Error| {
            Error::Unavailable(format!("the user database (writer locks): {e}"))
        };
        let mut client = self.client.lock().await;
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            let (fresh, connection) = self
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(unavailable)?;
            tokio::spawn(connection);
            *client = Some(fresh);
        }
        let Some(live) = client.as_ref() else {
            return Err(Error::Internal("no lock connection".into()));
        };
        let row = live.query_one(sql, &[&id]).await.map_err(unavailable)?;
        Ok(row.get(0))
    }
}

/// A lock held: let go when dropped.
#[derive(Debug)]
pub(crate) enum Held {
    /// An advisory lock, unlocked in the background.
    Postgres {
        /// The connection that holds it.
        locks: Arc<PgLocks>,
        /// Its number.
        id: i64,
    },
    /// A locked file, removed as it is let go.
    File {
        /// The lock file.
        path: PathBuf,
        /// Its open, locked handle: the lock lasts as long as it is open.
        _file: File,
    },
}

impl Drop for Held {
    fn drop(&mut self) {
        match self {
            // Removed while still locked: a server that opened it meanwhile finds, once it
            // gets the lock, that the name now points elsewhere (or nowhere) and tries again.
            Held::File { path, .. } => drop(std::fs::remove_file(path)),
            Held::Postgres { locks, id } => {
                let (locks, id) = (locks.clone(), *id);
                locks
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        // A broken connection has let go of it already.
                        drop(locks.call("SELECT pg_advisory_unlock($1)", id).await);
                    });
                }
            }
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
            Writers::Postgres(locks) => {
                let id = PgLocks::id(key);
                {
                    // A session lock can be taken twice by its own session: this server's
                    // uploads are kept apart here first.
                    let mut held = locks
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !held.insert(id) {
                        return Ok(None);
                    }
                }
                let got = locks.call("SELECT pg_try_advisory_lock($1)", id).await;
                let unheld = || {
                    locks
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&id);
                };
                match got {
                    Ok(true) => Ok(Some(Held::Postgres {
                        locks: locks.clone(),
                        id,
                    })),
                    Ok(false) => {
                        unheld();
                        Ok(None)
                    }
                    Err(e) => {
                        unheld();
                        Err(e)
                    }
                }
            }
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
