//! `Users`: the user store in `DATA/users.db` (SQLite, WAL), or in PostgreSQL with
//! `--users postgres://…` (see [`pg`]): names, argon2id password hashes, login keys, quotas,
//! and each user's home folder `DATA/homes/<name>/`; plus `AuthThrottle`.
//!
//! The API is synchronous and `Send + Sync` (callers use `spawn_blocking`). Passwords never
//! leave this module except as argon2id PHC strings, and never appear in `Debug` output.
//! It does not enforce quotas (see [`crate::quota`]) or touch files inside homes.

mod argon;
mod keys;
mod limits;
mod pg;
mod pg_locks;
mod pg_usage;
mod schema;
#[cfg(test)]
mod tests;
mod throttle;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, ErrorCode as SqlCode, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use keys::KeyInfo;
pub use limits::UserRates;
pub use pg::UsersUrl;
pub(crate) use pg_locks::{WriterLock, WriterLocks};
pub(crate) use pg_usage::SharedUsage;
pub(crate) use throttle::{Attempt, AuthThrottle, FAILED_LOGIN_DELAY, Refused};

/// Passwords are a wire type too (the `login` request carries one); defined with it.
pub use crate::protocol::Password;

use crate::{Error, Result};
use schema::{quota_from_sql, quota_to_sql, set_up};

/// Longest user name, in characters.
const MAX_NAME_LEN: usize = 32;

/// Longest password accepted by [`Users::add`] and [`Users::set_password`], in bytes.
const MAX_PASSWORD_LEN: usize = 1024;

/// How long a writer waits for another connection's lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A user as `sockit user list` shows it; never the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The login name (also the home folder's name).
    pub name: String,
    /// Storage quota in bytes; `None` is unlimited.
    pub quota: Option<u64>,
    /// When the user was added, in seconds since the Unix epoch.
    pub created: i64,
}

/// How expensive password hashes are to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashCost {
    /// argon2id with the OWASP-recommended defaults (19 MiB, 2 passes).
    #[default]
    Standard,
    /// The cheapest argon2id parameters: for tests only, never for real passwords.
    Minimal,
}

/// The user store; one per server (or per `sockit user` command).
pub struct Users {
    db: Db,
    data_dir: PathBuf,
    hasher: Argon2<'static>,
    /// Working memory of password checks, reused (see [`argon`]).
    memory: argon::MemoryPool,
    /// A hash to verify against when the user does not exist, so the answer takes as long.
    dummy: OnceLock<String>,
}

/// Where the users are kept.
enum Db {
    /// `DATA/users.db`, one connection per process.
    Sqlite(Mutex<Connection>),
    /// A PostgreSQL database that several servers share.
    Postgres(std::sync::Arc<pg::Pg>),
}

/// Identifies a user's credentials as they were at login: it changes when the password
/// does, so sessions opened with the old one can be ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp([u8; 32]);

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stamp(..)")
    }
}

impl Stamp {
    fn of(hash: &str) -> Stamp {
        Stamp(*blake3::hash(hash.as_bytes()).as_bytes())
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = match &self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(pg) => pg.shown(),
        };
        f.debug_struct("Users")
            .field("data_dir", &self.data_dir)
            .field("db", &db)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Opens (creating if needed) `data_dir/users.db` and `data_dir/homes/`.
    ///
    /// # Errors
    /// [`Error::Database`] when the database cannot be opened or set up; [`Error::Io`] when
    /// the folders cannot be created.
    pub fn open(data_dir: &Path) -> Result<Users> {
        Users::open_with(data_dir, HashCost::Standard)
    }

    /// [`Users::open`] with a chosen cost for new hashes (existing hashes keep their own).
    ///
    /// # Errors
    /// As [`Users::open`].
    pub fn open_with(data_dir: &Path, cost: HashCost) -> Result<Users> {
        Users::open_url(data_dir, None, cost)
    }

    /// Opens the user store that `--users` names: `None` for the SQLite file in
    /// `data_dir`, or a `postgres://USER:PASSWORD@HOST:PORT/DB` URL (the schema is created
    /// on first use). Homes stay under `data_dir/homes/` either way.
    ///
    /// # Errors
    /// As [`Users::open`]; [`Error::BadRequest`] for a URL that is not PostgreSQL's;
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub fn open_url(data_dir: &Path, users: Option<&UsersUrl>, cost: HashCost) -> Result<Users> {
        std::fs::create_dir_all(data_dir.join("homes"))?;
        let db = match users {
            None => {
                let conn = Connection::open(data_dir.join("users.db"))?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                set_up(&conn)?;
                Db::Sqlite(Mutex::new(conn))
            }
            Some(url) => Db::Postgres(std::sync::Arc::new(pg::Pg::open(url.expose())?)),
        };
        let params = match cost {
            HashCost::Standard => Params::DEFAULT,
            HashCost::Minimal => Params::new(Params::MIN_M_COST, 1, 1, None)
                .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?,
        };
        Ok(Users {
            db,
            data_dir: data_dir.to_owned(),
            hasher: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            memory: argon::MemoryPool::default(),
            dummy: OnceLock::new(),
        })
    }

    /// For a store in PostgreSQL, the quota usage that all servers on it share (this server
    /// registered as one of them, its reservations reclaimed by the others when it is
    /// silent for `lease`); `None` for SQLite, whose server keeps usage in memory.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when PostgreSQL cannot be reached.
    pub(crate) fn shared_usage(
        &self,
        lease: Duration,
    ) -> Result<Option<std::sync::Arc<SharedUsage>>> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(pg) => SharedUsage::start(pg.clone(), lease).map(Some),
        }
    }

    /// For a store in PostgreSQL, the writer locks that keep servers sharing it (and an
    /// object store) to one writer per file, wherever they run; `None` for SQLite.
    pub(crate) fn writer_locks(&self) -> Option<std::sync::Arc<WriterLocks>> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Postgres(pg) => Some(WriterLocks::new(pg.clone())),
        }
    }

    /// The home folder of `name`: `DATA/homes/<name>/`.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when `name` breaks the name rules (see `check_name`).
    pub fn home(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.data_dir.join("homes").join(name))
    }

    /// Adds a user with `password` and `quota` (`None`: unlimited), and creates their home
    /// (an existing home, left by an earlier user of that name, is kept).
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad name or password; [`Error::AlreadyExists`] when the
    /// name (in any case) is taken; database and folder errors.
    pub fn add(&self, name: &str, password: &Password, quota: Option<u64>) -> Result<UserInfo> {
        check_name(name)?;
        let quota_sql = quota_to_sql(quota)?;
        // Hash before taking the lock: it is the slow part.
        let hash = self.hash(password)?;
        let created = chrono::Utc::now().timestamp();
        let info = UserInfo {
            name: name.to_owned(),
            quota,
            created,
        };
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => return pg.add(&info, hash, self.home(name)?).map(|()| info),
        };
        let mut conn = lock(conn);
        let tx = conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO users (name, hash, quota, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, hash, quota_sql, created],
        );
        match inserted {
            Err(e) if e.sqlite_error_code() == Some(SqlCode::ConstraintViolation) => {
                return Err(Error::AlreadyExists(format!(
                    "user `{name}` already exists"
                )));
            }
            other => other?,
        };
        std::fs::create_dir_all(self.home(name)?)?;
        tx.commit()?;
        Ok(info)
    }

    /// All users, sorted by name.
    ///
    /// # Errors
    /// Database errors.
    pub fn list(&self) -> Result<Vec<UserInfo>> {
        let conn = match &self.db {
            Db::Sqlite(conn) => lock(conn),
            Db::Postgres(pg) => return pg.list(),
        };
        let mut stmt = conn.prepare("SELECT name, quota, created FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok(UserInfo {
                name: row.get(0)?,
                quota: quota_from_sql(row.get(1)?),
                created: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One user.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad name; [`Error::NotFound`] for an unknown user;
    /// database errors.
    pub fn get(&self, name: &str) -> Result<UserInfo> {
        check_name(name)?;
        self.lookup(name)?
            .map(|(info, _)| info)
            .ok_or_else(|| unknown(name))
    }

    /// Removes a user; with `remove_home`, also their home folder and everything in it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user; database and folder errors.
    pub fn remove(&self, name: &str, remove_home: bool) -> Result<()> {
        check_name(name)?;
        if !self.remove_row(name)? {
            return Err(unknown(name));
        }
        if remove_home {
            // Through handles, like `rm -r`: a home may be deeper than any path can say.
            let removed =
                crate::storage::Root::open(&self.home(name)?).and_then(|home| home.remove_all());
            match removed {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            match std::fs::remove_dir(self.home(name)?) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Fs {
                        path: format!("home of `{name}`"),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes a user's row with their keys and limits; whether there was one.
    fn remove_row(&self, name: &str) -> Result<bool> {
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => return pg.remove(name),
        };
        let mut conn = lock(conn);
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
        if removed == 0 {
            return Ok(false);
        }
        // Their keys go with them: a later user of that name must not inherit them.
        tx.execute("DELETE FROM keys WHERE user = ?1", [name])?;
        tx.execute("DELETE FROM limits WHERE user = ?1", [name])?;
        tx.commit()?;
        Ok(true)
    }

    /// Replaces a user's password.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad password; [`Error::NotFound`] for an unknown user;
    /// database errors.
    pub fn set_password(&self, name: &str, password: &Password) -> Result<()> {
        check_name(name)?;
        let hash = self.hash(password)?;
        let changed = match &self.db {
            Db::Sqlite(conn) => {
                lock(conn).execute(
                    "UPDATE users SET hash = ?2 WHERE name = ?1",
                    params![name, hash],
                )? > 0
            }
            Db::Postgres(pg) => pg.set_password(name, hash)?,
        };
        if !changed {
            return Err(unknown(name));
        }
        Ok(())
    }

    /// Sets or clears (`None`) a user's quota.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user; [`Error::BadRequest`] for a quota over
    /// 2^63 - 1 bytes; database errors.
    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        check_name(name)?;
        let changed = match &self.db {
            Db::Sqlite(conn) => {
                lock(conn).execute(
                    "UPDATE users SET quota = ?2 WHERE name = ?1",
                    params![name, quota_to_sql(quota)?],
                )? > 0
            }
            Db::Postgres(pg) => pg.set_quota(name, quota)?,
        };
        if !changed {
            return Err(unknown(name));
        }
        Ok(())
    }

    /// Checks a login: the user when `password` is theirs, `None` when the name is unknown
    /// or the password wrong (the caller must not tell which). An unknown name still costs
    /// one hash, so timing does not reveal which names exist.
    ///
    /// The argon2 working memory is reused between checks: the memory this holds is one
    /// block per check running at the same time, which the caller must bound.
    ///
    /// # Errors
    /// Database errors only; a wrong password is `Ok(None)`.
    pub(crate) fn verify(
        &self,
        name: &str,
        password: &Password,
    ) -> Result<Option<(UserInfo, Stamp)>> {
        let found = if check_name(name).is_ok() {
            self.lookup(name)?
        } else {
            None
        };
        let Some((info, hash)) = found else {
            let _ = self.matches(password, self.dummy());
            return Ok(None);
        };
        let stamp = Stamp::of(&hash);
        Ok(self.matches(password, &hash).then_some((info, stamp)))
    }

    /// A user as stored now, with the stamp of their credentials; `None` once removed.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn current(&self, name: &str) -> Result<Option<(UserInfo, Stamp)>> {
        Ok(self
            .lookup(name)?
            .map(|(info, hash)| (info, Stamp::of(&hash))))
    }

    /// A number that changes whenever another connection (a `sockit user` command) has
    /// changed the store since this one last looked: the cue to check open sessions. On
    /// PostgreSQL it counts every change made through any server or command (a row bumped
    /// in each change's transaction), so an admin change reaches sessions on every node.
    ///
    /// # Errors
    /// Database errors; [`Error::Unavailable`] when PostgreSQL cannot be reached.
    pub(crate) fn data_version(&self) -> Result<u64> {
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => return pg.data_version(),
        };
        let version: i64 = lock(conn).query_row("PRAGMA data_version", [], |row| row.get(0))?;
        Ok(version.cast_unsigned())
    }

    fn lookup(&self, name: &str) -> Result<Option<(UserInfo, String)>> {
        let conn = match &self.db {
            Db::Sqlite(conn) => lock(conn),
            Db::Postgres(pg) => return pg.lookup(name),
        };
        let row = conn
            .query_row(
                "SELECT name, quota, created, hash FROM users WHERE name = ?1",
                [name],
                |row| {
                    let info = UserInfo {
                        name: row.get(0)?,
                        quota: quota_from_sql(row.get(1)?),
                        created: row.get(2)?,
                    };
                    Ok((info, row.get(3)?))
                },
            )
            .optional()?;
        Ok(row)
    }

    fn hash(&self, password: &Password) -> Result<String> {
        let bytes = password.expose().as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_PASSWORD_LEN {
            return Err(Error::BadRequest(format!(
                "a password must be 1 to {MAX_PASSWORD_LEN} bytes long"
            )));
        }
        let hash = self
            .hasher
            .hash_password(bytes)
            .map_err(|e| Error::Internal(format!("hashing the password: {e}")))?;
        Ok(hash.to_string())
    }

    /// Whether `password` matches the PHC string `hash` (with the hash's own parameters).
    fn matches(&self, password: &Password, hash: &str) -> bool {
        self.memory.verify(password.expose().as_bytes(), hash)
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            self.memory
                .hash(&self.hasher, b"sockit: no such user", b"sockit-dummy-salt")
                .unwrap_or_default()
        })
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite half-written: it has its own
    // transactions. So a poisoned lock is still a good connection.
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks a user name: 1 to 32 characters of `A-Z a-z 0-9 _ . -`, not starting with `.`,
/// so that it is safe as a folder name everywhere.
///
/// # Errors
/// [`Error::BadRequest`] saying which rule the name breaks.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::BadRequest(format!(
            "a user name must be 1 to {MAX_NAME_LEN} characters long"
        )));
    }
    if name.starts_with('.') {
        return Err(Error::BadRequest(
            "a user name must not start with `.`".into(),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Error::BadRequest(format!(
            "a user name may only hold letters, digits, `_`, `.` and `-`, not {bad:?}"
        )));
    }
    Ok(())
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!("no user `{name}`"))
}
