//! What a bench run measured ([`Report`]) and how the workers' counts add up to it ([`Tally`]).
//!
//! Figures only: the binary turns a report into text or JSON (the field names below are the
//! JSON that bench/compare.py reads).

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Target;
use super::probe::{Before, own_cpu_seconds};

/// Which load a report measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Echo requests.
    Echo,
    /// Verified uploads.
    Put,
    /// Verified downloads.
    Get,
    /// Held idle connections, then one echo on each.
    Idle,
    /// Fresh connections, each with a handshake, a login and one stat.
    Sessions,
    /// Connection attempts from one address, refused ones tried again at once.
    Flood,
}

impl Mode {
    /// The mode's name, as on the command line: `echo`, `put`, `get`, `idle`, `sessions` or
    /// `flood`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Put => "put",
            Mode::Get => "get",
            Mode::Idle => "idle",
            Mode::Sessions => "sessions",
            Mode::Flood => "flood",
        }
    }

    /// Whether one unit of work is a whole file transfer rather than a request.
    pub fn transfers(self) -> bool {
        matches!(self, Mode::Put | Mode::Get)
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `echo`, `put`, `get`, `idle`, `sessions` or `flood`.
    pub mode: Mode,
    /// The server driven.
    pub server: String,
    /// Whether the connections spoke TLS.
    pub tls: bool,
    /// Connections used.
    pub connections: usize,
    /// Body bytes per request (echo, idle) or per transfer (put, get).
    pub body_bytes: u64,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Requests (or transfers) answered correctly.
    pub ok: u64,
    /// Requests (or transfers, or connections) that failed.
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Wall-clock seconds of the measured part.
    pub seconds: f64,
    /// Answered requests (or transfers) per second.
    pub requests_per_sec: f64,
    /// Body megabytes (10^6 B) per second, one way.
    pub mb_per_sec: f64,
    /// Latency of one request (or transfer), microseconds.
    pub latency_us: Latency,
    /// Idle mode: connecting and holding.
    pub idle: Option<IdleFigures>,
    /// CPU seconds (user + system, all threads) this bench process spent during the measured
    /// part: with the server's, what a run cost the machine (both ends share its cores on
    /// one host, so a CPU-bound run's speed follows their sum).
    pub client_cpu_seconds: f64,
    /// The server process, when its PID was given.
    pub server_process: Option<ServerFigures>,
    /// Flood mode: what the attempts met (absent from the JSON of other modes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodFigures>,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// Idle mode figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IdleFigures {
    /// Connections established and held.
    pub held: usize,
    /// Seconds to connect them all.
    pub connect_seconds: f64,
    /// Seconds until the last answered request of the burst.
    pub burst_seconds: f64,
}

/// Flood mode figures. The report's `ok` counts the attempts the server answered (served or
/// refused in words), its `errors` those it did not (`closed` + `connect_errors`), its latency
/// the time from an attempt's connect to that answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloodFigures {
    /// The one address every attempt came from (`None`: the system's choice).
    pub source: Option<String>,
    /// Connection attempts made.
    pub attempts: u64,
    /// Attempts served (their echo answered), then held until the end.
    pub held: u64,
    /// The most connections held at once.
    pub held_peak: u64,
    /// Held connections the server closed before the end.
    pub dropped: u64,
    /// Attempts refused because the address held its cap (`--max-connections-per-ip`).
    pub refused_cap: u64,
    /// Attempts refused because the address opened connections too fast (`--connection-rate`).
    pub refused_rate: u64,
    /// Attempts refused with another error reply.
    pub refused_other: u64,
    /// Attempts that connected, then ended without a reply (a reset, a close, or, over TLS, a
    /// handshake the server's plaintext refusal broke).
    pub closed: u64,
    /// Attempts whose connect failed.
    pub connect_errors: u64,
}

/// The server process, read from /proc.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerFigures {
    /// Resident memory at the end of the measured part (idle: while the connections are
    /// held, before the burst), bytes.
    pub rss_bytes: u64,
    /// Peak resident memory so far, bytes.
    pub peak_rss_bytes: u64,
    /// CPU seconds (user + system) the server spent during the measured part.
    pub cpu_seconds: f64,
    /// Server CPU microseconds per answered request (or per transfer).
    pub cpu_us_per_request: f64,
}

/// The results of one connection's worker, or of a whole run once merged.
pub(super) struct Tally {
    pub(super) ok: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    hist: Histogram<u64>,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally {
            ok: 0,
            errors: 0,
            first_error: None,
            // 1 ns to 10 min, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Counts one failure, keeping the first message.
    pub(super) fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Counts one success that took from `since` until now.
    pub(super) fn record(&mut self, since: Instant) {
        self.record_took(since.elapsed());
    }

    /// Counts one success that took `took`.
    pub(super) fn record_took(&mut self, took: std::time::Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
        self.ok += 1;
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let _ = self.hist.add(&other.hist);
    }

    pub(super) fn latency(&self) -> Latency {
        if self.hist.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(self.hist.value_at_quantile(0.5)),
            p99: us(self.hist.value_at_quantile(0.99)),
            p999: us(self.hist.value_at_quantile(0.999)),
            max: us(self.hist.max()),
        }
    }
}

/// The workers' tallies merged as they finish (a worker that panicked counts as one error).
pub(super) async fn merged(mut workers: tokio::task::JoinSet<Tally>) -> Tally {
    let mut total = Tally::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(e) => total.fail(e),
        }
    }
    total
}

/// Server CPU microseconds per answered request (0 when none was answered).
pub(super) fn per_request(cpu_seconds: f64, ok: u64) -> f64 {
    if ok == 0 {
        0.0
    } else {
        cpu_seconds * 1e6 / ok as f64
    }
}

/// The shape of a run: connections, body bytes per request (or transfer), pipeline depth.
pub(super) struct Shape {
    pub(super) connections: usize,
    pub(super) body_bytes: u64,
    pub(super) pipeline: usize,
}

/// The report of an echo, put or get run: `total` over `seconds`, the server's figures
/// and this process's CPU, sampled now against `before`.
pub(super) fn report(
    mode: Mode,
    server: &Target,
    shape: Shape,
    total: Tally,
    seconds: f64,
    before: Before,
) -> Report {
    let seconds_nz = seconds.max(1e-9);
    let server_process = before.server.map(|(probe, at_start)| {
        let after = probe.sample();
        let cpu = after.cpu_seconds - at_start.cpu_seconds;
        ServerFigures {
            rss_bytes: after.rss_bytes,
            peak_rss_bytes: after.peak_rss_bytes,
            cpu_seconds: cpu,
            cpu_us_per_request: per_request(cpu, total.ok),
        }
    });
    let Shape {
        connections,
        body_bytes,
        pipeline,
    } = shape;
    Report {
        mode,
        server: server.server.to_string(),
        tls: server.tls.is_some(),
        connections,
        body_bytes,
        pipeline,
        ok: total.ok,
        errors: total.errors,
        latency_us: total.latency(),
        first_error: total.first_error,
        seconds,
        requests_per_sec: total.ok as f64 / seconds_nz,
        mb_per_sec: (total.ok as f64 * body_bytes as f64) / seconds_nz / 1e6,
        idle: None,
        client_cpu_seconds: own_cpu_seconds() - before.own_cpu_seconds,
        server_process,
        flood: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mode_serialises_as_its_name() {
        let all = [
            Mode::Echo,
            Mode::Put,
            Mode::Get,
            Mode::Idle,
            Mode::Sessions,
            Mode::Flood,
        ];
        for mode in all {
            let json = serde_json::to_value(mode).unwrap();
            assert_eq!(json, mode.name());
        }
    }

    #[test]
    fn merged_tallies_keep_the_first_error_and_all_latencies() {
        let mut a = Tally::new();
        a.record_took(Duration::from_micros(100));
        let mut b = Tally::new();
        b.fail("second");
        b.record_took(Duration::from_millis(3));
        b.fail("third");
        a.merge(b);
        assert_eq!((a.ok, a.errors), (2, 2));
        assert_eq!(a.first_error.as_deref(), Some("second"));
        let l = a.latency();
        assert!((l.p50 - 100.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 3000.0).abs() < 5.0, "{l:?}");
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nan() {
        let server = Target {
            server: "127.0.0.1:1".parse().unwrap(),
            tls: None,
            from: None,
        };
        let shape = Shape {
            connections: 1,
            body_bytes: 64,
            pipeline: 1,
        };
        let r = report(
            Mode::Echo,
            &server,
            shape,
            Tally::new(),
            0.0,
            Before::now(None),
        );
        assert_eq!((r.requests_per_sec, r.mb_per_sec), (0.0, 0.0));
        assert_eq!(r.latency_us.max, 0.0);
        assert_eq!(per_request(1.0, 0), 0.0);
    }
}
