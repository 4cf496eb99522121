//! Per-user bandwidth limits (`sockit user limit NAME --up R --down R`), in bytes per
//! second, in their own table beside `users`. A server reads them at each login.

use rusqlite::{OptionalExtension, params};

use super::{Db, Users, check_name, lock, unknown};
use crate::Result;
use crate::error::Error;

/// A user's bandwidth limits in bytes per second; `None`: no limit of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRates {
    /// What the user's sessions may send the server, together.
    pub up: Option<u64>,
    /// What the user's sessions may receive, together.
    pub down: Option<u64>,
}

impl Users {
    /// Sets `name`'s limits (both `None`: removes them).
    ///
    /// # Errors
    /// An unknown user, a rate of 0 or past `i64`, a database error.
    pub fn set_rates(&self, name: &str, rates: UserRates) -> Result<()> {
        check_name(name)?;
        let sql = |rate: Option<u64>| -> Result<Option<i64>> {
            rate.map(|r| {
                i64::try_from(r)
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| Error::BadRequest(format!("a rate of {r} bytes/s")))
            })
            .transpose()
        };
        let (up, down) = (sql(rates.up)?, sql(rates.down)?);
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => return pg.set_rates(name, up, down),
        };
        let mut conn = lock(conn);
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(unknown(name));
        }
        if up.is_none() && down.is_none() {
            tx.execute("DELETE FROM limits WHERE user = ?1", [name])?;
        } else {
            tx.execute(
                "INSERT OR REPLACE INTO limits (user, up, down) VALUES (?1, ?2, ?3)",
                params![name, up, down],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// `name`'s limits (none for a user without any, or unknown).
    ///
    /// # Errors
    /// A database error.
    pub fn rates(&self, name: &str) -> Result<UserRates> {
        let row: Option<(Option<i64>, Option<i64>)> = match &self.db {
            Db::Sqlite(conn) => lock(conn)
                .query_row("SELECT up, down FROM limits WHERE user = ?1", [name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?,
            Db::Postgres(pg) => pg.rates(name)?,
        };
        let rate = |r: Option<i64>| r.and_then(|r| u64::try_from(r).ok());
        Ok(row.map_or_else(UserRates::default, |(up, down)| UserRates {
            up: rate(up),
            down: rate(down),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{HashCost, Password};

    #[test]
    fn limits_are_set_read_cleared_and_go_with_their_user() {
        let tmp = tempfile::tempdir().unwrap();
        let users = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
        users.add("ann", &Password::from("pw"), None).unwrap();
        assert_eq!(users.rates("ann").unwrap(), UserRates::default());
        let both = UserRates {
            up: Some(1000),
            down: Some(2000),
        };
        users.set_rates("ann", both).unwrap();
        assert_eq!(users.rates("ann").unwrap(), both);
        users.set_rates("ann", UserRates::default()).unwrap();
        assert_eq!(users.rates("ann").unwrap(), UserRates::default());
        assert!(users.set_rates("bob", both).is_err(), "unknown user");
        users.set_rates("ann", both).unwrap();
        users.remove("ann", false).unwrap();
        users.add("ann", &Password::from("pw"), None).unwrap();
        assert_eq!(users.rates("ann").unwrap(), UserRates::default());
    }
}
