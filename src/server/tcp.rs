//! The TCP accept loop: permit, accept (with back-off), spawn a tracked task per connection.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::idle::IdleStream;
use super::{ServerConfig, Shutdown};
use crate::net::{Listener, Peer, Stream};

/// The stream a service gets: the accepted socket, with the idle timeout on reads and writes
/// (a stalled read or write fails with `TimedOut`).
pub type IoStream = IdleStream<Stream>;

/// One accepted connection, as handed to a [`TcpService`].
#[derive(Debug)]
pub struct Conn {
    /// The byte stream.
    pub stream: IoStream,
    /// Who connected.
    pub peer: Peer,
    /// Cancelled when the server shuts down: stop after the current request.
    pub shutdown: CancellationToken,
    /// The server's limits.
    pub config: Arc<ServerConfig>,
}

/// A TCP service: socketserver's `BaseRequestHandler.handle()`, once per connection.
pub trait TcpService: Send + Sync + 'static {
    /// Serves one connection until it ends.
    ///
    /// # Errors
    /// Whatever ended the connection abnormally; the framework logs it. The server goes on.
    fn handle(&self, conn: Conn) -> impl Future<Output = crate::Result<()>> + Send;
}

/// Serves `service` on `listener` until `shutdown` triggers.
///
/// A permit is taken before each accept, so at most `config.max_connections` connections are
/// served; the rest wait in the backlog. Accept errors (out of file descriptors, say) back
/// off from 5 ms to 1 s instead of spinning, and never end the loop.
///
/// # Errors
/// None today; the `Result` leaves room for fatal listener errors.
pub async fn serve_tcp<S: TcpService>(
    listener: Listener,
    service: Arc<S>,
    config: Arc<ServerConfig>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.triggered() => return Ok(()),
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Ok(()), // closed: nobody closes it, but never panic.
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.triggered() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) if is_per_connection(&e) => {
                debug!(error = %e, "accept: connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                warn!(error = %e, ?backoff, "accept failed; backing off");
                tokio::select! {
                    _ = shutdown.triggered() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let conn = Conn {
            stream: IdleStream::new(stream, config.idle_timeout),
            peer,
            shutdown: shutdown.token().clone(),
            config: config.clone(),
        };
        let service = service.clone();
        let span = info_span!("conn", %peer);
        shutdown.tracker().spawn(
            async move {
                debug!("connected");
                match service.handle(conn).await {
                    Ok(()) => debug!("closed"),
                    Err(e) if e.is_disconnect() => debug!(error = %e, "peer went away"),
                    Err(e) => warn!(error = %e, "connection ended with an error"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Accept errors that concern one incoming connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
