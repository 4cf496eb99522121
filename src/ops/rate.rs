//! The per-address connection rate of a listener (`serve --connection-rate N
//! --connection-burst B`): a token bucket per address (IPv4, or IPv6 /64), by `governor`'s
//! GCRA, which keeps one 8-byte state per address and no timer.
//!
//! Memory: one entry per address seen lately. Every [`PRUNE_EVERY`] checks, entries whose
//! bucket has refilled are dropped (`retain_recent`), so the table holds at most the
//! addresses that connected within one burst's refill time, plus [`PRUNE_EVERY`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::net::ip_bucket;

/// Checks between two prunings of the table.
const PRUNE_EVERY: u64 = 1024;

/// New connections per address per second, within a burst.
#[derive(Debug)]
pub(crate) struct ConnectionRate {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
    per_second: u32,
}

impl ConnectionRate {
    /// `per_second` new connections per address, `burst` at once after a quiet spell;
    /// `None` (no limit) when `per_second` is 0.
    pub(crate) fn new(per_second: u32, burst: u32) -> Option<ConnectionRate> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(ConnectionRate {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            per_second,
        })
    }

    /// The sustained rate per address.
    pub(crate) fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Admits one more connection from `ip`, or says how long until its address may
    /// connect again.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&ip_bucket(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_burst_waits_while_another_is_admitted() {
        let rate = ConnectionRate::new(1, 3).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            rate.admit(a).unwrap();
        }
        let wait = rate.admit(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        rate.admit(b).unwrap();
        assert!(ConnectionRate::new(0, 10).is_none(), "0 is no limit");
    }
}
