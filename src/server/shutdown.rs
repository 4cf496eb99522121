//! `Shutdown`: one signal for every listener and connection, and a deadline for the rest.
//!
//! Cancelling the token stops the accept loops and tells each connection to stop after the
//! request it is on; [`Shutdown::drain`] then waits for the tracked tasks, up to a grace period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Set, never cleared, once a server of this process has been told to stop.
static ANY_TRIGGERED: AtomicBool = AtomicBool::new(false);

/// Whether a server of this process has been told to stop: a hint, read without a lock,
/// that a connection's token may have been cancelled. While it is false no token is; once it
/// is true the token itself says (another server of the process may be the one stopping).
/// A connection that waits on its token between requests registers once, then looks at the
/// token again only when this says so, instead of taking the token's two locks every wait.
pub fn any_triggered() -> bool {
    ANY_TRIGGERED.load(Ordering::Acquire)
}

/// The server's shutdown signal plus the set of tasks it waits for.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every listener and connection to stop.
    pub fn trigger(&self) {
        // Before the cancel: a connection woken by it must see the hint.
        ANY_TRIGGERED.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// The token that connections watch between requests. Stop through
    /// [`Shutdown::trigger`], never by cancelling it here: connections waiting between
    /// requests look at their token only once [`any_triggered`] says to.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The tracker that owns the per-connection tasks.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Completes once [`Shutdown::trigger`] was called.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Triggers, then waits up to `grace` for every tracked task to finish. Returns whether
    /// all did; what is left is abandoned with the runtime.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.trigger();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
