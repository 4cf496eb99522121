//! What the native door tells the operator about each request: its metrics (op, result,
//! latency) and, for a transfer, one log line with the user, result, bytes and duration.
//! Never a password: a login's fields are not logged.

use std::time::Instant;

use tracing::{info, warn};

use crate::ops::meter::Metered;
use crate::ops::metrics::{self, Door};
use crate::protocol::Request;
use crate::{Error, Result};

/// The `op` label of a request: a fixed word per op, whatever the peer sent.
fn op_label(request: &Result<Request>) -> &'static str {
    match request {
        Err(_) => "invalid",
        Ok(request) => match request {
            Request::Echo => "echo",
            Request::Login { .. } => "login",
            Request::Ls { .. } => "ls",
            Request::Stat { .. } => "stat",
            Request::Mkdir { .. } => "mkdir",
            Request::Rm { .. } => "rm",
            Request::Mv { .. } => "mv",
            Request::Df => "df",
            Request::Put { .. } => "put",
            Request::Write { .. } => "write",
            Request::Data { .. } => "data",
            Request::Done { .. } => "done",
            Request::Get { .. } => "get",
            Request::Exec { .. } => "exec",
            Request::Stdin { .. } => "stdin",
            Request::Unknown => "unknown",
        },
    }
}

/// One request under way, from its head to its answer.
#[derive(Debug)]
pub(super) struct Report {
    op: &'static str,
    /// For the metrics: `None` when they are off.
    since: Option<metrics::Started>,
    /// For a transfer's log line: its path, when it began, and the stream's byte counts
    /// then.
    transfer: Option<(String, Instant, u64, u64)>,
}

impl Report {
    /// `request` begins on `stream`.
    pub(super) fn begin<S>(request: &Result<Request>, stream: &Metered<S>) -> Report {
        let transfer = match request {
            Ok(Request::Put { path, .. } | Request::Get { path, .. }) => Some((
                path.clone(),
                Instant::now(),
                stream.received(),
                stream.sent(),
            )),
            _ => None,
        };
        Report {
            op: op_label(request),
            since: metrics::started(),
            transfer,
        }
    }

    /// The request ended with `result`, for `user` (if logged in), having moved `moved`
    /// bytes of file (a transfer that succeeded says how many; otherwise what crossed the
    /// stream in its direction is logged).
    pub(super) fn end<S>(
        self,
        result: &Result<()>,
        user: Option<&str>,
        moved: Option<u64>,
        stream: &Metered<S>,
    ) {
        let code = result.as_ref().err().map(Error::code);
        metrics::request(Door::Native, self.op, code, self.since);
        let Some((path, began, received, sent)) = self.transfer else {
            return;
        };
        let bytes = match (result, moved) {
            (Ok(()), Some(moved)) => moved,
            _ if self.op == "put" => stream.received() - received,
            _ => stream.sent() - sent,
        };
        let duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let user = user.unwrap_or("-");
        let op = self.op;
        match code {
            None => info!(op, user, %path, result = "ok", bytes, duration_ms, "transfer"),
            Some(code) => {
                let result = metrics::code_label(code);
                warn!(op, user, %path, result, bytes, duration_ms, "transfer failed");
            }
        }
    }
}
