//! `sockit_requests_total` and `sockit_request_duration_seconds`, kept per thread.
//!
//! These two series change on every request of every connection. Kept in the exporter's
//! registry, each request added to one counter and pushed into one histogram buffer that
//! every worker thread shares: three atomic writes to cache lines that move between the
//! cores, about 3% of the server's CPU under a 64-byte echo load (`perf`). Here each thread
//! counts into a shard of its own, behind a lock only the scrape ever contends for, and a
//! scrape adds the shards up: the cost of a request is one uncontended lock and a few adds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Door;

/// A request series: door, op, result (each a fixed word).
pub(super) type Key = (Door, &'static str, &'static str);

/// Buckets of the latency histogram: one per bound, then one for `+Inf`.
const BUCKETS: usize = super::LATENCY_BUCKETS.len() + 1;

/// The requests of one series: how many, their total latency, and how many fell in each
/// bucket (not cumulative; the text format's cumulative counts are made when rendering).
#[derive(Debug, Clone, Copy)]
struct Series {
    count: u64,
    seconds: f64,
    buckets: [u64; BUCKETS],
}

impl Default for Series {
    fn default() -> Self {
        Series {
            count: 0,
            seconds: 0.0,
            buckets: [0; BUCKETS],
        }
    }
}

impl Series {
    fn add(&mut self, other: &Series) {
        self.count += other.count;
        self.seconds += other.seconds;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// One thread's series, in a list: a thread sees a few dozen series at most, and the one it
/// records is found by comparing the fixed words' addresses before their bytes; each hit
/// moves one place up, so the busiest series sit first. (A `HashMap` hashed both words with
/// SipHash on every request: a tenth of the cost metrics added to a 64-byte echo.)
type Shard = Mutex<Vec<(Key, Series)>>;

/// Whether two keys name the same series.
fn same(a: &Key, b: &Key) -> bool {
    let word = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    a.0 == b.0 && word(a.1, b.1) && word(a.2, b.2)
}

/// The series of `key` in `shard`, added if missing.
fn series_of(shard: &mut Vec<(Key, Series)>, key: Key) -> &mut Series {
    let index = match shard.iter().position(|(k, _)| same(k, &key)) {
        Some(0) => 0,
        Some(i) => {
            shard.swap(i, i - 1);
            i - 1
        }
        None => {
            shard.push((key, Series::default()));
            shard.len() - 1
        }
    };
    &mut shard[index].1
}

/// Every live thread's shard, and (first) the sum of those of threads that ended.
static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's shard, registered in [`SHARDS`] while the thread lives; its counts are
/// folded into the first shard when the thread ends (the blocking pool's threads come and
/// go), so the list is as long as the threads alive.
struct Local(Arc<Shard>);

impl Local {
    fn new() -> Local {
        let shard = Arc::new(Shard::default());
        let mut shards = lock(&SHARDS);
        if shards.is_empty() {
            shards.push(Arc::new(Shard::default()));
        }
        shards.push(Arc::clone(&shard));
        Local(shard)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut shards = lock(&SHARDS);
        shards.retain(|shard| !Arc::ptr_eq(shard, &self.0));
        let mine = std::mem::take(&mut *lock(&self.0));
        let mut ended = lock(&shards[0]);
        for (key, series) in mine {
            series_of(&mut ended, key).add(&series);
        }
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

/// Counts one request of `key` that took `seconds`.
pub(super) fn record(key: Key, seconds: f64) {
    let bucket = super::LATENCY_BUCKETS.partition_point(|&bound| bound < seconds);
    let add = |shard: &Shard| {
        let mut shard = lock(shard);
        let series = series_of(&mut shard, key);
        series.count += 1;
        series.seconds += seconds;
        series.buckets[bucket] += 1;
    };
    // A thread that is ending has no shard any more: its last requests go to the first.
    if LOCAL.try_with(|local| add(&local.0)).is_err() {
        let shards = lock(&SHARDS);
        if let Some(ended) = shards.first() {
            add(ended);
        }
    }
}

/// Appends both series, every thread's added up, to `text` in the Prometheus text format.
pub(super) fn render(text: &mut String, bounds: &[f64]) {
    let mut all: BTreeMap<Key, Series> = BTreeMap::new();
    for shard in lock(&SHARDS).iter() {
        for (key, series) in lock(shard).iter() {
            all.entry(*key).or_default().add(series);
        }
    }
    if all.is_empty() {
        return;
    }
    let mut latency: BTreeMap<(Door, &'static str), Series> = BTreeMap::new();
    text.push_str("# TYPE sockit_requests_total counter\n");
    for ((door_key, op, result), series) in &all {
        let door = door_key.as_str();
        let count = series.count;
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
            series.seconds
        );
        let _ = writeln!(
            text,
            "sockit_request_duration_seconds_count{{{labels}}} {}",
            series.count
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
        record(key, 0.0002);
        std::thread::spawn(move || {
            record(key, 0.003);
            record(key, 100.0);
            record((Door::Http, "test-sum", "not_found"), 0.00005);
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
    fn a_bound_holds_the_requests_that_took_exactly_it() {
        let key = (Door::Ftp, "test-bound", "ok");
        record(key, 0.001);
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
