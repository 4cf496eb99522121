//! A server's settings, and the listeners they open; no command line here (that is the
//! binary's `sockit serve`, whose flags are the keys of [`Options`]).
//!
//! [`Options`] holds every setting, each optional, as a TOML settings file gives them
//! ([`Options::from_file`]); [`Options::resolve`] fills in the defaults and checks ranges,
//! giving [`Settings`]; [`start`] binds every listener asked for and serves it until
//! [`Running::stop`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::net::Endpoint;
pub use crate::ops::shape::Rates;
use crate::protocol::{Limits, MAX_BODY, MAX_HEADER_LEN, MAX_INLINE_BODY};
use crate::runner::SandboxOptions;
use crate::seed::command::ExecLimits;
use crate::server::{DEFAULT_MAX_CONNECTIONS_PER_IP, ServerConfig};
use crate::service::chat::ChatLimits;
use crate::service::time::Time;

mod size;
mod start;
#[cfg(test)]
mod tests;

pub use size::parse_size;
pub use start::{Running, start};

/// The default of [`Options::max_sessions_per_user`].
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 64;

/// The default listen address of the native protocol.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9900";

/// Every setting of a server, each optional (left out: the default). The keys of a settings
/// file are the field names, kebab-case or snake_case; they are also `sockit serve`'s flags.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// Address of the native protocol: HOST:PORT or unix:PATH [default: 127.0.0.1:9900].
    #[serde(deserialize_with = "de_parsed")]
    pub listen: Option<Endpoint>,
    /// Data folder (users, homes, seed uploads) [default: ./sockit-data].
    pub data: Option<PathBuf>,
    /// Allow remote command execution (off by default).
    pub allow_exec: bool,
    /// The native port's TLS certificate (PEM) [default: DATA/tls/cert.pem, made on first
    /// start, self-signed].
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert` (PEM) [default: DATA/tls/key.pem].
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext to peers that are not on loopback too (off: they must speak TLS).
    pub allow_plaintext: bool,
    /// Connections served at once per listener; more wait in the backlog [default: 10000].
    pub max_connections: Option<usize>,
    /// Connections one address (IPv4, or IPv6 /64) holds at once per listener; more are
    /// refused. Below `max_connections` [default: 128, or half of `max_connections` if less].
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a connection may stay silent (or not read) before it is closed [default: 300].
    pub idle_timeout: Option<u64>,
    /// Seconds a request head may take from its first byte to its last [default: 10].
    pub head_timeout: Option<u64>,
    /// Seconds shutdown waits for requests in flight [default: 10].
    pub grace: Option<u64>,
    /// Largest JSON header accepted, in bytes [default: 64KiB].
    #[serde(deserialize_with = "de_size")]
    pub max_header: Option<u64>,
    /// Largest body accepted, streamed or not [default: 1TiB].
    #[serde(deserialize_with = "de_size")]
    pub max_body: Option<u64>,
    /// Largest body read into memory [default: 16MiB].
    #[serde(deserialize_with = "de_size")]
    pub max_inline_body: Option<u64>,
    /// Seed echo server (TCP, raw bytes in, upper-cased out) on this address.
    #[serde(deserialize_with = "de_parsed")]
    pub seed_echo: Option<Endpoint>,
    /// Seed command server "终极版" (TCP, loopback only, needs `allow_exec`).
    #[serde(deserialize_with = "de_parsed")]
    pub seed_exec: Option<Endpoint>,
    /// Seed upload server (FTP 简单版, TCP); files land in DATA/uploads.
    #[serde(deserialize_with = "de_parsed")]
    pub seed_upload: Option<Endpoint>,
    /// UDP echo server on HOST:PORT.
    pub udp_echo: Option<String>,
    /// UDP time ("NTP") server on HOST:PORT.
    pub udp_time: Option<String>,
    /// UDP chat room on HOST:PORT.
    pub udp_chat: Option<String>,
    /// Seconds a command may run before it is killed [default: 30].
    pub exec_timeout: Option<u64>,
    /// Output a command may produce before it is killed [default: 16MiB].
    #[serde(deserialize_with = "de_size")]
    pub exec_max_output: Option<u64>,
    /// Commands one user may run at once over the native protocol [default: 4].
    pub exec_max_per_user: Option<usize>,
    /// Address space of each process of a command (RLIMIT_AS) [default: 512MiB].
    #[serde(deserialize_with = "de_size")]
    pub exec_memory: Option<u64>,
    /// Processes and threads one command may have at once [default: 64].
    pub exec_processes: Option<u64>,
    /// Files each process of a command may have open (RLIMIT_NOFILE) [default: 256].
    pub exec_open_files: Option<u64>,
    /// CPU seconds each process of a command may use (RLIMIT_CPU) [default: 60].
    pub exec_cpu_secs: Option<u64>,
    /// Whether commands may use the network: "on" or "off" [default: off].
    #[serde(deserialize_with = "de_switch")]
    pub exec_network: Option<bool>,
    /// Start exec even on a machine that lacks its sandbox (Landlock, namespaces), with only
    /// what the machine allows (off: such a server refuses to start with exec).
    pub exec_unconfined: bool,
    /// Members the chat room holds at once [default: 256].
    pub chat_max_members: Option<usize>,
    /// Seconds a silent chat member stays in the room [default: 60].
    pub chat_expiry: Option<u64>,
    /// Largest chat datagram accepted [default: 1024].
    #[serde(deserialize_with = "de_size")]
    pub chat_max_message: Option<u64>,
    /// Longest strftime format the time server accepts, in bytes [default: 256].
    pub time_max_format: Option<usize>,
    /// Prometheus metrics (`/metrics`) and health (`/healthz`) over HTTP on this address.
    #[serde(deserialize_with = "de_parsed")]
    pub metrics: Option<Endpoint>,
    /// Log lines as `text` or `json` (one object per line) [default: text].
    pub log_format: Option<LogFormat>,
    /// New connections one address may open per second per listener; 0: no limit
    /// [default: 100].
    pub connection_rate: Option<u32>,
    /// New connections one address may open at once after a quiet spell [default: 500].
    pub connection_burst: Option<u32>,
    /// Sessions (logged-in connections, any door) one user may hold at once [default: 64].
    pub max_sessions_per_user: Option<usize>,
    /// Bytes of small files read ahead for pipelined gets, all connections together
    /// [default: 64 MiB].
    #[serde(deserialize_with = "de_size")]
    pub max_read_ahead: Option<u64>,
    /// Bytes per second the server takes in, all clients together [default: no limit].
    #[serde(deserialize_with = "de_size")]
    pub max_rate_up: Option<u64>,
    /// Bytes per second the server sends, all clients together [default: no limit].
    #[serde(deserialize_with = "de_size")]
    pub max_rate_down: Option<u64>,
    /// Bytes per second one connection may send the server [default: no limit].
    #[serde(deserialize_with = "de_size")]
    pub max_rate_up_per_connection: Option<u64>,
    /// Bytes per second one connection may receive [default: no limit].
    #[serde(deserialize_with = "de_size")]
    pub max_rate_down_per_connection: Option<u64>,
    /// The HTTP door (HTTPS; WebDAV at /dav/, the web page at /) on HOST:PORT.
    #[serde(deserialize_with = "de_parsed")]
    pub http: Option<Endpoint>,
    /// The FTP door (FTP with explicit FTPS, AUTH TLS) on HOST:PORT.
    pub ftp: Option<String>,
    /// The FTP door's passive data ports, A-B [default: 50000-50999].
    pub ftp_passive_ports: Option<String>,
    /// The PostgreSQL user store, postgres://USER:PASSWORD@HOST:PORT/DB [default: SQLite
    /// DATA/users.db].
    pub users: Option<crate::users::UsersUrl>,
    /// With `users`: seconds a server may go silent before the quota reservations of its
    /// uploads are reclaimed by the others [default: 60].
    pub quota_lease: Option<u64>,
    /// Where the homes live: `s3://BUCKET[/PREFIX]` [default: the folder DATA/homes].
    pub store: Option<String>,
    /// The object store's endpoint, for one other than AWS.
    pub s3_endpoint: Option<String>,
    /// The object store's region [default: us-east-1].
    pub s3_region: Option<String>,
    /// Seconds one request to the object store may take, retries included [default: 30].
    pub s3_timeout: Option<u64>,
    /// Seconds an unfinished upload to the object store is kept for a resume [default: a
    /// week].
    pub s3_keep_unfinished: Option<u64>,
}

/// How log lines are written (`serve --log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format (text or json)")),
        }
    }
}

/// Settings with every default filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The native protocol's address.
    pub listen: Endpoint,
    /// The data folder.
    pub data: PathBuf,
    /// Whether commands may run.
    pub allow_exec: bool,
    /// The TLS certificate and key files given; `None`: the pair in `DATA/tls/`.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// Whether plaintext is served to peers off loopback.
    pub allow_plaintext: bool,
    /// Limits of every TCP listener.
    pub server: ServerConfig,
    /// The seed listeners asked for.
    seed_echo: Option<Endpoint>,
    /// See [`Options::seed_exec`].
    seed_exec: Option<Endpoint>,
    /// See [`Options::seed_upload`].
    seed_upload: Option<Endpoint>,
    /// The UDP listeners asked for.
    udp_echo: Option<String>,
    /// See [`Options::udp_time`].
    pub udp_time: Option<String>,
    /// See [`Options::udp_chat`].
    udp_chat: Option<String>,
    /// Limits of remote commands (native exec and seed-exec).
    pub exec: ExecLimits,
    /// What the sandbox of remote commands is asked for.
    pub exec_sandbox: SandboxOptions,
    /// Limits of the chat room.
    chat: ChatLimits,
    /// The time service.
    time: Time,
    /// The metrics listener asked for.
    pub metrics: Option<Endpoint>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Sessions one user may hold at once.
    pub max_sessions_per_user: usize,
    /// Bytes read ahead for pipelined gets, all connections together.
    pub max_read_ahead: u64,
    /// Bandwidth limits.
    pub rates: Rates,
    /// The HTTP door's address, if asked for.
    pub http: Option<Endpoint>,
    /// The FTP door's address.
    pub ftp: Option<String>,
    /// The FTP door's passive data ports.
    pub ftp_passive_ports: std::ops::RangeInclusive<u16>,
    /// The PostgreSQL user store; `None`: SQLite in the data folder.
    pub users: Option<crate::users::UsersUrl>,
    /// See [`Options::quota_lease`].
    pub quota_lease: Duration,
    /// The object store holding the homes, if not the folder `DATA/homes`.
    pub store: Option<crate::storage::s3::S3Options>,
}

impl Options {
    /// Reads a TOML settings file; keys are the field names, kebab-case or snake_case.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file: unreadable, bad TOML, an unknown key, or a value of
    /// the wrong type.
    pub fn from_file(path: &Path) -> Result<Options> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| failed(format!("reading {}", path.display()), e))?;
        parse(&text).map_err(|e| failed(format!("in {}", path.display()), e))
    }

    /// Parses TOML settings text (see [`Options::from_file`]).
    ///
    /// # Errors
    /// As [`Options::from_file`], naming no file.
    pub fn from_toml(text: &str) -> Result<Options> {
        parse(text).map_err(|e| refused(e.to_string()))
    }

    /// Fills in defaults and checks ranges.
    ///
    /// # Errors
    /// [`Error::Config`]: a value out of its range.
    pub fn resolve(self) -> Result<Settings> {
        let exec = exec_limits(&self)?;
        let max_header = self.max_header.unwrap_or(u64::from(MAX_HEADER_LEN));
        let max_header_len = u32::try_from(max_header)
            .ok()
            .filter(|n| *n <= crate::tls::MAX_HEADER_WITH_TLS && *n > 0)
            .ok_or_else(|| {
                refused(format!(
                    "max-header must be between 1 byte and {} bytes (a longer header could \
                     begin like a TLS record, which the native port tells apart by it)",
                    crate::tls::MAX_HEADER_WITH_TLS
                ))
            })?;
        let defaults = ServerConfig::default();
        let max_connections = self
            .max_connections
            .unwrap_or(defaults.max_connections)
            .max(1);
        let max_connections_per_ip = per_ip_cap(self.max_connections_per_ip, max_connections)?;
        let listen = match self.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().map_err(refused)?,
        };
        let tls_files = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(refused("tls-cert and tls-key go together")),
        };
        Ok(Settings {
            listen,
            data: self.data.unwrap_or_else(|| PathBuf::from("./sockit-data")),
            allow_exec: self.allow_exec,
            tls_files,
            allow_plaintext: self.allow_plaintext,
            server: ServerConfig {
                max_connections,
                max_connections_per_ip,
                idle_timeout: Duration::from_secs(self.idle_timeout.unwrap_or(300).max(1)),
                head_timeout: Duration::from_secs(self.head_timeout.unwrap_or(10).max(1)),
                grace: Duration::from_secs(self.grace.unwrap_or(10)),
                limits: Limits {
                    max_header_len,
                    max_body: self.max_body.unwrap_or(MAX_BODY),
                },
                max_inline_body: self.max_inline_body.unwrap_or(MAX_INLINE_BODY),
                connection_rate: self.connection_rate.unwrap_or(defaults.connection_rate),
                connection_burst: self.connection_burst.unwrap_or(defaults.connection_burst),
            },
            seed_echo: self.seed_echo,
            seed_exec: self.seed_exec,
            seed_upload: self.seed_upload,
            udp_echo: self.udp_echo,
            udp_time: self.udp_time,
            udp_chat: self.udp_chat,
            exec,
            exec_sandbox: SandboxOptions {
                network: self.exec_network.unwrap_or(false),
                unconfined: self.exec_unconfined,
            },
            chat: ChatLimits {
                max_members: self.chat_max_members.unwrap_or(256).max(1),
                expiry: Duration::from_secs(self.chat_expiry.unwrap_or(60).max(1)),
                max_message: usize::try_from(self.chat_max_message.unwrap_or(1024))
                    .map_err(|e| failed("chat-max-message is too large", e))?,
            },
            time: Time {
                max_format: self.time_max_format.unwrap_or(256),
            },
            metrics: self.metrics,
            log_format: self.log_format.unwrap_or_default(),
            max_sessions_per_user: self
                .max_sessions_per_user
                .unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER)
                .max(1),
            max_read_ahead: self
                .max_read_ahead
                .unwrap_or(crate::service::DEFAULT_MAX_READ_AHEAD),
            rates: Rates {
                up: self.max_rate_up,
                down: self.max_rate_down,
                up_per_connection: self.max_rate_up_per_connection,
                down_per_connection: self.max_rate_down_per_connection,
            },
            http: self.http,
            ftp: self.ftp,
            ftp_passive_ports: match &self.ftp_passive_ports {
                Some(text) => crate::ftp_door::parse_passive_ports(text)?,
                None => crate::ftp_door::DEFAULT_PASSIVE_PORTS,
            },
            users: self.users,
            quota_lease: Duration::from_secs(self.quota_lease.unwrap_or(60).max(1)),
            store: match self.store {
                Some(url) => Some(crate::storage::s3::S3Options {
                    url,
                    endpoint: self.s3_endpoint,
                    region: self.s3_region,
                    timeout: Duration::from_secs(self.s3_timeout.unwrap_or(30).max(1)),
                    keep_unfinished: Duration::from_secs(
                        self.s3_keep_unfinished
                            .unwrap_or(crate::storage::s3::KEEP_UNFINISHED.as_secs()),
                    ),
                }),
                None if self.s3_endpoint.is_some() || self.s3_region.is_some() => {
                    return Err(refused("s3-endpoint and s3-region go with store = s3://…"));
                }
                None => None,
            },
        })
    }
}

/// The limits of remote commands, defaults filled in.
///
/// # Errors
/// A memory, process or open-file limit too small for any command to start.
fn exec_limits(options: &Options) -> Result<ExecLimits> {
    let defaults = ExecLimits::default();
    let limits = ExecLimits {
        timeout: Duration::from_secs(options.exec_timeout.unwrap_or(30).max(1)),
        max_output: options.exec_max_output.unwrap_or(defaults.max_output),
        max_per_user: options.exec_max_per_user.unwrap_or(4).max(1),
        memory: options.exec_memory.unwrap_or(defaults.memory),
        processes: options.exec_processes.unwrap_or(defaults.processes),
        open_files: options.exec_open_files.unwrap_or(defaults.open_files),
        cpu_secs: options.exec_cpu_secs.unwrap_or(defaults.cpu_secs).max(1),
    };
    // Below these, not even `sh -c true` starts: a refusal now beats every command failing.
    if limits.memory < 16 << 20 {
        return Err(refused("exec-memory must be at least 16MiB"));
    }
    if limits.processes < 1 {
        return Err(refused("exec-processes must be at least 1"));
    }
    if limits.open_files < 16 {
        return Err(refused("exec-open-files must be at least 16"));
    }
    Ok(limits)
}

/// Parses a switch: `on` or `off` (also `true`/`false`, `yes`/`no`).
///
/// # Errors
/// Anything else, as a message (a `String`, as clap's and serde's parsers take it).
pub fn parse_switch(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("`{s}` is not on or off")),
    }
}

/// TOML text as [`Options`], with `snake_case` keys taken as their kebab-case names.
fn parse(text: &str) -> std::result::Result<Options, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    let table: toml::Table = table
        .into_iter()
        .map(|(k, v)| (k.replace('_', "-"), v))
        .collect();
    toml::Value::Table(table).try_into()
}

/// The per-address cap: the one asked for, or the default; either way below the global cap
/// (unless that is 1), so that one address cannot take every connection.
///
/// # Errors
/// A cap of 0, or one asked for that is not below `max_connections`.
fn per_ip_cap(asked: Option<usize>, max_connections: usize) -> Result<usize> {
    match asked {
        Some(0) => Err(refused("max-connections-per-ip must be at least 1")),
        Some(n) if n >= max_connections && max_connections > 1 => Err(refused(format!(
            "max-connections-per-ip ({n}) must be below max-connections ({max_connections}), \
             or one address could take every connection"
        ))),
        Some(n) => Ok(n),
        None => Ok(DEFAULT_MAX_CONNECTIONS_PER_IP
            .min(max_connections / 2)
            .max(1)),
    }
}

/// [`Error::Config`] for a setting refused as it stands.
fn refused(message: impl Into<String>) -> Error {
    Error::Config {
        message: message.into(),
        source: None,
    }
}

/// [`Error::Config`] for a step that failed underneath: `message` says which, `source` why.
fn failed(
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Config {
        message: message.into(),
        source: Some(Box::new(source)),
    }
}

/// A size in a file: a number of bytes, or a string such as `"10MB"`.
fn de_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(Some(n)),
        Raw::S(s) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A switch in a file: `"on"`/`"off"`, or a boolean.
fn de_switch<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::B(b) => Ok(Some(b)),
        Raw::S(s) => parse_switch(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A value in a file that parses from a string (addresses).
fn de_parsed<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}
