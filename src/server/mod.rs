//! The server framework: what Python's socketserver gives the seeds, for tokio.
//!
//! You write a [`TcpService`] (socketserver's `handle()`); [`serve_tcp`] gives it the link
//! loop, a task per connection, a connection limit (and one per address), idle timeouts,
//! accept back-off, a log span per peer, and graceful shutdown through [`Shutdown`]. A [`UdpService`] gets one call per
//! datagram from [`serve_udp`].
//! Servers take an already bound listener or socket, so tests bind port 0.

pub mod idle;
mod per_ip;
mod shutdown;
mod tcp;
pub(crate) mod udp;

pub use shutdown::{Shutdown, any_triggered};
pub use tcp::{Conn, IoStream, TcpService, serve_tcp};
pub use udp::{UdpService, serve_udp};

use std::time::Duration;

use crate::protocol::Limits;

/// The default of [`ServerConfig::max_connections_per_ip`].
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 128;

/// Limits and timeouts of a server; each is a `sockit serve` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one address (IPv4, or IPv6 /64) holds at once; one more is refused and
    /// closed at once, without waiting for (or taking) one of `max_connections`. Keep it
    /// below `max_connections`, or one address can take them all (`sockit serve` does).
    pub max_connections_per_ip: usize,
    /// A connection that sends nothing (or reads nothing) for this long is closed.
    pub idle_timeout: Duration,
    /// The longest a request head of the native protocol may take, from its first byte to
    /// the end of its JSON header, however the bytes trickle in.
    pub head_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
    /// Frame limits (header length, body size).
    pub limits: Limits,
    /// Largest body a service reads into memory (bigger ones stream or are refused).
    pub max_inline_body: u64,
    /// New connections one address may open per second on a listener, once past
    /// `connection_burst`; more are refused at once. 0: no limit.
    pub connection_rate: u32,
    /// New connections one address may open at once after a quiet spell.
    pub connection_burst: u32,
}

/// The default of [`ServerConfig::connection_rate`].
pub(crate) const DEFAULT_CONNECTION_RATE: u32 = 100;

/// The default of [`ServerConfig::connection_burst`].
pub(crate) const DEFAULT_CONNECTION_BURST: u32 = 500;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: Duration::from_secs(300),
            head_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            limits: Limits::default(),
            max_inline_body: crate::protocol::MAX_INLINE_BODY,
            connection_rate: DEFAULT_CONNECTION_RATE,
            connection_burst: DEFAULT_CONNECTION_BURST,
        }
    }
}
