//! Users' login keys in the `keys` table: add, list, remove, and the check a login by key
//! makes. A key belongs to one user; removing the user removes their keys.

use rusqlite::{ErrorCode as SqlCode, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Db, Stamp, UserInfo, Users, check_name, lock, unknown};
use crate::keys::PublicKey;
use crate::{Error, Result};

/// Longest key comment kept, in bytes.
const MAX_COMMENT_LEN: usize = 200;

/// A user's key as `sockit user key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `SHA256:…` of the raw public key.
    pub fingerprint: String,
    /// The comment of the `.pub` line.
    pub comment: String,
    /// When it was added, in seconds since the Unix epoch.
    pub added: i64,
}

impl Users {
    /// Lets `name` log in with `key`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user; [`Error::AlreadyExists`] when the key is
    /// already someone's; database errors.
    pub fn add_key(&self, name: &str, key: &PublicKey, comment: &str) -> Result<KeyInfo> {
        check_name(name)?;
        let mut comment = comment.trim().to_owned();
        if comment.len() > MAX_COMMENT_LEN {
            let mut end = MAX_COMMENT_LEN;
            while !comment.is_char_boundary(end) {
                end -= 1;
            }
            comment.truncate(end);
        }
        let info = KeyInfo {
            fingerprint: key.fingerprint(),
            comment,
            added: chrono::Utc::now().timestamp(),
        };
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => return pg.add_key(name, &info, key.to_base64()).map(|()| info),
        };
        let mut conn = lock(conn);
        let tx = conn.transaction()?;
        let exists: Option<String> = tx
            .query_row("SELECT name FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(unknown(name));
        }
        let inserted = tx.execute(
            "INSERT INTO keys (user, fingerprint, key, comment, added) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                info.fingerprint,
                key.to_base64(),
                info.comment,
                info.added
            ],
        );
        match inserted {
            Err(e) if e.sqlite_error_code() == Some(SqlCode::ConstraintViolation) => {
                return Err(Error::AlreadyExists(format!(
                    "key {} is already a user's",
                    info.fingerprint
                )));
            }
            other => other?,
        };
        tx.commit()?;
        Ok(info)
    }

    /// The keys of `name`, oldest first.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user; database errors.
    pub fn keys(&self, name: &str) -> Result<Vec<KeyInfo>> {
        self.get(name)?;
        let conn = match &self.db {
            Db::Sqlite(conn) => lock(conn),
            Db::Postgres(pg) => return pg.keys(name),
        };
        let mut stmt = conn.prepare(
            "SELECT fingerprint, comment, added FROM keys WHERE user = ?1 ORDER BY added, rowid",
        )?;
        let rows = stmt.query_map([name], |row| {
            Ok(KeyInfo {
                fingerprint: row.get(0)?,
                comment: row.get(1)?,
                added: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes the key of `name` with `fingerprint`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the user has no such key; database errors.
    pub fn remove_key(&self, name: &str, fingerprint: &str) -> Result<()> {
        check_name(name)?;
        let removed = match &self.db {
            Db::Sqlite(conn) => {
                lock(conn).execute(
                    "DELETE FROM keys WHERE user = ?1 AND fingerprint = ?2",
                    params![name, fingerprint],
                )? > 0
            }
            Db::Postgres(pg) => pg.remove_key(name, fingerprint)?,
        };
        if !removed {
            return Err(Error::NotFound(format!(
                "user `{name}` has no key {fingerprint}"
            )));
        }
        Ok(())
    }

    /// The user, when `key` is one of theirs; `None` otherwise (the caller must not tell
    /// why).
    ///
    /// # Errors
    /// Database errors only.
    pub(crate) fn verify_key(
        &self,
        name: &str,
        key: &PublicKey,
    ) -> Result<Option<(UserInfo, Stamp)>> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        let found = match &self.db {
            Db::Sqlite(conn) => lock(conn)
                .query_row(
                    "SELECT user FROM keys WHERE user = ?1 AND key = ?2",
                    params![name, key.to_base64()],
                    |row| row.get::<_, String>(0),
                )
                .optional()?
                .is_some(),
            Db::Postgres(pg) => pg.has_key(name, key.to_base64())?,
        };
        if !found {
            return Ok(None);
        }
        self.current(name)
    }
}
