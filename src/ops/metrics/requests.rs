//! `sockit_requests_total` and `sockit_request_duration_seconds`, kept per thread.
//!
//! These two series change on every request of every connection. Kept in the exporter's
//! registry, each request added to one counter and pushed into one histogram buffer that
//! every worker thread shares: three atomic writes to cache lines that move between the
//! cores, about 3% of the server's CPU under a 64-byte echo load (`perf`). Here each thread
//! counts into a shard of its own that only it writes: a request's cost is two plain adds to
//! a line no other core writes (atomics only so that a scrape may read them), with no lock
//! and no read-modify-write instruction. A scrape adds the shards up.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::Door;

/// A request series: door, op, result (each a fixed word).
pub(super) type Key = (Door, &'static str, &'static str);

/// Buckets of the latency histogram: one per bound, then one for `+Inf`.
const BUCKETS: usize = super::LATENCY_BUCKETS.len() + 1;

/// The series a thread's shard holds; a thread that sees more (none does: a door has a few
/// dozen ops and results) counts the rest in the shared, locked [`ENDED`].
const SLOTS: usize = 64;

/// Whether two keys name the same series.
fn same(a: &Key, b: &Key) -> bool {
    let word = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    a.0 == b.0 && word(a.1, b.1) && word(a.2, b.2)
}

/// The bucket of a request that took `nanos`: the first bound at or above it.
fn bucket_of(nanos: u64) -> usize {
    // Compared in seconds, as rendered: a bound holds the requests that took exactly it.
    let seconds = nanos as f64 / 1e9;
    super::LATENCY_BUCKETS.partition_point(|&bound| bound < seconds)
}

/// The requests of one series: their total latency, and how many fell in each bucket (not
/// cumulative; the text format's cumulative counts, and the count, are made when rendering).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    nanos: u64,
    buckets: [u64; BUCKETS],
}

impl Totals {
    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &Totals) {
        self.nanos += other.nanos;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// One series of a thread's shard: its key, set once before the slot is published, and its
/// totals, written by the owning thread alone.
#[derive(Debug, Default)]
struct Slot {
    key: OnceLock<Key>,
    nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// Adds `n` to a counter only this thread writes: a load and a store, which a scrape on
/// another thread reads whole (never torn), without the cost of an atomic add.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Slot {
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            nanos: self.nanos.load(Ordering::Relaxed),
            ..Totals::default()
        };
        for (total, bucket) in totals.buckets.iter_mut().zip(&self.buckets) {
            *total = bucket.load(Ordering::Relaxed);
        }
        totals
    }
}

/// One thread's series: the first `len` slots are in use (published with `Release`, so a
/// scrape that reads `len` sees their keys).
#[derive(Debug)]
struct Shard {
    slots: Box<[Slot]>,
    len: AtomicUsize,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    /// The slots in use, each with its key.
    fn used(&self) -> impl Iterator<Item = (&Key, &Slot)> {
        let len = self.len.load(Ordering::Acquire);
        self.slots[..len]
            .iter()
            .filter_map(|slot| slot.key.get().map(|key| (key, slot)))
    }
}

/// Every live thread's shard.
static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());

/// The totals of threads that ended, and of series past a shard's [`SLOTS`].
static ENDED: Mutex<Vec<(Key, Totals)>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `totals` to those of `key` in `ended`.
fn add_ended(ended: &mut Vec<(Key, Totals)>, key: Key, totals: &Totals) {
    match ended.iter_mut().find(|(k, _)| same(k, &key)) {
        Some((_, mine)) => mine.add(totals),
        None => ended.push((key, *totals)),
    }
}

/// This thread's shard, registered in [`SHARDS`] while the thread lives; its totals are
/// folded into [`ENDED`] when the thread ends (the blocking pool's threads come and go),
/// so the list is as long as the threads alive that served a request.
struct Local {
    shard: Arc<Shard>,
    /// The slot of the last request: the next is most often of the same series.
    last: Cell<usize>,
}

impl Local {
    fn new() -> Local {
        let shard = Arc::new(Shard::new());
        lock(&SHARDS).push(Arc::clone(&shard));
        Local {
            shard,
            last: Cell::new(0),
        }
    }

    /// The slot of `key`, taken if new; `None` when the shard is full.
    fn slot(&self, key: &Key) -> Option<&Slot> {
        let slots = &self.shard.slots;
        // This thread alone adds slots, so its own view of `len` is current.
        let len = self.shard.len.load(Ordering::Relaxed);
        let last = self.last.get();
        if last < len && slots[last].key.get().is_some_and(|k| same(k, key)) {
            return Some(&slots[last]);
        }
        let index = match (0..len).find(|&i| slots[i].key.get().is_some_and(|k| same(k, key))) {
            Some(i) => i,
            None if len < slots.len() => {
                let _ = slots[len].key.set(*key);
                self.shard.len.store(len + 1, Ordering::Release);
                len
            }
            None => return None,
        };
        self.last.set(index);
        Some(&slots[index])
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Under the list's lock, so that a scrape counts these totals once: in the shard,
        // or in `ENDED`.
        let mut shards = lock(&SHARDS);
        shards.retain(|shard| !Arc::ptr_eq(shard, &self.shard));
        let mut ended = lock(&ENDED);
        for (key, slot) in self.shard.used() {
            add_ended(&mut ended, *key, &slot.totals());
        }
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

/// Counts one request of `key` that took `nanos`.
pub(super) fn record(key: Key, nanos: u64) {
    let bucket = bucket_of(nanos);
    let counted = LOCAL.try_with(|local| match local.slot(&key) {
        Some(slot) => {
            bump(&slot.nanos, nanos);
            bump(&slot.buckets[bucket], 1);
            true
        }
        None => false,
    });
    // A thread that is ending has no shard any more, and a full shard has no slot: such
    // requests are counted in the shared totals.
    if counted != Ok(true) {
        let mut totals = Totals {
            nanos,
            ..Totals::default()
        };
        totals.buckets[bucket] = 1;
        add_ended(&mut lock(&ENDED), key, &totals);
    }
}

/// Appends both series, every thread's added up, to `text` in the Prometheus text format.
pub(super) fn render(text: &mut String, bounds: &[f64]) {
    let mut all: BTreeMap<Key, Totals> = BTreeMap::new();
    {
        // `ENDED` after `SHARDS`, as a thread that ends takes them.
        let shards = lock(&SHARDS);
        for shard in shards.iter() {
            for (key, slot) in shard.used() {
                all.entry(*key).or_default().add(&slot.totals());
            }
        }
        for (key, totals) in lock(&ENDED).iter() {
            all.entry(*key).or_default().add(totals);
        }
    }
    if all.is_empty() {
        return;
    }
    let mut latency: BTreeMap<(Door, &'static str), Totals> = BTreeMap::new();
    text.push_str("# TYPE sockit_requests_total counter\n");
    for ((door_key, op, result), series) in &all {
        let door = door_key.as_str();
        let count = series.count();
        let _ = writeln!(
            text,
            "sockit_requests_total{{door=\"{door}\",op=\"{op}\",result=\"{result}\"}} {count}"
        );
        latency.entry((*door_key, op)).or_default().add(series);
    }
    text.push_str("\n# TYPE sockit_request_duration_seconds histogram\n");
    for ((door, op), series) in &latency {
        let door = door.as_str();
        let mut below = 0;
        for (bound, count) in bounds.iter().map(Some).chain([None]).zip(&series.buckets) {
            below += count;
            let le = bound.map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = writeln!(
                text,
                "sockit_request_duration_seconds_bucket{{door=\"{door}\",op=\"{op}\",le=\"{le}\"}} {below}"
            );
        }
        let labels = format!("door=\"{door}\",op=\"{op}\"");
        let _ = writeln!(
            text,
            "sockit_request_duration_seconds_sum{{{labels}}} {}",
            series.nanos as f64 / 1e9
        );
        let _ = writeln!(
            text,
            "sockit_request_duration_seconds_count{{{labels}}} {}",
            series.count()
        );
    }
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        let mut text = String::new();
        render(&mut text, super::super::LATENCY_BUCKETS);
        text
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len() + 1..].parse().unwrap()
    }

    #[test]
    fn every_threads_requests_are_added_up_even_after_it_ended() {
        // Ops of this test's own, so that other tests recording at once change nothing here.
        let key = (Door::Http, "test-sum", "ok");
        record(key, 200_000);
        std::thread::spawn(move || {
            record(key, 3_000_000);
            record(key, 100_000_000_000);
            record((Door::Http, "test-sum", "not_found"), 50_000);
        })
        .join()
        .unwrap();
        let text = rendered();
        let series = |name: &str, labels: &str| format!("sockit_{name}{{{labels}}}");
        let total = |result| {
            value(
                &text,
                &series(
                    "requests_total",
                    &format!("door=\"http\",op=\"test-sum\",result=\"{result}\""),
                ),
            )
        };
        assert_eq!(total("ok"), 3.0);
        assert_eq!(total("not_found"), 1.0);
        let labels = "door=\"http\",op=\"test-sum\"";
        let bucket = |le: &str| {
            value(
                &text,
                &series(
                    "request_duration_seconds_bucket",
                    &format!("{labels},le=\"{le}\""),
                ),
            )
        };
        // Cumulative: each bound counts every request at or below it, of every result.
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.00025"), 2.0);
        assert_eq!(bucket("0.0025"), 2.0);
        assert_eq!(bucket("0.005"), 3.0);
        assert_eq!(bucket("60"), 3.0);
        assert_eq!(bucket("+Inf"), 4.0);
        assert_eq!(
            value(&text, &series("request_duration_seconds_count", labels)),
            4.0
        );
        let sum = value(&text, &series("request_duration_seconds_sum", labels));
        assert!((sum - 100.00325).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn a_thread_with_more_series_than_its_shard_holds_counts_every_one() {
        let ops: Vec<&'static str> = (0..SLOTS + 6)
            .map(|i| &*Box::leak(format!("test-many-{i}").into_boxed_str()))
            .collect();
        let spawned = ops.clone();
        std::thread::spawn(move || {
            for _ in 0..2 {
                for op in &spawned {
                    record((Door::Ftp, op, "ok"), 1_000);
                }
            }
            // Read while the thread still holds its shard, and again after it ended.
            rendered()
        })
        .join()
        .map(|during| {
            for text in [during, rendered()] {
                for op in &ops {
                    let series =
                        format!("sockit_requests_total{{door=\"ftp\",op=\"{op}\",result=\"ok\"}}");
                    assert_eq!(value(&text, &series), 2.0, "{op}");
                }
            }
        })
        .unwrap();
    }

    #[test]
    fn a_bound_holds_the_requests_that_took_exactly_it() {
        let key = (Door::Ftp, "test-bound", "ok");
        record(key, 1_000_000);
        let text = rendered();
        let bucket = |le: &str| {
            value(
                &text,
                &format!(
                    "sockit_request_duration_seconds_bucket{{door=\"ftp\",op=\"test-bound\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.0005"), 0.0);
        assert_eq!(bucket("0.001"), 1.0);
    }
}
