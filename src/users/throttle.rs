//! `AuthThrottle`: failed logins per peer address, and the cool-down that follows too many.
//!
//! Pure bookkeeping in memory with the clock passed in (`now: Instant`), so tests need no
//! sleeps. It never sleeps itself: the service waits [`FAILED_LOGIN_DELAY`] on each failure.
//! A login is an [`Attempt`] from before its password check until its outcome, and attempts
//! in flight count against the limit: concurrent guesses cannot all slip in before the first
//! failure is counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::net::ip_bucket;

/// How long the service waits before answering a failed login, to slow down guessing.
pub(crate) const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// When an address is cooled down, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ThrottleConfig {
    /// Failures within `window` that start a cool-down.
    max_failures: u32,
    /// How far back failures count.
    window: Duration,
    /// The first cool-down; each further one doubles it.
    cooldown: Duration,
    /// The longest cool-down; also the quiet time after which the doubling starts over.
    max_cooldown: Duration,
    /// Addresses remembered at most; beyond it the least recently seen is forgotten.
    max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(15 * 60),
            max_tracked: 10_000,
        }
    }
}

#[derive(Debug)]
struct Peer {
    /// Failures within the window, oldest first.
    failures: VecDeque<Instant>,
    /// End of the current (or last) cool-down.
    until: Option<Instant>,
    /// Cool-downs so far; the next one lasts `cooldown * 2^strikes`.
    strikes: u32,
    /// Last time this address was seen failing.
    last: Instant,
    /// Attempts begun and not finished yet.
    in_flight: u32,
}

impl Peer {
    fn new(now: Instant) -> Peer {
        Peer {
            failures: VecDeque::new(),
            until: None,
            strikes: 0,
            last: now,
            in_flight: 0,
        }
    }
}

/// One login attempt of an address, counted from [`AuthThrottle::begin`] on. Dropped without
/// an outcome (the client left during the check), it counts as a failure.
#[derive(Debug)]
#[must_use = "an attempt dropped without an outcome counts as a failure"]
pub(crate) struct Attempt<'a> {
    throttle: &'a AuthThrottle,
    ip: IpAddr,
    open: bool,
}

impl Attempt<'_> {
    /// The password was wrong: returns the cool-down this started, if any.
    pub(crate) fn failed(mut self, now: Instant) -> Option<Duration> {
        self.open = false;
        let cooldown = self.throttle.outcome(self.ip, now, false);
        self.throttle.ended.notify_waiters();
        cooldown
    }

    /// A login by key got its challenge: the attempt ends with no outcome (the signature
    /// that answers it is the next attempt, and the one that counts).
    pub(crate) fn challenged(mut self) {
        self.open = false;
        self.throttle.release(self.ip, Instant::now());
        self.throttle.ended.notify_waiters();
    }

    /// The login succeeded: the address starts over with a clean record.
    pub(crate) fn succeeded(mut self) {
        self.open = false;
        self.throttle.outcome(self.ip, Instant::now(), true);
        self.throttle.ended.notify_waiters();
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.open {
            self.throttle.outcome(self.ip, Instant::now(), false);
            self.throttle.ended.notify_waiters();
        }
    }
}

/// Why an attempt cannot begin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The address cools down for this much longer.
    CoolingDown(Duration),
    /// Its attempts in flight fill the limit: wait for one to end ([`AuthThrottle::ended`]).
    Wait,
}

/// Failed logins per address; one per server, shared by all connections.
#[derive(Debug, Default)]
pub(crate) struct AuthThrottle {
    config: ThrottleConfig,
    peers: Mutex<HashMap<IpAddr, Peer>>,
    /// Woken whenever an attempt ends.
    ended: tokio::sync::Notify,
}

impl AuthThrottle {
    /// A throttle with `config` (the server always runs the default one).
    #[cfg(test)]
    fn new(config: ThrottleConfig) -> Self {
        AuthThrottle {
            config,
            peers: Mutex::default(),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// Whether `ip` may try to log in at `now`.
    ///
    /// # Errors
    /// The time left of its cool-down.
    #[cfg(test)]
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&ip_bucket(ip)).and_then(|p| p.until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Starts a login attempt of `ip` at `now`: refused while the address cools down, and
    /// deferred while its failures in the window plus its attempts in flight reach the
    /// limit (so concurrent logins of one address are checked a few at a time, and a
    /// cool-down started by the first failures stops the rest).
    ///
    /// # Errors
    /// [`Refused::CoolingDown`] with the time left, or [`Refused::Wait`].
    pub(crate) fn begin(&self, ip: IpAddr, now: Instant) -> Result<Attempt<'_>, Refused> {
        let config = &self.config;
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = entry(&mut peers, config, ip, now);
        if let Some(until) = peer.until.filter(|until| *until > now) {
            return Err(Refused::CoolingDown(until - now));
        }
        let recent = peer
            .failures
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < config.window)
            .count();
        let limit = config.max_failures.max(1) as usize;
        if recent + peer.in_flight as usize >= limit {
            return Err(Refused::Wait);
        }
        peer.in_flight += 1;
        Ok(Attempt {
            throttle: self,
            ip,
            open: true,
        })
    }

    /// Resolves when an attempt has ended since this was called: a deferred attempt then
    /// tries [`AuthThrottle::begin`] again.
    pub(crate) fn ended(&self) -> tokio::sync::futures::Notified<'_> {
        self.ended.notified()
    }

    /// An attempt of `ip` has its outcome: it leaves the attempts in flight and is counted,
    /// under one lock (no other attempt can begin in between). Returns the cool-down a
    /// failure started, if any.
    /// Ends an attempt of `ip` with no outcome.
    fn release(&self, ip: IpAddr, now: Instant) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = entry(&mut peers, &self.config, ip, now);
        peer.in_flight = peer.in_flight.saturating_sub(1);
    }

    fn outcome(&self, ip: IpAddr, now: Instant, succeeded: bool) -> Option<Duration> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = entry(&mut peers, &self.config, ip, now);
        peer.in_flight = peer.in_flight.saturating_sub(1);
        if succeeded {
            success_in(&mut peers, ip);
            return None;
        }
        failure_in(&mut peers, &self.config, ip, now)
    }

    /// Records a failed login of `ip` at `now`; returns the cool-down it started, if any.
    #[cfg(test)]
    fn failure(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        failure_in(&mut peers, &self.config, ip, now)
    }

    /// Records a successful login: `ip` starts over with a clean record.
    #[cfg(test)]
    fn success(&self, ip: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        success_in(&mut peers, ip);
    }

    /// Addresses currently remembered.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

type Peers = HashMap<IpAddr, Peer>;

/// The record of `ip`'s bucket, made if new (room is made first when the map is full).
fn entry<'a>(
    peers: &'a mut Peers,
    config: &ThrottleConfig,
    ip: IpAddr,
    now: Instant,
) -> &'a mut Peer {
    let key = ip_bucket(ip);
    if !peers.contains_key(&key) && peers.len() >= config.max_tracked {
        evict(peers, config, now);
    }
    peers.entry(key).or_insert_with(|| Peer::new(now))
}

/// Counts a failed login of `ip` at `now`; returns the cool-down it started, if any.
fn failure_in(
    peers: &mut Peers,
    config: &ThrottleConfig,
    ip: IpAddr,
    now: Instant,
) -> Option<Duration> {
    let peer = entry(peers, config, ip, now);
    peer.last = now;
    if let Some(until) = peer.until {
        if until > now {
            // Already cooling down (the caller did not check): nothing more to count.
            return None;
        }
        if now.saturating_duration_since(until) >= config.max_cooldown {
            // Quiet long enough after the last cool-down: forgive.
            peer.strikes = 0;
            peer.until = None;
        }
    }
    while peer
        .failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= config.window)
    {
        peer.failures.pop_front();
    }
    peer.failures.push_back(now);
    if peer.failures.len() < config.max_failures.max(1) as usize {
        return None;
    }
    let factor = 2u32.saturating_pow(peer.strikes);
    let cooldown = config
        .cooldown
        .saturating_mul(factor)
        .min(config.max_cooldown);
    peer.strikes = peer.strikes.saturating_add(1);
    peer.failures.clear();
    // Only a configured duration of centuries could overflow; then no cool-down.
    peer.until = Some(now.checked_add(cooldown).unwrap_or(now));
    Some(cooldown)
}

/// A successful login: `ip` starts over with a clean record (its other attempts in flight
/// still count until they finish).
fn success_in(peers: &mut Peers, ip: IpAddr) {
    let key = ip_bucket(ip);
    match peers.get_mut(&key) {
        Some(peer) if peer.in_flight > 0 => {
            peer.failures.clear();
            peer.until = None;
            peer.strikes = 0;
        }
        _ => {
            peers.remove(&key);
        }
    }
}

/// Makes room for one more address: forget the stale ones, else the least recently seen.
fn evict(peers: &mut HashMap<IpAddr, Peer>, config: &ThrottleConfig, now: Instant) {
    let keep = config.window.max(config.max_cooldown);
    peers.retain(|_, p| {
        p.in_flight > 0
            || p.until.is_some_and(|u| u > now)
            || now.saturating_duration_since(p.last) < keep
    });
    if peers.len() >= config.max_tracked
        && let Some(oldest) = peers
            .iter()
            .filter(|(_, p)| p.in_flight == 0)
            .min_by_key(|(_, p)| p.last)
            .map(|(ip, _)| *ip)
    {
        peers.remove(&oldest);
    }
}

#[cfg(test)]
mod tests;
