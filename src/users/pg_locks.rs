//! One writer per file across servers that share an object store and a PostgreSQL user
//! database, wherever they run: a session advisory lock per file, `pg_try_advisory_lock`.
//!
//! Each server keeps one database session for its locks (out of the pool, so that uploads
//! in flight never starve it). The database lets go of a lock when its session ends, so a
//! server that dies holds nothing: a resume on another server never waits for a lease.
//! If the session itself is lost while the server lives (the database restarted), its
//! locks are gone with it; the next lock opens a new session. Until then an upload that
//! began before could meet a second writer on another server: the upload's own checks (its
//! parts and final digest) still keep a mixed file from ever appearing under the name.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{ClientWrapper, Object};

use super::pg::{Pg, db_error, pool_error};
use crate::Result;

/// The session holding this server's locks, and which one it is.
type Session = Arc<tokio::sync::Mutex<Option<(u64, ClientWrapper)>>>;

/// This server's advisory locks (see the module).
pub(crate) struct WriterLocks {
    pg: Arc<Pg>,
    session: Session,
    /// Numbers the sessions, so that a lock is let go only in the session that took it.
    sessions: AtomicU64,
}

impl std::fmt::Debug for WriterLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLocks").finish_non_exhaustive()
    }
}

/// A lock held: let go (in the background) when dropped.
#[derive(Debug)]
pub(crate) struct WriterLock {
    locks: Arc<WriterLocks>,
    id: i64,
    session: u64,
}

/// The advisory lock number of `key`: 64 bits of its BLAKE3 hash.
fn lock_id(key: &str) -> i64 {
    let hash = blake3::hash(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(first)
}

impl WriterLocks {
    pub(super) fn new(pg: Arc<Pg>) -> Arc<WriterLocks> {
        Arc::new(WriterLocks {
            pg,
            session: Session::default(),
            sessions: AtomicU64::new(0),
        })
    }

    /// Takes the lock of `key` unless a server (this one included) holds it.
    ///
    /// # Errors
    /// [`crate::Error::Unavailable`] when the database cannot be reached.
    pub(crate) fn try_lock(
        self: &Arc<Self>,
        key: &str,
    ) -> impl Future<Output = Result<Option<WriterLock>>> + Send + 'static {
        let id = lock_id(key);
        let locks = self.clone();
        async move {
            let session = locks.session.clone();
            let next = locks.sessions.fetch_add(1, Ordering::Relaxed) + 1;
            let (taken, number) = locks
                .pg
                .run_async(move |pool| async move {
                    let mut held = session.lock().await;
                    let (number, client) = match held.take() {
                        Some((number, client)) if !client.is_closed() => (number, client),
                        _ => (next, Object::take(pool.get().await.map_err(pool_error)?)),
                    };
                    let taken = client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&id])
                        .await;
                    // A session that failed is dropped, and with it every lock it held.
                    let taken: bool = taken.map_err(db_error)?.get(0);
                    *held = Some((number, client));
                    Ok((taken, number))
                })
                .await?;
            Ok(taken.then(|| WriterLock {
                locks,
                id,
                session: number,
            }))
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let (session, id, number) = (self.locks.session.clone(), self.id, self.session);
        self.locks.pg.spawn(async move {
            let mut held = session.lock().await;
            let Some((current, client)) = held.take() else {
                return;
            };
            if current != number {
                // The session that took it is gone, and the lock with it.
                *held = Some((current, client));
                return;
            }
            match client
                .query_one("SELECT pg_advisory_unlock($1)", &[&id])
                .await
            {
                Ok(_) => *held = Some((current, client)),
                // Dropped: closing the session lets go of its locks.
                Err(e) => tracing::warn!("letting go of a writer lock: {e}"),
            }
        });
    }
}
