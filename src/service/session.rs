//! Logins: the file service's shared state, and what one connection knows about its user.
//!
//! A connection starts anonymous (only `echo` works); `login` checks the password against the
//! user store on the blocking pool, costs a fixed delay when wrong, and cools an address down
//! after repeated failures. Passwords are never logged.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use crate::connection::Connection;
use crate::filecopy::blocking;
use crate::net::Peer;
use crate::protocol::Reply;
use crate::quota::QuotaLedger;
use crate::storage::Root;
use crate::users::{AuthThrottle, FAILED_LOGIN_DELAY, Password, Users};
use crate::{Error, Result};

/// What every connection of a file server shares.
#[derive(Debug)]
pub struct FileService {
    /// The user store.
    pub users: Arc<Users>,
    /// Bytes reserved by uploads in flight, per user.
    pub ledger: QuotaLedger,
    /// Failed logins per address.
    pub throttle: AuthThrottle,
}

impl FileService {
    /// Opens the user store in `data_dir` (creating it if needed).
    ///
    /// # Errors
    /// When the database or the folders cannot be opened or created.
    pub fn open(data_dir: &Path) -> Result<FileService> {
        Ok(FileService::with_users(Users::open(data_dir)?))
    }

    /// A file service over an already opened user store.
    pub fn with_users(users: Users) -> FileService {
        FileService {
            users: Arc::new(users),
            ledger: QuotaLedger::new(),
            throttle: AuthThrottle::default(),
        }
    }
}

/// A logged-in user of one connection.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The user name.
    pub name: String,
    /// The user's home, as a confined folder handle.
    pub root: Arc<Root>,
    /// The user's quota in bytes; `None` is unlimited.
    pub quota: Option<u64>,
}

/// What a connection knows about who is on it.
#[derive(Debug, Default)]
pub struct Session {
    user: Option<LoggedIn>,
}

impl Session {
    /// The logged-in user.
    ///
    /// # Errors
    /// [`Error::AuthRequired`] before a successful `login`.
    pub fn user(&self) -> Result<&LoggedIn> {
        self.user.as_ref().ok_or(Error::AuthRequired)
    }
}

/// `login` reply.
#[derive(Debug, Serialize)]
pub struct Welcome {
    /// The user now logged in.
    pub user: String,
    /// Their quota in bytes; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// Bytes stored in their home now.
    pub used: u64,
}

/// Handles `login`: on success the session holds the user; on failure the client waits
/// [`FAILED_LOGIN_DELAY`] and learns nothing about which part was wrong.
///
/// # Errors
/// [`Error::AuthFailed`] for a wrong name or password, or an address cooling down.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    files: &FileService,
    session: &mut Session,
    peer: Peer,
    (name, password): (String, Password),
    conn: &mut Connection<S>,
) -> Result<()> {
    let ip = match peer {
        Peer::Tcp(addr) => addr.ip(),
        Peer::Unix => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    if let Err(left) = files.throttle.check(ip, Instant::now()) {
        return Err(Error::AuthFailed(format!(
            "too many failed logins from {ip}; try again in {} s",
            left.as_secs().max(1)
        )));
    }
    let users = files.users.clone();
    let who = name.clone();
    let verified = blocking(move || users.verify(&who, &password)).await?;
    let Some(info) = verified else {
        let cooldown = files.throttle.failure(ip, Instant::now());
        warn!(user = %name, %ip, ?cooldown, "failed login");
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return Err(Error::AuthFailed("wrong user name or password".into()));
    };
    files.throttle.success(ip);
    let users = files.users.clone();
    let user = info.name.clone();
    let (root, used) = blocking(move || {
        let home = users.home(&user)?;
        std::fs::create_dir_all(&home)?;
        let root = Root::open(&home)?;
        let used = root.usage()?;
        Ok((root, used))
    })
    .await?;
    info!(user = %info.name, "logged in");
    session.user = Some(LoggedIn {
        name: info.name.clone(),
        root: Arc::new(root),
        quota: info.quota,
    });
    conn.queue(
        &Reply::ok(Welcome {
            user: info.name,
            quota: info.quota,
            used,
        }),
        b"",
    )
}
