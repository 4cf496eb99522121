//! FTP logins: libunftp's authenticator and user-detail provider over
//! [`FileService::password_login`], made per control connection.
//!
//! The login is checked once, by the authenticator, which keeps the [`DoorLogin`] for the
//! provider to hand to the session as its [`User`]. Each file operation then asks the user
//! store again ([`User::home`]), so a removed user or a changed password ends what the
//! session may do. Passwords are never logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};

use super::Control;
use crate::Result;
use crate::home::Home;
use crate::ops::metrics::Door;
use crate::service::session::{DoorLogin, FileService};

/// How long a plain FTP upload's end waits to see whether the client left: what each
/// upload over plain FTP costs in time (FTPS pays nothing).
pub(crate) const PLAIN_GRACE: Duration = Duration::from_millis(30);

/// One control connection's login: authenticator and user-detail provider at once.
#[derive(Clone)]
pub(crate) struct Login {
    files: Arc<FileService>,
    /// Whether this peer may log in without TLS.
    plaintext: bool,
    control: Arc<Control>,
    /// The login the authenticator checked, and whether it came over TLS, until the
    /// provider takes it.
    checked: Arc<Mutex<Option<(DoorLogin, bool)>>>,
    logged_in: Arc<AtomicBool>,
}

impl Login {
    /// The login of a connection whose peer may (`plaintext`) or may not log in without TLS.
    pub(crate) fn new(files: Arc<FileService>, plaintext: bool, control: Arc<Control>) -> Login {
        Login {
            files,
            plaintext,
            control,
            checked: Arc::default(),
            logged_in: Arc::default(),
        }
    }

    /// Set once a login succeeded on this connection.
    pub(crate) fn logged_in(&self) -> Arc<AtomicBool> {
        self.logged_in.clone()
    }
}

#[async_trait]
impl Authenticator for Login {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> std::result::Result<Principal, AuthenticationError> {
        // libunftp refuses USER and PASS before AUTH TLS for these peers already; this
        // holds even if that setting were lost.
        if !self.plaintext && creds.command_channel_security != ChannelEncryptionState::Tls {
            warn!(ip = %creds.source_ip, "FTP: plaintext login refused off loopback");
            return Err(AuthenticationError::new("TLS is required (AUTH TLS)"));
        }
        let Some(password) = creds.password.as_deref() else {
            return Err(AuthenticationError::BadPassword);
        };
        match self
            .files
            .password_login(Door::Ftp, username, password.into(), creds.source_ip)
            .await
        {
            Ok(login) => {
                let tls = creds.command_channel_security == ChannelEncryptionState::Tls;
                *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Some((login, tls));
                Ok(Principal {
                    username: username.to_owned(),
                })
            }
            // The same answer whichever part was wrong (the delay was already served).
            Err(_) => Err(AuthenticationError::BadPassword),
        }
    }

    fn name(&self) -> &str {
        "sockit"
    }
}

#[async_trait]
impl UserDetailProvider for Login {
    type User = User;

    async fn provide_user_detail(
        &self,
        principal: &Principal,
    ) -> std::result::Result<User, UserDetailError> {
        let (login, tls) = self
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| UserDetailError::Generic("no checked login".into()))?;
        self.logged_in.store(true, Ordering::Release);
        Ok(User {
            name: principal.username.clone(),
            login: Mutex::new(login),
            tls,
            files: self.files.clone(),
            control: self.control.clone(),
        })
    }
}

/// A user logged in on one FTP session.
pub(crate) struct User {
    name: String,
    login: Mutex<DoorLogin>,
    /// Whether the session logged in over TLS (and so moves its data over TLS too).
    tls: bool,
    files: Arc<FileService>,
    control: Arc<Control>,
}

impl User {
    /// The user's home, as the user store says now.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] once the user was removed or their password changed.
    pub(crate) fn home(&self) -> Result<Home> {
        self.login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .home(&self.files)
    }

    /// Whether an upload whose data just ended was cut rather than finished: the client
    /// left. Over TLS the data connection's `close_notify` already told a finished upload
    /// from a cut one, so a look suffices; plain FTP has no such sign, so the client gets
    /// [`PLAIN_GRACE`] to be seen leaving (a killed client's control connection closes with
    /// its data connection).
    pub(crate) async fn left(&self) -> bool {
        if self.tls {
            self.control.gone()
        } else {
            self.control.leaves_within(PLAIN_GRACE).await
        }
    }
}

impl UserDetail for User {}

// libunftp logs its session (and so these) with `Debug`: the names only, never the store.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("plaintext", &self.plaintext)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
