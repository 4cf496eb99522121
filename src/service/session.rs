//! Logins: the file service's shared state, and what one connection knows about its user.
//!
//! A connection starts anonymous (only `echo` works); `login` checks the password against the
//! user store on the blocking pool (a bounded number at once), costs a fixed delay when
//! wrong, and cools an address down after repeated failures. Every later request sees
//! changes that `sockit user` made to its user. Passwords are never logged.
//!
//! A login by key takes two requests: the key (answered with a challenge when it is the
//! user's, and like a wrong password otherwise), then the signature of the challenge bound to
//! this connection's TLS session (see [`crate::keys::login_message`]). The challenge lives in
//! the [`Session`], so it is single-use and worthless on any other connection.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::connection::Connection;
use crate::filecopy::blocking;
use crate::home::Home;
use crate::keys::{self, PublicKey};
use crate::net::Peer;
use crate::ops::metrics::{self, Door, Refusal};
use crate::ops::sessions::{SessionSlot, UserSessions};
use crate::protocol::Reply;
use crate::protocol::ops::{Challenge, Welcome};
use crate::quota::QuotaLedger;
use crate::storage::backend::{Local, Storage as _, Store};
use crate::storage::s3::Bucket;
use crate::storage::{Root, WirePath};
use crate::users::{
    Attempt, AuthThrottle, FAILED_LOGIN_DELAY, Password, Refused, Stamp, UserInfo, Users, UsersUrl,
};
use crate::{Error, Result};

/// What every connection of a file server shares.
#[derive(Debug)]
pub struct FileService {
    /// The user store.
    pub(crate) users: Arc<Users>,
    /// What each home costs, and what uploads in flight reserved, per user.
    pub(crate) ledger: QuotaLedger,
    /// Failed logins per address.
    throttle: AuthThrottle,
    /// Password checks running at once. Each holds argon2's working memory (19 MiB at the
    /// standard cost) and a core; further logins wait their turn, so a flood of logins
    /// costs time, not memory or threads.
    checks: Semaphore,
    /// Sessions per user, and the bandwidth buckets each user's sessions share.
    sessions: Arc<UserSessions>,
    /// The object store holding the homes, if they are not in `DATA/homes`.
    bucket: Option<Bucket>,
}

impl FileService {
    /// Opens the user store in `data_dir` (creating it if needed), or in PostgreSQL at
    /// `users` (`serve --users`), whose servers reclaim a silent one's quota reservations
    /// after `lease` (`serve --quota-lease`).
    ///
    /// # Errors
    /// When the database or the folders cannot be opened or created.
    pub(crate) fn open(
        data_dir: &Path,
        (users, lease): (Option<&UsersUrl>, std::time::Duration),
    ) -> Result<FileService> {
        let users = Users::open_url(data_dir, users, crate::users::HashCost::Standard)?;
        let shared = users.shared_usage(lease)?;
        let mut files = FileService::with_users(users);
        if let Some(shared) = shared {
            files.ledger = QuotaLedger::shared(shared);
        }
        Ok(files)
    }

    /// A file service over an already opened user store, checking as many passwords at
    /// once as the machine has cores.
    pub fn with_users(users: Users) -> FileService {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        FileService::with_limits(users, cores)
    }

    /// A file service that checks at most `max_checks` passwords at once.
    fn with_limits(users: Users, max_checks: usize) -> FileService {
        FileService {
            users: Arc::new(users),
            ledger: QuotaLedger::new(),
            throttle: AuthThrottle::default(),
            checks: Semaphore::new(max_checks.max(1)),
            sessions: UserSessions::new(crate::config::DEFAULT_MAX_SESSIONS_PER_USER),
            bucket: None,
        }
    }

    /// This file service with every home in `bucket` (`--store s3://…`) instead of a folder.
    pub(crate) fn with_bucket(self, bucket: Bucket) -> FileService {
        FileService {
            bucket: Some(bucket),
            ..self
        }
    }

    /// This file service with at most `n` sessions per user (`--max-sessions-per-user`).
    pub(crate) fn with_max_sessions_per_user(self, n: usize) -> FileService {
        FileService {
            sessions: UserSessions::new(n),
            ..self
        }
    }

    /// A session for `name`, who just proved who they are through `door`: their place
    /// in the sessions cap, and their bandwidth buckets.
    ///
    /// # Errors
    /// [`Error::Busy`] when they hold `--max-sessions-per-user` sessions already.
    fn admit(&self, name: &str, door: Door) -> Result<Arc<SessionSlot>> {
        let rates = self.users.rates(name)?;
        match self.sessions.take(name, rates) {
            Ok(slot) => Ok(Arc::new(slot)),
            Err(e) => {
                metrics::refused(door, Refusal::UserSessions);
                warn!(user = %name, op = "login", result = "busy", "login refused: {e}");
                Err(e)
            }
        }
    }
}

/// A logged-in user of one connection.
#[derive(Debug, Clone)]
pub(crate) struct LoggedIn {
    /// The user name.
    pub(crate) name: String,
    /// Where the user's home lives: a confined folder handle, or a prefix in the store.
    pub(crate) store: Store,
    /// The user's quota in bytes; `None` is unlimited.
    pub(crate) quota: Option<u64>,
    /// The credentials this session logged in with.
    stamp: Stamp,
    /// The key it logged in with, if it did with one: removing it ends the session.
    key: Option<PublicKey>,
    /// Its place in the user's sessions, with their bandwidth buckets.
    pub(crate) slot: Arc<SessionSlot>,
}

/// What a connection knows about who is on it.
#[derive(Debug, Default)]
pub(crate) struct Session {
    user: Option<LoggedIn>,
    /// The user store's [`Users::data_version`] when this session last looked.
    seen: u64,
    /// The connection's TLS exporter value, which a login by key signs; `None` on plaintext.
    binding: Option<[u8; 32]>,
    /// The challenge of a login by key under way: taken by the next login, whatever it is.
    challenge: Option<Pending>,
}

/// A challenge sent, waiting for its signature.
#[derive(Debug)]
struct Pending {
    user: String,
    key: PublicKey,
    challenge: [u8; 32],
}

/// What a `login` request proves who it is with.
#[derive(Debug)]
pub(crate) enum Credentials {
    /// A password.
    Password(Password),
    /// A public key (base64), and in the second step the signature (base64).
    Key {
        /// The public key.
        key: String,
        /// The signature of the challenge; `None` asks for one.
        signature: Option<String>,
    },
}

impl Session {
    /// A session of a connection whose TLS exporter value is `binding` (`None`: plaintext).
    pub(crate) fn new(binding: Option<[u8; 32]>) -> Session {
        Session {
            binding,
            ..Session::default()
        }
    }

    /// The logged-in user's session slot (as of the last look), with their buckets.
    pub(crate) fn slot(&self) -> Option<&Arc<SessionSlot>> {
        self.user.as_ref().map(|u| &u.slot)
    }

    /// The name of the user logged in (as of the last look), for logs.
    pub(crate) fn name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// The logged-in user, as the user store says now: a quota changed by `sockit user
    /// quota` applies from the next request on, and a removed user, a changed password or
    /// (for a login by key) a removed key ends the session.
    ///
    /// # Errors
    /// [`Error::AuthRequired`] before a successful `login`, and once the session ended.
    pub(crate) fn user(&mut self, files: &FileService) -> Result<&LoggedIn> {
        let Some(user) = self.user.as_mut() else {
            return Err(Error::AuthRequired);
        };
        let version = files.users.data_version()?;
        if version != self.seen {
            let ended = match files.users.current(&user.name)? {
                None => Some("your account was removed"),
                Some((_, stamp)) if stamp != user.stamp => Some("your password was changed"),
                Some(_)
                    if user.key.as_ref().is_some_and(|key| {
                        !matches!(files.users.verify_key(&user.name, key), Ok(Some(_)))
                    }) =>
                {
                    Some("your key was removed")
                }
                Some((info, _)) => {
                    user.quota = info.quota;
                    None
                }
            };
            if let Some(why) = ended {
                info!(user = %user.name, why, "session ended");
                self.user = None;
                return Err(Error::AuthFailed(format!("{why}; log in again")));
            }
            self.seen = version;
        }
        self.user.as_ref().ok_or(Error::AuthRequired)
    }
}

/// Handles `login`: on success the session holds the user; on failure the client waits
/// [`FAILED_LOGIN_DELAY`] and learns nothing about which part was wrong. A login on a
/// logged-in connection ends the session first, whatever its outcome. A login by key without
/// a signature, with a key of the user, is answered with a [`Challenge`] instead.
///
/// # Errors
/// [`Error::AuthFailed`] for a wrong name, password, key or signature, or an address
/// cooling down.
pub(crate) async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    files: &FileService,
    session: &mut Session,
    peer: Peer,
    (name, credentials): (String, Credentials),
    conn: &mut Connection<S>,
) -> Result<()> {
    session.user = None;
    // Single-use: whatever this login is, the challenge before it is spent.
    let pending = session.challenge.take();
    let ip = peer_ip(peer);
    let attempt = files.attempt(ip).await.inspect_err(|_| {
        metrics::login(Door::Native, false);
    })?;
    // Read before the check: a change made after it is seen by the next request.
    let seen = files.users.data_version()?;
    let users = files.users.clone();
    let who = name.clone();
    let verified = match credentials {
        Credentials::Password(password) => files.check_password(&name, password).await?,
        Credentials::Key {
            key,
            signature: None,
        } => match PublicKey::from_base64(&key) {
            Ok(key)
                if blocking(move || users.verify_key(&who, &key))
                    .await?
                    .is_some() =>
            {
                let challenge = keys::challenge()?;
                attempt.challenged();
                session.challenge = Some(Pending {
                    user: name,
                    key,
                    challenge,
                });
                let challenge = keys::encode_base64(&challenge);
                return conn.queue(&Reply::ok(Challenge { challenge }), b"");
            }
            _ => None,
        },
        Credentials::Key {
            key,
            signature: Some(signature),
        } => {
            let signed = match (pending, PublicKey::from_base64(&key)) {
                (Some(pending), Ok(key)) if pending.user == name && pending.key == key => {
                    let message =
                        keys::login_message(&name, &pending.challenge, session.binding.as_ref());
                    keys::decode_base64(&signature)
                        .is_some_and(|signature| key.verifies(&message, &signature))
                        .then_some(key)
                }
                _ => None,
            };
            match signed {
                // Asked again: the key may have been removed since the challenge.
                Some(key) => {
                    let kept = key;
                    blocking(move || users.verify_key(&who, &key))
                        .await?
                        .map(|(info, stamp)| (info, stamp, Some(kept)))
                }
                None => None,
            }
        }
    };
    let Some((info, stamp, key)) = verified else {
        metrics::login(Door::Native, false);
        return Err(refused(attempt, &name, ip).await);
    };
    attempt.succeeded();
    let slot = files.admit(&info.name, Door::Native)?;
    metrics::login(Door::Native, true);
    let (user, used) = files.open_home(info, stamp, key, slot).await?;
    info!(user = %user.name, "logged in");
    session.seen = seen;
    let welcome = Welcome {
        user: user.name.clone(),
        quota: user.quota,
        used,
    };
    session.user = Some(user);
    conn.queue(&Reply::ok(welcome), b"")
}

/// The address a login counts against: a Unix-socket peer counts as loopback.
fn peer_ip(peer: Peer) -> IpAddr {
    match peer {
        Peer::Tcp(addr) => addr.ip(),
        Peer::Unix => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// Books a failed login against its address, waits [`FAILED_LOGIN_DELAY`], and gives the
/// error the client sees (the same whichever part was wrong).
async fn refused(attempt: Attempt<'_>, name: &str, ip: IpAddr) -> Error {
    let cooldown = attempt.failed(Instant::now());
    warn!(user = %name, %ip, op = "login", result = "auth_failed", ?cooldown, "failed login");
    tokio::time::sleep(FAILED_LOGIN_DELAY).await;
    Error::AuthFailed("wrong user name or password".into())
}

impl FileService {
    /// Starts a login attempt from `ip`: counted from here, so that concurrent guesses all
    /// count against the limit; waits while the address's attempts are all under way.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] while the address cools down after repeated failures.
    async fn attempt(&self, ip: IpAddr) -> Result<Attempt<'_>> {
        loop {
            let ended = self.throttle.ended();
            tokio::pin!(ended);
            ended.as_mut().enable();
            match self.throttle.begin(ip, Instant::now()) {
                Ok(attempt) => return Ok(attempt),
                Err(Refused::Wait) => ended.await,
                Err(Refused::CoolingDown(left)) => {
                    metrics::login_throttled();
                    warn!(%ip, op = "login", result = "auth_failed", "login refused: the address cools down after failed logins");
                    return Err(Error::AuthFailed(format!(
                        "too many failed logins from {ip}; try again in {} s",
                        left.as_secs().max(1)
                    )));
                }
            }
        }
    }

    /// Checks `password` on the blocking pool, a bounded number at once.
    async fn check_password(
        &self,
        name: &str,
        password: Password,
    ) -> Result<Option<(UserInfo, Stamp, Option<PublicKey>)>> {
        let permit = self
            .checks
            .acquire()
            .await
            .map_err(|_| Error::Internal("the password checks were closed".into()))?;
        let users = self.users.clone();
        let who = name.to_owned();
        let verified = blocking(move || users.verify(&who, &password)).await?;
        drop(permit);
        Ok(verified.map(|(info, stamp)| (info, stamp, None)))
    }

    /// Opens a checked user's home (creating it) and measures it once per server run: the
    /// logged-in user and what their home holds.
    async fn open_home(
        &self,
        info: UserInfo,
        stamp: Stamp,
        key: Option<PublicKey>,
        slot: Arc<SessionSlot>,
    ) -> Result<(LoggedIn, u64)> {
        let users = self.users.clone();
        let user = info.name.clone();
        let measured = self.ledger.used(&user);
        let (store, used) = match &self.bucket {
            Some(bucket) => {
                let home = Store::S3(bucket.home(&user));
                let used = match measured {
                    Some(used) => used,
                    None => home.usage(&WirePath::root(), false).await?.cost(),
                };
                (home, used)
            }
            None => {
                let (root, used) = blocking(move || {
                    let home = users.home(&user)?;
                    std::fs::create_dir_all(&home)?;
                    let root = Root::open(&home)?;
                    // Measured once per server run; changes keep it up to date from then on.
                    let used = match measured {
                        Some(used) => used,
                        None => root.usage()?.cost(),
                    };
                    Ok((root, used))
                })
                .await?;
                (Store::Local(Local::new(Arc::new(root))), used)
            }
        };
        let used = self.ledger.measured(&info.name, used);
        let user = LoggedIn {
            name: info.name,
            store,
            quota: info.quota,
            stamp,
            key,
            slot,
        };
        Ok((user, used))
    }

    /// A password login for the doors other than the native protocol (the web page,
    /// WebDAV, FTP): the same throttle per address, bounded checks, fixed delay on failure
    /// and answer whichever part was wrong, the same sessions cap per user, and the same
    /// metrics (`sockit_logins_total` and refusals under `door`). The user's bandwidth
    /// limits are in [`LoggedIn::slot`], to shape the door's stream with. Keep the returned [`DoorLogin`] and call
    /// [`DoorLogin::user`] before each request, so that a removed user or changed password
    /// ends the session there too.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] for a wrong name or password, or an address cooling down;
    /// [`Error::Busy`] for a user at their sessions cap.
    pub(crate) async fn password_login(
        &self,
        door: Door,
        name: &str,
        password: Password,
        ip: IpAddr,
    ) -> Result<DoorLogin> {
        let attempt = self.attempt(ip).await.inspect_err(|_| {
            metrics::login(door, false);
        })?;
        let seen = self.users.data_version()?;
        let Some((info, stamp, key)) = self.check_password(name, password).await? else {
            metrics::login(door, false);
            return Err(refused(attempt, name, ip).await);
        };
        attempt.succeeded();
        let slot = self.admit(&info.name, door)?;
        metrics::login(door, true);
        let (user, _) = self.open_home(info, stamp, key, slot).await?;
        info!(user = %user.name, %ip, "logged in");
        let mut session = Session::new(None);
        session.user = Some(user);
        session.seen = seen;
        Ok(DoorLogin { session })
    }
}

/// A user logged in through a door other than the native protocol.
#[derive(Debug)]
pub(crate) struct DoorLogin {
    session: Session,
}

impl DoorLogin {
    /// The user as the user store says now (see [`Session::user`]).
    ///
    /// # Errors
    /// [`Error::AuthFailed`] once the session ended (user removed, password changed).
    pub(crate) fn user(&mut self, files: &FileService) -> Result<&LoggedIn> {
        self.session.user(files)
    }

    /// The user's home, priced against their quota: the file-service core.
    ///
    /// # Errors
    /// As [`DoorLogin::user`].
    pub(crate) fn home(&mut self, files: &FileService) -> Result<Home> {
        let user = self.session.user(files)?;
        Ok(Home::new(
            &user.name,
            user.quota,
            user.store.clone(),
            &files.ledger,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::storage::WirePath;
    use crate::users::HashCost;

    #[tokio::test]
    async fn a_door_login_checks_the_password_and_ends_when_the_user_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let users = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
        users.add("ann", &Password::from("right"), None).unwrap();
        let files = FileService::with_users(users);
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

        let wrong = files
            .password_login(Door::Http, "ann", "wrong".into(), ip)
            .await;
        assert!(matches!(wrong, Err(Error::AuthFailed(_))), "{wrong:?}");
        let nobody = files
            .password_login(Door::Http, "bob", "right".into(), ip)
            .await;
        assert!(matches!(nobody, Err(Error::AuthFailed(_))), "{nobody:?}");

        let mut login = files
            .password_login(Door::Http, "ann", "right".into(), ip)
            .await
            .unwrap();
        assert_eq!(login.user(&files).unwrap().name, "ann");
        let home = login.home(&files).unwrap();
        let docs = WirePath::root().resolve("docs").unwrap();
        home.mkdir(&docs, false).await.unwrap();
        assert!(tmp.path().join("homes/ann/docs").is_dir());

        // As `sockit user del` does it: another process, another connection to the store.
        let admin = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
        admin.remove("ann", false).unwrap();
        let ended = login.home(&files);
        assert!(matches!(ended, Err(Error::AuthFailed(_))), "{ended:?}");
    }
}
