//! Quota usage and reservations in PostgreSQL, shared by every server on the same `--users`
//! database, so that uploads racing on two servers cannot overshoot a quota together.
//!
//! The table `usage` keeps, per user, what the home costs (`used`) and what uploads in
//! flight on any server hold (`reserved`). A reservation is ONE guarded statement,
//! `UPDATE usage SET reserved = reserved + $a WHERE name = $u AND used + reserved + $a <=
//! $quota`: the row lock makes the check and the booking atomic across servers. Each server
//! (a "node") also books what it holds in `usage_holds`, in the same transaction.
//!
//! Drift, and how it is corrected:
//! - A server that crashes leaves its holds behind. Every server beats a heartbeat (the
//!   `nodes` row, six times per lease) and reclaims the holds of nodes silent for a lease
//!   (`serve --quota-lease`, 60 s by default): their bytes leave `reserved`, and the quota
//!   is whole again. A server reclaims only after two heartbeats in a row reached the
//!   database, so that after an outage of the database itself, which silenced every
//!   server, the live ones have beaten again before anyone's holds are judged.
//! - A release or settle that cannot reach the database (it is down) is queued in memory and
//!   applied by the heartbeat once it is back.
//! - `used` follows each change the servers make; what a crash or an outside change loses
//!   is corrected when a server first logs the user in and measures the home: the
//!   measurement replaces `used` when no upload holds anything for the user (else it would
//!   count the bytes of uploads in flight twice) .

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::pg::{Pg, cached_row, db_error, pool_error};
use crate::quota::QuotaError;
use crate::{Error, Result};

/// Heartbeats per lease: a server misses several before the others reclaim its holds.
const BEATS_PER_LEASE: u32 = 6;

/// The tables of shared usage (created with the rest of the schema).
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS usage (
        name     TEXT PRIMARY KEY NOT NULL,
        used     BIGINT NOT NULL CHECK (used >= 0),
        reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0)
    );
    CREATE TABLE IF NOT EXISTS nodes (
        node TEXT PRIMARY KEY NOT NULL,
        seen TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS usage_holds (
        node  TEXT NOT NULL,
        name  TEXT NOT NULL,
        bytes BIGINT NOT NULL CHECK (bytes >= 0),
        PRIMARY KEY (node, name)
    );
";

/// Adds `$2` to what `$1` holds in reservations if it fits the quota `$3` (NULL:
/// unlimited); returns a row only when it did. THE reservation: one statement, whose row
/// lock makes the check and the booking atomic across servers.
const RESERVE: &str = "
    UPDATE usage SET reserved = reserved + $2::BIGINT
    WHERE name = $1::TEXT
      AND ($3::BIGINT IS NULL OR used::NUMERIC + reserved + $2::BIGINT <= $3::BIGINT)
    RETURNING reserved";

/// Books `$3` bytes held by node `$1` for `$2` (after [`RESERVE`], in its transaction).
const HOLD: &str = "
    INSERT INTO usage_holds (node, name, bytes) VALUES ($1::TEXT, $2::TEXT, $3::BIGINT)
    ON CONFLICT (node, name) DO UPDATE SET bytes = usage_holds.bytes + EXCLUDED.bytes";

/// Adds `$2` to what `$1` uses if it fits the quota `$3`; a row only when it did.
const CHARGE: &str = "
    UPDATE usage SET used = used + $2::BIGINT
    WHERE name = $1::TEXT
      AND ($3::BIGINT IS NULL OR used::NUMERIC + reserved + $2::BIGINT <= $3::BIGINT)
    RETURNING used";

// Every transaction that changes holds locks the user's `usage` row first (the guarded
// UPDATE, or SELECT … FOR UPDATE), so two of them never wait on each other in a cycle.

/// A change to apply later (the database was down when it happened).
#[derive(Debug, Clone)]
struct Delta {
    name: String,
    used: i64,
    released: i64,
}

/// This server's view of the shared usage: its node name, and what it failed to apply.
pub(crate) struct SharedUsage {
    pg: Arc<Pg>,
    node: String,
    pending: Arc<Mutex<Vec<Delta>>>,
    /// How long a node may stay silent before its holds are reclaimed.
    lease: Duration,
    /// Whether the last heartbeat reached the database.
    beating: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SharedUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUsage")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn sql(n: u64) -> i64 {
    // No home or upload is 2^63 bytes; clamping keeps the arithmetic in BIGINT.
    i64::try_from(n).unwrap_or(i64::MAX / 4).min(i64::MAX / 4)
}

impl SharedUsage {
    /// Registers this server as a node and starts its heartbeat.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub(super) fn start(pg: Arc<Pg>, lease: Duration) -> Result<Arc<SharedUsage>> {
        let node = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(&crate::keys::challenge()?[..8])
        );
        let shared = Arc::new(SharedUsage {
            pg,
            node,
            pending: Arc::new(Mutex::new(Vec::new())),
            lease,
            beating: std::sync::atomic::AtomicBool::new(false),
        });
        shared.beat()?;
        let weak = Arc::downgrade(&shared);
        shared.pg.spawn(async move {
            let mut tick = tokio::time::interval(lease / BEATS_PER_LEASE);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                // On the blocking pool: `beat` waits for the database like any caller.
                let beat = tokio::task::spawn_blocking(move || shared.beat()).await;
                if let Ok(Err(e)) = beat {
                    tracing::warn!("quota heartbeat: {e}");
                }
            }
        });
        Ok(shared)
    }

    /// Marks this node alive, applies what failed earlier, and reclaims dead nodes' holds.
    fn beat(&self) -> Result<()> {
        let node = self.node.clone();
        let queue = self.pending.clone();
        let lease = self.lease;
        let judge = self.beating.load(std::sync::atomic::Ordering::Relaxed);
        let beat = self.pg.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO nodes (node, seen) VALUES ($1, now()) \
                     ON CONFLICT (node) DO UPDATE SET seen = now()",
                    &[&node],
                )
                .await
                .map_err(db_error)?;
            // Oldest first, each in its own transaction, and out of the queue only once
            // applied: what fails stays for the next beat. (Changes that fail are only
            // ever added at the end, so the first is still the one applied.)
            loop {
                let next = lock(&queue).first().cloned();
                let Some(delta) = next else { break };
                settle(&mut client, &node, &delta).await?;
                lock(&queue).remove(0);
            }
            if judge {
                reclaim(&mut client, lease).await?;
            }
            Ok(())
        });
        self.beating
            .store(beat.is_ok(), std::sync::atomic::Ordering::Relaxed);
        beat
    }

    /// What `name`'s home costs, as the database keeps it.
    pub(crate) fn used(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_owned();
        self.pg.run(move |pool| async move {
            let row = cached_row(&pool, "SELECT used FROM usage WHERE name = $1", &[&name]).await?;
            Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    /// Records a fresh measurement of `name`'s home, unless an upload holds bytes for them
    /// somewhere; returns the cost kept.
    pub(crate) fn measured(&self, name: &str, measured: u64) -> Result<u64> {
        let (name, measured) = (name.to_owned(), sql(measured));
        self.pg.run(move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one(
                    "WITH kept AS (
                        INSERT INTO usage (name, used) VALUES ($1, $2)
                        ON CONFLICT (name) DO UPDATE SET used = EXCLUDED.used
                        WHERE usage.reserved = 0
                        RETURNING used
                    )
                    SELECT COALESCE((SELECT used FROM kept),
                                    (SELECT used FROM usage WHERE name = $1))",
                    &[&name, &measured],
                )
                .await
                .map_err(db_error)?;
            Ok(u64::try_from(row.get::<_, Option<i64>>(0).unwrap_or(measured)).unwrap_or(0))
        })
    }

    /// Replaces what `name`'s home costs with a fresh measurement.
    pub(crate) fn remeasured(&self, name: &str, measured: u64) -> Result<()> {
        let (name, measured) = (name.to_owned(), sql(measured));
        self.pg.run(move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO usage (name, used) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET used = EXCLUDED.used",
                    &[&name, &measured],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    /// Reserves `bytes` for an upload of `name` against `quota`, in one statement.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when it does not fit; [`Error::Unavailable`].
    pub(crate) fn reserve(&self, name: &str, quota: Option<u64>, bytes: u64) -> Result<()> {
        self.guarded((RESERVE, true), name, quota, bytes)
    }

    /// Adds `cost` to what `name` uses if it fits `quota`.
    ///
    /// # Errors
    /// As [`SharedUsage::reserve`].
    pub(crate) fn charge(&self, name: &str, quota: Option<u64>, cost: u64) -> Result<()> {
        self.guarded((CHARGE, false), name, quota, cost)
    }

    /// Runs the guarded `statement` (`hold`: it also books a hold of this node); the
    /// refusal, with the numbers, when it did not fit.
    fn guarded(
        &self,
        (statement, hold): (&'static str, bool),
        name: &str,
        quota: Option<u64>,
        n: u64,
    ) -> Result<()> {
        let (user, asked) = (name.to_owned(), n);
        let (n, limit) = (sql(n), quota.map(sql));
        let node = self.node.clone();
        let refused = self.pg.run(move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            // The row exists once the user logged in; before that (a race with a first
            // login), it starts at 0 and the measurement replaces it.
            client
                .execute(
                    "INSERT INTO usage (name, used) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                    &[&user],
                )
                .await
                .map_err(db_error)?;
            let tx = client.transaction().await.map_err(db_error)?;
            let booked = tx
                .query_opt(statement, &[&user, &n, &limit])
                .await
                .map_err(db_error)?;
            if booked.is_some() {
                if hold {
                    tx.execute(HOLD, &[&node, &user, &n])
                        .await
                        .map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
                return Ok(None);
            }
            let row = tx
                .query_one("SELECT used, reserved FROM usage WHERE name = $1", &[&user])
                .await
                .map_err(db_error)?;
            Ok(Some((row.get::<_, i64>(0), row.get::<_, i64>(1))))
        })?;
        match (refused, quota) {
            (Some((used, reserved)), Some(quota)) => {
                crate::ops::metrics::quota_refused();
                Err(Error::QuotaExceeded(QuotaError::new(
                    u64::try_from(used).unwrap_or(0),
                    u64::try_from(reserved).unwrap_or(0),
                    quota,
                    asked,
                )))
            }
            _ => Ok(()),
        }
    }

    /// Takes `cost` off what `name` uses; queued when the database cannot be reached.
    pub(crate) fn credit(&self, name: &str, cost: u64) {
        self.settle(name, 0, -sql(cost));
    }

    /// Ends `held` bytes of `name`'s reservations on this node, and adds `grown` to what
    /// they use; queued when the database cannot be reached.
    pub(crate) fn release(&self, name: &str, held: u64, grown: i64) {
        self.settle(name, sql(held), grown);
    }

    fn settle(&self, name: &str, released: i64, grown: i64) {
        let delta = Delta {
            name: name.to_owned(),
            used: grown,
            released,
        };
        let node = self.node.clone();
        let applied = self.pg.run({
            let delta = delta.clone();
            move |pool| async move {
                let mut client = pool.get().await.map_err(pool_error)?;
                settle(&mut client, &node, &delta).await
            }
        });
        if let Err(e) = applied {
            tracing::warn!(user = %name, "quota change queued until the user database is back: {e}");
            lock(&self.pending).push(delta);
        }
    }
}

/// Applies `delta` for `node` in one transaction: what it releases leaves the node's hold
/// and the user's reserved bytes (never more than the hold still has: a hold reclaimed
/// while this node looked dead is not taken off twice), and what it grew is added to used.
async fn settle(client: &mut deadpool_postgres::Client, node: &str, delta: &Delta) -> Result<()> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        "SELECT 1 FROM usage WHERE name = $1 FOR UPDATE",
        &[&delta.name],
    )
    .await
    .map_err(db_error)?;
    let held: i64 = tx
        .query_opt(
            "SELECT bytes FROM usage_holds WHERE node = $1 AND name = $2",
            &[&node, &delta.name],
        )
        .await
        .map_err(db_error)?
        .map_or(0, |row| row.get(0));
    let freed = held.min(delta.released).max(0);
    if freed > 0 {
        tx.execute(
            "UPDATE usage_holds SET bytes = bytes - $3 WHERE node = $1 AND name = $2",
            &[&node, &delta.name, &freed],
        )
        .await
        .map_err(db_error)?;
    }
    tx.execute(
        "UPDATE usage SET used = GREATEST(used + $2, 0), reserved = GREATEST(reserved - $3, 0) \
         WHERE name = $1",
        &[&delta.name, &delta.used, &freed],
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// Reclaims the holds of nodes silent for longer than `lease`: their bytes leave the users'
/// reserved bytes. One transaction; the users' rows are locked first, in name order.
async fn reclaim(client: &mut deadpool_postgres::Client, lease: Duration) -> Result<()> {
    let tx = client.transaction().await.map_err(db_error)?;
    let dead: Vec<String> = tx
        .query(
            "DELETE FROM nodes WHERE seen < now() - make_interval(secs => $1::FLOAT8) \
             RETURNING node",
            &[&lease.as_secs_f64()],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if dead.is_empty() {
        return tx.commit().await.map_err(db_error);
    }
    tx.execute(
        "SELECT 1 FROM usage WHERE name IN \
         (SELECT name FROM usage_holds WHERE node = ANY($1)) ORDER BY name FOR UPDATE",
        &[&dead],
    )
    .await
    .map_err(db_error)?;
    tx.execute(
        "WITH freed AS (
            DELETE FROM usage_holds WHERE node = ANY($1) RETURNING name, bytes
         )
         UPDATE usage u SET reserved = GREATEST(u.reserved - f.total, 0)
         FROM (SELECT name, sum(bytes)::BIGINT AS total FROM freed GROUP BY name) f
         WHERE u.name = f.name",
        &[&dead],
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    tracing::info!(nodes = ?dead, "reclaimed the quota reservations of servers gone silent");
    Ok(())
}

fn lock(queue: &Mutex<Vec<Delta>>) -> std::sync::MutexGuard<'_, Vec<Delta>> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}
