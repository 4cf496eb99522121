//! `sockit lab`: the seeds' socket phenomena (粘包, Nagle, TIME_WAIT, UDP boundaries, the
//! listen backlog, half-close), each run on real sockets on 127.0.0.1 port 0 and measured.
//!
//! An experiment reports what this kernel did, including when an effect did not appear and
//! why. Experiments block (std::net, socket2, rustix): run them off the async runtime
//! (`spawn_blocking`). Nothing here prints; the binary formats an [`Outcome`].

pub mod backlog;
pub mod half_close;
pub mod kernel;
pub mod nagle;
pub mod sticky;
pub mod time_wait;
pub mod udp_boundaries;

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Result;

/// Round trips per mode of the `nagle` experiment unless `--rounds` says otherwise.
pub const DEFAULT_ROUNDS: usize = 50;

/// The longest any experiment waits for one thing (a byte, a state, a connection); past it the
/// experiment fails with a timeout instead of hanging.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Settings of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Request/reply round trips per mode in `nagle` (at least 1).
    pub rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: DEFAULT_ROUNDS,
        }
    }
}

/// What one experiment did and saw: text for a person, [`Measured`] for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The experiment's name (`sticky`, `nagle`, ...).
    pub name: &'static str,
    /// Whether the phenomenon the seeds describe appeared on this kernel.
    pub shown: bool,
    /// What the experiment did, in one sentence.
    pub did: String,
    /// What happened, one observation a line, numbers included.
    pub happened: Vec<String>,
    /// The seeds' explanation this run demonstrates, in one line.
    pub seed: &'static str,
    /// The measurements.
    pub measured: Measured,
}

/// The measurements of one experiment, one variant per experiment (untagged in JSON: the
/// outcome's `name` says which).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Measured {
    /// See [`sticky::Report`].
    Sticky(sticky::Report),
    /// See [`nagle::Report`].
    Nagle(nagle::Report),
    /// See [`time_wait::Report`].
    TimeWait(time_wait::Report),
    /// See [`udp_boundaries::Report`].
    UdpBoundaries(udp_boundaries::Report),
    /// See [`backlog::Report`].
    Backlog(backlog::Report),
    /// See [`half_close::Report`].
    HalfClose(half_close::Report),
}

/// One experiment of the lab: its name on the command line, a summary, and how to run it.
#[derive(Debug)]
pub struct Experiment {
    /// The name `sockit lab NAME` takes.
    pub name: &'static str,
    /// One line on what it shows.
    pub about: &'static str,
    run: fn(&Options) -> Result<Outcome>,
}

impl Experiment {
    /// Runs the experiment on loopback (blocking; seconds at most).
    ///
    /// # Errors
    /// A socket call that failed where the experiment needs it to work, or a wait that ran
    /// past its bound; the phenomenon not appearing is an [`Outcome`] with `shown: false`.
    pub fn run(&self, options: &Options) -> Result<Outcome> {
        (self.run)(options)
    }
}

/// Every experiment, in the order `sockit lab all` runs them.
pub static EXPERIMENTS: [Experiment; 6] = [
    Experiment {
        name: "sticky",
        about: "粘包: small sends read as one, one large send read in pieces; framing keeps messages whole",
        run: sticky::outcome,
    },
    Experiment {
        name: "nagle",
        about: "write-write-read latency: Nagle + delayed ACK, TCP_NODELAY, one write per message",
        run: nagle::outcome,
    },
    Experiment {
        name: "time-wait",
        about: "the side that closes first keeps TIME_WAIT; a restart needs SO_REUSEADDR",
        run: time_wait::outcome,
    },
    Experiment {
        name: "udp-boundaries",
        about: "datagrams never stick; a short recvfrom buffer truncates; an empty datagram is a message",
        run: udp_boundaries::outcome,
    },
    Experiment {
        name: "backlog",
        about: "a listener that never accepts: how many connects complete, who waits, the kernel's counters",
        run: backlog::outcome,
    },
    Experiment {
        name: "half-close",
        about: "shutdown(SHUT_WR) lets the peer finish; close() with unread data sends RST",
        run: half_close::outcome,
    },
];

/// The experiment called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// A connected TCP pair on loopback, `(client, server)`, each with [`WAIT`] as read and write
/// timeout (so a side whose peer failed stops instead of blocking for ever).
pub(crate) fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for stream in [&client, &server] {
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
    }
    Ok((client, server))
}

/// Calls `check` until it returns `Some`, for at most [`WAIT`]: the way to wait for the
/// kernel (bytes queued, a socket state) without guessing a sleep.
///
/// # Errors
/// `TimedOut` naming `what` when the bound passes; `check`'s own errors.
pub(crate) fn poll_until<T>(
    what: &str,
    mut check: impl FnMut() -> io::Result<Option<T>>,
) -> io::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("waited {} s for {what}", WAIT.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `bytes` bytes sit unread in `stream`'s receive queue (FIONREAD, alias SIOCINQ):
/// "the data has arrived before I read", checked rather than assumed.
pub(crate) fn wait_queued(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    poll_until(&format!("{bytes} bytes in the receive queue"), || {
        let queued = rustix::io::ioctl_fionread(stream)?;
        Ok((queued >= bytes as u64).then_some(()))
    })
}

/// The errno of an I/O error as its symbolic name where the lab expects one (`EADDRINUSE`),
/// else the number.
pub(crate) fn errno_name(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return format!("{:?}", e.kind());
    };
    let errno = rustix::io::Errno::from_raw_os_error(code);
    let names = [
        (rustix::io::Errno::ADDRINUSE, "EADDRINUSE"),
        (rustix::io::Errno::CONNRESET, "ECONNRESET"),
        (rustix::io::Errno::PIPE, "EPIPE"),
        (rustix::io::Errno::CONNREFUSED, "ECONNREFUSED"),
        (rustix::io::Errno::TIMEDOUT, "ETIMEDOUT"),
        (rustix::io::Errno::NOTCONN, "ENOTCONN"),
    ];
    names
        .iter()
        .find(|(known, _)| *known == errno)
        .map_or_else(|| format!("errno {code}"), |(_, name)| (*name).to_string())
}

/// Waits for a scoped thread; its panic, if any, continues in the caller.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Microseconds in `d`, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_name_is_registered_once() {
        let names: Vec<_> = EXPERIMENTS.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "sticky",
                "nagle",
                "time-wait",
                "udp-boundaries",
                "backlog",
                "half-close"
            ]
        );
        assert!(find("all").is_none());
        assert_eq!(find("nagle").map(|e| e.name), Some("nagle"));
    }

    #[test]
    fn errno_names_the_errors_the_lab_expects() {
        let e = io::Error::from_raw_os_error(rustix::io::Errno::ADDRINUSE.raw_os_error());
        assert_eq!(errno_name(&e), "EADDRINUSE");
        assert_eq!(errno_name(&io::Error::other("x")), "Other");
    }
}
