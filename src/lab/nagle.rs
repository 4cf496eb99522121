//! `nagle`: request/reply latency when a request goes out in two writes, the way the seeds
//! frame a message (`send(struct.pack('i', len))`, then `send(header)`), and the reply is read
//! before the next request. With Nagle's algorithm on, the second small write waits for the
//! ACK of the first, which the server delays (about 40 ms on Linux) because it has nothing to
//! send yet. TCP_NODELAY removes the wait; so does one write per message, as sockit sends.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Instant;

use bytes::BytesMut;
use serde::Serialize;

use super::{Measured, Options, Outcome, join, kernel, loopback_pair, micros};
use crate::Result;
use crate::blocking::Connection;
use crate::protocol::{Limits, encode_head};

/// The three ways a client sends its requests: name, writes per request, TCP_NODELAY.
const MODES: [(&str, usize, bool); 3] = [
    ("nagle", 2, false),
    ("nodelay", 2, true),
    ("one-write", 1, false),
];

/// What `nagle` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Round trips per mode.
    pub rounds: usize,
    /// Bytes of one request (a 4-byte length prefix and a JSON header).
    pub request_bytes: usize,
    /// One entry per mode: `nagle`, `nodelay`, `one-write`.
    pub modes: Vec<Mode>,
}

/// The latencies of one way of sending.
#[derive(Debug, Clone, Serialize)]
pub struct Mode {
    /// `nagle` (two writes, Nagle on), `nodelay` (two writes, TCP_NODELAY) or `one-write`
    /// (one write per request, Nagle on).
    pub name: &'static str,
    /// Writes per request.
    pub writes: usize,
    /// Whether the client set TCP_NODELAY.
    pub nodelay: bool,
    /// Median round trip, in microseconds.
    pub p50_us: u64,
    /// 90th percentile, in microseconds.
    pub p90_us: u64,
    /// 99th percentile, in microseconds.
    pub p99_us: u64,
    /// Slowest round trip, in microseconds.
    pub max_us: u64,
    /// Growth of the kernel's TcpExt DelayedACKs counter during this mode (machine-wide, so
    /// other traffic adds to it); `None` without /proc/net/netstat.
    pub delayed_acks: Option<u64>,
}

impl Report {
    /// The mode called `name`.
    pub fn mode(&self, name: &str) -> Option<&Mode> {
        self.modes.iter().find(|m| m.name == name)
    }
}

/// Runs `nagle`: `options.rounds` round trips in each mode, each mode on its own connection.
///
/// # Errors
/// A socket call failed, or a reply did not come within the lab's bound.
pub fn run(options: &Options) -> Result<Report> {
    let rounds = options.rounds.max(1);
    let mut request = BytesMut::new();
    encode_head(&Step { step: "request" }, 0, &mut request)?;
    let modes = MODES
        .iter()
        .map(|&(name, writes, nodelay)| measure(name, writes, nodelay, rounds, &request))
        .collect::<Result<_>>()?;
    Ok(Report {
        rounds,
        request_bytes: request.len(),
        modes,
    })
}

/// The header of the lab's requests and replies.
#[derive(Serialize)]
struct Step {
    step: &'static str,
}

fn measure(
    name: &'static str,
    writes: usize,
    nodelay: bool,
    rounds: usize,
    request: &[u8],
) -> Result<Mode> {
    let (client, server) = loopback_pair()?;
    client.set_nodelay(nodelay)?;
    let before = kernel::tcp_ext().ok();
    let mut times = thread::scope(|s| {
        let echo = s.spawn(|| answer(&server));
        let times = round_trips(&client, request, writes, rounds);
        // The server's loop ends at our FIN, whether or not the round trips went well.
        client.shutdown(Shutdown::Write)?;
        join(echo)?;
        times
    })?;
    let after = kernel::tcp_ext().ok();
    times.sort_unstable();
    Ok(Mode {
        name,
        writes,
        nodelay,
        p50_us: percentile(&times, 50.0),
        p90_us: percentile(&times, 90.0),
        p99_us: percentile(&times, 99.0),
        max_us: times.last().copied().unwrap_or(0),
        delayed_acks: before
            .zip(after)
            .and_then(|(b, a)| kernel::growth(&b, &a, "DelayedACKs")),
    })
}

/// The server: one reply frame, written at once, per request frame, until the client's FIN.
fn answer(stream: &TcpStream) -> Result<()> {
    let mut conn = Connection::new(stream, Limits::default());
    while conn.read_head()?.is_some() {
        conn.write_frame(&Step { step: "reply" }, b"")?;
    }
    Ok(())
}

/// Sends `request` in `writes` writes (the 4-byte prefix alone first when 2), reads the reply,
/// `rounds` times; returns each round trip in microseconds.
fn round_trips(
    stream: &TcpStream,
    request: &[u8],
    writes: usize,
    rounds: usize,
) -> Result<Vec<u64>> {
    let mut replies = Connection::new(stream, Limits::default());
    let mut writer = stream;
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            if writes == 2 {
                writer.write_all(&request[..4])?;
                writer.write_all(&request[4..])?;
            } else {
                writer.write_all(request)?;
            }
            replies
                .read_head()?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no reply"))?;
            Ok(micros(start.elapsed()))
        })
        .collect()
}

/// The nearest-rank percentile `p` of `sorted`; 0 when it is empty.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `87 µs`, or `44.1 ms` from a millisecond up.
fn duration(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", us as f64 / 1_000.0)
    }
}

/// Whether the stall showed: Nagle's median at least 5 ms and ten times both others'.
fn stalled(r: &Report) -> bool {
    let p50 = |name| r.mode(name).map_or(0, |m| m.p50_us);
    let fast = p50("nodelay").max(p50("one-write"));
    p50("nagle") >= 5_000 && p50("nagle") >= 10 * fast
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let shown = stalled(&r);
    let mut happened: Vec<String> = r
        .modes
        .iter()
        .map(|m| {
            format!(
                "{:<9} ({} write{} per request{}): p50 {}, p90 {}, p99 {}, max {}{}",
                m.name,
                m.writes,
                if m.writes == 1 { "" } else { "s" },
                if m.nodelay {
                    ", TCP_NODELAY"
                } else {
                    ", Nagle on"
                },
                duration(m.p50_us),
                duration(m.p90_us),
                duration(m.p99_us),
                duration(m.max_us),
                m.delayed_acks
                    .map(|n| format!("; kernel DelayedACKs +{n}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    happened.push(if shown {
        "the two-write requests with Nagle on waited for the server's delayed ACK; \
         TCP_NODELAY or one write per message removed the wait"
            .into()
    } else {
        "no delayed-ACK stall here: the server acknowledged at once (quickack, or a kernel \
         whose delayed-ACK timer is short); more --rounds leave quickack mode behind"
            .into()
    });
    Ok(Outcome {
        name: "nagle",
        shown,
        did: format!(
            "{} request/reply round trips per mode on loopback, each request a {}-byte frame \
             written as prefix + header (two writes) or in one write",
            r.rounds, r.request_bytes
        ),
        happened,
        seed: "Nagle's algorithm (发送端的优化算法) holds a small send until the previous one is \
               acknowledged, and the receiver delays that ACK: send each message with one \
               write (sockit's write_frame), or set TCP_NODELAY",
        measured: Measured::Nagle(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 90.0), 90);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
