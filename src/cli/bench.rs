//! `sockit bench`: the flags of the load generator, their conversion into a library
//! [`bench::Config`], and the report printed as text or as one JSON object.
//!
//! The load itself and every figure in the report come from `sockit::client::bench`; the
//! text below is the format bench/compare.py and bench/run.sh were written against.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use sockit::client::bench::{self, Report};
use sockit::config::parse_size;
use sockit::net::Endpoint;

use crate::cli::DEFAULT_ADDR;

/// `sockit bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What load to generate.
    #[command(subcommand)]
    pub mode: Mode,
    /// Server address: HOST:PORT or unix:PATH.
    #[arg(short, long, global = true, env = "SOCKIT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: Endpoint,
    /// Print the report as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    /// PID of a local server: report its RSS and CPU time (from /proc).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Speak plaintext, not TLS, to a TCP server (served to loopback peers only, unless the
    /// server runs with --allow-plaintext).
    #[arg(long, global = true, env = "SOCKIT_PLAINTEXT", value_parser = clap::builder::BoolishValueParser::new())]
    pub plaintext: bool,
    /// A server not in the known-hosts file yet: ask, accept-new or strict (as every client
    /// command; the bench checks once, then pins that certificate on every connection).
    #[arg(long, global = true, env = "SOCKIT_TRUST", value_enum)]
    pub trust: Option<crate::cli::trust::Trust>,
    /// Accept exactly the server certificate with this fingerprint (SHA256:…).
    #[arg(
        long,
        global = true,
        env = "SOCKIT_FINGERPRINT",
        value_name = "SHA256:…"
    )]
    pub fingerprint: Option<String>,
    /// Threads of the load generator's runtime. One by default: on a machine that also runs
    /// the server, more threads than cores add scheduler delays to the latencies measured.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Source address of the connections. flood: every attempt comes from it (default
    /// 127.0.0.1 against a loopback server). Other modes: the first 64 come from it, and
    /// against a loopback server each next 64 from the next address (default 127.0.0.1), so
    /// that an echo run can come from other addresses than a flood's.
    #[arg(long, global = true, value_name = "ADDR")]
    pub from: Option<std::net::IpAddr>,
}

/// The load of one run.
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// Echo requests: C connections, each with up to P requests in flight.
    Echo(EchoArgs),
    /// N parallel verified uploads of a generated file (needs -u and SOCKIT_PASSWORD).
    Put(TransferArgs),
    /// N parallel verified downloads of a file uploaded first (needs -u and SOCKIT_PASSWORD).
    Get(TransferArgs),
    /// Hold K idle connections, then send one echo on each at once.
    Idle(IdleArgs),
    /// N fresh connections, each doing the handshake, a login and one stat (needs -u, and
    /// SOCKIT_PASSWORD or -i).
    Sessions(SessionArgs),
    /// K connection attempts at once from one address (--from) for a while: served ones are
    /// held, refused ones closed and tried again at once; counts what the server answered.
    Flood(FloodArgs),
}

/// Options of `bench echo`.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
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
pub struct TransferArgs {
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
    pub dir: Option<PathBuf>,
    /// Send this file instead of a generated one (put; get uploads it first).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// get: download this file, already on the server, instead of uploading one first.
    #[arg(long)]
    pub remote: Option<String>,
}

/// Options of `bench idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
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

/// Options of `bench flood`.
#[derive(Debug, Clone, Args)]
pub struct FloodArgs {
    /// Connection attempts under way at once, all from one address (the held ones count).
    #[arg(short = 'k', long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to keep trying (Ctrl-C ends the run sooner, and it still reports).
    #[arg(short, long, default_value_t = 10.0)]
    pub duration: f64,
}

/// Options of `bench sessions`.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Sessions in all, each on a fresh connection.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub sessions: u64,
    /// Sessions under way at once.
    #[arg(short, long, default_value_t = 8)]
    pub concurrency: usize,
    /// User name.
    #[arg(short, long, env = "SOCKIT_USER")]
    pub user: String,
    /// The password (set SOCKIT_PASSWORD rather than passing it here).
    #[arg(long, env = "SOCKIT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Log in with this private key instead of a password.
    #[arg(short, long, env = "SOCKIT_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// Runs `sockit bench` and prints its report.
///
/// # Errors
/// A duration flag that is no number of seconds, or what [`bench::run`] fails with.
pub async fn run(args: BenchArgs) -> Result<()> {
    let json = args.json;
    let (plaintext, trust) = (args.plaintext, args.trust);
    let fingerprint = args.fingerprint.clone();
    let mut config = args.into_config()?;
    if !plaintext && matches!(config.server, sockit::net::Endpoint::Tcp(_)) {
        // Trust is settled once, on a first connection; every connection of the run then
        // pins the certificate it showed.
        let pinned = crate::cli::trust::pin(&config.server, trust, fingerprint.as_deref()).await?;
        config.tls = Some(pinned);
    }
    let told = match &mut config.load {
        bench::Load::Flood(flood) => {
            // Say when the address first meets its limits: a script can start what runs
            // beside the flood then.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            flood.refused = Some(tx);
            Some(tokio::spawn(async move {
                if let Some(words) = rx.recv().await {
                    eprintln!("sockit bench flood: first refusal: {words}");
                }
            }))
        }
        _ => None,
    };
    let report = bench::run(&config).await?;
    // The last sender goes with the config: the line, if any, is out once the task ends.
    drop(config);
    if let Some(told) = told {
        let _ = told.await;
    }
    if json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        out!("{}", text(&report).trim_end());
    }
    Ok(())
}

impl BenchArgs {
    /// The library's configuration of this run.
    ///
    /// # Errors
    /// A duration flag that is not a number of seconds a [`Duration`] holds (negative ones
    /// count as 0, as they always have).
    pub fn into_config(self) -> Result<bench::Config> {
        let load = match self.mode {
            Mode::Echo(a) => bench::Load::Echo(bench::EchoLoad {
                connections: a.connections,
                until: match a.requests {
                    Some(n) => bench::Until::Count(n),
                    None => bench::Until::Elapsed(seconds("--duration", a.duration)?),
                },
                body: a.body,
                pipeline: a.pipeline,
            }),
            Mode::Put(a) => bench::Load::Put(a.into_load()),
            Mode::Get(a) => bench::Load::Get(a.into_load()),
            Mode::Idle(a) => bench::Load::Idle(bench::IdleLoad {
                connections: a.connections,
                hold: seconds("--hold", a.hold)?,
                budget: seconds("--budget", a.budget)?,
            }),
            Mode::Sessions(a) => bench::Load::Sessions(a.into_load()?),
            Mode::Flood(a) => bench::Load::Flood(bench::FloodLoad {
                connections: a.connections,
                duration: seconds("--duration", a.duration)?,
                refused: None,
            }),
        };
        Ok(bench::Config {
            load,
            server: self.server,
            tls: None,
            server_pid: self.server_pid,
            threads: self.threads,
            from: self.from,
        })
    }
}

impl TransferArgs {
    fn into_load(self) -> bench::TransferLoad {
        bench::TransferLoad {
            parallel: self.parallel,
            size: self.size,
            user: self.user,
            password: self.password,
            dir: self.dir,
            file: self.file,
            remote: self.remote,
        }
    }
}

impl SessionArgs {
    fn into_load(self) -> Result<bench::SessionLoad> {
        let credential = match (self.identity, self.password) {
            (Some(path), _) => bench::Credential::Key(std::sync::Arc::new(
                sockit::keys::KeyPair::load(&path)
                    .with_context(|| format!("the identity {}", path.display()))?,
            )),
            (None, Some(password)) => bench::Credential::Password(password),
            (None, None) => bail!("bench sessions logs in: set SOCKIT_PASSWORD or give -i KEY"),
        };
        Ok(bench::SessionLoad {
            sessions: self.sessions,
            concurrency: self.concurrency,
            user: self.user,
            credential,
        })
    }
}

/// `value` seconds of the flag `flag`, negative (or NaN) ones as 0.
fn seconds(flag: &str, value: f64) -> Result<Duration> {
    match Duration::try_from_secs_f64(value.max(0.0)) {
        Ok(d) => Ok(d),
        Err(_) => bail!("{flag} {value}: not a number of seconds"),
    }
}

/// The report as lines of text, for a person (each line ends with a newline).
fn text(report: &Report) -> String {
    let unit = match report.mode {
        bench::Mode::Sessions => "sessions",
        bench::Mode::Flood => "answers",
        mode if mode.transfers() => "transfers",
        _ => "requests",
    };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "{} against {}{}: {} connections, {} B bodies, pipeline {}",
        report.mode.name(),
        report.server,
        if report.tls { " (TLS)" } else { "" },
        report.connections,
        report.body_bytes,
        report.pipeline
    );
    let _ = writeln!(
        s,
        "  {} {unit} ok, {} errors in {:.2} s: {:.0} {unit}/s, {:.1} MB/s",
        report.ok, report.errors, report.seconds, report.requests_per_sec, report.mb_per_sec
    );
    let l = &report.latency_us;
    let _ = writeln!(
        s,
        "  latency p50 {} p99 {} p99.9 {} max {}",
        micros(l.p50),
        micros(l.p99),
        micros(l.p999),
        micros(l.max)
    );
    if let Some(idle) = &report.idle {
        let _ = writeln!(
            s,
            "  held {} idle connections (connected in {:.2} s); burst answered in {:.2} s",
            idle.held, idle.connect_seconds, idle.burst_seconds
        );
    }
    if let Some(f) = &report.flood {
        let _ = writeln!(
            s,
            "  flood from {}: {} attempts; held {} ({} at once at most, {} dropped); refused \
             {} at the per-address cap, {} by the connection rate, {} otherwise; {} closed \
             without a reply, {} connect errors",
            f.source.as_deref().unwrap_or("the system's choice"),
            f.attempts,
            f.held,
            f.held_peak,
            f.dropped,
            f.refused_cap,
            f.refused_rate,
            f.refused_other,
            f.closed,
            f.connect_errors
        );
    }
    if let Some(p) = &report.server_process {
        let _ = writeln!(
            s,
            "  server: RSS {:.1} MB (peak {:.1} MB), CPU {:.2} s = {:.1} µs per {}",
            p.rss_bytes as f64 / 1e6,
            p.peak_rss_bytes as f64 / 1e6,
            p.cpu_seconds,
            p.cpu_us_per_request,
            unit.trim_end_matches('s')
        );
    }
    if report.client_cpu_seconds > 0.0 {
        let _ = writeln!(
            s,
            "  client (this bench): CPU {:.2} s",
            report.client_cpu_seconds
        );
    }
    if let Some(e) = &report.first_error {
        let _ = writeln!(s, "  first error: {e}");
    }
    s
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
    use clap::Parser;
    use sockit::client::bench::{FloodFigures, IdleFigures, Latency, ServerFigures};

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(argv: &[&str]) -> Result<bench::Config> {
        let cli = Cli::try_parse_from(argv)?;
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        args.into_config()
    }

    #[test]
    fn flags_become_the_library_config() {
        use bench::{EchoLoad, IdleLoad, Load, Until};
        let c = config(&[
            "sockit", "bench", "echo", "-n", "5", "-b", "1KiB", "-s", "unix:/s",
        ]);
        let c = c.unwrap();
        assert_eq!(c.server.to_string(), "unix:/s");
        let echo = |until| EchoLoad {
            connections: 10,
            until,
            body: 1024,
            pipeline: 1,
        };
        assert!(matches!(c.load, Load::Echo(e) if e == echo(Until::Count(5))));
        let c = config(&["sockit", "bench", "echo", "-d", "0.25", "-b", "1024"]).unwrap();
        let quarter = Until::Elapsed(Duration::from_millis(250));
        assert!(matches!(c.load, Load::Echo(e) if e == echo(quarter)));
        let c = config(&["sockit", "bench", "idle", "--hold=-1", "--threads", "2"]).unwrap();
        let (hold, budget) = (Duration::ZERO, Duration::from_secs(30));
        let idle = IdleLoad {
            connections: 1000,
            hold,
            budget,
        };
        assert!(matches!(c.load, Load::Idle(i) if i == idle) && c.threads == 2);
        let c = config(&["sockit", "bench", "flood", "--from", "127.0.0.9", "-d", "2"]).unwrap();
        let two = Duration::from_secs(2);
        assert!(matches!(c.load, Load::Flood(f) if (f.connections, f.duration) == (10_000, two)));
        assert_eq!(c.from, Some([127, 0, 0, 9].into()));
        let c = config(&["sockit", "bench", "echo", "-c", "50", "--from", "127.0.0.2"]).unwrap();
        assert_eq!(c.from.map(|a| a.to_string()).as_deref(), Some("127.0.0.2"));
        assert!(config(&["sockit", "bench", "flood", "--from", "nowhere"]).is_err());
        let err = config(&["sockit", "bench", "echo", "-d", "inf"]).unwrap_err();
        assert_eq!(err.to_string(), "--duration inf: not a number of seconds");
    }

    /// Reports with every optional part, latencies in each unit.
    fn samples() -> Vec<Report> {
        let process = ServerFigures {
            rss_bytes: 12_345_678,
            peak_rss_bytes: 23_456_789,
            cpu_seconds: 1.23456,
            cpu_us_per_request: 7.25,
        };
        let base = Report {
            mode: bench::Mode::Echo,
            server: "127.0.0.1:9900".into(),
            tls: false,
            connections: 10,
            body_bytes: 64,
            pipeline: 4,
            ok: 123456,
            errors: 0,
            first_error: None,
            seconds: 5.004,
            requests_per_sec: 24671.3,
            mb_per_sec: 1.579,
            latency_us: Latency {
                p50: 0.4,
                p99: 999.6,
                p999: 1500.0,
                max: 2.5e6,
            },
            idle: None,
            client_cpu_seconds: 0.0,
            server_process: None,
            flood: None,
        };
        let idle = IdleFigures {
            held: 1000,
            connect_seconds: 0.456,
            burst_seconds: 0.0789,
        };
        vec![
            base.clone(),
            Report {
                server_process: Some(process),
                first_error: Some("the server closed the connection".into()),
                errors: 3,
                ..base.clone()
            },
            Report {
                mode: bench::Mode::Idle,
                idle: Some(idle),
                server_process: Some(process),
                ..base.clone()
            },
            Report {
                mode: bench::Mode::Put,
                server: "unix:/tmp/s.sock".into(),
                body_bytes: 104857600,
                client_cpu_seconds: 0.871,
                server_process: Some(process),
                latency_us: Latency::default(),
                ..base.clone()
            },
            Report {
                mode: bench::Mode::Get,
                ok: 0,
                seconds: 0.0,
                requests_per_sec: 0.0,
                mb_per_sec: 0.0,
                first_error: Some("transferred 5 of 10 bytes".into()),
                tls: true,
                ..base.clone()
            },
            Report {
                mode: bench::Mode::Flood,
                connections: 10000,
                body_bytes: 0,
                pipeline: 1,
                errors: 7,
                first_error: Some("the server closed the connection without a word".into()),
                flood: Some(FloodFigures {
                    source: Some("127.0.0.1".into()),
                    attempts: 123463,
                    held: 128,
                    held_peak: 128,
                    dropped: 0,
                    refused_cap: 100000,
                    refused_rate: 23328,
                    refused_other: 0,
                    closed: 5,
                    connect_errors: 2,
                }),
                ..base
            },
        ]
    }

    /// The text `sockit bench` printed for [`samples`] before the bench moved out of the
    /// library's `Display` (bench/compare.py reads the JSON, people and notes read this), and
    /// the client's CPU line since.
    const TEXT: [&str; 6] = [
        "echo against 127.0.0.1:9900: 10 connections, 64 B bodies, pipeline 4
  123456 requests ok, 0 errors in 5.00 s: 24671 requests/s, 1.6 MB/s
  latency p50 0 µs p99 1000 µs p99.9 1.50 ms max 2.50 s",
        "echo against 127.0.0.1:9900: 10 connections, 64 B bodies, pipeline 4
  123456 requests ok, 3 errors in 5.00 s: 24671 requests/s, 1.6 MB/s
  latency p50 0 µs p99 1000 µs p99.9 1.50 ms max 2.50 s
  server: RSS 12.3 MB (peak 23.5 MB), CPU 1.23 s = 7.2 µs per request
  first error: the server closed the connection",
        "idle against 127.0.0.1:9900: 10 connections, 64 B bodies, pipeline 4
  123456 requests ok, 0 errors in 5.00 s: 24671 requests/s, 1.6 MB/s
  latency p50 0 µs p99 1000 µs p99.9 1.50 ms max 2.50 s
  held 1000 idle connections (connected in 0.46 s); burst answered in 0.08 s
  server: RSS 12.3 MB (peak 23.5 MB), CPU 1.23 s = 7.2 µs per request",
        "put against unix:/tmp/s.sock: 10 connections, 104857600 B bodies, pipeline 4
  123456 transfers ok, 0 errors in 5.00 s: 24671 transfers/s, 1.6 MB/s
  latency p50 0 µs p99 0 µs p99.9 0 µs max 0 µs
  server: RSS 12.3 MB (peak 23.5 MB), CPU 1.23 s = 7.2 µs per transfer
  client (this bench): CPU 0.87 s",
        "get against 127.0.0.1:9900 (TLS): 10 connections, 64 B bodies, pipeline 4
  0 transfers ok, 0 errors in 0.00 s: 0 transfers/s, 0.0 MB/s
  latency p50 0 µs p99 1000 µs p99.9 1.50 ms max 2.50 s
  first error: transferred 5 of 10 bytes",
        "flood against 127.0.0.1:9900: 10000 connections, 0 B bodies, pipeline 1
  123456 answers ok, 7 errors in 5.00 s: 24671 answers/s, 1.6 MB/s
  latency p50 0 µs p99 1000 µs p99.9 1.50 ms max 2.50 s
  flood from 127.0.0.1: 123463 attempts; held 128 (128 at once at most, 0 dropped); \
refused 100000 at the per-address cap, 23328 by the connection rate, 0 otherwise; 5 closed \
without a reply, 2 connect errors
  first error: the server closed the connection without a word",
    ];

    #[test]
    fn text_is_the_format_the_scripts_were_written_against() {
        for (report, want) in samples().iter().zip(TEXT) {
            let got = text(report);
            assert_eq!(got.trim_end(), want);
            assert!(got.ends_with('\n') && !got.ends_with("\n\n"));
        }
    }

    #[test]
    fn json_keeps_every_field_name_and_order() {
        let want = r#"{"mode":"idle","server":"127.0.0.1:9900","tls":false,"connections":10,"body_bytes":64,"pipeline":4,"ok":123456,"errors":0,"first_error":null,"seconds":5.004,"requests_per_sec":24671.3,"mb_per_sec":1.579,"latency_us":{"p50":0.4,"p99":999.6,"p999":1500.0,"max":2500000.0},"idle":{"held":1000,"connect_seconds":0.456,"burst_seconds":0.0789},"client_cpu_seconds":0.0,"server_process":{"rss_bytes":12345678,"peak_rss_bytes":23456789,"cpu_seconds":1.23456,"cpu_us_per_request":7.25}}"#;
        assert_eq!(serde_json::to_string(&samples()[2]).unwrap(), want);
    }
}
