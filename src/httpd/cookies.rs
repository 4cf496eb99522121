//! The web page's sessions: a random token in a cookie (HttpOnly, Secure, SameSite=Strict)
//! names a [`DoorLogin`] kept here; each request asks the user store again through it.
//!
//! Bounded: at most [`MAX_SESSIONS`] at once (the oldest goes first), each ending after
//! [`IDLE_END`] unused. Only a successful password login makes one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::home::Home;
use crate::service::session::{DoorLogin, FileService};
use crate::{Error, Result};

/// The cookie's name.
pub(crate) const COOKIE: &str = "sockit_session";

/// Sessions kept at once.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// A session unused for this long ends.
pub(crate) const IDLE_END: Duration = Duration::from_secs(12 * 3600);

/// The web page's logged-in sessions.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    user: String,
    login: Arc<Mutex<DoorLogin>>,
    used: Instant,
}

impl Sessions {
    /// Keeps `login` of `user` under a new token; returns the token.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(crate) fn add(&self, user: &str, login: DoorLogin) -> Result<String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Internal("no randomness for a session".into()))?;
        let token = hex::encode(bytes);
        let mut table = self.lock();
        let now = Instant::now();
        table.retain(|_, e| now.duration_since(e.used) < IDLE_END);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(t, _)| t.clone())
        {
            table.remove(&oldest);
        }
        table.insert(
            token.clone(),
            Entry {
                user: user.to_owned(),
                login: Arc::new(Mutex::new(login)),
                used: now,
            },
        );
        Ok(token)
    }

    /// The user and home of the session `token`, as the user store says now.
    ///
    /// # Errors
    /// [`Error::AuthRequired`] for no such session (or one that ended unused);
    /// [`Error::AuthFailed`] when the user was removed or their password changed (the
    /// session ends).
    pub(crate) fn home(&self, token: &str, files: &FileService) -> Result<(String, Home)> {
        let (user, login) = {
            let mut table = self.lock();
            let entry = table.get_mut(token).ok_or(Error::AuthRequired)?;
            if entry.used.elapsed() >= IDLE_END {
                table.remove(token);
                return Err(Error::AuthRequired);
            }
            entry.used = Instant::now();
            (entry.user.clone(), entry.login.clone())
        };
        let home = login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .home(files);
        match home {
            Ok(home) => Ok((user, home)),
            Err(e) => {
                self.remove(token);
                Err(e)
            }
        }
    }

    /// Ends the session `token`.
    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session token in a `Cookie` header, if any.
pub(crate) fn token(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that keeps `token` (empty: the one that ends it).
pub(crate) fn set_cookie(token: &str) -> String {
    let age = if token.is_empty() {
        0
    } else {
        IDLE_END.as_secs()
    };
    format!("{COOKIE}={token}; Path=/; Max-Age={age}; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_among_other_cookies_and_must_look_like_one() {
        let t = "ab".repeat(32);
        assert_eq!(token(&format!("a=1; {COOKIE}={t}; b=2")), Some(t.as_str()));
        assert_eq!(token(&format!("{COOKIE}=short")), None);
        assert_eq!(token("other=1"), None);
        let cookie = set_cookie(&t);
        for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
    }
}
