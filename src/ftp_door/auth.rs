//! FTP logins: libunftp's authenticator and user-detail provider over
//! [`FileService::password_login`], made per control connection.
//!
//! The login is checked once, by the authenticator, which keeps the [`DoorLogin`] for the
//! provider to hand to the session as its [`User`]. Each file operation then asks the user
//! store again ([`User::home`]), so a removed user or a changed password ends what the
//! session may do. Passwords are never logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tracing::warn;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal,
    UserDetail, UserDetailError, UserDetailProvider,
};

use super::Control;
use crate::home::Home;
use crate::service::session::{DoorLogin, FileService};
use crate::Result;

/// One control connection's login: authenticator and user-detail provider at once.
#[derive(Clone)]
pub(crate) struct Login {
    files: Arc<FileService>,
    /// Whether this peer may log in without TLS.
    plaintext: bool,
    control: Arc<Control>,
    /// The login the authenticator checked, until the provider takes it.
    checked: Arc<Mutex<Option<DoorLogin>>>,
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
            .password_login(username, password.into(), creds.source_ip)
            .await
        {
            Ok(login) => {
                *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Some(login);
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
        let login = self
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| UserDetailError::Generic("no checked login".into()))?;
        self.logged_in.store(true, Ordering::Release);
        Ok(User {
            name: principal.username.clone(),
            login: Mutex::new(login),
            files: self.files.clone(),
            control: self.control.clone(),
        })
    }
}

/// A user logged in on one FTP session.
pub(crate) struct User {
    name: String,
    login: Mutex<DoorLogin>,
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

    /// Whether the client closed its control connection: an upload whose data ended then
    /// was cut, not finished (plain FTP has no other sign of it).
    pub(crate) fn gone(&self) -> bool {
        self.control.gone()
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

