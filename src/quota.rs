//! Storage quotas: a per-server ledger of what each home costs and what uploads in flight
//! have reserved; with users in PostgreSQL, both live in the database instead, shared by
//! every server (see `users::SharedUsage`).
//!
//! It owns the arithmetic "used + reserved + asked <= quota" under one lock, so uploads and
//! changes that each fit cannot overshoot together. It does not measure homes (see
//! `storage::Root::usage`) and does not write files.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Result;
use crate::users::SharedUsage;

/// A refused reservation: what was used, reserved and asked, against which quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QuotaError {
    /// Bytes already stored in the user's home.
    used: u64,
    /// Bytes reserved by the user's other uploads in flight.
    reserved: u64,
    /// The user's quota.
    quota: u64,
    /// Bytes this upload asked for.
    asked: u64,
}

impl QuotaError {
    /// A refusal of `asked` bytes against `quota`, with what was `used` and `reserved`.
    pub(crate) fn new(used: u64, reserved: u64, quota: u64, asked: u64) -> QuotaError {
        QuotaError {
            used,
            reserved,
            quota,
            asked,
        }
    }

    /// By how many bytes the quota would be exceeded.
    fn excess(&self) -> u64 {
        self.used
            .saturating_add(self.reserved)
            .saturating_add(self.asked)
            .saturating_sub(self.quota)
    }
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quota exceeded by {}: storing {} more would need {} of your {} quota \
             ({} used, {} reserved by uploads in progress)",
            format_size(self.excess()),
            format_size(self.asked),
            format_size(
                self.used
                    .saturating_add(self.reserved)
                    .saturating_add(self.asked)
            ),
            format_size(self.quota),
            format_size(self.used),
            format_size(self.reserved),
        )
    }
}

/// Formats a byte count for people: `512 B`, `1.5 KiB`, `10.0 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Lossy on purpose: one decimal is all a person reads.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What one file, folder or link costs against a quota on top of its bytes: an inode and
/// its directory entry, or a folder's first block, on the file systems sockit runs on. So
/// a quota also bounds how many entries a user can make, not just their bytes.
pub const ENTRY_COST: u64 = 4096;

/// What a tree of the home holds: the bytes of its regular files and its entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Bytes of regular files (partial uploads included).
    pub(crate) bytes: u64,
    /// Files, folders, links and others.
    pub(crate) entries: u64,
}

impl Usage {
    /// What this costs against a quota: its bytes plus [`ENTRY_COST`] per entry.
    pub(crate) fn cost(&self) -> u64 {
        self.bytes
            .saturating_add(self.entries.saturating_mul(ENTRY_COST))
    }

    /// The cost of one regular file of `len` bytes.
    pub(crate) fn file(len: u64) -> u64 {
        len.saturating_add(ENTRY_COST)
    }
}

/// One user's account in the ledger.
#[derive(Debug, Default)]
struct Account {
    /// Cost of what the home holds now, kept up to date by every change the server makes.
    used: u64,
    /// Bytes held by uploads in flight.
    reserved: u64,
    /// Taken by every change to the home's names whose cost it measures, so a measurement
    /// and the change it prices cannot be split by another session of the same user.
    names: Arc<tokio::sync::Mutex<()>>,
}

type Book = Arc<Mutex<HashMap<String, Account>>>;

/// Usage and reservations per user; one per server, shared by all connections.
///
/// A home is measured once (its first login after the server starts); from then on each
/// change the server makes adds or takes away what it cost, so no request walks the home.
/// A ledger made with [`QuotaLedger::shared`] keeps usage and reservations in the user
/// database instead (the book then only marks which homes this server measured).
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaLedger {
    book: Book,
    shared: Option<Arc<SharedUsage>>,
}

impl QuotaLedger {
    /// An empty ledger.
    pub(crate) fn new() -> Self {
        QuotaLedger::default()
    }

    /// A ledger over usage that several servers share, in their user database.
    pub(crate) fn shared(shared: Arc<SharedUsage>) -> Self {
        QuotaLedger {
            book: Book::default(),
            shared: Some(shared),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cost of `user`'s home, if it was measured.
    pub(crate) fn used(&self, user: &str) -> Option<u64> {
        let used = self.book().get(user).map(|a| a.used);
        match &self.shared {
            Some(shared) if used.is_some() => shared.used(user).unwrap_or_else(|e| {
                tracing::warn!(user = %user, "quota usage: {e}");
                None
            }),
            _ => used,
        }
    }

    /// Records `measured`, the cost of `user`'s home, unless a measurement is already kept
    /// (two first logins at once); returns the cost kept.
    pub(crate) fn measured(&self, user: &str, measured: u64) -> u64 {
        if let Some(shared) = &self.shared {
            let kept = shared.measured(user, measured).unwrap_or_else(|e| {
                tracing::warn!(user = %user, "quota usage: {e}");
                measured
            });
            self.book().entry(user.to_owned()).or_default().used = kept;
            return kept;
        }
        let mut book = self.book();
        let account = book.entry(user.to_owned()).or_insert_with(|| Account {
            used: measured,
            ..Account::default()
        });
        account.used
    }

    /// Replaces the kept cost with a fresh measurement (after something outside the
    /// server's own changes, such as a command, touched the home).
    pub(crate) fn remeasured(&self, user: &str, measured: u64) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.remeasured(user, measured)
        {
            tracing::warn!(user = %user, "quota usage: {e}");
        }
        self.book().entry(user.to_owned()).or_default().used = measured;
    }

    /// The lock on `user`'s names (see [`Account`]); hold it across a measurement and the
    /// change it prices.
    pub(crate) fn names(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.book()
            .entry(user.to_owned())
            .or_default()
            .names
            .clone()
    }

    /// Reserves `bytes` for an upload of `user` against `quota` (`None`: unlimited, which
    /// always succeeds but is still recorded). The check and the booking happen under one
    /// lock with the kept usage, so concurrent uploads and changes see each other.
    ///
    /// With shared usage, the check and the booking are one statement in the database, so
    /// servers sharing it see each other's reservations too.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`] when `used + reserved + bytes` would be over `quota`;
    /// [`crate::Error::Unavailable`] when shared usage cannot be reached.
    pub(crate) fn reserve(
        &self,
        user: &str,
        quota: Option<u64>,
        bytes: u64,
    ) -> Result<Reservation> {
        if let Some(shared) = &self.shared {
            shared.reserve(user, quota, bytes)?;
            return Ok(Reservation {
                book: Arc::clone(&self.book),
                shared: Some(shared.clone()),
                user: user.to_owned(),
                bytes,
            });
        }
        let mut book = self.book();
        let account = book.entry(user.to_owned()).or_default();
        check(account, quota, bytes)?;
        account.reserved = account.reserved.saturating_add(bytes);
        Ok(Reservation {
            book: Arc::clone(&self.book),
            shared: None,
            user: user.to_owned(),
            bytes,
        })
    }

    /// Adds `cost` to `user`'s usage if it fits `quota` (a new folder, say).
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`] when it does not fit; nothing is charged then.
    /// [`crate::Error::Unavailable`] when shared usage cannot be reached.
    pub(crate) fn charge(&self, user: &str, quota: Option<u64>, cost: u64) -> Result<()> {
        if let Some(shared) = &self.shared {
            return shared.charge(user, quota, cost);
        }
        let mut book = self.book();
        let account = book.entry(user.to_owned()).or_default();
        check(account, quota, cost)?;
        account.used = account.used.saturating_add(cost);
        Ok(())
    }

    /// Takes `cost` off `user`'s usage (something was removed or replaced).
    pub(crate) fn credit(&self, user: &str, cost: u64) {
        if let Some(shared) = &self.shared {
            shared.credit(user, cost);
            return;
        }
        if let Some(account) = self.book().get_mut(user) {
            account.used = account.used.saturating_sub(cost);
        }
    }

    /// Bytes currently reserved for `user`.
    #[cfg(test)]
    fn reserved(&self, user: &str) -> u64 {
        self.book().get(user).map_or(0, |a| a.reserved)
    }
}

/// Whether `asked` more fits `quota` next to what `account` uses and holds.
fn check(account: &Account, quota: Option<u64>, asked: u64) -> Result<(), QuotaError> {
    let Some(quota) = quota else {
        return Ok(());
    };
    let total = account
        .used
        .checked_add(account.reserved)
        .and_then(|t| t.checked_add(asked));
    if total.is_none_or(|total| total > quota) {
        crate::ops::metrics::quota_refused();
        return Err(QuotaError {
            used: account.used,
            reserved: account.reserved,
            quota,
            asked,
        });
    }
    Ok(())
}

/// Bytes held for one upload; released when dropped (finished, failed or cancelled alike).
#[derive(Debug)]
#[must_use = "dropping a reservation releases it at once"]
pub(crate) struct Reservation {
    book: Book,
    /// Where the bytes are held instead of `book`, with shared usage.
    shared: Option<Arc<SharedUsage>>,
    user: String,
    bytes: u64,
}

impl Reservation {
    /// Ends the reservation with what the upload really changed: `grown` more (or, when
    /// negative, less) cost in the home, measured after the fact. Both happen under one
    /// lock, so no check sees the bytes twice or not at all.
    pub(crate) fn settle(mut self, grown: i64) {
        if let Some(shared) = &self.shared {
            shared.release(&self.user, self.bytes, grown);
            // Released with the settle, in the same statement.
            self.bytes = 0;
            return;
        }
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = book.get_mut(&self.user) {
            account.used = account.used.saturating_add_signed(grown);
        }
        drop(book);
        // Drop releases the held bytes.
    }

    /// Holds `bytes` more for this upload, if they fit `quota` next to what the user uses
    /// and holds: for a door whose uploads do not say their size up front (FTP `STOR`),
    /// which reserves each chunk before it writes it.
    ///
    /// # Errors
    /// [`crate::Error::QuotaExceeded`] when they do not fit; nothing more is held then.
    pub(crate) fn grow(&mut self, quota: Option<u64>, bytes: u64) -> Result<()> {
        if let Some(shared) = &self.shared {
            shared.reserve(&self.user, quota, bytes)?;
            self.bytes = self.bytes.saturating_add(bytes);
            return Ok(());
        }
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let account = book.entry(self.user.clone()).or_default();
        check(account, quota, bytes)?;
        account.reserved = account.reserved.saturating_add(bytes);
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    fn release(&self) {
        if let Some(shared) = &self.shared {
            if self.bytes > 0 {
                shared.release(&self.user, self.bytes, 0);
            }
            return;
        }
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = book.get_mut(&self.user) {
            account.reserved = account.reserved.saturating_sub(self.bytes);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// The refusal in `result`, which must be one.
    fn refused<T: fmt::Debug>(result: Result<T>) -> QuotaError {
        match result {
            Err(crate::Error::QuotaExceeded(e)) => e,
            other => panic!("expected a quota refusal, got {other:?}"),
        }
    }

    fn ledger(user: &str, used: u64) -> QuotaLedger {
        let ledger = QuotaLedger::new();
        ledger.measured(user, used);
        ledger
    }

    #[test]
    fn reservation_under_quota_is_granted_and_released_on_drop() {
        let ledger = ledger("ann", 10);
        let r = ledger.reserve("ann", Some(100), 90).unwrap();
        assert_eq!(ledger.reserved("ann"), 90);
        drop(r);
        assert_eq!(ledger.reserved("ann"), 0);
        assert_eq!(ledger.used("ann"), Some(10));
    }

    #[test]
    fn reservation_over_quota_says_by_how_much() {
        let ledger = ledger("ann", 80 * MIB);
        let err = refused(ledger.reserve("ann", Some(100 * MIB), 30 * MIB));
        assert_eq!(err.excess(), 10 * MIB);
        let text = err.to_string();
        assert!(text.contains("exceeded by 10.0 MiB"), "{text}");
        assert!(text.contains("100.0 MiB quota"), "{text}");
        assert_eq!(ledger.reserved("ann"), 0);
    }

    #[test]
    fn two_reservations_that_each_fit_do_not_fit_together() {
        let ledger = ledger("ann", 0);
        let first = ledger.reserve("ann", Some(100), 60).unwrap();
        let err = refused(ledger.reserve("ann", Some(100), 60));
        assert_eq!((err.reserved, err.excess()), (60, 20));
        // Another user's quota is separate.
        let _bob = ledger.reserve("bob", Some(100), 60).unwrap();
        drop(first);
        let _second = ledger.reserve("ann", Some(100), 60).unwrap();
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let ledger = ledger("ann", 0);
        let granted: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ledger.reserve("ann", Some(100), 30)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = granted.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 3);
        assert_eq!(ledger.reserved("ann"), 90);
    }

    #[test]
    fn settle_moves_what_was_written_from_reserved_to_used() {
        let ledger = ledger("ann", 5);
        let r = ledger.reserve("ann", Some(100), 60).unwrap();
        r.settle(50);
        assert_eq!((ledger.used("ann"), ledger.reserved("ann")), (Some(55), 0));
        let r = ledger.reserve("ann", Some(100), 10).unwrap();
        r.settle(-40);
        assert_eq!(ledger.used("ann"), Some(15));
    }

    #[test]
    fn charges_and_credits_count_with_reservations() {
        let ledger = ledger("ann", 0);
        let _r = ledger.reserve("ann", Some(100), 60).unwrap();
        ledger.charge("ann", Some(100), 40).unwrap();
        assert!(ledger.charge("ann", Some(100), 1).is_err());
        ledger.credit("ann", 30);
        assert_eq!(ledger.used("ann"), Some(10));
        // A first measurement is kept; a second first login does not overwrite it.
        assert_eq!(ledger.measured("ann", 999), 10);
        ledger.remeasured("ann", 7);
        assert_eq!(ledger.used("ann"), Some(7));
    }

    #[test]
    fn unlimited_and_overflowing_requests() {
        let ledger = ledger("ann", u64::MAX);
        let _r = ledger.reserve("ann", None, u64::MAX).unwrap();
        let ledger = self::ledger("bob", u64::MAX);
        let err = refused(ledger.reserve("bob", Some(10), 1));
        assert_eq!(err.excess(), u64::MAX - 10);
    }

    #[test]
    fn entries_cost_a_block_each() {
        let usage = Usage {
            bytes: 10,
            entries: 3,
        };
        assert_eq!(usage.cost(), 10 + 3 * ENTRY_COST);
        assert_eq!(Usage::file(0), ENTRY_COST);
    }

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 * MIB), "10.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
