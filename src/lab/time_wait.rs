//! `time-wait`: the side that closes a connection first keeps it in TIME_WAIT (2 MSL; 60 s on
//! Linux). When that side is a server, its port stays taken: a restart that binds without
//! SO_REUSEADDR fails with EADDRINUSE, one with it succeeds. Counted from /proc/net/tcp.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use serde::Serialize;
use socket2::{Domain, Socket, Type};

use super::{Measured, Options, Outcome, WAIT, errno_name, kernel, poll_until};
use crate::Result;

/// Connections the server accepts and closes first in each round.
const CONNECTIONS: usize = 3;

/// What `time-wait` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Two rounds: a server without SO_REUSEADDR (the seeds' first program), then one with it
    /// (their fix), each restarted both ways.
    pub rounds: Vec<Round>,
    /// `net.ipv4.tcp_fin_timeout` (FIN_WAIT2's timeout; TIME_WAIT itself is fixed at 60 s).
    pub tcp_fin_timeout: Option<String>,
    /// `net.ipv4.tcp_tw_reuse` (lets *outgoing* connections reuse TIME_WAIT ports).
    pub tcp_tw_reuse: Option<String>,
    /// Whether `net.ipv4.tcp_tw_recycle`, which the seeds recommend, exists on this kernel.
    pub tcp_tw_recycle_exists: bool,
}

/// One server run, its TIME_WAIT sockets, and two restarts on its port.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The port the server had.
    pub port: u16,
    /// Whether the first server set SO_REUSEADDR.
    pub server_reuseaddr: bool,
    /// Connections it accepted and closed first.
    pub connections: usize,
    /// Sockets on its port in TIME_WAIT after it stopped, as /proc/net/tcp lists them.
    pub time_wait: usize,
    /// A restart that binds without SO_REUSEADDR.
    pub restart_without: Restart,
    /// A restart that binds with SO_REUSEADDR.
    pub restart_with: Restart,
}

/// What a restart's `bind` + `listen` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// Whether it listened again.
    pub ok: bool,
    /// The errno's name when it failed (`EADDRINUSE`).
    pub errno: Option<String>,
    /// The error as the OS words it.
    pub error: Option<String>,
}

/// Runs `time-wait`.
///
/// # Errors
/// A socket call failed, or the TIME_WAIT sockets did not show within the lab's bound.
pub fn run(_options: &Options) -> Result<Report> {
    Ok(Report {
        rounds: vec![round(false)?, round(true)?],
        tcp_fin_timeout: kernel::sysctl("net/ipv4/tcp_fin_timeout"),
        tcp_tw_reuse: kernel::sysctl("net/ipv4/tcp_tw_reuse"),
        tcp_tw_recycle_exists: kernel::sysctl("net/ipv4/tcp_tw_recycle").is_some(),
    })
}

/// A listening socket on `port` (0: any), SO_REUSEADDR as `reuse` says.
fn listen(port: u16, reuse: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // Set either way: std's TcpListener::bind turns SO_REUSEADDR on by itself on Unix.
    socket.set_reuse_address(reuse)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(16)?;
    Ok(socket)
}

fn round(reuse: bool) -> io::Result<Round> {
    let server = listen(0, reuse)?;
    let addr = server
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("the listener has no IP address"))?;
    for _ in 0..CONNECTIONS {
        let mut client = TcpStream::connect(addr)?;
        client.set_read_timeout(Some(WAIT))?;
        let (accepted, _) = server.accept()?;
        // The server closes first (active close): its side goes FIN_WAIT → TIME_WAIT once the
        // client, having read the EOF, closes too.
        drop(accepted);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest)?;
    }
    drop(server);
    let port = addr.port();
    let time_wait = poll_until("the server's sockets to reach TIME_WAIT", || {
        let n = kernel::count_local(port, kernel::TIME_WAIT)?;
        Ok((n >= CONNECTIONS).then_some(n))
    })?;
    Ok(Round {
        port,
        server_reuseaddr: reuse,
        connections: CONNECTIONS,
        time_wait,
        restart_without: restart(port, false),
        restart_with: restart(port, true),
    })
}

/// Binds and listens on `port` again, then lets it go.
fn restart(port: u16, reuse: bool) -> Restart {
    match listen(port, reuse) {
        Ok(_) => Restart {
            ok: true,
            errno: None,
            error: None,
        },
        Err(e) => Restart {
            ok: false,
            errno: Some(errno_name(&e)),
            error: Some(e.to_string()),
        },
    }
}

fn describe(r: &Restart) -> String {
    match (&r.errno, &r.error) {
        (Some(errno), Some(error)) => format!("fails, {errno} ({error})"),
        _ => "listens".into(),
    }
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let mut happened = Vec::new();
    for round in &r.rounds {
        happened.push(format!(
            "server {} SO_REUSEADDR on port {}: closed {} connection(s) first; /proc/net/tcp then \
             listed {} socket(s) on that port in TIME_WAIT (state 06)",
            if round.server_reuseaddr {
                "with"
            } else {
                "without"
            },
            round.port,
            round.connections,
            round.time_wait
        ));
        happened.push(format!(
            "  restart without SO_REUSEADDR: {}; with SO_REUSEADDR: {}",
            describe(&round.restart_without),
            describe(&round.restart_with)
        ));
    }
    let [first, fixed] = [&r.rounds[0], &r.rounds[1]];
    if !first.restart_with.ok {
        happened.push(
            "SO_REUSEADDR on the restart alone was not enough after a server without it: \
             Linux lets a bind share the port only when the TIME_WAIT sockets came from a \
             socket that set it too, which is why the seeds put it in the server's code"
                .into(),
        );
    }
    happened.push(format!(
        "this kernel: tcp_fin_timeout {}, tcp_tw_reuse {} (outgoing connections only), \
         tcp_tw_recycle {}",
        r.tcp_fin_timeout.as_deref().unwrap_or("unknown"),
        r.tcp_tw_reuse.as_deref().unwrap_or("unknown"),
        if r.tcp_tw_recycle_exists {
            "present"
        } else {
            "absent (removed in Linux 4.12; the seeds' advice to set it no longer applies)"
        }
    ));
    let shown = r.rounds.iter().all(|round| round.time_wait > 0)
        && r.rounds.iter().all(|round| !round.restart_without.ok)
        && fixed.restart_with.ok;
    Ok(Outcome {
        name: "time-wait",
        shown,
        did: format!(
            "ran a loopback server that accepted {CONNECTIONS} connections and closed each \
             first, stopped it, and bound its port again without and with SO_REUSEADDR; twice: \
             first server without SO_REUSEADDR, then with it"
        ),
        happened,
        seed: "the side that closes first waits in TIME_WAIT for 2 MSL (四次挥手) and keeps the \
               address taken (Address already in use); setsockopt(SO_REUSEADDR) before bind \
               (重用ip和端口) lets a restarted server have it",
        measured: Measured::TimeWait(r),
    })
}
