//! `echo` mode: C connections, each keeping up to P echo requests in flight, for a count of
//! requests or a duration. Also the echo frame and reply check that `idle` mode reuses.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use serde_json::Value;

use super::probe::{Before, Probe};
use super::report::{Mode, Report, Shape, Tally, merged, report};
use super::{EchoLoad, Target, Until, connect};
use crate::client::Client;
use crate::connection::Connection;
use crate::net::Stream;
use crate::protocol::{Request, encode_head};
use crate::{Error, Result};

/// Runs an `echo` load against `server`.
pub(super) async fn run(server: &Target, load: &EchoLoad, probe: Option<Probe>) -> Result<Report> {
    let frame: Arc<[u8]> = echo_frame(load.body)?.into();
    let depth = load.pipeline.max(1);
    // Connect everyone and do one warm-up round trip first, so the measured part is steady.
    let mut conns = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        let mut client = connect(server, i).await?;
        let conn = client.connection();
        conn.queue_raw(&frame);
        conn.flush().await?;
        read_echo(conn, &frame, load.body).await?;
        conns.push(client);
    }
    let before = Before::now(probe);
    let start = Instant::now();
    let stop = match load.until {
        Until::Count(n) => Stop::Count(n),
        Until::Elapsed(d) => Stop::At(start + d),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for client in conns {
        let frame = frame.clone();
        let body = load.body;
        tasks.spawn(async move { worker(client, frame, body, depth, stop).await });
    }
    let total = merged(tasks).await;
    let seconds = start.elapsed().as_secs_f64();
    let shape = Shape {
        connections: load.connections,
        body_bytes: load.body,
        pipeline: depth,
    };
    Ok(report(Mode::Echo, server, shape, total, seconds, before))
}

/// When a worker stops sending.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Count(u64),
    At(Instant),
}

/// One connection: keeps `depth` requests in flight until `stop`, then collects the replies.
///
/// | in flight  | may send more | does                                     |
/// |------------|---------------|------------------------------------------|
/// | < depth    | yes           | queue one more; flush once the batch is queued |
/// | any, > 0   | no (or full)  | read the oldest reply, record its latency |
/// | 0          | no            | done                                      |
async fn worker(
    mut client: Client,
    frame: Arc<[u8]>,
    body_len: u64,
    depth: usize,
    stop: Stop,
) -> Tally {
    let mut tally = Tally::new();
    let conn = client.connection();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut sent = 0u64;
    loop {
        let mut queued = false;
        while in_flight.len() < depth {
            let more = match stop {
                Stop::Count(n) => sent < n,
                Stop::At(t) => Instant::now() < t,
            };
            if !more {
                break;
            }
            conn.queue_raw(&frame);
            in_flight.push_back(Instant::now());
            sent += 1;
            queued = true;
        }
        if queued && let Err(e) = conn.flush().await {
            tally.fail(e);
            return tally;
        }
        let Some(since) = in_flight.pop_front() else {
            return tally;
        };
        match read_echo(conn, &frame, body_len).await {
            Ok(()) => tally.record(since),
            Err(e @ Error::Remote { .. }) => tally.fail(e),
            Err(e) => {
                // The stream is broken: every request still in flight is lost with it.
                tally.fail(e);
                tally.errors += in_flight.len() as u64;
                return tally;
            }
        }
    }
}

/// The encoded echo request: head and body, sent as is for every request.
pub(super) fn echo_frame(body_len: u64) -> Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    encode_head(&Request::Echo, body_len, &mut buf)?;
    let body = pattern(usize::try_from(body_len).unwrap_or(usize::MAX));
    buf.extend_from_slice(&body);
    Ok(buf.to_vec())
}

/// A recognisable body: bytes that differ from position to position.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Reads one echo reply and checks it: `ok`, the same size, the same bytes.
pub(super) async fn read_echo(
    conn: &mut Connection<Stream>,
    frame: &[u8],
    body_len: u64,
) -> Result<()> {
    let head = conn.read_head().await?.ok_or_else(|| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ))
    })?;
    if head.header.get("ok") != Some(&Value::Bool(true)) {
        // An error reply: let the reply parser name it.
        crate::protocol::Reply::from_head(&head)?;
        return Err(Error::BadReply("reply without `ok: true`".into()));
    }
    if head.body_len != body_len {
        return Err(Error::BadReply(format!(
            "echo of {body_len} bytes came back with {}",
            head.body_len
        )));
    }
    let body = conn.read_body(body_len).await?;
    let sent = &frame[frame.len() - body.len()..];
    if body[..] != *sent {
        return Err(Error::BadReply("echo came back with other bytes".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_frame_is_a_whole_request() {
        let frame = echo_frame(5).unwrap();
        let (head, used) =
            crate::protocol::Head::parse(&frame, &crate::protocol::Limits::default()).unwrap();
        assert_eq!(head.body_len, 5);
        assert_eq!(frame.len(), used + 5);
        // The same bytes the bench has always sent (it used to spell the head with `json!`).
        let head = br#"{"op":"echo","total_size":5}"#;
        assert_eq!(frame[..4], (head.len() as u32).to_le_bytes());
        assert_eq!(&frame[4..used], head);
        assert_eq!(&frame[used..], [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_body_pattern_wraps_at_a_prime() {
        let body = pattern(300);
        assert_eq!((body[0], body[250], body[251], body[299]), (0, 250, 0, 48));
    }
}
