//! The load generator behind `sockit bench`, to run against any sockit server (native protocol).
//!
//! Modes: `echo` (C connections, pipelined or not, for a count or a duration), `put` / `get`
//! (N parallel verified transfers of a generated file), `idle` (hold K idle connections,
//! then one echo on each), `sessions` (fresh connections, each a login and a stat) and `flood`
//! (K connection attempts at once from one address, each refused one closed and tried again).
//! One tokio task per connection; request frames are encoded once.
//! [`run`] takes a plain [`Config`] and returns a [`Report`]: it parses no arguments, knows no
//! server-side type and prints nothing (the binary's `cli::bench` does those).

mod echo;
mod flood;
mod idle;
mod probe;
mod report;
mod sessions;
mod transfer;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::client::Client;
use crate::net::{Endpoint, Stream};
use crate::{Error, Result};

pub use report::{FloodFigures, IdleFigures, Latency, Mode, Report, ServerFigures};

/// One run of the load generator: what load, against which server.
#[derive(Debug, Clone)]
pub struct Config {
    /// What load to generate.
    pub load: Load,
    /// The server to drive.
    pub server: Endpoint,
    /// Speak TLS to a TCP server, trusting only the certificate with this fingerprint
    /// (`SHA256:…`); `None` speaks plaintext (which a server serves to loopback peers).
    pub tls: Option<String>,
    /// PID of a local server whose RSS and CPU time to report (read from /proc).
    pub server_pid: Option<u32>,
    /// Threads of the load generator's own runtime (1 or less: a current-thread runtime).
    pub threads: usize,
    /// The source address of the connections (see [`PER_SOURCE`]); `None`: 127.0.0.1 against
    /// an IPv4 loopback server, the system's choice against any other.
    pub from: Option<IpAddr>,
}

/// The load of one run.
#[derive(Debug, Clone)]
pub enum Load {
    /// Echo requests: C connections, each with up to P requests in flight.
    Echo(EchoLoad),
    /// N parallel verified uploads of a generated (or given) file.
    Put(TransferLoad),
    /// N parallel verified downloads of a file uploaded first (or already on the server).
    Get(TransferLoad),
    /// Hold K idle connections, then send one echo on each at once.
    Idle(IdleLoad),
    /// N fresh connections, each doing the handshake, a login and one stat, then closing.
    Sessions(SessionLoad),
    /// K connection attempts at once from one source address for a while: each served one is
    /// held, each refused one closed and tried again at once.
    Flood(FloodLoad),
}

/// The load of an `echo` run.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoLoad {
    /// Connections.
    pub connections: usize,
    /// When each connection stops sending.
    pub until: Until,
    /// Body bytes of each request.
    pub body: u64,
    /// Requests in flight per connection (pipelining depth; 0 counts as 1).
    pub pipeline: usize,
}

/// How long an `echo` run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    /// This many requests per connection.
    Count(u64),
    /// This long after the measured part starts.
    Elapsed(Duration),
}

/// The load of a `put` or `get` run.
#[derive(Debug, Clone)]
pub struct TransferLoad {
    /// Transfers run in parallel, each on its own connection.
    pub parallel: usize,
    /// Size of the generated file, bytes.
    pub size: u64,
    /// User name to log in with.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Folder for the generated and downloaded files (`None`: a new temporary folder).
    pub dir: Option<PathBuf>,
    /// Send this file instead of a generated one (put; get uploads it first).
    pub file: Option<PathBuf>,
    /// get: download this file, already on the server, instead of uploading one first.
    pub remote: Option<String>,
}

/// The load of an `idle` run.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleLoad {
    /// Idle connections to hold.
    pub connections: usize,
    /// How long to hold them idle before the burst.
    pub hold: Duration,
    /// How long the burst may take; requests not answered by then count as unanswered.
    pub budget: Duration,
}

/// The load of a `sessions` run: what one user does when a script runs `sockit stat`
/// repeatedly, measured without the process start.
#[derive(Debug, Clone)]
pub struct SessionLoad {
    /// Sessions in all, each on a fresh connection.
    pub sessions: u64,
    /// Sessions under way at once.
    pub concurrency: usize,
    /// User name to log in with.
    pub user: String,
    /// How to log in.
    pub credential: Credential,
}

/// The load of a `flood` run: what one address opening connections as fast as it can does to
/// a server, and what the server answers it.
#[derive(Debug, Clone)]
pub struct FloodLoad {
    /// Connection attempts under way at once (the held connections among them).
    pub connections: usize,
    /// How long to keep trying; an interrupt (Ctrl-C) ends the run sooner, with its report.
    pub duration: Duration,
    /// Gets the server's words of the first refusal, once, as it comes back: from then on the
    /// address is at its limits (for a caller to say so, or to start what runs beside it).
    pub refused: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// How a bench logs in.
#[derive(Debug, Clone)]
pub enum Credential {
    /// With a password.
    Password(String),
    /// With a key (a challenge signed for the connection, no password hash on the server).
    Key(std::sync::Arc<crate::keys::KeyPair>),
}

/// The server a run drives and how it speaks to it.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) server: Endpoint,
    pub(super) tls: Option<String>,
    /// [`Config::from`].
    pub(super) from: Option<IpAddr>,
}

/// Runs the load `config` describes and measures it.
///
/// The load runs on a runtime of its own (sized by [`Config::threads`]) on a thread of its
/// own; the caller's runtime only waits for it.
///
/// # Errors
/// Setup failures (no connection at all, login refused, a local file error); failures of
/// single requests are counted in the report instead.
pub async fn run(config: &Config) -> Result<Report> {
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("sockit-bench".into())
        .spawn(move || {
            let mut builder = if config.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.threads);
                b
            };
            let runtime = builder.enable_all().build()?;
            runtime.block_on(run_here(&config))
        })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Wait without blocking the caller's runtime.
    std::thread::spawn(move || {
        let _ = tx.send(thread.join());
    });
    rx.await
        .map_err(|_| Error::Io(std::io::Error::other("the load generator vanished")))?
        .map_err(|_| Error::Io(std::io::Error::other("the load generator panicked")))?
}

/// [`run`] on the current runtime.
async fn run_here(config: &Config) -> Result<Report> {
    let probe = config.server_pid.map(probe::Probe::new);
    let server = &Target {
        server: config.server.clone(),
        tls: config.tls.clone(),
        from: config.from,
    };
    match &config.load {
        Load::Echo(load) => echo::run(server, load, probe).await,
        Load::Put(load) => transfer::run(server, load, Mode::Put, probe).await,
        Load::Get(load) => transfer::run(server, load, Mode::Get, probe).await,
        Load::Idle(load) => idle::run(server, load, probe).await,
        Load::Sessions(load) => sessions::run(server, load, probe).await,
        Load::Flood(load) => flood::run(server, load, probe).await,
    }
}

/// Connections a run opens from one source address before it moves to the next.
///
/// A server lets one address hold only so many connections (`serve --max-connections-per-ip`,
/// 128 by default), so against an IPv4 loopback server the connections are spread over
/// 127.0.0.0/8, all of which Linux routes to `lo`: connection `i` comes from the first source
/// (127.0.0.1, or [`Config::from`]) + `i / PER_SOURCE`. Against any other server they all come
/// from one address (run the server with a per-address cap above the connections): the
/// system's choice, or [`Config::from`] when it is no loopback address. `flood` never spreads:
/// all its connections come from one address.
const PER_SOURCE: usize = 64;

/// Opens connection number `i` of a run to `target` (see [`PER_SOURCE`]), with TLS when
/// the target says so.
async fn connect(target: &Target, i: usize) -> Result<Client> {
    let mut stream = None;
    if let Endpoint::Tcp(addr) = &target.server {
        let to = crate::net::resolve(addr).await?;
        match target.from {
            // A source asked for: it is bound, or the connection fails.
            Some(first) => stream = Some(crate::net::connect_from(to, source_for(first, i)).await?),
            None if is_loopback_v4(to) => {
                let first = Ipv4Addr::LOCALHOST.into();
                stream = crate::net::connect_from(to, source_for(first, i))
                    .await
                    .ok();
            }
            None => {}
        }
    }
    let stream = match stream {
        Some(stream) => stream,
        None => crate::net::connect(&target.server).await?,
    };
    Ok(Client::from_stream(secure(target, stream).await?))
}

/// The stream of a new connection to `target` from `source` (`None`: the system's choice),
/// before any TLS.
async fn connect_one(target: &Target, source: Option<IpAddr>) -> Result<Stream> {
    Ok(match (&target.server, source) {
        (Endpoint::Tcp(addr), Some(source)) => {
            let to = crate::net::resolve(addr).await?;
            crate::net::connect_from(to, source).await?
        }
        _ => crate::net::connect(&target.server).await?,
    })
}

/// `stream` with TLS over it when `target` speaks TLS.
async fn secure(target: &Target, stream: Stream) -> Result<Stream> {
    Ok(match (&target.tls, &target.server) {
        (Some(pinned), Endpoint::Tcp(_)) => crate::client::tls::connect(stream, pinned).await?,
        _ => stream,
    })
}

/// Whether `to` is an IPv4 loopback address, whose connections the bench can spread over
/// 127.0.0.0/8.
fn is_loopback_v4(to: SocketAddr) -> bool {
    matches!(to.ip(), IpAddr::V4(ip) if ip.is_loopback())
}

/// The source address of connection number `i` when the first comes from `first` (see
/// [`PER_SOURCE`]): spread over loopback from a loopback `first`, `first` itself otherwise.
fn source_for(first: IpAddr, i: usize) -> IpAddr {
    let IpAddr::V4(v4) = first else {
        return first;
    };
    if !v4.is_loopback() {
        return first;
    }
    let step = u32::try_from(i / PER_SOURCE).unwrap_or(u32::MAX);
    let source = u32::from(v4).saturating_add(step);
    // Never past 127.255.255.254: the last address of 127.0.0.0/8 is its broadcast address.
    IpAddr::V4(Ipv4Addr::from(source.min(0x7FFF_FFFE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn sources_move_on_every_per_source_connections_and_stay_in_loopback() {
        let first = v4(127, 0, 0, 1);
        assert_eq!(source_for(first, 0), first);
        assert_eq!(source_for(first, PER_SOURCE - 1), first);
        assert_eq!(source_for(first, PER_SOURCE), v4(127, 0, 0, 2));
        assert_eq!(source_for(first, 3 * PER_SOURCE + 5), v4(127, 0, 0, 4));
        assert_eq!(source_for(first, usize::MAX), v4(127, 255, 255, 254));
    }

    #[test]
    fn a_first_source_shifts_the_spread_and_other_addresses_are_kept_as_they_are() {
        let first = v4(127, 0, 0, 2);
        assert_eq!(source_for(first, PER_SOURCE - 1), first);
        assert_eq!(source_for(first, PER_SOURCE), v4(127, 0, 0, 3));
        let lan = v4(192, 168, 1, 7);
        assert_eq!(source_for(lan, 5 * PER_SOURCE), lan);
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(source_for(v6, 5 * PER_SOURCE), v6);
    }
}
