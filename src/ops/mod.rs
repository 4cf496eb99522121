//! Operations: what an operator sees of a running server and how they bound it.
//!
//! - [`metrics`]: the counters, gauges and histograms (Prometheus), one call per event, by
//!   door; [`meter`]: a stream wrapper that counts a door's bytes.
//! - [`endpoint`]: `serve --metrics ADDR`, a small HTTP listener with `/metrics` and
//!   `/healthz`; [`Health`]: whether every listener and back-end is up.
//!
//! Nothing here knows a door's protocol: each door calls in (see [`metrics`] for the calls).

pub mod endpoint;
pub mod health;
pub mod meter;
pub mod metrics;

pub use health::Health;
