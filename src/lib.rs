//! sockit: messages over TCP that never stick together (the seeds' 粘包 problem, solved with
//! their 4-byte length + JSON header framing), a socketserver-style framework, and the
//! services built on it.
//!
//! # Layout
//! One file-service core, many doors: the rules of a home are written once, in `home`, and
//! every door (today the native protocol; TLS, HTTP/WebDAV and FTP next) is a thin layer
//! that translates its protocol into calls on it.
//!
//! - [`protocol`]: the wire format, pure functions over bytes (no I/O): frames, requests
//!   (`request.rs`), the reply envelope and error codes (`header.rs`), every op's reply
//!   fields (`ops.rs`), paths from the network (`wire_path.rs`). One type per message, used
//!   by the server to answer and by the client to read.
//! - [`connection`]: frames over an async stream; [`blocking`]: the same over `std::io`.
//! - [`net`]: endpoints (`host:port`, `unix:PATH`), listeners, streams, address buckets.
//! - [`server`]: the framework: accept loop, global and per-address caps, idle and head
//!   deadlines, graceful shutdown, UDP datagrams.
//! - `home` (crate-private): the core: what a logged-in user may do to their home (list,
//!   stat, mkdir, rm, mv, read, an upload that resumes, verifies and commits), priced
//!   against their quota under one lock per user, over a `storage::backend::Storage`.
//! - [`storage`]: the `Storage` trait and the local folder behind it: a root-confined
//!   handle, partial files, walks by handle, only regular files read or written.
//! - [`quota`]: what each home costs (bytes plus a block per entry) and what uploads in
//!   flight reserved, under one lock.
//! - [`users`]: accounts: the SQLite user store, argon2id checks in reused memory, the
//!   login throttle.
//! - [`service`]: the native protocol's door (frame loop, login, file ops, transfers, exec)
//!   and the UDP time and chat services.
//! - `httpd` (crate-private): the HTTP door (`serve --http`): HTTPS on the native port's
//!   certificate, WebDAV at `/dav/` and the web page at `/`, over `home`.
//! - [`runner`]: child processes of remote commands: the exec sandbox (namespaces, Landlock,
//!   control groups, limits), kill on drop.
//! - [`filecopy`]: file bytes to and from a connection on the blocking pool, with digests.
//! - [`ftp_door`]: `serve --ftp`: FTP and explicit FTPS by libunftp, over `home` (its
//!   storage back-end) and the file service's password login (its authenticator).
//! - [`seed`]: the seeds' raw protocols (echo, command, upload), server and client side.
//! - [`client`]: the calling side: the native protocol, exec's streams, the shell's
//!   language, UDP and chat clients, the load generator.
//! - [`config`]: `sockit serve`'s settings (TOML file) and the listeners they open.
//! - [`ops`]: what an operator sees and bounds: metrics (Prometheus), `/healthz`.
//! - [`tls`]: the server's TLS identity (made on first start), its fingerprint, TLS 1.3.
//! - [`keys`]: login keys (Ed25519): key files, fingerprints, the signed login message.
//! - [`lab`]: `sockit lab`: the seeds' socket phenomena (粘包, Nagle, TIME_WAIT, UDP
//!   boundaries, the listen backlog, half-close) run on loopback and measured.
//! - `error` (re-exported): the one [`Error`] type, mapped to the wire by [`Error::code`].

pub mod blocking;
pub mod client;
pub mod config;
pub mod connection;
mod error;
pub mod filecopy;
pub mod ftp_door;
mod home;
mod httpd;
pub mod keys;
pub mod lab;
pub mod net;
pub mod ops;
pub mod protocol;
pub mod quota;
pub mod runner;
pub mod seed;
pub mod server;
pub mod service;
pub mod storage;
pub mod tls;
pub mod users;

pub use error::{Error, Result};
