//! The SQLite side of the user store: the schema, opening it in WAL mode, and quotas as
//! SQL integers.

use rusqlite::Connection;

use super::BUSY_TIMEOUT;
use crate::{Error, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS users (
        name    TEXT PRIMARY KEY NOT NULL,
        hash    TEXT NOT NULL,
        quota   INTEGER CHECK (quota IS NULL OR quota >= 0),
        created INTEGER NOT NULL
    ) STRICT;
    -- Names differing only in case would share a home on case-insensitive file systems.
    CREATE UNIQUE INDEX IF NOT EXISTS users_name_nocase ON users (name COLLATE NOCASE);
    -- Login keys (added later: an older database gains the table on its next open). A key
    -- belongs to one user; `Users::remove` deletes a user's keys with the user.
    CREATE TABLE IF NOT EXISTS keys (
        user        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        key         TEXT NOT NULL UNIQUE,
        comment     TEXT NOT NULL DEFAULT '',
        added       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS keys_user ON keys (user);
    -- Bandwidth limits per user, in bytes per second (added later, like keys); a user with
    -- no row has none. `Users::remove` deletes a user's row with the user.
    CREATE TABLE IF NOT EXISTS limits (
        user TEXT PRIMARY KEY NOT NULL,
        up   INTEGER CHECK (up IS NULL OR up > 0),
        down INTEGER CHECK (down IS NULL OR down > 0)
    ) STRICT;
";

/// Switches the database to WAL and creates the schema. Two processes opening a new database
/// at once can get SQLITE_BUSY from the journal-mode switch, which the busy timeout does not
/// cover; that one case is retried for up to the busy timeout.
pub(super) fn set_up(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let attempt = conn
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.execute_batch(SCHEMA));
        match attempt {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

pub(super) fn quota_to_sql(quota: Option<u64>) -> Result<Option<i64>> {
    quota
        .map(|q| {
            i64::try_from(q)
                .map_err(|_| Error::BadRequest(format!("quota of {q} bytes is too large")))
        })
        .transpose()
}

pub(super) fn quota_from_sql(quota: Option<i64>) -> Option<u64> {
    // The CHECK constraint keeps it non-negative.
    quota.map(|q| u64::try_from(q).unwrap_or(0))
}
