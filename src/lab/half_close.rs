//! `half-close`: `shutdown(SHUT_WR)` sends a FIN for one direction only, so the peer reads the
//! end of the request and can still send its whole reply (the four-way close, traced in
//! /proc/net/tcp). `close()` with unread data in the receive queue sends RST instead of FIN,
//! and the peer's next `recv()` fails with ECONNRESET.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use rustix::net::SendFlags;
use serde::Serialize;

use super::{
    Measured, Options, Outcome, errno_name, kernel, loopback_pair, poll_until, wait_queued,
};
use crate::Result;

/// The request the client sends before its FIN.
const REQUEST: &[u8] = b"the whole request; the reply comes after my FIN";
/// The reply the server sends after reading the FIN, in [`REPLY_WRITES`] writes.
const REPLY: usize = 48 * 1024;
const REPLY_WRITES: usize = 3;
/// Bytes the server leaves unread before it closes.
const UNREAD: usize = 1000;

/// What `half-close` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The client half-closes after its request.
    pub shutdown: HalfClose,
    /// The server closes with data unread, then (control) after reading it all.
    pub reset: Reset,
}

/// `shutdown(SHUT_WR)` after the request.
#[derive(Debug, Clone, Serialize)]
pub struct HalfClose {
    /// Bytes the server read before `recv()` returned 0 (EOF).
    pub request_bytes: usize,
    /// Client and server state once the FIN was acknowledged (FIN_WAIT2, CLOSE_WAIT).
    pub states_after_fin: [String; 2],
    /// What the client's own `send()` after SHUT_WR got (EPIPE).
    pub client_send_after_shutdown: String,
    /// Reply bytes the server sent after the EOF, then closed.
    pub reply_sent: usize,
    /// Reply bytes the client read before its EOF.
    pub reply_received: usize,
    /// Client and server state after both FINs (TIME_WAIT on the side that closed first,
    /// `gone` where the kernel lists no socket).
    pub states_after_close: [String; 2],
}

/// `close()` with unread data.
#[derive(Debug, Clone, Serialize)]
pub struct Reset {
    /// Bytes queued at the server, unread, when it closed.
    pub unread: usize,
    /// What the client's next `recv()` got (ECONNRESET).
    pub client_recv: String,
    /// What the client's `send()` after that got.
    pub client_send_after: String,
    /// Whether the server's side was left in TIME_WAIT (an RST leaves none).
    pub server_time_wait: bool,
    /// Control: what the client's `recv()` got when the server read everything first (EOF).
    pub control_recv: String,
}

/// Runs `half-close`.
///
/// # Errors
/// A socket call failed, or a byte or state did not show within the lab's bound.
pub fn run(_options: &Options) -> Result<Report> {
    let shutdown = half_close()?;
    let unread = close_after(false)?;
    let control = close_after(true)?;
    Ok(Report {
        shutdown,
        reset: Reset {
            unread: UNREAD,
            client_recv: unread.recv,
            client_send_after: unread.send_after,
            server_time_wait: unread.server_time_wait,
            control_recv: control.recv,
        },
    })
}

fn half_close() -> io::Result<HalfClose> {
    let (mut client, mut server) = loopback_pair()?;
    let ports = (client.local_addr()?.port(), server.local_addr()?.port());
    client.write_all(REQUEST)?;
    client.shutdown(Shutdown::Write)?;
    let mut request = Vec::new();
    server.read_to_end(&mut request)?;
    // The ACK of a FIN may be delayed: wait until the client has it.
    let states_after_fin = poll_until("the FIN's ACK", || {
        let states = states(ports)?;
        Ok((states[0] != "FIN_WAIT1").then_some(states))
    })?;
    let client_send_after_shutdown = send_result(&client);

    let chunk = vec![b'r'; REPLY / REPLY_WRITES];
    for _ in 0..REPLY_WRITES {
        server.write_all(&chunk)?;
    }
    drop(server);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply)?;
    let states_after_close = poll_until("TIME_WAIT on the side that closed first", || {
        let states = states(ports)?;
        Ok((states[0] == "TIME_WAIT" && states[1] == "gone").then_some(states))
    })?;
    Ok(HalfClose {
        request_bytes: request.len(),
        states_after_fin,
        client_send_after_shutdown,
        reply_sent: chunk.len() * REPLY_WRITES,
        reply_received: reply.len(),
        states_after_close,
    })
}

/// What the client saw after the server closed.
struct Closed {
    recv: String,
    send_after: String,
    server_time_wait: bool,
}

/// The server closes once [`UNREAD`] bytes are queued, after reading them if `read_first`.
fn close_after(read_first: bool) -> io::Result<Closed> {
    let (mut client, mut server) = loopback_pair()?;
    let ports = (client.local_addr()?.port(), server.local_addr()?.port());
    client.write_all(&[b'u'; UNREAD])?;
    wait_queued(&server, UNREAD)?;
    if read_first {
        server.read_exact(&mut [0; UNREAD])?;
    }
    drop(server);
    let recv = match client.read(&mut [0; 64]) {
        Ok(0) => "EOF".to_string(),
        Ok(n) => format!("{n} bytes"),
        Err(e) => errno_name(&e),
    };
    Ok(Closed {
        recv,
        send_after: send_result(&client),
        server_time_wait: kernel::tcp_state(ports.1, ports.0)? == Some(kernel::TIME_WAIT),
    })
}

/// Sends one byte without SIGPIPE; the errno's name, or how many bytes went.
fn send_result(stream: &TcpStream) -> String {
    match rustix::net::send(stream, b"x", SendFlags::NOSIGNAL) {
        Ok(n) => format!("sent {n} byte"),
        Err(e) => errno_name(&e.into()),
    }
}

/// The kernel's state names for `(client, server)` ports: the client's socket, the server's.
fn states((client, server): (u16, u16)) -> io::Result<[String; 2]> {
    let name = |s: Option<u8>| s.map_or("gone", kernel::state_name).to_string();
    Ok([
        name(kernel::tcp_state(client, server)?),
        name(kernel::tcp_state(server, client)?),
    ])
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let (h, x) = (&r.shutdown, &r.reset);
    let kept_sending = h.reply_received == h.reply_sent && h.reply_sent > 0;
    let reset = x.client_recv == "ECONNRESET";
    let happened = vec![
        format!(
            "client sent {} bytes and shutdown(SHUT_WR): the server read them, then EOF; the \
             kernel showed client {} / server {}; the client's own send() now got {}",
            h.request_bytes,
            h.states_after_fin[0],
            h.states_after_fin[1],
            h.client_send_after_shutdown
        ),
        format!(
            "after the EOF the server still sent {} bytes in {REPLY_WRITES} writes and closed; the \
             client read {} of them, then EOF; then client {} / server {}",
            h.reply_sent, h.reply_received, h.states_after_close[0], h.states_after_close[1]
        ),
        format!(
            "server closed with {} bytes unread: the client's recv() got {}, its next send() {}; \
             server side in TIME_WAIT: {}",
            x.unread,
            x.client_recv,
            x.client_send_after,
            if x.server_time_wait {
                "yes"
            } else {
                "no (an RST ends it at once)"
            }
        ),
        format!(
            "control, server read everything then closed: the client's recv() got {}",
            x.control_recv
        ),
    ];
    Ok(Outcome {
        name: "half-close",
        shown: kept_sending && reset,
        did: "on loopback: a client sent a request and shutdown(SHUT_WR) while the server read to \
              EOF and replied; then a server closed with unread data, and once after reading it"
            .into(),
        happened,
        seed: "a FIN only closes one direction (收到一个FIN只是意味着这一方向上没有数据流动了), so the \
               peer can keep sending until it closes too (四次挥手); closing a socket loses its \
               unread input (关闭套接字将丢失输入缓冲区中的数据), and the peer is reset",
        measured: Measured::HalfClose(r),
    })
}
