//! `sockit bench`: the load generator to run against any sockit server (native protocol).
//!
//! Modes: `echo` (C connections, pipelined or not, for a count or a duration), `put` / `get`
//! (N parallel verified transfers of a generated file) and `idle` (hold K idle connections,
//! then one echo on each). One tokio task per connection; request frames are encoded once.
//! It returns a [`Report`]; printing it (text or JSON) is the binary's job.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::config::parse_size;
use crate::connection::Connection;
use crate::filecopy::Quiet;
use crate::net::{Endpoint, Stream};
use crate::protocol::encode_head;
use crate::{Error, Result};

/// `sockit bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What load to generate.
    #[command(subcommand)]
    pub mode: Mode,
    /// Server address: HOST:PORT or unix:PATH.
    #[arg(short, long, global = true, env = "SOCKIT_SERVER", default_value = crate::config::DEFAULT_LISTEN)]
    pub server: Endpoint,
    /// Print the report as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    /// PID of a local server: report its RSS and CPU time (from /proc).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Threads of the load generator's runtime. One by default: on a machine that also runs
    /// the server, more threads than cores add scheduler delays to the latencies measured.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
}

/// The load of one run.
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// Echo requests: C connections, each with up to P requests in flight.
    Echo(EchoLoad),
    /// N parallel verified uploads of a generated file (needs -u and SOCKIT_PASSWORD).
    Put(TransferLoad),
    /// N parallel verified downloads of a file uploaded first (needs -u and SOCKIT_PASSWORD).
    Get(TransferLoad),
    /// Hold K idle connections, then send one echo on each at once.
    Idle(IdleLoad),
}

/// Options of `bench echo`.
#[derive(Debug, Clone, Args)]
pub struct EchoLoad {
    /// Connections.
    #[arg(short, long, default_value_t = 10)]
    pub connections: usize,
    /// Requests per connection (default: run for --duration instead).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Seconds to run when no request count is given.
    #[arg(short, long, default_value_t = 5.0)]
    pub duration: f64,
    /// Body size of each request (64, 64KiB, 1MB, ...).
    #[arg(short, long, default_value = "64", value_parser = parse_size)]
    pub body: u64,
    /// Requests in flight per connection (pipelining depth).
    #[arg(short, long, default_value_t = 1)]
    pub pipeline: usize,
}

/// Options of `bench put` and `bench get`.
#[derive(Debug, Clone, Args)]
pub struct TransferLoad {
    /// Transfers run in parallel, each on its own connection.
    #[arg(short, long, default_value_t = 1)]
    pub parallel: usize,
    /// Size of the generated file (e.g. 1GiB).
    #[arg(long, default_value = "100MiB", value_parser = parse_size)]
    pub size: u64,
    /// User name (the password comes from SOCKIT_PASSWORD).
    #[arg(short, long, env = "SOCKIT_USER")]
    pub user: String,
    /// The password (set SOCKIT_PASSWORD rather than passing it here).
    #[arg(long, env = "SOCKIT_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Folder for the generated and downloaded files (default: a new temporary folder).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Send this file instead of a generated one (put; get uploads it first).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// get: download this file, already on the server, instead of uploading one first.
    #[arg(long)]
    pub remote: Option<String>,
}

/// Options of `bench idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleLoad {
    /// Idle connections to hold.
    #[arg(short = 'k', long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them idle before the burst.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Seconds the burst may take; requests not answered by then count as unanswered.
    #[arg(long, default_value_t = 30.0)]
    pub budget: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `echo`, `put`, `get` or `idle`.
    pub mode: &'static str,
    /// The server driven.
    pub server: String,
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
    /// The server process, when `--server-pid` was given.
    pub server_process: Option<ServerFigures>,
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

/// Runs the load `args` describe and measures it.
///
/// # Errors
/// Setup failures (no connection at all, login refused, a local file error); failures of
/// single requests are counted in the report instead.
pub async fn run(args: &BenchArgs) -> Result<Report> {
    // The load runs on a runtime of its own, sized by `--threads`, on a thread of its own.
    let args = args.clone();
    let thread = std::thread::Builder::new()
        .name("sockit-bench".into())
        .spawn(move || {
            let mut builder = if args.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(args.threads);
                b
            };
            let runtime = builder.enable_all().build()?;
            runtime.block_on(run_here(&args))
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
async fn run_here(args: &BenchArgs) -> Result<Report> {
    let probe = args.server_pid.map(Probe::new);
    match &args.mode {
        Mode::Echo(load) => echo(&args.server, load, probe).await,
        Mode::Put(load) => transfer(&args.server, load, false, probe).await,
        Mode::Get(load) => transfer(&args.server, load, true, probe).await,
        Mode::Idle(load) => idle(&args.server, load, probe).await,
    }
}

/// The results of one connection's worker.
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            errors: 0,
            first_error: None,
            // 1 ns to 10 min, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn record(&mut self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
        self.ok += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let _ = self.hist.add(&other.hist);
    }

    fn latency(&self) -> Latency {
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

/// Connections a run opens from one source address before it moves to the next.
///
/// A server lets one address hold only so many connections (`serve --max-connections-per-ip`,
/// 128 by default), so against an IPv4 loopback server the connections are spread over
/// 127.0.0.0/8, all of which Linux routes to `lo`: connection `i` comes from 127.0.0.1 +
/// `i / PER_SOURCE`. Against any other server they all come from one address (run the server
/// with a per-address cap above the connections); so they do where a source cannot be bound.
const PER_SOURCE: usize = 64;

/// Opens connection number `i` of a run to `server` (see [`PER_SOURCE`]).
async fn connect(server: &Endpoint, i: usize) -> Result<Client> {
    if let Endpoint::Tcp(addr) = server {
        let target = crate::net::resolve(addr).await?;
        if let std::net::IpAddr::V4(ip) = target.ip()
            && ip.is_loopback()
        {
            let step = u32::try_from(i / PER_SOURCE).unwrap_or(u32::MAX);
            let source = u32::from(std::net::Ipv4Addr::LOCALHOST).saturating_add(step);
            let source = std::net::Ipv4Addr::from(source.min(0x7FFF_FFFE));
            if let Ok(stream) = crate::net::connect_from(target, source.into()).await {
                return Ok(Client::from_stream(stream));
            }
        }
    }
    Client::connect(server).await
}

/// The encoded echo request: head and body, sent as is for every request.
fn echo_frame(body_len: u64) -> Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    encode_head(&serde_json::json!({"op": "echo"}), body_len, &mut buf)?;
    let body = pattern(usize::try_from(body_len).unwrap_or(usize::MAX));
    buf.extend_from_slice(&body);
    Ok(buf.to_vec())
}

/// A recognisable body: bytes that differ from position to position.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn echo(server: &Endpoint, load: &EchoLoad, probe: Option<Probe>) -> Result<Report> {
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
    let before = probe.as_ref().map(Probe::sample);
    let start = Instant::now();
    let stop = match load.requests {
        Some(n) => Stop::Count(n),
        None => Stop::At(start + Duration::from_secs_f64(load.duration.max(0.0))),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for client in conns {
        let frame = frame.clone();
        let body = load.body;
        tasks.spawn(async move { echo_worker(client, frame, body, depth, stop).await });
    }
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(e) => total.fail(e),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(report(
        "echo",
        server,
        (load.connections, load.body, depth),
        total,
        seconds,
        probe.zip(before),
        None,
    ))
}

/// When a worker stops sending.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Count(u64),
    At(Instant),
}

/// One connection: keeps `depth` requests in flight until `stop`, then collects the replies.
async fn echo_worker(
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

/// Reads one echo reply and checks it: `ok`, the same size, the same bytes.
async fn read_echo(conn: &mut Connection<Stream>, frame: &[u8], body_len: u64) -> Result<()> {
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

async fn transfer(
    server: &Endpoint,
    load: &TransferLoad,
    download: bool,
    probe: Option<Probe>,
) -> Result<Report> {
    let temp = match &load.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("sockit-bench-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("sockit-bench-").tempdir()?,
    };
    let (source, size) = match &load.file {
        Some(file) => (file.clone(), std::fs::metadata(file)?.len()),
        // Downloads of a file already on the server need no local source.
        None if download && load.remote.is_some() => (std::path::PathBuf::new(), 0),
        None => {
            let source = temp.path().join("source.bin");
            let (src, size) = (source.clone(), load.size);
            crate::filecopy::blocking(move || generate(&src, size)).await?;
            (source, size)
        }
    };
    let given = if download { load.remote.clone() } else { None };
    let remote = |i: usize| match &given {
        Some(name) => name.clone(),
        None => format!("sockit-bench-{}-{i}.bin", std::process::id()),
    };
    let mut size = size;
    if download {
        let mut client = login(server, load).await?;
        if load.remote.is_some() {
            size = client.stat(&remote(0)).await?.size;
        } else {
            // One upload, not measured; every download reads it.
            client.put(&source, &remote(0), false, &mut Quiet).await?;
        }
    }
    // Read the source once, so the measured part starts from the page cache (as nc's does).
    if !source.as_os_str().is_empty() {
        let src = source.clone();
        crate::filecopy::blocking(move || warm(&src)).await?;
    }
    let mut clients = Vec::with_capacity(load.parallel);
    for _ in 0..load.parallel {
        clients.push(login(server, load).await?);
    }
    let before = probe.as_ref().map(Probe::sample);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let source = source.clone();
        let name = if download { remote(0) } else { remote(i) };
        let local = temp.path().join(format!("download-{i}.bin"));
        tasks.spawn(async move {
            let began = Instant::now();
            let done = if download {
                client.get(&name, &local, false, &mut Quiet).await
            } else {
                client.put(&source, &name, false, &mut Quiet).await
            };
            (began, done.map(|v| v.size))
        });
    }
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((began, Ok(got))) if got == size => total.record(began),
            Ok((_, Ok(got))) => total.fail(format!("transferred {got} of {size} bytes")),
            Ok((_, Err(e))) => total.fail(e),
            Err(e) => total.fail(e),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mode = if download { "get" } else { "put" };
    let report = report(
        mode,
        server,
        (load.parallel, size, 1),
        total,
        seconds,
        probe.zip(before),
        None,
    );
    // Leave the server as it was.
    if given.is_none()
        && let Ok(mut client) = login(server, load).await
    {
        let count = if download { 1 } else { load.parallel };
        for i in 0..count {
            let _ = client.rm(&remote(i), false).await;
        }
    }
    Ok(report)
}

async fn login(server: &Endpoint, load: &TransferLoad) -> Result<Client> {
    let mut client = Client::connect(server).await?;
    client.login(&load.user, &load.password).await?;
    Ok(client)
}

/// Writes `size` bytes of a non-repeating pattern to `path`.
fn generate(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            // xorshift64: cheap bytes that no layer can compress or dedupe.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(block.len());
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// Reads a file once, to bring it into the page cache.
fn warm(path: &Path) -> Result<()> {
    std::io::copy(&mut std::fs::File::open(path)?, &mut std::io::sink())?;
    Ok(())
}

async fn idle(server: &Endpoint, load: &IdleLoad, probe: Option<Probe>) -> Result<Report> {
    raise_fd_limit();
    let frame: Arc<[u8]> = echo_frame(64)?.into();
    let go = Arc::new(tokio::sync::Notify::new());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(load.connections.max(1));
    let connect_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // Connect in waves, so the listen backlog is never the bottleneck.
    let wave = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..load.connections {
        let (server, frame, go, ready) =
            (server.clone(), frame.clone(), go.clone(), ready_tx.clone());
        let wave = wave.clone();
        tasks.spawn(async move {
            let permit = wave.acquire_owned().await;
            let mut client = match connect(&server, i).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(false).await;
                    return Err(e);
                }
            };
            drop(permit);
            let notified = go.notified();
            let _ = ready.send(true).await;
            notified.await;
            let began = Instant::now();
            let conn = client.connection();
            conn.queue_raw(&frame);
            conn.flush().await?;
            read_echo(conn, &frame, 64).await?;
            Ok(began.elapsed())
        });
    }
    drop(ready_tx);
    let mut held = 0;
    for _ in 0..load.connections {
        match ready_rx.recv().await {
            Some(true) => held += 1,
            Some(false) => {}
            None => break,
        }
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(load.hold.max(0.0))).await;
    // The server's figures while the connections sit idle.
    let idle_sample = probe.as_ref().map(Probe::sample);
    let burst_start = Instant::now();
    go.notify_waiters();
    let mut total = Tally::new();
    let budget = Duration::from_secs_f64(load.budget.max(0.0));
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(took)) => {
                    let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                    total.hist.saturating_record(ns.max(1));
                    total.ok += 1;
                }
                Ok(Err(e)) => total.fail(e),
                Err(e) => total.fail(e),
            }
        }
    };
    let _ = tokio::time::timeout(budget, collect).await;
    let burst_seconds = burst_start.elapsed().as_secs_f64();
    let unanswered = (load.connections as u64).saturating_sub(total.ok + total.errors);
    if unanswered > 0 {
        total.fail(format!(
            "{unanswered} requests unanswered within {budget:?}"
        ));
        total.errors += unanswered - 1;
    }
    tasks.abort_all();
    let mut figures = idle_sample.zip(probe.as_ref().map(Probe::sample));
    // Memory while idle, CPU over the burst.
    if let Some((at_idle, after)) = figures.as_mut() {
        after.rss_bytes = at_idle.rss_bytes;
    }
    let server_process = figures.map(|(a, b)| ServerFigures {
        rss_bytes: b.rss_bytes,
        peak_rss_bytes: b.peak_rss_bytes,
        cpu_seconds: b.cpu_seconds - a.cpu_seconds,
        cpu_us_per_request: per_request(b.cpu_seconds - a.cpu_seconds, total.ok),
    });
    let ok = total.ok;
    Ok(Report {
        mode: "idle",
        server: server.to_string(),
        connections: load.connections,
        body_bytes: 64,
        pipeline: 1,
        ok,
        errors: total.errors,
        first_error: total.first_error.clone(),
        seconds: burst_seconds,
        requests_per_sec: ok as f64 / burst_seconds.max(1e-9),
        mb_per_sec: (ok * 64) as f64 / burst_seconds.max(1e-9) / 1e6,
        latency_us: total.latency(),
        idle: Some(IdleFigures {
            held,
            connect_seconds,
            burst_seconds,
        }),
        server_process,
    })
}

/// Raises the soft limit on open files to the hard limit (idle mode holds thousands).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn per_request(cpu_seconds: f64, ok: u64) -> f64 {
    if ok == 0 {
        0.0
    } else {
        cpu_seconds * 1e6 / ok as f64
    }
}

fn report(
    mode: &'static str,
    server: &Endpoint,
    (connections, body_bytes, pipeline): (usize, u64, usize),
    total: Tally,
    seconds: f64,
    probe: Option<(Probe, Sample)>,
    idle: Option<IdleFigures>,
) -> Report {
    let seconds_nz = seconds.max(1e-9);
    let server_process = probe.map(|(probe, before)| {
        let after = probe.sample();
        let cpu = after.cpu_seconds - before.cpu_seconds;
        ServerFigures {
            rss_bytes: after.rss_bytes,
            peak_rss_bytes: after.peak_rss_bytes,
            cpu_seconds: cpu,
            cpu_us_per_request: per_request(cpu, total.ok),
        }
    });
    Report {
        mode,
        server: server.to_string(),
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
        idle,
        server_process,
    }
}

/// Reads a local process's figures from /proc.
#[derive(Debug, Clone, Copy)]
struct Probe {
    pid: u32,
}

/// One reading of [`Probe`]; zeros when /proc could not be read.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_bytes: u64,
    peak_rss_bytes: u64,
    cpu_seconds: f64,
}

impl Probe {
    fn new(pid: u32) -> Probe {
        Probe { pid }
    }

    fn sample(&self) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        let kb = |key: &str| {
            status.as_deref().ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok();
        Sample {
            rss_bytes: kb("VmRSS:").unwrap_or(0) * 1024,
            peak_rss_bytes: kb("VmHWM:").unwrap_or(0) * 1024,
            cpu_seconds: stat.as_deref().and_then(cpu_seconds).unwrap_or(0.0),
        }
    }
}

/// utime + stime of a /proc/PID/stat line, in seconds (Linux reports them in 1/100 s).
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = if matches!(self.mode, "put" | "get") {
            "transfers"
        } else {
            "requests"
        };
        writeln!(
            f,
            "{} against {}: {} connections, {} B bodies, pipeline {}",
            self.mode, self.server, self.connections, self.body_bytes, self.pipeline
        )?;
        writeln!(
            f,
            "  {} {unit} ok, {} errors in {:.2} s: {:.0} {unit}/s, {:.1} MB/s",
            self.ok, self.errors, self.seconds, self.requests_per_sec, self.mb_per_sec
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency p50 {} p99 {} p99.9 {} max {}",
            micros(l.p50),
            micros(l.p99),
            micros(l.p999),
            micros(l.max)
        )?;
        if let Some(idle) = &self.idle {
            writeln!(
                f,
                "  held {} idle connections (connected in {:.2} s); burst answered in {:.2} s",
                idle.held, idle.connect_seconds, idle.burst_seconds
            )?;
        }
        if let Some(p) = &self.server_process {
            writeln!(
                f,
                "  server: RSS {:.1} MB (peak {:.1} MB), CPU {:.2} s = {:.1} µs per {}",
                p.rss_bytes as f64 / 1e6,
                p.peak_rss_bytes as f64 / 1e6,
                p.cpu_seconds,
                p.cpu_us_per_request,
                unit.trim_end_matches('s')
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// A duration in microseconds, shown in a readable unit.
fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_after_a_name_with_spaces() {
        let stat = "42 (my server) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn echo_frame_is_a_whole_request() {
        let frame = echo_frame(5).unwrap();
        let (head, used) =
            crate::protocol::Head::parse(&frame, &crate::protocol::Limits::default()).unwrap();
        assert_eq!(head.body_len, 5);
        assert_eq!(frame.len(), used + 5);
    }
}
