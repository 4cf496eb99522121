//! Storage quotas: a per-server ledger of bytes that uploads in flight have reserved.
//!
//! It owns the arithmetic "used + reserved + asked <= quota", so two uploads that each fit
//! cannot overshoot together. It does not measure disk usage (see
//! [`crate::storage::Root::usage`]) and does not write files.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A refused reservation: what was used, reserved and asked, against which quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QuotaError {
    /// Bytes already stored in the user's home.
    pub used: u64,
    /// Bytes reserved by the user's other uploads in flight.
    pub reserved: u64,
    /// The user's quota.
    pub quota: u64,
    /// Bytes this upload asked for.
    pub asked: u64,
}

impl QuotaError {
    /// By how many bytes the quota would be exceeded.
    pub fn excess(&self) -> u64 {
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

type Book = Arc<Mutex<HashMap<String, u64>>>;

/// Bytes reserved per user by uploads in flight; one per server, shared by all connections.
#[derive(Debug, Clone, Default)]
pub struct QuotaLedger {
    book: Book,
}

impl QuotaLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        QuotaLedger::default()
    }

    /// Reserves `bytes` for `user`, whose home holds `used` bytes now, against `quota`
    /// (`None`: unlimited, which always succeeds but is still recorded).
    ///
    /// The check and the booking happen under one lock, so two concurrent uploads see each
    /// other's reservations. `used` should include the user's partial files, and `bytes` only
    /// what is still to be written (an upload resuming at offset `o` of `n` asks for `n - o`).
    ///
    /// # Errors
    /// [`QuotaError`] when `used + reserved + bytes` would be over `quota`.
    pub fn reserve(
        &self,
        user: &str,
        used: u64,
        quota: Option<u64>,
        bytes: u64,
    ) -> Result<Reservation, QuotaError> {
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let reserved = book.get(user).copied().unwrap_or(0);
        if let Some(quota) = quota {
            let total = used
                .checked_add(reserved)
                .and_then(|t| t.checked_add(bytes));
            if total.is_none_or(|total| total > quota) {
                return Err(QuotaError {
                    used,
                    reserved,
                    quota,
                    asked: bytes,
                });
            }
        }
        *book.entry(user.to_owned()).or_insert(0) = reserved.saturating_add(bytes);
        Ok(Reservation {
            book: Arc::clone(&self.book),
            user: user.to_owned(),
            bytes,
        })
    }

    /// Bytes currently reserved for `user`.
    pub fn reserved(&self, user: &str) -> u64 {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.get(user).copied().unwrap_or(0)
    }
}

/// Bytes held for one upload; released when dropped (finished, failed or cancelled alike).
#[derive(Debug)]
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    book: Book,
    user: String,
    bytes: u64,
}

impl Reservation {
    /// Bytes still held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Releases `n` bytes that are now written to disk, where [`crate::storage::Root::usage`]
    /// counts them. Call it after the write, never before, so a concurrent check may count
    /// those bytes twice (refusing early) but never zero times (overshooting).
    pub fn settle(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        self.release(n);
    }

    fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = book.get_mut(&self.user) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                book.remove(&self.user);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reservation_under_quota_is_granted_and_released_on_drop() {
        let ledger = QuotaLedger::new();
        let r = ledger.reserve("ann", 10, Some(100), 90).unwrap();
        assert_eq!(r.bytes(), 90);
        assert_eq!(ledger.reserved("ann"), 90);
        drop(r);
        assert_eq!(ledger.reserved("ann"), 0);
    }

    #[test]
    fn reservation_over_quota_says_by_how_much() {
        let ledger = QuotaLedger::new();
        let err = ledger
            .reserve("ann", 80 * MIB, Some(100 * MIB), 30 * MIB)
            .unwrap_err();
        assert_eq!(err.excess(), 10 * MIB);
        let text = err.to_string();
        assert!(text.contains("exceeded by 10.0 MiB"), "{text}");
        assert!(text.contains("100.0 MiB quota"), "{text}");
        assert_eq!(ledger.reserved("ann"), 0);
    }

    #[test]
    fn two_reservations_that_each_fit_do_not_fit_together() {
        let ledger = QuotaLedger::new();
        let first = ledger.reserve("ann", 0, Some(100), 60).unwrap();
        let err = ledger.reserve("ann", 0, Some(100), 60).unwrap_err();
        assert_eq!((err.reserved, err.excess()), (60, 20));
        // Another user's quota is separate.
        let _bob = ledger.reserve("bob", 0, Some(100), 60).unwrap();
        drop(first);
        let _second = ledger.reserve("ann", 0, Some(100), 60).unwrap();
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let ledger = QuotaLedger::new();
        let granted: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ledger.reserve("ann", 0, Some(100), 30)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = granted.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 3);
        assert_eq!(ledger.reserved("ann"), 90);
    }

    #[test]
    fn settle_moves_bytes_from_reserved_to_used() {
        let ledger = QuotaLedger::new();
        let mut r = ledger.reserve("ann", 0, Some(100), 60).unwrap();
        r.settle(50);
        assert_eq!((r.bytes(), ledger.reserved("ann")), (10, 10));
        r.settle(1000);
        assert_eq!(ledger.reserved("ann"), 0);
        drop(r);
        assert_eq!(ledger.reserved("ann"), 0);
    }

    #[test]
    fn unlimited_and_overflowing_requests() {
        let ledger = QuotaLedger::new();
        let _r = ledger.reserve("ann", u64::MAX, None, u64::MAX).unwrap();
        let err = ledger.reserve("bob", u64::MAX, Some(10), 1).unwrap_err();
        assert_eq!(err.excess(), u64::MAX - 10);
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
