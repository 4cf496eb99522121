//! `backlog`: a listener with a small backlog that never accepts. The kernel completes
//! handshakes into the accept queue until it holds backlog + 1 connections; after that it
//! drops each SYN (ListenOverflows, ListenDrops) and the clients wait, resending their SYN at
//! 1 s, 3 s, 7 s… SYN cookies answer a full SYN queue instead (half-open connections: the
//! seeds' SYN flood), which a loopback client that completes its handshake cannot fill.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use serde::Serialize;
use socket2::{Domain, Socket, Type};

use super::{Measured, Options, Outcome, errno_name, kernel, micros};
use crate::Result;

/// The listener's backlog (`listen(2)`).
const BACKLOG: i32 = 2;
/// Clients that connect at once.
const CLIENTS: usize = 8;
/// How long the clients wait for their connects: past the first SYN retransmission (1 s).
const PATIENCE: Duration = Duration::from_millis(1500);
/// The TcpExt counters reported.
const COUNTERS: [&str; 5] = [
    "ListenOverflows",
    "ListenDrops",
    "SyncookiesSent",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
];

/// What `backlog` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The listener's backlog.
    pub backlog: i32,
    /// Clients that connected (non-blocking) one after the other.
    pub clients: usize,
    /// How long they were given, in milliseconds.
    pub patience_ms: u64,
    /// Each client, in the order it connected.
    pub connects: Vec<Connect>,
    /// How many connects completed.
    pub completed: usize,
    /// How many still waited when the patience ran out.
    pub waiting: usize,
    /// How many failed.
    pub failed: usize,
    /// The first client (from 0) whose connect did not complete.
    pub first_waiting: Option<usize>,
    /// Of the waiting clients, how many the kernel listed in SYN_SENT.
    pub waiting_in_syn_sent: usize,
    /// Growth of the TcpExt counters meanwhile (ListenOverflows, ListenDrops, SyncookiesSent,
    /// TCPReqQFullDrop, TCPReqQFullDoCookies); machine-wide, so other traffic adds to them.
    pub counters: BTreeMap<String, Option<u64>>,
    /// Sysctls that decide what happens: tcp_syncookies, tcp_abort_on_overflow,
    /// tcp_max_syn_backlog, somaxconn.
    pub sysctls: BTreeMap<String, Option<String>>,
}

/// How one client's connect ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connect {
    /// Poll found the handshake complete this many microseconds after the first connect
    /// began (a non-blocking connect returns EINPROGRESS even on loopback).
    Completed(u64),
    /// Still waiting when the patience ran out.
    Waiting,
    /// Failed with this errno.
    Failed(String),
}

/// Runs `backlog`.
///
/// # Errors
/// A socket call failed where the experiment needs it to work.
pub fn run(_options: &Options) -> Result<Report> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    listener.listen(BACKLOG)?;
    let addr = listener.local_addr()?;

    let before = kernel::tcp_ext().ok();
    let start = Instant::now();
    let mut sockets = Vec::with_capacity(CLIENTS);
    let mut connects = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        connects.push(match socket.connect(&addr) {
            Ok(()) => Connect::Completed(micros(start.elapsed())),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {
                Connect::Waiting
            }
            Err(e) => Connect::Failed(errno_name(&e)),
        });
        sockets.push(socket);
    }
    wait_for_connects(&sockets, &mut connects, start)?;
    let after = kernel::tcp_ext().ok();

    let server_port = addr.as_socket().map_or(0, |a| a.port());
    let mut waiting_in_syn_sent = 0;
    for (socket, connect) in sockets.iter().zip(&connects) {
        let port = socket.local_addr()?.as_socket().map_or(0, |a| a.port());
        if matches!(connect, Connect::Waiting) && kernel::tcp_state(port, server_port)? == Some(2) {
            waiting_in_syn_sent += 1;
        }
    }
    let count = |f: fn(&Connect) -> bool| connects.iter().filter(|c| f(c)).count();
    Ok(Report {
        backlog: BACKLOG,
        clients: CLIENTS,
        patience_ms: PATIENCE.as_millis() as u64,
        completed: count(|c| matches!(c, Connect::Completed(_))),
        waiting: count(|c| matches!(c, Connect::Waiting)),
        failed: count(|c| matches!(c, Connect::Failed(_))),
        first_waiting: connects
            .iter()
            .position(|c| !matches!(c, Connect::Completed(_))),
        connects,
        waiting_in_syn_sent,
        counters: COUNTERS
            .iter()
            .map(|name| {
                let grew = before
                    .as_ref()
                    .zip(after.as_ref())
                    .and_then(|(b, a)| kernel::growth(b, a, name));
                (name.to_string(), grew)
            })
            .collect(),
        sysctls: [
            "net/ipv4/tcp_syncookies",
            "net/ipv4/tcp_abort_on_overflow",
            "net/ipv4/tcp_max_syn_backlog",
            "net/core/somaxconn",
        ]
        .iter()
        .map(|name| {
            (
                name.rsplit('/').next().unwrap_or(name).to_string(),
                kernel::sysctl(name),
            )
        })
        .collect(),
    })
}

/// Polls the waiting connects until each completes or fails, or [`PATIENCE`] runs out.
fn wait_for_connects(
    sockets: &[Socket],
    connects: &mut [Connect],
    start: Instant,
) -> io::Result<()> {
    let deadline = start + PATIENCE;
    loop {
        let waiting: Vec<usize> = (0..sockets.len())
            .filter(|&i| matches!(connects[i], Connect::Waiting))
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if waiting.is_empty() || left.is_zero() {
            return Ok(());
        }
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|&i| PollFd::new(&sockets[i], PollFlags::OUT))
            .collect();
        let timeout = Timespec::try_from(left).map_err(|_| io::Error::other("bad timeout"))?;
        if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
            return Ok(());
        }
        let ready: Vec<usize> = waiting
            .iter()
            .zip(&fds)
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(&i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            connects[i] = match sockets[i].take_error()? {
                Some(e) => Connect::Failed(errno_name(&e)),
                None => Connect::Completed(micros(start.elapsed())),
            };
        }
    }
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let sysctl = |name: &str| {
        r.sysctls
            .get(name)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "unknown".into())
    };
    let completed_us: Vec<u64> = r
        .connects
        .iter()
        .filter_map(|c| match c {
            Connect::Completed(us) => Some(*us),
            _ => None,
        })
        .collect();
    let mut happened = vec![
        format!(
            "{} of {} connects completed at once (poll saw them within {} µs) though nothing was \
             accepted (Linux's accept queue holds backlog + 1 = {})",
            r.completed,
            r.clients,
            completed_us.iter().max().copied().unwrap_or(0),
            r.backlog + 1
        ),
        match r.first_waiting {
            Some(i) => format!(
                "from client #{} on, {} waited and {} failed within {} ms; {} of the waiting \
                 were in SYN_SENT, resending their SYN",
                i + 1,
                r.waiting,
                r.failed,
                r.patience_ms,
                r.waiting_in_syn_sent
            ),
            None => "no client had to wait".into(),
        },
        format!(
            "kernel counters meanwhile (machine-wide; each dropped SYN counts, resends included): {}",
            r.counters
                .iter()
                .map(|(n, v)| format!("{n} +{}", v.map_or("?".into(), |v| v.to_string())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "tcp_syncookies = {}, tcp_abort_on_overflow = {}, tcp_max_syn_backlog = {}, \
             somaxconn = {}",
            sysctl("tcp_syncookies"),
            sysctl("tcp_abort_on_overflow"),
            sysctl("tcp_max_syn_backlog"),
            sysctl("somaxconn")
        ),
    ];
    happened.push(match r.counters.get("SyncookiesSent").copied().flatten() {
        Some(0) => "no SYN cookies: they answer a full SYN queue (half-open connections, as in a \
                    SYN flood from spoofed addresses), while here the accept queue was full, and \
                    a full accept queue makes the kernel drop the SYN instead"
            .into(),
        Some(n) => format!(
            "SyncookiesSent grew by {n}: the SYN queue overflowed (here or in other traffic on \
             this machine) and the kernel answered with cookies"
        ),
        None => "the SYN cookie counter could not be read (no /proc/net/netstat)".into(),
    });
    let shown = r.completed > 0 && r.first_waiting.is_some();
    Ok(Outcome {
        name: "backlog",
        shown,
        did: format!(
            "listened with backlog {} and never accepted; {} non-blocking connects one after \
             the other, each given up to {} ms",
            r.backlog, r.clients, r.patience_ms
        ),
        happened,
        seed: "listen(5)'s backlog bounds the connections waiting to be accepted; past it clients \
               wait. Half-open connections (SYN_RCVD) fill the SYN queue in a SYN flood (syn洪水攻击), \
               which tcp_syncookies = 1 answers with cookies",
        measured: Measured::Backlog(r),
    })
}
