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
//! Nothing here knows a door's protocol: each door calls in (see [`metrics`] for the calls).

pub mod endpoint;
pub mod health;
pub mod meter;
pub mod metrics;
pub(crate) mod rate;
pub(crate) mod sessions;
pub mod shape;

pub use health::Health;
