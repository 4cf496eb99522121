//! `sockit serve`: its flags, the `--config` file under them, and the running server.
//!
//! The flags are a contract (docs: DESIGN.md): each is also a key of the settings file, which
//! the library reads ([`Options::from_file`]) and resolves; this file only lays the flags
//! given over the file's values and prints one line per listener.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tracing::info;

use sockit::config::{LogFormat, Options, Settings, parse_size, parse_switch};
use sockit::net::Endpoint;
use sockit::users::UsersUrl;

/// `sockit serve`: every setting, each optional so that flags and file can be merged.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct ServeOptions {
    /// Read settings from this TOML file (keys as the flags); flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the native protocol: HOST:PORT or unix:PATH [default: 127.0.0.1:9900].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<Endpoint>,
    /// Data folder (users, homes, seed uploads) [default: ./sockit-data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Allow remote command execution (off by default).
    #[arg(long)]
    pub allow_exec: bool,
    /// The native port's TLS certificate (PEM) [default: DATA/tls/cert.pem, made on first
    /// start, self-signed].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM) [default: DATA/tls/key.pem].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext to peers that are not on loopback too (off: they must speak TLS;
    /// passwords would cross the network in clear).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Connections served at once per listener; more wait in the backlog [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections one address (IPv4, or IPv6 /64) holds at once per listener; more are
    /// refused. Below --max-connections [default: 128, or half of --max-connections if less].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a connection may stay silent (or not read) before it is closed [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds a request head may take from its first byte to its last [default: 10].
    #[arg(long, value_name = "SECS")]
    pub head_timeout: Option<u64>,
    /// Seconds shutdown waits for requests in flight [default: 10].
    #[arg(long, value_name = "SECS")]
    pub grace: Option<u64>,
    /// Largest JSON header accepted [default: 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_header: Option<u64>,
    /// Largest body accepted, streamed or not [default: 1TiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_body: Option<u64>,
    /// Largest body read into memory [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_inline_body: Option<u64>,
    /// Seed echo server (TCP, raw bytes in, upper-cased out) on ADDR.
    #[arg(long, value_name = "ADDR")]
    pub seed_echo: Option<Endpoint>,
    /// Seed command server "终极版" on ADDR (TCP, loopback only, needs --allow-exec).
    #[arg(long, value_name = "ADDR")]
    pub seed_exec: Option<Endpoint>,
    /// Seed upload server (FTP 简单版) on ADDR (TCP); files land in DATA/uploads.
    #[arg(long, value_name = "ADDR")]
    pub seed_upload: Option<Endpoint>,
    /// UDP echo server on HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub udp_echo: Option<String>,
    /// UDP time ("NTP") server on HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub udp_time: Option<String>,
    /// UDP chat room on HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub udp_chat: Option<String>,
    /// Seconds a command may run before it is killed [default: 30].
    #[arg(long, value_name = "SECS")]
    pub exec_timeout: Option<u64>,
    /// Output a command may produce before it is killed [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exec_max_output: Option<u64>,
    /// Commands one user may run at once over the native protocol [default: 4].
    #[arg(long, value_name = "N")]
    pub exec_max_per_user: Option<usize>,
    /// Address space of each process of a command (RLIMIT_AS) [default: 512MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exec_memory: Option<u64>,
    /// Processes and threads one command may have at once [default: 64].
    #[arg(long, value_name = "N")]
    pub exec_processes: Option<u64>,
    /// Files each process of a command may have open (RLIMIT_NOFILE) [default: 256].
    #[arg(long, value_name = "N")]
    pub exec_open_files: Option<u64>,
    /// CPU seconds each process of a command may use (RLIMIT_CPU) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub exec_cpu_secs: Option<u64>,
    /// Whether commands may use the network: on or off (off: no socket reaches anything)
    /// [default: off].
    #[arg(long, value_name = "on|off", value_parser = parse_switch)]
    pub exec_network: Option<bool>,
    /// Start exec even on a machine that lacks its sandbox (Landlock, namespaces): commands
    /// then get only what the machine allows, possibly the server's own rights.
    #[arg(long)]
    pub exec_unconfined: bool,
    /// Members the chat room holds at once [default: 256].
    #[arg(long, value_name = "N")]
    pub chat_max_members: Option<usize>,
    /// Seconds a silent chat member stays in the room [default: 60].
    #[arg(long, value_name = "SECS")]
    pub chat_expiry: Option<u64>,
    /// Largest chat datagram accepted [default: 1024].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chat_max_message: Option<u64>,
    /// Longest strftime format the time server accepts [default: 256].
    #[arg(long, value_name = "BYTES")]
    pub time_max_format: Option<usize>,
    /// Prometheus metrics at /metrics and health at /healthz, over HTTP on ADDR (no login:
    /// keep it on loopback or a private network).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<Endpoint>,
    /// Log lines as text, or json: one object per line [default: text].
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<LogFormat>,
    /// New connections one address may open per second per listener, once past
    /// --connection-burst; more are refused at once. 0: no limit [default: 100].
    #[arg(long, value_name = "N")]
    pub connection_rate: Option<u32>,
    /// New connections one address may open at once after a quiet spell [default: 500].
    #[arg(long, value_name = "N")]
    pub connection_burst: Option<u32>,
    /// Sessions (logged-in connections, any door) one user may hold at once; one more
    /// login is refused [default: 64].
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<usize>,
    /// Bytes of small files read ahead for pipelined gets, all connections together, e.g.
    /// 64MB; 0: none [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_read_ahead: Option<u64>,
    /// Bytes per second the server takes in, all clients together, e.g. 100MB
    /// [default: no limit]. Per user: `sockit user limit NAME --up R`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_rate_up: Option<u64>,
    /// Bytes per second the server sends, all clients together [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_rate_down: Option<u64>,
    /// Bytes per second one connection may send the server [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_rate_up_per_connection: Option<u64>,
    /// Bytes per second one connection may receive [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_rate_down_per_connection: Option<u64>,
    /// The HTTP door on this address: HTTPS with the server's certificate (plaintext only
    /// for loopback peers, or with --allow-plaintext), WebDAV at /dav/, the web page at /.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<Endpoint>,
    /// The FTP door on ADDR: FTP with explicit FTPS (AUTH TLS, the native port's
    /// certificate); plaintext logins only where the native port allows plaintext.
    #[arg(long, value_name = "ADDR")]
    pub ftp: Option<String>,
    /// The FTP door's passive data ports [default: 50000-50999].
    #[arg(long, value_name = "A-B")]
    pub ftp_passive_ports: Option<String>,
    /// Keep users, keys, quotas and limits in PostgreSQL, shared by every server given the
    /// same URL: postgres://USER:PASSWORD@HOST:PORT/DB (`connect_timeout=S` in the query
    /// bounds waits; default 5 s) [default: SQLite DATA/users.db].
    #[arg(long, value_name = "URL", env = "SOCKIT_USERS", hide_env_values = true)]
    pub users: Option<UsersUrl>,
    /// With --users: seconds a server may go silent (crashed, cut off) before the quota
    /// reservations of its uploads are reclaimed by the others [default: 60].
    #[arg(long, value_name = "SECS")]
    pub quota_lease: Option<u64>,
    /// Where the homes live: s3://BUCKET[/PREFIX] for an S3-compatible object store
    /// (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) [default: the
    /// folder DATA/homes].
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    pub store: Option<String>,
    /// The object store's endpoint, for one other than AWS (http://127.0.0.1:8333, say).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The object store's region [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Seconds one request to the object store may take, retries included, before the
    /// client is told `unavailable` [default: 30].
    #[arg(long, value_name = "SECS")]
    pub s3_timeout: Option<u64>,
    /// Seconds an unfinished upload to the object store is kept for a resume before its
    /// parts are deleted [default: 604800, a week].
    #[arg(long, value_name = "SECS")]
    pub s3_keep_unfinished: Option<u64>,
}

impl ServeOptions {
    /// These flags over the `--config` file's settings, if one is named, with defaults filled.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a value is out of its range.
    pub fn settings(self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => Options::from_file(path)?,
            None => Options::default(),
        };
        Ok(self.over(file).resolve()?)
    }

    /// The log format: the flag's, else the `--config` file's (a file that cannot be read
    /// is reported by [`ServeOptions::settings`] once logging is set up).
    pub fn log_format(&self) -> LogFormat {
        let file = || Options::from_file(self.config.as_ref()?).ok()?.log_format;
        self.log_format.or_else(file).unwrap_or_default()
    }

    /// These flags over `file`: each flag given wins; each left out takes the file's value.
    /// (Destructured without `..`, so a flag added here must be merged here too.)
    pub fn over(self, file: Options) -> Options {
        let ServeOptions {
            config: _,
            listen,
            data,
            allow_exec,
            tls_cert,
            tls_key,
            allow_plaintext,
            max_connections,
            max_connections_per_ip,
            idle_timeout,
            head_timeout,
            grace,
            max_header,
            max_body,
            max_inline_body,
            seed_echo,
            seed_exec,
            seed_upload,
            udp_echo,
            udp_time,
            udp_chat,
            exec_timeout,
            exec_max_output,
            exec_max_per_user,
            exec_memory,
            exec_processes,
            exec_open_files,
            exec_cpu_secs,
            exec_network,
            exec_unconfined,
            chat_max_members,
            chat_expiry,
            chat_max_message,
            time_max_format,
            metrics,
            log_format,
            connection_rate,
            connection_burst,
            max_sessions_per_user,
            max_read_ahead,
            max_rate_up,
            max_rate_down,
            max_rate_up_per_connection,
            max_rate_down_per_connection,
            http,
            ftp,
            ftp_passive_ports,
            users,
            quota_lease,
            store,
            s3_endpoint,
            s3_region,
            s3_timeout,
            s3_keep_unfinished,
        } = self;
        Options {
            listen: listen.or(file.listen),
            data: data.or(file.data),
            // A switch can only be turned on: either place may allow exec.
            allow_exec: allow_exec || file.allow_exec,
            tls_cert: tls_cert.or(file.tls_cert),
            tls_key: tls_key.or(file.tls_key),
            allow_plaintext: allow_plaintext || file.allow_plaintext,
            max_connections: max_connections.or(file.max_connections),
            max_connections_per_ip: max_connections_per_ip.or(file.max_connections_per_ip),
            idle_timeout: idle_timeout.or(file.idle_timeout),
            head_timeout: head_timeout.or(file.head_timeout),
            grace: grace.or(file.grace),
            max_header: max_header.or(file.max_header),
            max_body: max_body.or(file.max_body),
            max_inline_body: max_inline_body.or(file.max_inline_body),
            seed_echo: seed_echo.or(file.seed_echo),
            seed_exec: seed_exec.or(file.seed_exec),
            seed_upload: seed_upload.or(file.seed_upload),
            udp_echo: udp_echo.or(file.udp_echo),
            udp_time: udp_time.or(file.udp_time),
            udp_chat: udp_chat.or(file.udp_chat),
            exec_timeout: exec_timeout.or(file.exec_timeout),
            exec_max_output: exec_max_output.or(file.exec_max_output),
            exec_max_per_user: exec_max_per_user.or(file.exec_max_per_user),
            exec_memory: exec_memory.or(file.exec_memory),
            exec_processes: exec_processes.or(file.exec_processes),
            exec_open_files: exec_open_files.or(file.exec_open_files),
            exec_cpu_secs: exec_cpu_secs.or(file.exec_cpu_secs),
            exec_network: exec_network.or(file.exec_network),
            exec_unconfined: exec_unconfined || file.exec_unconfined,
            chat_max_members: chat_max_members.or(file.chat_max_members),
            chat_expiry: chat_expiry.or(file.chat_expiry),
            chat_max_message: chat_max_message.or(file.chat_max_message),
            time_max_format: time_max_format.or(file.time_max_format),
            metrics: metrics.or(file.metrics),
            log_format: log_format.or(file.log_format),
            connection_rate: connection_rate.or(file.connection_rate),
            connection_burst: connection_burst.or(file.connection_burst),
            max_sessions_per_user: max_sessions_per_user.or(file.max_sessions_per_user),
            max_read_ahead: max_read_ahead.or(file.max_read_ahead),
            max_rate_up: max_rate_up.or(file.max_rate_up),
            max_rate_down: max_rate_down.or(file.max_rate_down),
            max_rate_up_per_connection: max_rate_up_per_connection
                .or(file.max_rate_up_per_connection),
            max_rate_down_per_connection: max_rate_down_per_connection
                .or(file.max_rate_down_per_connection),
            http: http.or(file.http),
            ftp: ftp.or(file.ftp),
            ftp_passive_ports: ftp_passive_ports.or(file.ftp_passive_ports),
            users: users.or(file.users),
            quota_lease: quota_lease.or(file.quota_lease),
            store: store.or(file.store),
            s3_endpoint: s3_endpoint.or(file.s3_endpoint),
            s3_region: s3_region.or(file.s3_region),
            s3_timeout: s3_timeout.or(file.s3_timeout),
            s3_keep_unfinished: s3_keep_unfinished.or(file.s3_keep_unfinished),
        }
    }
}

/// Runs `sockit serve` until Ctrl-C or SIGTERM, then drains for the grace period.
///
/// # Errors
/// A bad setting or settings file, a listener that cannot be bound, or a failed shutdown.
pub async fn run(options: ServeOptions) -> Result<()> {
    let settings = options.settings()?;
    let (data, grace) = (settings.data.clone(), settings.server.grace);
    let running = sockit::config::start(settings).await?;
    // Ctrl-C and SIGTERM are caught from here on: a script that signals the server as soon as
    // it has read the listener lines below must get the clean stop, not the default death.
    let stop = StopSignals::install()?;
    // One line on stdout per listener, so scripts and tests that asked for port 0 learn the
    // real port (logs go to stderr).
    for (what, addr) in &running.listeners {
        match (&running.fingerprint, *what) {
            (Some(fingerprint), "native protocol") => {
                out!("sockit: {what} on {addr} (TLS {fingerprint})");
            }
            _ => out!("sockit: {what} on {addr}"),
        }
    }
    info!(data = %data.display(), "sockit serving");
    stop.wait().await;
    info!(?grace, "shutting down");
    if !running.stop().await? {
        info!("grace period over; closing the remaining connections");
    }
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment they are installed.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{CommandFactory, Parser};

    use super::*;

    /// `sockit serve` alone, to parse flags in tests.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        options: ServeOptions,
    }

    fn flags(args: &[&str]) -> ServeOptions {
        Serve::parse_from(std::iter::once("serve").chain(args.iter().copied())).options
    }

    #[test]
    fn flags_win_over_the_file_and_fill_nothing_they_were_not_given() {
        let file = Options::from_toml(
            "listen = \"127.0.0.1:7000\"\nmax_connections = 5\nidle-timeout = 9\n\
             exec-max-output = \"1MiB\"\nudp_time = \"127.0.0.1:0\"\nallow_exec = true\n",
        )
        .unwrap();
        let s = flags(&["--max-connections", "7", "--max-body", "1KB"])
            .over(file)
            .resolve()
            .unwrap();
        assert_eq!(s.server.max_connections, 7);
        assert_eq!(s.server.limits.max_body, 1000);
        assert_eq!(s.server.idle_timeout, Duration::from_secs(9));
        assert_eq!(s.exec.max_output, 1 << 20);
        assert_eq!(s.listen, Endpoint::Tcp("127.0.0.1:7000".into()));
        assert_eq!(s.udp_time.as_deref(), Some("127.0.0.1:0"));
        assert!(
            s.allow_exec,
            "the file allows exec; no flag can take that back"
        );
    }

    #[test]
    fn every_flag_is_a_key_of_the_settings_file() {
        // Each flag's long name, with a value of the right type, must parse as a file key,
        // so that the two never drift apart.
        let command = Serve::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "config" | "help" | "version") {
                continue;
            }
            let name = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.as_str());
            let value = match name {
                _ if !arg.get_action().takes_values() => "true",
                Some("N" | "SECS" | "BYTES") => "1",
                Some("SIZE") => "\"1KiB\"",
                Some("on|off") => "\"off\"",
                Some("text|json") => "\"json\"",
                Some("DIR" | "FILE") => "\"d\"",
                _ => "\"127.0.0.1:0\"",
            };
            let toml = format!("{long} = {value}");
            assert!(Options::from_toml(&toml).is_ok(), "{toml}");
            checked += 1;
        }
        assert_eq!(checked, 53, "every flag but --config");
    }

    #[test]
    fn no_flags_and_no_file_are_the_defaults() {
        let s = flags(&[]).settings().unwrap();
        assert_eq!(
            s.listen,
            Endpoint::Tcp(sockit::config::DEFAULT_LISTEN.into())
        );
        assert_eq!(s.server.max_connections_per_ip, 128);
    }
}
