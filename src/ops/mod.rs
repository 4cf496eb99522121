//! Operations: what an operator sees of a running server and how they bound it.
//!
//! - [`metrics`]: the counters, gauges and histograms (Prometheus), one call per event, by
//!   door; [`meter`]: a stream wrapper that counts a door's bytes.
//! - [`endpoint`]: `serve --metrics ADDR`, a small HTTP listener with `/metrics` and
//!   `/healthz`; [`Health`]: whether every listener and back-end is up.
//! - [`shape`]: bandwidth limits (token buckets of bytes per second), applied by
//!   [`meter::Metered`]; `rate`: the per-address connection rate; `sessions`: sessions
//!   per user, and the buckets a user's sessions share.
//!
//! Nothing here knows a door's protocol: each door calls in. What a door (the web page,
//! WebDAV, FTP) does, as the native door does in `service/mod.rs`:
//!
//! - once it listens: `metrics::serving(Door::Http)` (its series exist at zero), and, if it
//!   is not started through `Running::tcp` (which does it), `health.listener("http", addr)`,
//!   keeping the returned flag for as long as it serves;
//! - per accepted connection: `let _open = metrics::connection(Door::Http);`, and its stream
//!   wrapped in `Metered::new(stream, Door::Http)` (bytes in and out), with
//!   `ServerRates::apply(&mut stream)` for the server's bandwidth limits; a connection it
//!   refuses itself: `metrics::refused(Door::Http, Refusal::PerIpCap)`;
//! - per login: `files.password_login(Door::Http, name, password, ip)` counts the login and
//!   enforces the sessions cap; then `stream.shape_user(slot.up.clone(), slot.down.clone())`
//!   with the user's `LoggedIn::slot` applies their bandwidth limits;
//! - per request: `let since = metrics::started();` before, and after
//!   `metrics::request(Door::Http, "get", result.as_ref().err().map(Error::code), since)`,
//!   `op` being a fixed word (the method or command), never a path.
//!
//! Quota refusals, uploads in progress and the login throttle are counted in the core, for
//! every door.

pub mod endpoint;
pub mod health;
pub mod meter;
pub mod metrics;
pub(crate) mod rate;
pub(crate) mod sessions;
pub mod shape;

pub use health::Health;
