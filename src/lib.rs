//! sockit: messages over TCP that never stick together (the seeds' 粘包 problem, solved with
//! their 4-byte length + JSON header framing), a socketserver-style framework, and the
//! services built on it.
//!
//! # Layout
//! - [`protocol`]: the wire format, pure functions over bytes (no I/O).
//! - [`connection`]: frames over an async stream; [`blocking`]: the same over `std::io`.
//! - [`net`]: endpoints (`host:port`, `unix:PATH`), listeners and streams.
//! - [`server`]: the framework: accept loop, limits, idle timeouts, graceful shutdown.
//! - [`service`]: the native protocol's ops and the frame loop that dispatches them.
//! - [`client`]: the calling side of the native protocol.
//! - [`seed`]: the seeds' raw protocols (echo, exec, upload), server and client side.
//! - [`config`]: `sockit serve`'s settings (flags and TOML file) and the listeners they open.
//! - [`home`]: what a logged-in user may do to their home, priced against their quota.
//! - [`storage`]: a user's home as a root-confined folder; uploads via partial files.
//! - [`quota`]: per-user reservations so concurrent uploads cannot overshoot a quota.
//! - [`users`]: the SQLite user store (argon2id hashes, quotas) and login throttling.
//! - [`runner`]: child processes of remote commands: process groups in PID namespaces, limits,
//!   kill on drop.
//! - [`filecopy`]: file bytes to and from a connection, with md5, on the blocking pool.
//! - [`error`]: the one error type, mapped to the wire by [`Error::code`].

pub mod blocking;
pub mod client;
pub mod config;
pub mod connection;
mod error;
pub mod filecopy;
mod home;
pub mod net;
pub mod protocol;
pub mod quota;
pub mod runner;
pub mod seed;
pub mod server;
pub mod service;
pub mod storage;
pub mod users;

pub use error::{Error, Result};
