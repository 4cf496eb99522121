//! The PostgreSQL side of the user store (`--users postgres://USER:PASSWORD@HOST:PORT/DB`):
//! the schema, a connection pool, and each of [`super::Users`]' queries in PostgreSQL's SQL.
//!
//! The pool (deadpool-postgres over tokio-postgres) runs on a small tokio runtime of its own,
//! and every call hands its future to that runtime and waits for the answer on a plain
//! channel. So the store stays synchronous and callable from anywhere: the `sockit user`
//! command (no runtime), a `spawn_blocking` thread of the server, or one of its async
//! workers (like the SQLite store, a call blocks that thread for one round trip). It never
//! calls `block_on` inside another runtime, which would panic.
//!
//! Failures to reach the database are [`Error::Unavailable`]: a refused or lost connection,
//! a database shutting down, or no answer within the deadline (twice the connect timeout,
//! `connect_timeout` in the URL, 5 s by default; the server also cancels statements past it
//! through `statement_timeout`). Once a call finds the database unreachable, calls fail at
//! once rather than each waiting out a timeout, while a probe in the background tries it
//! every half second. The pool drops dead connections and opens new ones, so service
//! resumes by itself once the database is back. The URL's password never appears in
//! errors, logs or `Debug` output: see [`redact`].

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{KeyInfo, UserInfo};
use crate::{Error, Result};

/// The connect timeout when the URL sets none (`connect_timeout=SECONDS`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a database found unreachable is tried again (calls fail at once meanwhile).
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Connections kept open to the database, per server.
const POOL_SIZE: usize = 16;

/// The schema, created on first use under an advisory lock, so that two servers starting
/// at once on an empty database do not collide. `version` counts every change to users,
/// keys and limits: [`Pg::data_version`].
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS users (
        name    TEXT PRIMARY KEY NOT NULL,
        hash    TEXT NOT NULL,
        quota   BIGINT CHECK (quota IS NULL OR quota >= 0),
        created BIGINT NOT NULL
    );
    -- Names differing only in case would share a home on case-insensitive file systems.
    CREATE UNIQUE INDEX IF NOT EXISTS users_name_nocase ON users (lower(name));
    CREATE TABLE IF NOT EXISTS user_keys (
        id          BIGSERIAL PRIMARY KEY,
        owner       TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        key         TEXT NOT NULL UNIQUE,
        comment     TEXT NOT NULL DEFAULT '',
        added       BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS user_keys_owner ON user_keys (owner);
    CREATE TABLE IF NOT EXISTS user_limits (
        owner TEXT PRIMARY KEY NOT NULL,
        up    BIGINT CHECK (up IS NULL OR up > 0),
        down  BIGINT CHECK (down IS NULL OR down > 0)
    );
    CREATE TABLE IF NOT EXISTS store_version (
        id      INT PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO store_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
";

/// Taken while the schema is created (any number, the same in every server).
const SCHEMA_LOCK: i64 = 0x736f_636b_6974;

/// The statement that marks a change for [`Pg::data_version`]; run in the change's own
/// transaction.
const BUMP: &str = "UPDATE store_version SET version = version + 1 WHERE id = 1";

/// A pool of connections to the PostgreSQL user store, with the runtime it runs on.
pub(super) struct Pg {
    /// `Some` until dropped; shut down in the background on drop, which is allowed from any
    /// thread (dropping a runtime inside another one is not).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The longest a call waits for its answer.
    deadline: Duration,
    /// The URL without its password, for messages.
    shown: String,
    /// Why the database is down, once a call found it unreachable: until a probe in the
    /// background reaches it again, calls fail at once instead of each waiting out its
    /// own timeout (on a thread of the server).
    down: Outage,
}

/// See [`Pg::down`].
type Outage = Arc<std::sync::Mutex<Option<String>>>;

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pg {
    /// Connects to the database at `url` and creates the schema if it is not there.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a URL that does not parse (shown without its password);
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub(super) fn open(url: &str) -> Result<Pg> {
        let shown = redact(url);
        let refused = || {
            Error::BadRequest(format!(
                "--users takes a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DB, \
                 not `{shown}`"
            ))
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(refused());
        }
        let mut config = tokio_postgres::Config::from_str(url).map_err(|_| refused())?;
        let connect = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let deadline = connect * 2;
        config.connect_timeout(connect);
        config.tcp_user_timeout(deadline);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_options().is_none() {
            config.options(format!("-c statement_timeout={}", deadline.as_millis()));
        }
        if config.get_application_name().is_none() {
            config.application_name("sockit");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sockit-postgres")
            .enable_all()
            .build()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            // The pool's timers need the runtime it runs on.
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(deadline))
                .create_timeout(Some(connect))
                .recycle_timeout(Some(connect))
                .build()
                .map_err(|e| Error::Internal(format!("user database pool: {e}")))?
        };
        let pg = Pg {
            runtime: Some(runtime),
            pool,
            deadline,
            shown,
            down: Outage::default(),
        };
        pg.run(|pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await
                .map_err(db_error)?;
            tx.batch_execute(SCHEMA).await.map_err(db_error)?;
            tx.batch_execute(super::pg_usage::SCHEMA)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })?;
        Ok(pg)
    }

    /// The URL as it may be shown: without its password.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `work` on the pool's runtime and waits for its result, at most the deadline.
    pub(super) fn run<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.launch(work, move |answer| drop(tx.send(answer)))?;
        let answer = rx.recv().unwrap_or_else(|_| Err(closed()));
        self.settled(answer)
    }

    /// [`Pg::run`] for async callers: waits for the answer without blocking a thread.
    pub(super) async fn run_async<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.launch(work, move |answer| drop(tx.send(answer)))?;
        let answer = rx.await.unwrap_or_else(|_| Err(closed()));
        self.settled(answer)
    }

    /// Spawns `work` on the pool's runtime, bounded by the deadline, and hands its answer
    /// to `answer`; refuses at once while the database is known to be down.
    fn launch<T, F, Fut>(
        &self,
        work: F,
        answer: impl FnOnce(Result<T>) + Send + 'static,
    ) -> Result<()>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(closed());
        };
        if let Some(why) = lock_outage(&self.down).as_ref() {
            return Err(Error::Unavailable(why.clone()));
        }
        let future = work(self.pool.clone());
        let deadline = self.deadline;
        runtime.spawn(async move {
            answer(
                tokio::time::timeout(deadline, future)
                    .await
                    .unwrap_or_else(|_| Err(late(deadline))),
            );
        });
        Ok(())
    }

    /// Passes `answer` on; when it says the database cannot be reached, marks it down and
    /// starts the probe that marks it up again.
    fn settled<T>(&self, answer: Result<T>) -> Result<T> {
        if let Err(Error::Unavailable(why)) = &answer {
            let mut down = lock_outage(&self.down);
            if down.is_none() {
                *down = Some(why.clone());
                drop(down);
                self.spawn(probe(self.pool.clone(), self.down.clone(), self.deadline));
            }
        }
        answer
    }

    /// Runs `task` in the background on the pool's runtime (until the store is dropped).
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(task);
        }
    }

    /// Inserts a user and creates their home in the same transaction.
    pub(super) fn add(&self, info: &UserInfo, hash: String, home: PathBuf) -> Result<()> {
        let (name, quota, created) = (info.name.clone(), quota_to_sql(info.quota)?, info.created);
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            let inserted = tx
                .execute(
                    "INSERT INTO users (name, hash, quota, created) VALUES ($1, $2, $3, $4)",
                    &[&name, &hash, &quota, &created],
                )
                .await;
            match inserted {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(Error::AlreadyExists(format!(
                        "user `{name}` already exists"
                    )));
                }
                other => other.map_err(db_error)?,
            };
            tx.execute(BUMP, &[]).await.map_err(db_error)?;
            tokio::fs::create_dir_all(&home).await?;
            tx.commit().await.map_err(db_error)
        })
    }

    /// All users, sorted by name.
    pub(super) fn list(&self) -> Result<Vec<UserInfo>> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query("SELECT name, quota, created FROM users ORDER BY name", &[])
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| UserInfo {
                    name: row.get(0),
                    quota: quota_from_sql(row.get(1)),
                    created: row.get(2),
                })
                .collect())
        })
    }

    /// One user with their hash.
    pub(super) fn lookup(&self, name: &str) -> Result<Option<(UserInfo, String)>> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let row = cached_row(
                &pool,
                "SELECT name, quota, created, hash FROM users WHERE name = $1",
                &[&name],
            )
            .await?;
            Ok(row.map(|row| {
                let info = UserInfo {
                    name: row.get(0),
                    quota: quota_from_sql(row.get(1)),
                    created: row.get(2),
                };
                (info, row.get(3))
            }))
        })
    }

    /// Deletes a user with their keys and limits; whether there was one.
    pub(super) fn remove(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            let removed = tx
                .execute("DELETE FROM users WHERE name = $1", &[&name])
                .await
                .map_err(db_error)?;
            if removed == 0 {
                return Ok(false);
            }
            // Their usage goes too: a later user of that name is measured afresh.
            for sql in [
                "DELETE FROM user_keys WHERE owner = $1",
                "DELETE FROM user_limits WHERE owner = $1",
                "DELETE FROM usage WHERE name = $1",
            ] {
                tx.execute(sql, &[&name]).await.map_err(db_error)?;
            }
            tx.execute(BUMP, &[]).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(true)
        })
    }

    /// Runs one change to the user `name` (`$1`) with `value` (`$2`) and marks it; whether
    /// a row changed.
    fn change<V>(&self, sql: &'static str, name: &str, value: V) -> Result<bool>
    where
        V: tokio_postgres::types::ToSql + Sync + Send + 'static,
    {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            let changed = tx.execute(sql, &[&name, &value]).await.map_err(db_error)?;
            if changed > 0 {
                tx.execute(BUMP, &[]).await.map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
            Ok(changed > 0)
        })
    }

    /// Replaces a user's hash; whether the user exists.
    pub(super) fn set_password(&self, name: &str, hash: String) -> Result<bool> {
        self.change("UPDATE users SET hash = $2 WHERE name = $1", name, hash)
    }

    /// Sets a user's quota; whether the user exists.
    pub(super) fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<bool> {
        let quota = quota_to_sql(quota)?;
        self.change("UPDATE users SET quota = $2 WHERE name = $1", name, quota)
    }

    /// Removes the key of `name` with `fingerprint`; whether there was one.
    pub(super) fn remove_key(&self, name: &str, fingerprint: &str) -> Result<bool> {
        self.change(
            "DELETE FROM user_keys WHERE owner = $1 AND fingerprint = $2",
            name,
            fingerprint.to_owned(),
        )
    }

    /// Counts every change to users, keys and limits made through any server or command.
    pub(super) fn data_version(&self) -> Result<u64> {
        self.run(|pool| async move {
            let row = cached_row(&pool, "SELECT version FROM store_version WHERE id = 1", &[])
                .await?
                .ok_or_else(|| Error::Internal("the store_version row is missing".into()))?;
            Ok(row.get::<_, i64>(0).cast_unsigned())
        })
    }

    /// Adds a key (base64 `key`) to `name`.
    pub(super) fn add_key(&self, name: &str, info: &KeyInfo, key: String) -> Result<()> {
        let name = name.to_owned();
        let info = info.clone();
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            user_exists(&tx, &name).await?;
            let inserted = tx
                .execute(
                    "INSERT INTO user_keys (owner, fingerprint, key, comment, added) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&name, &info.fingerprint, &key, &info.comment, &info.added],
                )
                .await;
            match inserted {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(Error::AlreadyExists(format!(
                        "key {} is already a user's",
                        info.fingerprint
                    )));
                }
                other => other.map_err(db_error)?,
            };
            tx.execute(BUMP, &[]).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
    }

    /// The keys of `name`, oldest first.
    pub(super) fn keys(&self, name: &str) -> Result<Vec<KeyInfo>> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT fingerprint, comment, added FROM user_keys WHERE owner = $1 \
                     ORDER BY added, id",
                    &[&name],
                )
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| KeyInfo {
                    fingerprint: row.get(0),
                    comment: row.get(1),
                    added: row.get(2),
                })
                .collect())
        })
    }

    /// Whether the base64 `key` is one of `name`'s.
    pub(super) fn has_key(&self, name: &str, key: String) -> Result<bool> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let row = cached_row(
                &pool,
                "SELECT 1 FROM user_keys WHERE owner = $1 AND key = $2",
                &[&name, &key],
            )
            .await?;
            Ok(row.is_some())
        })
    }

    /// Sets (or with both `None`, removes) `name`'s limits.
    pub(super) fn set_rates(&self, name: &str, up: Option<i64>, down: Option<i64>) -> Result<()> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            user_exists(&tx, &name).await?;
            if up.is_none() && down.is_none() {
                tx.execute("DELETE FROM user_limits WHERE owner = $1", &[&name])
                    .await
                    .map_err(db_error)?;
            } else {
                tx.execute(
                    "INSERT INTO user_limits (owner, up, down) VALUES ($1, $2, $3) \
                     ON CONFLICT (owner) DO UPDATE SET up = $2, down = $3",
                    &[&name, &up, &down],
                )
                .await
                .map_err(db_error)?;
            }
            tx.execute(BUMP, &[]).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
    }

    /// `name`'s limits, if they have a row.
    pub(super) fn rates(&self, name: &str) -> Result<Option<(Option<i64>, Option<i64>)>> {
        let name = name.to_owned();
        self.run(move |pool| async move {
            let row = cached_row(
                &pool,
                "SELECT up, down FROM user_limits WHERE owner = $1",
                &[&name],
            )
            .await?;
            Ok(row.map(|row| (row.get(0), row.get(1))))
        })
    }
}

/// The value of `--users`: a `postgres://USER:PASSWORD@HOST:PORT/DB` URL. Shown (`Debug`,
/// `Display`) without its password, so that settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct UsersUrl(String);

impl UsersUrl {
    /// The URL with its password, to connect with.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for UsersUrl {
    type Err = std::convert::Infallible;

    /// Takes any text: it is checked when opened ([`super::Users::open_url`]), whose error
    /// shows it redacted. A parser error here would be printed with the raw value, password
    /// and all, by the command line or the settings file.
    fn from_str(url: &str) -> std::result::Result<UsersUrl, Self::Err> {
        Ok(UsersUrl(url.to_owned()))
    }
}

impl std::fmt::Debug for UsersUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsersUrl({})", redact(&self.0))
    }
}

impl std::fmt::Display for UsersUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for UsersUrl {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        Ok(UsersUrl(String::deserialize(de)?))
    }
}

/// Tries the database every [`RETRY_AFTER`] until it answers, then clears `down`.
async fn probe(pool: Pool, down: Outage, deadline: Duration) {
    loop {
        tokio::time::sleep(RETRY_AFTER).await;
        let answered = tokio::time::timeout(deadline, async {
            let client = pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        })
        .await;
        if let Ok(Some(_)) = answered {
            *lock_outage(&down) = None;
            tracing::info!("the user database answers again");
            return;
        }
    }
}

fn lock_outage(down: &Outage) -> std::sync::MutexGuard<'_, Option<String>> {
    down.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn closed() -> Error {
    Error::Unavailable("the user database was closed".into())
}

fn late(deadline: Duration) -> Error {
    Error::Unavailable(format!(
        "the user database did not answer within {} s",
        deadline.as_secs_f32()
    ))
}

/// `url` with the password of its user part replaced by `***` (and the `password=` query
/// parameter, libpq's other spelling); what is not a URL is shown as `postgres://…`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://…".into();
    };
    // The user part ends at the last `@` before the path: a password may hold `@`.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Maps a database error: one about reaching the server, or the server going away, is
/// [`Error::Unavailable`]; anything else is internal.
/// Checks in `tx` that user `name` exists, and keeps them from being removed until `tx` ends.
async fn user_exists(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<()> {
    let row = tx
        .query_opt("SELECT 1 FROM users WHERE name = $1 FOR SHARE", &[&name])
        .await
        .map_err(db_error)?;
    row.map(drop).ok_or_else(|| super::unknown(name))
}

/// Runs `sql` (prepared once per connection, then cached) with `params` on a connection of
/// `pool`: its one row, if there is one.
pub(super) async fn cached_row(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>> {
    let client = pool.get().await.map_err(pool_error)?;
    let statement = client.prepare_cached(sql).await.map_err(db_error)?;
    client.query_opt(&statement, params).await.map_err(db_error)
}

pub(super) fn db_error(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let class = &db.code().code()[..2];
            // 08: connection exception; 53: insufficient resources; 57: operator
            // intervention (shutdown, statement cancelled by statement_timeout).
            if matches!(class, "08" | "53" | "57") {
                Error::Unavailable(format!(
                    "the user database is unavailable: {}",
                    db.message()
                ))
            } else {
                Error::Internal(format!("user database: {}", db.message()))
            }
        }
        // A lost or refused connection, or no answer: the database is not there now.
        None if e.is_closed()
            || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
            || e.to_string().contains("timeout") =>
        {
            Error::Unavailable(format!("the user database cannot be reached: {e}"))
        }
        None => Error::Internal(format!("user database: {e}")),
    }
}

/// Maps a failure to get a connection from the pool.
pub(super) fn pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => db_error(e),
        PoolError::Timeout(_) => {
            Error::Unavailable("the user database cannot be reached: timed out connecting".into())
        }
        other => Error::Unavailable(format!("the user database cannot be reached: {other}")),
    }
}

fn quota_to_sql(quota: Option<u64>) -> Result<Option<i64>> {
    super::schema::quota_to_sql(quota)
}

fn quota_from_sql(quota: Option<i64>) -> Option<u64> {
    super::schema::quota_from_sql(quota)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://ann:s3cr@t@db.example:5432/sockit?sslmode=disable"),
            "postgres://ann:***@db.example:5432/sockit?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://ann@127.0.0.1/db?password=hunter2&connect_timeout=2"),
            "postgresql://ann@127.0.0.1/db?password=***&connect_timeout=2"
        );
        assert_eq!(redact("host=x password=y"), "postgres://…");
    }

    #[test]
    fn a_users_url_debugs_and_displays_without_its_password() {
        let url: super::UsersUrl = "postgres://ann:hunter2@db/sockit".parse().unwrap();
        for shown in [format!("{url:?}"), url.to_string()] {
            assert!(
                !shown.contains("hunter2") && shown.contains("ann:***@db"),
                "{shown}"
            );
        }
    }
}
