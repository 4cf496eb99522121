//! Bandwidth shaping: token buckets of bytes per second, one per limit (a connection's, a
//! user's shared by their sessions, the server's shared by everyone), up (what the server
//! reads) and down (what it writes) apart.
//!
//! A bucket may go into debt: a read or write moves what the socket gives, is charged
//! after, and the next one waits until every bucket it draws on is out of debt. So a
//! transfer averages the lowest rate among its buckets, with bursts of at most
//! [`Bucket::burst`] plus one read or `MAX_SHAPED_WRITE`. A stream with no limit has no
//! [`Shaping`] at all: it pays one `None` check per read or write.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The most a shaped stream writes in one call: smaller steps keep the rate smooth.
pub(crate) const MAX_SHAPED_WRITE: usize = 64 * 1024;

/// The bandwidth limits of a server, in bytes per second; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// What the server takes in, all clients together (`--max-rate-up`).
    pub up: Option<u64>,
    /// What the server sends, all clients together (`--max-rate-down`).
    pub down: Option<u64>,
    /// What one connection may send the server (`--max-rate-up-per-connection`).
    pub up_per_connection: Option<u64>,
    /// What one connection may receive (`--max-rate-down-per-connection`).
    pub down_per_connection: Option<u64>,
}

/// The server-wide buckets of [`Rates`], shared by every connection, and the
/// per-connection rates, each connection's own.
#[derive(Debug, Clone, Default)]
pub struct ServerRates {
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
    per_connection: (Option<u64>, Option<u64>),
}

impl ServerRates {
    /// The buckets of `rates`.
    pub fn new(rates: Rates) -> ServerRates {
        ServerRates {
            up: rates.up.map(Bucket::new),
            down: rates.down.map(Bucket::new),
            per_connection: (rates.up_per_connection, rates.down_per_connection),
        }
    }

    /// Applies the server's and a new connection's limits to `stream`.
    pub fn apply<S>(&self, stream: &mut super::meter::Metered<S>) {
        stream.shape(self.up.clone(), self.down.clone());
        let (up, down) = self.per_connection;
        stream.shape(up.map(Bucket::new), down.map(Bucket::new));
    }
}

/// A token bucket of bytes per second.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A bucket that refills at `rate` bytes per second (at least 1), full at first.
    pub fn new(rate: u64) -> Arc<Bucket> {
        let rate = rate.max(1);
        // A tenth of a second's worth, at least 16 KiB: smooth, and one read fits.
        let burst = (rate as f64 / 10.0).max(16.0 * 1024.0);
        Arc::new(Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        })
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes that may pass at once after a pause.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// How long until the bucket is out of debt at `now`; `None` if it is not in debt.
    fn wait(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = &mut *state;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate as f64).min(self.burst);
        *at = now;
        (*tokens < 0.0).then(|| Duration::from_secs_f64(-*tokens / self.rate as f64))
    }

    /// Charges `n` bytes that passed.
    fn take(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= n as f64;
    }
}

/// The buckets one stream draws on, and the timers of its waits.
#[derive(Debug, Default)]
pub struct Shaping {
    up: Vec<Arc<Bucket>>,
    down: Vec<Arc<Bucket>>,
    /// The logged-in user's buckets (up, down), replaced at each login.
    user: (Option<Arc<Bucket>>, Option<Arc<Bucket>>),
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl Shaping {
    /// Adds a bucket for what the server reads (`up`) and one for what it writes (`down`).
    pub fn add(&mut self, up: Option<Arc<Bucket>>, down: Option<Arc<Bucket>>) {
        self.up.extend(up);
        self.down.extend(down);
    }

    /// Sets the logged-in user's buckets, in place of an earlier user's.
    pub fn set_user(&mut self, up: Option<Arc<Bucket>>, down: Option<Arc<Bucket>>) {
        self.user = (up, down);
    }

    /// The buckets of reads.
    fn ups(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.up.iter().chain(&self.user.0)
    }

    /// The buckets of writes.
    fn downs(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.down.iter().chain(&self.user.1)
    }

    /// Ready once every bucket of reads is out of debt.
    pub(crate) fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let wait = longest_wait(self.ups());
        poll_wait(wait, &mut self.read_timer, cx)
    }

    /// Ready once every bucket of writes is out of debt.
    pub(crate) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let wait = longest_wait(self.downs());
        poll_wait(wait, &mut self.write_timer, cx)
    }

    /// Charges `n` bytes read.
    pub(crate) fn read(&self, n: usize) {
        self.ups().for_each(|b| b.take(n));
    }

    /// Charges `n` bytes written.
    pub(crate) fn wrote(&self, n: usize) {
        self.downs().for_each(|b| b.take(n));
    }
}

/// The longest any of `buckets` must wait to be out of debt now, if any must.
fn longest_wait<'a>(buckets: impl Iterator<Item = &'a Arc<Bucket>>) -> Option<Instant> {
    let now = Instant::now();
    buckets
        .filter_map(|b| b.wait(now))
        .max()
        .map(|wait| now + wait)
}

/// Waits on `timer` until `due` (ready at once when there is nothing to wait for). A timer
/// that fires is ready: the buckets are asked again at the next read or write.
fn poll_wait(
    due: Option<Instant>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let Some(due) = due else {
        return Poll::Ready(());
    };
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
    sleep.as_mut().reset(due);
    sleep.as_mut().poll(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_in_debt_waits_its_debt_at_its_rate() {
        let bucket = Bucket::new(1_000_000);
        let now = Instant::now();
        assert_eq!(bucket.wait(now), None, "full at first");
        bucket.take(100_000 + 500_000);
        // 500 kB of debt at 1 MB/s: half a second.
        let wait = bucket.wait(now).unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(bucket.wait(now + Duration::from_millis(500)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn shaped_reads_average_the_lowest_rate() {
        let (mut shaping, slow) = (Shaping::default(), Bucket::new(100_000));
        shaping.add(Some(Bucket::new(1_000_000)), None);
        shaping.add(Some(slow), None);
        let start = Instant::now();
        for _ in 0..10 {
            std::future::poll_fn(|cx| shaping.poll_read_ready(cx)).await;
            shaping.read(20_000);
        }
        // The tenth read starts once the first nine (180 kB, less the slow bucket's 16 KiB
        // burst) are paid for at 100 kB/s: 1.636 s.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 1.636).abs() < 0.01, "{took}");
    }
}
