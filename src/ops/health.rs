//! [`Health`]: whether every listener still serves and every back-end answers, for
//! `/healthz`. A listener is up from its bind until its accept loop ends; a back-end is a
//! check run at each look (the user store answers a query, the homes folder is there).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::users::Users;

/// The listeners and back-ends of one server.
#[derive(Debug, Default)]
pub struct Health {
    listeners: Mutex<Vec<(String, Arc<AtomicBool>)>>,
    users: Mutex<Option<Arc<Users>>>,
    folders: Mutex<Vec<PathBuf>>,
    store: Mutex<Option<crate::storage::s3::Bucket>>,
}

impl Health {
    /// Nothing registered yet: healthy.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Registers listener `what` on `addr` as up; it is down once the returned flag is
    /// cleared with [`ListenerUp::down`] (or the guard drops).
    pub fn listener(&self, what: &str, addr: &str) -> ListenerUp {
        let flag = Arc::new(AtomicBool::new(true));
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((format!("{what} on {addr}"), flag.clone()));
        ListenerUp(flag)
    }

    /// Checks this user store at each look.
    pub(crate) fn users(&self, users: Arc<Users>) {
        *self.users.lock().unwrap_or_else(PoisonError::into_inner) = Some(users);
    }

    /// Checks that this folder (a storage back-end) is there at each look.
    pub fn folder(&self, path: PathBuf) {
        self.folders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path);
    }

    /// Checks that this object store (the homes' back-end) answers at each look.
    pub(crate) fn store(&self, bucket: crate::storage::s3::Bucket) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = Some(bucket);
    }

    /// What is down now, one line each; empty when all is up. Blocks (a query, a `stat`):
    /// call it on the blocking pool.
    pub fn problems(&self) -> Vec<String> {
        let mut down = Vec::new();
        for (what, up) in self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if !up.load(Ordering::Relaxed) {
                down.push(format!("listener {what} stopped"));
            }
        }
        let users = self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(users) = users
            && let Err(e) = users.data_version()
        {
            down.push(format!("user store: {e}"));
        }
        for folder in self
            .folders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            match std::fs::metadata(folder) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => down.push(format!("storage: {} is not a folder", folder.display())),
                Err(e) => down.push(format!("storage: {}: {e}", folder.display())),
            }
        }
        let store = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(bucket) = store
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Err(e) = runtime.block_on(bucket.check())
        {
            down.push(format!("storage: {e}"));
        }
        down
    }
}

/// A listener's "up" flag; cleared by [`ListenerUp::down`] or on drop.
#[derive(Debug)]
pub struct ListenerUp(Arc<AtomicBool>);

impl ListenerUp {
    /// Marks the listener as stopped.
    pub fn down(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Drop for ListenerUp {
    fn drop(&mut self) {
        self.down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_listener_or_a_missing_folder_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let health = Health::new();
        let native = health.listener("native protocol", "127.0.0.1:1");
        health.folder(tmp.path().to_path_buf());
        assert!(health.problems().is_empty());
        drop(native);
        health.folder(tmp.path().join("gone"));
        let problems = health.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("native protocol on 127.0.0.1:1"));
    }
}
