//! `flood` mode: K connection attempts at once, all from ONE source address, for a bounded time
//! (or until interrupted): what a careless or hostile client does to a server's per-address
//! limits, and what the server answers it.
//!
//! Each attempt connects (with TLS when the run speaks it), sends one empty echo and reads the
//! answer. A served connection is held until the end; a refused one (`too_many_connections`,
//! by the per-address cap or the connection rate) is closed and tried again at once. Every
//! connection is closed with a reset (SO_LINGER 0), so that none keeps its port in TIME_WAIT. Run
//! `bench echo --from ANOTHER-ADDRESS` beside it to measure what other addresses get meanwhile.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::echo::echo_frame;
use super::probe::{Before, Probe};
use super::report::{FloodFigures, Mode, Report, Shape, Tally, report};
use super::{FloodLoad, Target, connect_one, is_loopback_v4, secure};
use crate::client::Client;
use crate::net::{Endpoint, Stream};
use crate::{Error, Result};

/// Runs a `flood` load against `server`.
pub(super) async fn run(server: &Target, load: &FloodLoad, probe: Option<Probe>) -> Result<Report> {
    crate::net::raise_fd_limit();
    let source = source(server).await?;
    let frame: Arc<[u8]> = echo_frame(0)?.into();
    // One attempt first, unmeasured: no server at all fails the run here with its own error,
    // rather than as K connect errors a turn.
    if let Outcome::Failed(e) = attempt(server, source, &frame).await {
        return Err(e);
    }
    let shared = Arc::new(Shared {
        held: Gauge::default(),
        stop: CancellationToken::new(),
        told: AtomicBool::new(false),
        refused: load.refused.clone(),
        tally: Mutex::new(Tally::new()),
    });
    let before = Before::now(probe);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.connections.max(1) {
        let (server, frame) = (server.clone(), frame.clone());
        let shared = shared.clone();
        tasks.spawn(async move { worker(&server, source, &frame, &shared).await });
    }
    tokio::select! {
        _ = tokio::time::sleep(load.duration) => {}
        _ = interrupted() => {}
    }
    shared.stop.cancel();
    let seconds = start.elapsed().as_secs_f64();
    let mut counts = FloodFigures::default();
    let mut panicked = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(c) => add(&mut counts, &c),
            Err(e) => panicked.push(e),
        }
    }
    let mut total = std::mem::replace(&mut *shared.lock(), Tally::new());
    for e in panicked {
        total.fail(e);
    }
    counts.source = source.map(|s| s.to_string());
    counts.held_peak = shared.held.peak.load(Ordering::Relaxed);
    let shape = Shape {
        connections: load.connections.max(1),
        body_bytes: 0,
        pipeline: 1,
    };
    let mut report = report(Mode::Flood, server, shape, total, seconds, before);
    report.flood = Some(counts);
    Ok(report)
}

/// Resolves when the process is interrupted (Ctrl-C); never when that cannot be watched.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The one address the attempts come from: the run's `--from`, else 127.0.0.1 against an IPv4
/// loopback server; `None` (the system's choice) against any other, or a Unix socket.
async fn source(server: &Target) -> Result<Option<IpAddr>> {
    let Endpoint::Tcp(addr) = &server.server else {
        return Ok(None);
    };
    if server.from.is_some() {
        return Ok(server.from);
    }
    let to = crate::net::resolve(addr).await?;
    Ok(is_loopback_v4(to).then_some(Ipv4Addr::LOCALHOST.into()))
}

/// What the attempts of a run share.
struct Shared {
    /// Connections held.
    held: Gauge,
    /// Cancelled at the end of the run.
    stop: CancellationToken,
    /// Whether the first refusal was told to [`FloodLoad::refused`].
    told: AtomicBool,
    /// [`FloodLoad::refused`].
    refused: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Answers, failures and latencies of all attempts: one histogram for the run, not one
    /// per attempt under way (each is a few hundred KiB, and there may be 10,000).
    tally: Mutex<Tally>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One of the K attempts under way: attempts again and again until the run stops, holding
/// each served connection until then (or until the server closes it).
async fn worker(
    server: &Target,
    source: Option<IpAddr>,
    frame: &[u8],
    shared: &Shared,
) -> FloodFigures {
    let (held, stop) = (&shared.held, &shared.stop);
    let mut counts = FloodFigures::default();
    loop {
        let began = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            outcome = attempt(server, source, frame) => outcome,
        };
        counts.attempts += 1;
        match outcome {
            Outcome::Held(mut client) => {
                shared.lock().record(began);
                counts.held += 1;
                held.up();
                // Anything the server sends now (an idle timeout's word, the close) ends it.
                let dropped = tokio::select! {
                    _ = stop.cancelled() => false,
                    _ = client.connection().read_head() => true,
                };
                held.down();
                if !dropped {
                    break;
                }
                counts.dropped += 1;
            }
            Outcome::Refused(why, words) => {
                shared.lock().record(began);
                if let Some(to) = &shared.refused
                    && !shared.told.swap(true, Ordering::Relaxed)
                {
                    let _ = to.send(words);
                }
                match why {
                    Refusal::Cap => counts.refused_cap += 1,
                    Refusal::Rate => counts.refused_rate += 1,
                    Refusal::Other => counts.refused_other += 1,
                }
            }
            Outcome::Closed(e) => {
                counts.closed += 1;
                shared.lock().fail(e);
            }
            Outcome::Failed(e) => {
                counts.connect_errors += 1;
                shared.lock().fail(e);
            }
        }
    }
    counts
}

/// How one attempt ended.
enum Outcome {
    /// Served: its echo was answered.
    Held(Client),
    /// Refused with an error reply (why, and the reply's message).
    Refused(Refusal, String),
    /// Connected, then ended without a reply.
    Closed(String),
    /// The connect failed.
    Failed(Error),
}

/// Why the server refused an attempt, as its error reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The address holds its cap (`serve --max-connections-per-ip`).
    Cap,
    /// The address opens connections too fast (`serve --connection-rate`).
    Rate,
    /// Any other error reply.
    Other,
}

/// One attempt: connect from `source`, TLS when the run speaks it, one empty echo, its answer.
async fn attempt(server: &Target, source: Option<IpAddr>, frame: &[u8]) -> Outcome {
    let stream = match connect_one(server, source).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Failed(e),
    };
    // Closed with a reset, not a FIN: a connection this end closes first (a TLS handshake
    // given up at once) would otherwise hold its port of the one source address in TIME_WAIT
    // for a minute, and tens of thousands of attempts would run out of ports.
    if let Stream::Tcp(tcp) = &stream
        && let Err(e) = tcp.set_zero_linger()
    {
        return Outcome::Failed(e.into());
    }
    // A refusal is written before any TLS, so over TLS it breaks the handshake.
    let stream = match secure(server, stream).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Closed(format!("TLS handshake: {e}")),
    };
    let mut client = Client::from_stream(stream);
    let conn = client.connection();
    conn.queue_raw(frame);
    // A refused connection may be closed before the request is written; its refusal can
    // still be waiting to be read.
    let sent = conn.flush().await;
    let (answer, words) = match conn.read_head().await {
        Ok(Some(head)) => (answer(&head.header), message(&head.header)),
        Ok(None) => {
            let why = sent.err().map_or_else(
                || "the server closed the connection without a word".to_string(),
                |e| e.to_string(),
            );
            return Outcome::Closed(why);
        }
        Err(e) => return Outcome::Closed(sent.err().unwrap_or(e).to_string()),
    };
    match answer {
        None => Outcome::Held(client),
        Some(why) => Outcome::Refused(why, words),
    }
}

/// What a reply head says of the attempt: `None` when it was served (`ok: true`), else why
/// it was refused (from the error's code and the flag its message names).
fn answer(header: &Map<String, Value>) -> Option<Refusal> {
    if header.get("ok") == Some(&Value::Bool(true)) {
        return None;
    }
    let message = message(header);
    let code = header.get("error").and_then(|e| e.get("code"));
    Some(match code.and_then(Value::as_str) {
        Some("too_many_connections") if message.contains("--connection-rate") => Refusal::Rate,
        Some("too_many_connections") if message.contains("--max-connections-per-ip") => {
            Refusal::Cap
        }
        _ => Refusal::Other,
    })
}

/// The message of an error reply head (empty when there is none).
fn message(header: &Map<String, Value>) -> String {
    let message = header.get("error").and_then(|e| e.get("message"));
    message
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Adds `other`'s counts to `into` (the source and the peak are the run's, not added).
fn add(into: &mut FloodFigures, other: &FloodFigures) {
    into.attempts += other.attempts;
    into.held += other.held;
    into.dropped += other.dropped;
    into.refused_cap += other.refused_cap;
    into.refused_rate += other.refused_rate;
    into.refused_other += other.refused_other;
    into.closed += other.closed;
    into.connect_errors += other.connect_errors;
}

/// Connections held now, and the most held at once.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn up(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn down(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::Reply;

    /// The head the server's refusal of `error` carries.
    fn refusal_of(error: &Error) -> Map<String, Value> {
        let reply = Reply::error(error.code(), error.to_string());
        let Value::Object(map) = serde_json::to_value(reply).unwrap() else {
            panic!("a reply is an object")
        };
        map
    }

    #[test]
    fn answers_are_told_apart_by_the_flag_the_refusal_names() {
        let served = json!({"ok": true, "total_size": 0});
        assert_eq!(answer(served.as_object().unwrap()), None);
        let cap = Error::TooManyConnections(
            "127.0.0.1 already holds 128 connections, the most one address may \
             (serve --max-connections-per-ip)"
                .into(),
        );
        assert_eq!(answer(&refusal_of(&cap)), Some(Refusal::Cap));
        let rate = Error::TooManyConnections(
            "127.0.0.1 opens connections faster than 100 a second, the most one address may \
             (serve --connection-rate); try again in 0.1 s"
                .into(),
        );
        assert_eq!(answer(&refusal_of(&rate)), Some(Refusal::Rate));
        let down = Error::Unavailable("the object store is down".into());
        assert_eq!(answer(&refusal_of(&down)), Some(Refusal::Other));
        assert_eq!(answer(&Map::new()), Some(Refusal::Other));
    }

    #[test]
    fn counts_add_up_and_the_peak_is_the_most_at_once() {
        let one = FloodFigures {
            attempts: 10,
            held: 2,
            refused_cap: 5,
            refused_rate: 1,
            closed: 1,
            connect_errors: 1,
            ..FloodFigures::default()
        };
        let mut total = FloodFigures::default();
        add(&mut total, &one);
        add(&mut total, &one);
        let want = FloodFigures {
            attempts: 20,
            held: 4,
            refused_cap: 10,
            refused_rate: 2,
            closed: 2,
            connect_errors: 2,
            ..FloodFigures::default()
        };
        assert_eq!(total, want);

        let gauge = Gauge::default();
        gauge.up();
        gauge.up();
        gauge.down();
        gauge.up();
        assert_eq!(gauge.now.load(Ordering::Relaxed), 2);
        assert_eq!(gauge.peak.load(Ordering::Relaxed), 2);
    }
}
