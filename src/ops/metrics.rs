//! What the server counts, for `serve --metrics`: one function per event, each labelled by
//! the door it came through ([`Door`]) and by small fixed sets of words, never by a user
//! name or a path (each label value is a new series; a name or path chosen by a peer would
//! make the exporter's memory theirs to grow).
//!
//! Off by default: until [`install`] runs, every function here returns after one relaxed
//! atomic load, so a server without `--metrics` pays nothing else. The names, with the
//! exporter's `_total` suffixes:
//!
//! | series | labels |
//! | --- | --- |
//! | `sockit_connections_accepted_total`, `sockit_connections_open` | door |
//! | `sockit_requests_total` | door, op, result (`ok` or the error code) |
//! | `sockit_request_duration_seconds` (histogram) | door, op |
//! | `sockit_bytes_received_total`, `sockit_bytes_sent_total` | door |
//! | `sockit_logins_total` | door, result (`ok`, `failed`) |
//! | `sockit_login_throttled_total` | (none: the throttle is shared by every door) |
//! | `sockit_refusals_total` | door, reason ([`Refusal`]) |
//! | `sockit_quota_refusals_total` | (none: the quota lives in the core) |
//! | `sockit_exec_started_total`, `sockit_exec_ended_total` | reason ([`ExecEnd`]) |
//! | `sockit_uploads_in_progress` | (none: counted in the core) |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::protocol::ErrorCode;

mod requests;

/// Whether a recorder is installed (`serve --metrics`).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The installed recorder's handle, which renders the text format.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bucket bounds of the request latency histogram, in seconds: 100 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// A door: the protocol a connection speaks, the `door` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Door {
    /// sockit's own protocol (`--listen`).
    Native,
    /// The web page and WebDAV (`--http`).
    Http,
    /// FTP and FTPS (`--ftp`).
    Ftp,
}

impl Door {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Native => "native",
            Door::Http => "http",
            Door::Ftp => "ftp",
        }
    }
}

/// Why a connection or session was refused before it was served (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address held `--max-connections-per-ip` connections already.
    PerIpCap,
    /// Its address opened connections faster than `--connection-rate` allows.
    PerIpRate,
    /// Its user held `--max-sessions-per-user` sessions already.
    UserSessions,
    /// A plaintext peer off loopback on a port that wants TLS.
    TlsRequired,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIpCap => "per_ip_cap",
            Refusal::PerIpRate => "per_ip_rate",
            Refusal::UserSessions => "user_sessions",
            Refusal::TlsRequired => "tls_required",
        }
    }
}

/// How a remote command ended (the `reason` label of `sockit_exec_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecEnd {
    /// It exited (or was killed by a signal of its own doing).
    Exit,
    /// Killed: it ran over `--exec-timeout`.
    Timeout,
    /// Killed: it wrote over `--exec-max-output`.
    Output,
    /// Killed: the client left, or sent something that was not input.
    Client,
    /// Killed: the server shut down.
    Shutdown,
}

impl ExecEnd {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecEnd::Exit => "exit",
            ExecEnd::Timeout => "timeout",
            ExecEnd::Output => "output",
            ExecEnd::Client => "client",
            ExecEnd::Shutdown => "shutdown",
        }
    }
}

/// Installs the Prometheus recorder for this process (once; later calls return the same
/// handle) and switches the counting on.
///
/// # Errors
/// Another recorder was installed in this process already.
pub fn install() -> crate::Result<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| crate::Error::Internal(format!("installing the metrics recorder: {e}")))?;
    let handle = HANDLE.get_or_init(|| handle);
    // Calibrated now, not in the first request.
    clock();
    ENABLED.store(true, Ordering::Relaxed);
    // The series an operator alerts on exist from the start, at zero.
    counter!("sockit_login_throttled_total").absolute(0);
    counter!("sockit_quota_refusals_total").absolute(0);
    counter!("sockit_exec_started_total").absolute(0);
    gauge!("sockit_uploads_in_progress").set(0.0);
    Ok(handle)
}

/// Makes `door`'s connection and byte series exist from now on, at zero, so that a
/// dashboard sees the door before its first connection. Call it once the door listens.
pub fn serving(door: Door) {
    if !enabled() {
        return;
    }
    let door = door.as_str();
    counter!("sockit_connections_accepted_total", "door" => door).absolute(0);
    gauge!("sockit_connections_open", "door" => door).set(0.0);
    counter!("sockit_bytes_received_total", "door" => door).absolute(0);
    counter!("sockit_bytes_sent_total", "door" => door).absolute(0);
}

/// Whether counting is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The text format of every series now (empty when off).
pub fn render() -> String {
    let Some(handle) = HANDLE.get() else {
        return String::new();
    };
    let mut text = handle.render();
    requests::render(&mut text, LATENCY_BUCKETS);
    text
}

/// Drains the histograms' buffers into their buckets; call every few seconds.
pub(crate) fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// A connection accepted on `door`: counted now, and open until the guard drops. Take it
/// once the connection is past the caps (a refused one is a [`refused`]).
pub fn connection(door: Door) -> Open {
    if !enabled() {
        return Open(None);
    }
    counter!("sockit_connections_accepted_total", "door" => door.as_str()).increment(1);
    let open = gauge!("sockit_connections_open", "door" => door.as_str());
    open.increment(1.0);
    Open(Some(open))
}

/// One item of an open-now gauge (a connection, an upload): taken back on drop.
#[derive(Debug)]
#[must_use = "the item counts as open only while this is held"]
pub struct Open(Option<metrics::Gauge>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.decrement(1.0);
        }
    }
}

/// The clock of request latencies: the CPU's time-stamp counter where it is steady (the
/// operating system's monotonic clock otherwise), read in about 8 ns where a
/// `std::time::Instant` takes about 20 (measured on the 2-core VM of docs/PERFORMANCE.md),
/// twice a request.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// When a request began, for [`request`].
#[derive(Debug, Clone, Copy)]
pub struct Started(u64);

/// The start of a request, for [`request`]: `None` when counting is off (no clock read).
#[inline]
pub fn started() -> Option<Started> {
    enabled().then(|| Started(clock().raw()))
}

/// A request of `op` (a fixed word per op of the door, never a path) ended with `result`
/// (`Ok`, or the error code it was refused with), `since` being [`started`]'s value.
pub fn request(door: Door, op: &'static str, result: Option<ErrorCode>, since: Option<Started>) {
    let Some(Started(since)) = since else {
        return;
    };
    let clock = clock();
    let took = clock.delta_as_nanos(since, clock.raw());
    let result = result.map_or("ok", code_label);
    requests::record((door, op, result), took);
}

/// Bytes that arrived on (`received`) or left through (`sent`) `door`.
pub fn bytes(door: Door, received: u64, sent: u64) {
    if !enabled() {
        return;
    }
    if received > 0 {
        counter!("sockit_bytes_received_total", "door" => door.as_str()).increment(received);
    }
    if sent > 0 {
        counter!("sockit_bytes_sent_total", "door" => door.as_str()).increment(sent);
    }
}

/// A password or key login through `door` that succeeded (`true`) or was refused.
pub fn login(door: Door, ok: bool) {
    if enabled() {
        let result = if ok { "ok" } else { "failed" };
        counter!("sockit_logins_total", "door" => door.as_str(), "result" => result).increment(1);
    }
}

/// A login refused unchecked because its address cools down after repeated failures.
pub(crate) fn login_throttled() {
    if enabled() {
        counter!("sockit_login_throttled_total").increment(1);
    }
}

/// A connection or session of `door` refused for `reason`.
pub fn refused(door: Door, reason: Refusal) {
    if enabled() {
        counter!("sockit_refusals_total", "door" => door.as_str(), "reason" => reason.as_str())
            .increment(1);
    }
}

/// An upload, folder or commit refused for the user's quota.
pub(crate) fn quota_refused() {
    if enabled() {
        counter!("sockit_quota_refusals_total").increment(1);
    }
}

/// A remote command started.
pub(crate) fn exec_started() {
    if enabled() {
        counter!("sockit_exec_started_total").increment(1);
    }
}

/// A remote command ended, for `reason`.
pub(crate) fn exec_ended(reason: ExecEnd) {
    if enabled() {
        counter!("sockit_exec_ended_total", "reason" => reason.as_str()).increment(1);
    }
}

/// An upload under way (in the core, whichever door): counted until the guard drops.
pub(crate) fn upload() -> Open {
    if !enabled() {
        return Open(None);
    }
    let open = gauge!("sockit_uploads_in_progress");
    open.increment(1.0);
    Open(Some(open))
}

/// The `result` label of an error code: its wire spelling, without an allocation.
pub fn code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Protocol => "protocol",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::UnknownOp => "unknown_op",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::Timeout => "timeout",
        ErrorCode::Busy => "busy",
        ErrorCode::Internal => "internal",
        ErrorCode::NotFound => "not_found",
        ErrorCode::AlreadyExists => "already_exists",
        ErrorCode::PermissionDenied => "permission_denied",
        ErrorCode::QuotaExceeded => "quota_exceeded",
        ErrorCode::StorageFull => "storage_full",
        ErrorCode::DigestMismatch => "digest_mismatch",
        ErrorCode::AuthFailed => "auth_failed",
        ErrorCode::AuthRequired => "auth_required",
        ErrorCode::ExecDisabled => "exec_disabled",
        ErrorCode::TooManyConnections => "too_many_connections",
        ErrorCode::TlsRequired => "tls_required",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_label_is_its_wire_spelling() {
        use ErrorCode::*;
        for code in [
            Protocol,
            BadRequest,
            UnknownOp,
            TooLarge,
            Timeout,
            Busy,
            Internal,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            QuotaExceeded,
            StorageFull,
            DigestMismatch,
            AuthFailed,
            AuthRequired,
            ExecDisabled,
            TooManyConnections,
            TlsRequired,
            Unavailable,
            Other,
        ] {
            assert_eq!(code_label(code), code.to_string());
        }
    }
}
