//! `sockit serve`'s settings and the listeners they open.
//!
//! [`ServeOptions`] is both the command line (clap) and the `--config` TOML file (serde): one
//! struct, so every flag is a file key of the same name (`max-connections` or
//! `max_connections`). Flags override the file; [`ServeOptions::resolve`] fills in defaults,
//! and [`start`] binds every listener asked for and serves it until [`Running::stop`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};

use crate::net::Endpoint;
use crate::protocol::{Limits, MAX_BODY, MAX_HEADER_LEN, MAX_INLINE_BODY};
use crate::seed::exec::ExecLimits;
use crate::server::{DEFAULT_MAX_CONNECTIONS_PER_IP, ServerConfig};
use crate::service::chat::ChatLimits;
use crate::service::time::Time;

mod start;

pub use start::{Running, start};

/// The default listen address of the native protocol.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9900";

/// Every setting of `sockit serve`, each optional so that flags and file can be merged.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeOptions {
    /// Read settings from this TOML file (keys as the flags); flags given here override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address of the native protocol: HOST:PORT or unix:PATH [default: 127.0.0.1:9900].
    #[arg(long, value_name = "ADDR")]
    #[serde(deserialize_with = "de_parsed")]
    pub listen: Option<Endpoint>,
    /// Data folder (users, homes, seed uploads) [default: ./sockit-data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Allow remote command execution (off by default).
    #[arg(long)]
    pub allow_exec: bool,
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
    #[serde(deserialize_with = "de_size")]
    pub max_header: Option<u64>,
    /// Largest body accepted, streamed or not [default: 1TiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(deserialize_with = "de_size")]
    pub max_body: Option<u64>,
    /// Largest body read into memory [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(deserialize_with = "de_size")]
    pub max_inline_body: Option<u64>,
    /// Seed echo server (TCP, raw bytes in, upper-cased out) on ADDR.
    #[arg(long, value_name = "ADDR")]
    #[serde(deserialize_with = "de_parsed")]
    pub seed_echo: Option<Endpoint>,
    /// Seed command server "终极版" on ADDR (TCP, loopback only, needs --allow-exec).
    #[arg(long, value_name = "ADDR")]
    #[serde(deserialize_with = "de_parsed")]
    pub seed_exec: Option<Endpoint>,
    /// Seed upload server (FTP 简单版) on ADDR (TCP); files land in DATA/uploads.
    #[arg(long, value_name = "ADDR")]
    #[serde(deserialize_with = "de_parsed")]
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
    #[serde(deserialize_with = "de_size")]
    pub exec_max_output: Option<u64>,
    /// Commands one user may run at once over the native protocol [default: 4].
    #[arg(long, value_name = "N")]
    pub exec_max_per_user: Option<usize>,
    /// Members the chat room holds at once [default: 256].
    #[arg(long, value_name = "N")]
    pub chat_max_members: Option<usize>,
    /// Seconds a silent chat member stays in the room [default: 60].
    #[arg(long, value_name = "SECS")]
    pub chat_expiry: Option<u64>,
    /// Largest chat datagram accepted [default: 1024].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(deserialize_with = "de_size")]
    pub chat_max_message: Option<u64>,
    /// Longest strftime format the time server accepts [default: 256].
    #[arg(long, value_name = "BYTES")]
    pub time_max_format: Option<usize>,
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
    /// Limits of every TCP listener.
    pub server: ServerConfig,
    /// The seed listeners asked for.
    pub seed_echo: Option<Endpoint>,
    /// See [`ServeOptions::seed_exec`].
    pub seed_exec: Option<Endpoint>,
    /// See [`ServeOptions::seed_upload`].
    pub seed_upload: Option<Endpoint>,
    /// The UDP listeners asked for.
    pub udp_echo: Option<String>,
    /// See [`ServeOptions::udp_time`].
    pub udp_time: Option<String>,
    /// See [`ServeOptions::udp_chat`].
    pub udp_chat: Option<String>,
    /// Limits of remote commands (native exec and seed-exec).
    pub exec: ExecLimits,
    /// Limits of the chat room.
    pub chat: ChatLimits,
    /// The time service.
    pub time: Time,
}

macro_rules! merge {
    ($a:ident, $b:ident; $($field:ident),*) => {
        ServeOptions {
            config: $a.config.or($b.config),
            allow_exec: $a.allow_exec || $b.allow_exec,
            $($field: $a.$field.or($b.$field),)*
        }
    };
}

impl ServeOptions {
    /// Reads a TOML settings file; keys are the flag names, kebab-case or snake_case.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key, or a value of the wrong type.
    pub fn from_file(path: &Path) -> Result<ServeOptions> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses TOML settings text (see [`ServeOptions::from_file`]).
    ///
    /// # Errors
    /// As [`ServeOptions::from_file`].
    pub fn from_toml(text: &str) -> Result<ServeOptions> {
        let table: toml::Table = toml::from_str(text)?;
        let table: toml::Table = table
            .into_iter()
            .map(|(k, v)| (k.replace('_', "-"), v))
            .collect();
        Ok(toml::Value::Table(table).try_into()?)
    }

    /// These options, with `file`'s filling every one not given here.
    pub fn or(self, file: ServeOptions) -> ServeOptions {
        merge!(self, file; listen, data, max_connections, max_connections_per_ip, idle_timeout,
            head_timeout, grace, max_header, max_body, max_inline_body, seed_echo, seed_exec, seed_upload, udp_echo, udp_time,
            udp_chat, exec_timeout, exec_max_output, exec_max_per_user, chat_max_members,
            chat_expiry, chat_max_message, time_max_format)
    }

    /// Reads the `--config` file, if one is named, under these options.
    ///
    /// # Errors
    /// As [`ServeOptions::from_file`].
    pub fn with_file(self) -> Result<ServeOptions> {
        match &self.config {
            Some(path) => {
                let file = ServeOptions::from_file(path)?;
                Ok(self.or(file))
            }
            None => Ok(self),
        }
    }

    /// Fills in defaults and checks ranges.
    ///
    /// # Errors
    /// A value out of its range.
    pub fn resolve(self) -> Result<Settings> {
        let max_header = self.max_header.unwrap_or(u64::from(MAX_HEADER_LEN));
        let max_header_len = u32::try_from(max_header)
            .ok()
            .filter(|n| *n <= i32::MAX as u32 && *n > 0)
            .context("max-header must be between 1 byte and 2GiB")?;
        let defaults = ServerConfig::default();
        let max_connections = self
            .max_connections
            .unwrap_or(defaults.max_connections)
            .max(1);
        let max_connections_per_ip = per_ip_cap(self.max_connections_per_ip, max_connections)?;
        let listen = match self.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().map_err(anyhow::Error::msg)?,
        };
        Ok(Settings {
            listen,
            data: self.data.unwrap_or_else(|| PathBuf::from("./sockit-data")),
            allow_exec: self.allow_exec,
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
            },
            seed_echo: self.seed_echo,
            seed_exec: self.seed_exec,
            seed_upload: self.seed_upload,
            udp_echo: self.udp_echo,
            udp_time: self.udp_time,
            udp_chat: self.udp_chat,
            exec: ExecLimits {
                timeout: Duration::from_secs(self.exec_timeout.unwrap_or(30).max(1)),
                max_output: self.exec_max_output.unwrap_or(16 << 20),
                max_per_user: self.exec_max_per_user.unwrap_or(4).max(1),
            },
            chat: ChatLimits {
                max_members: self.chat_max_members.unwrap_or(256).max(1),
                expiry: Duration::from_secs(self.chat_expiry.unwrap_or(60).max(1)),
                max_message: usize::try_from(self.chat_max_message.unwrap_or(1024))
                    .context("chat-max-message is too large")?,
            },
            time: Time {
                max_format: self.time_max_format.unwrap_or(256),
            },
        })
    }
}

/// The per-address cap: the one asked for, or the default; either way below the global cap
/// (unless that is 1), so that one address cannot take every connection.
///
/// # Errors
/// A cap of 0, or one asked for that is not below `max_connections`.
fn per_ip_cap(asked: Option<usize>, max_connections: usize) -> Result<usize> {
    match asked {
        Some(0) => bail!("max-connections-per-ip must be at least 1"),
        Some(n) if n >= max_connections && max_connections > 1 => bail!(
            "max-connections-per-ip ({n}) must be below max-connections ({max_connections}), \
             or one address could take every connection"
        ),
        Some(n) => Ok(n),
        None => Ok(DEFAULT_MAX_CONNECTIONS_PER_IP
            .min(max_connections / 2)
            .max(1)),
    }
}

/// Parses a size: plain bytes, or a number with B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024), case-insensitive, spaces allowed.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (like 4096, 10MB or 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A size in a file: a number of bytes, or a string such as `"10MB"`.
fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
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

/// A value in a file that parses from a string (addresses).
fn de_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64 kib"), Ok(65536));
        for bad in ["", "1.5GB", "10XB", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_keys_are_flag_names_in_either_case_and_flags_win() {
        let file = ServeOptions::from_toml(
            "listen = \"127.0.0.1:7000\"\nmax_connections = 5\nidle-timeout = 9\n\
             exec-max-output = \"1MiB\"\nudp_time = \"127.0.0.1:0\"\nallow_exec = true\n",
        )
        .unwrap();
        assert_eq!(file.max_connections, Some(5));
        assert_eq!(file.exec_max_output, Some(1 << 20));
        let flags = ServeOptions {
            max_connections: Some(7),
            ..ServeOptions::default()
        };
        let s = flags.or(file).resolve().unwrap();
        assert_eq!(s.server.max_connections, 7);
        assert_eq!(s.server.idle_timeout, Duration::from_secs(9));
        assert_eq!(s.listen, Endpoint::Tcp("127.0.0.1:7000".into()));
        assert_eq!(s.udp_time.as_deref(), Some("127.0.0.1:0"));
        assert!(s.allow_exec);
    }

    #[test]
    fn the_per_address_cap_stays_below_the_global_cap() {
        let resolve = |toml: &str| ServeOptions::from_toml(toml).unwrap().resolve();
        let s = resolve("").unwrap().server;
        assert_eq!((s.max_connections_per_ip, s.max_connections), (128, 10_000));
        assert_eq!(s.head_timeout, Duration::from_secs(10));
        let s = resolve("max-connections-per-ip = 20\nhead_timeout = 3").unwrap();
        assert_eq!(s.server.max_connections_per_ip, 20);
        assert_eq!(s.server.head_timeout, Duration::from_secs(3));
        // A smaller global cap halves the default; an asked-for cap must stay below it.
        let s = resolve("max-connections = 64").unwrap().server;
        assert_eq!(s.max_connections_per_ip, 32);
        assert!(resolve("max-connections = 64\nmax-connections-per-ip = 64").is_err());
        assert!(resolve("max-connections-per-ip = 0").is_err());
        assert_eq!(
            resolve("max-connections = 1")
                .unwrap()
                .server
                .max_connections_per_ip,
            1
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(ServeOptions::from_toml("max-conections = 5").is_err());
        assert!(ServeOptions::from_toml("listen = \"nowhere\"").is_err());
        assert!(ServeOptions::from_toml("max-body = \"lots\"").is_err());
        assert!(ServeOptions::from_toml("config = \"x.toml\"").is_err());
    }
}
