//! `udp-boundaries`: UDP keeps message boundaries. Datagrams sent back to back come out of one
//! `recvfrom` each; a buffer shorter than the datagram truncates it and the rest is discarded
//! (MSG_TRUNC reports the real size); an empty datagram arrives as a 0-byte message, where an
//! empty TCP send sends nothing at all.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use rustix::net::RecvFlags;
use serde::Serialize;

use super::{Measured, Options, Outcome, WAIT, loopback_pair};
use crate::Result;

/// The datagrams sent back to back, by size.
const SIZES: [usize; 3] = [100, 200, 300];
/// The seeds' receive buffer: `recvfrom(1024)`.
const SEED_BUF: usize = 1024;
/// The datagram read with a short buffer, and that buffer.
const LONG: usize = 1000;
const SHORT_BUF: usize = 100;

/// What `udp-boundaries` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Datagrams sent back to back before the first read, by size.
    pub sent: Vec<usize>,
    /// What each `recvfrom(1024)` returned, by size.
    pub received: Vec<usize>,
    /// A datagram read with a buffer shorter than itself.
    pub truncation: Truncation,
    /// Whether an empty datagram arrived as a 0-byte message from its sender.
    pub empty_datagram_received: bool,
    /// Whether an empty TCP `send()` made anything arrive at the peer (it cannot: a stream has
    /// no empty message, and `recv()` returning 0 means the end of the stream).
    pub empty_tcp_send_arrived: bool,
}

/// Reading a 1000-byte datagram into a 100-byte buffer, twice: without and with MSG_TRUNC.
#[derive(Debug, Clone, Serialize)]
pub struct Truncation {
    /// The datagram's size.
    pub datagram: usize,
    /// The buffer's size.
    pub buffer: usize,
    /// What a plain `recvfrom` returned (Python's `recvfrom(100)` sees this).
    pub plain_returned: usize,
    /// What `recvfrom` with MSG_TRUNC returned: the datagram's real size.
    pub trunc_returned: usize,
    /// Bytes copied into the buffer by the MSG_TRUNC read.
    pub copied: usize,
    /// Whether the copied bytes were the datagram's first bytes.
    pub copied_prefix_matches: bool,
    /// Whether nothing of the datagrams was left to read afterwards.
    pub rest_gone: bool,
}

/// Runs `udp-boundaries`.
///
/// # Errors
/// A socket call failed, or a datagram did not arrive within the lab's bound.
pub fn run(_options: &Options) -> Result<Report> {
    let (sender, receiver, to) = udp_pair()?;

    for size in SIZES {
        sender.send_to(&vec![b'x'; size], to)?;
    }
    let mut buf = [0u8; SEED_BUF];
    let received = SIZES
        .iter()
        .map(|_| receiver.recv_from(&mut buf).map(|(n, _)| n))
        .collect::<io::Result<_>>()?;

    let long: Vec<u8> = (0..LONG).map(|i| (i % 251) as u8).collect();
    let mut short = [0u8; SHORT_BUF];
    sender.send_to(&long, to)?;
    let (_, plain_returned, _) = rustix::net::recvfrom(&receiver, &mut short, RecvFlags::empty())
        .map_err(io::Error::from)?;
    sender.send_to(&long, to)?;
    let (copied, trunc_returned, _) =
        rustix::net::recvfrom(&receiver, &mut short, RecvFlags::TRUNC).map_err(io::Error::from)?;
    let copied_prefix_matches = short[..copied] == long[..copied];
    let rest_gone = match rustix::net::recv(&receiver, &mut buf, RecvFlags::DONTWAIT) {
        Err(rustix::io::Errno::AGAIN) => true,
        Err(e) => return Err(io::Error::from(e).into()),
        Ok(_) => false,
    };

    sender.send_to(b"", to)?;
    let (empty, from) = receiver.recv_from(&mut buf)?;
    let empty_datagram_received = empty == 0 && from == sender.local_addr()?;

    Ok(Report {
        sent: SIZES.to_vec(),
        received,
        truncation: Truncation {
            datagram: LONG,
            buffer: SHORT_BUF,
            plain_returned,
            trunc_returned,
            copied,
            copied_prefix_matches,
            rest_gone,
        },
        empty_datagram_received,
        empty_tcp_send_arrived: empty_tcp_send()?,
    })
}

/// A sender, a receiver (with [`WAIT`] as its read timeout), and the receiver's address.
fn udp_pair() -> io::Result<(UdpSocket, UdpSocket, SocketAddr)> {
    let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    receiver.set_read_timeout(Some(WAIT))?;
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let to = receiver.local_addr()?;
    Ok((sender, receiver, to))
}

/// Writes zero bytes to a TCP stream; returns whether the peer got anything to read. A
/// zero-byte write produces no segment, so there is nothing in flight to wait for.
fn empty_tcp_send() -> io::Result<bool> {
    let (mut client, mut server) = loopback_pair()?;
    client.write_all(b"")?;
    server.set_nonblocking(true)?;
    match server.read(&mut [0u8; 16]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
        Ok(_) => Ok(true),
    }
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let t = &r.truncation;
    let kept = r.received == r.sent;
    let shown = kept
        && t.trunc_returned == t.datagram
        && t.plain_returned == t.buffer
        && t.rest_gone
        && r.empty_datagram_received;
    let happened = vec![
        format!(
            "{} datagrams of {:?} bytes sent before the first read came out of {} recvfrom({SEED_BUF}) \
             calls of {:?} bytes: {}",
            r.sent.len(),
            r.sent,
            r.received.len(),
            r.received,
            if kept {
                "one datagram each, never merged"
            } else {
                "NOT one datagram each"
            }
        ),
        format!(
            "a {}-byte datagram read with a {}-byte buffer: plain recvfrom returned {} (no sign \
             of loss); with MSG_TRUNC it returned {}, the real size, and copied {} bytes ({})",
            t.datagram,
            t.buffer,
            t.plain_returned,
            t.trunc_returned,
            t.copied,
            if t.copied_prefix_matches {
                "the datagram's first bytes"
            } else {
                "NOT its first bytes"
            }
        ),
        format!(
            "the other {} bytes {}",
            t.datagram.saturating_sub(t.buffer),
            if t.rest_gone {
                "were gone: the next recv found nothing (EAGAIN)"
            } else {
                "were still readable"
            }
        ),
        format!(
            "an empty datagram {}; an empty TCP send() {}",
            if r.empty_datagram_received {
                "arrived as a 0-byte message from its sender"
            } else {
                "did NOT arrive as a 0-byte message"
            },
            if r.empty_tcp_send_arrived {
                "made something arrive"
            } else {
                "sent nothing (a stream has no empty message; recv() = 0 means EOF)"
            }
        ),
    ];
    Ok(Outcome {
        name: "udp-boundaries",
        shown,
        did: format!(
            "sent UDP datagrams on loopback: {} back to back, one of {LONG} bytes into a \
             {SHORT_BUF}-byte buffer (without and with MSG_TRUNC), and an empty one",
            SIZES.len()
        ),
        happened,
        seed: "UDP is message-oriented (面向消息, 有消息保护边界): it never sticks, but a recvfrom(x) \
               shorter than the datagram loses the rest (y>x数据就丢失), and an empty datagram is \
               still a message",
        measured: Measured::UdpBoundaries(r),
    })
}
