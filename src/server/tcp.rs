//! The TCP accept loop: permit, accept (with back-off), the address's slot, spawn a tracked
//! task per connection.
//!
//! What a peer can make a listener spend: `max_connections` tasks and sockets in all, of which
//! one address (IPv4, or IPv6 /64) holds at most `max_connections_per_ip`; a connection over
//! its address's cap takes no permit and is closed at once, after a short farewell (one write,
//! a bounded drain) that waits for the peer in at most [`MAX_REFUSING`] tasks at a time and is
//! made without waiting beyond those.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::idle::IdleStream;
use super::per_ip::{IpSlot, PerIp};
use super::{ServerConfig, Shutdown};
use crate::Error;
use crate::net::{Listener, Peer, Stream, ip_bucket};
use crate::ops::metrics::{self, Door, Refusal};
use crate::ops::rate::ConnectionRate;

/// Refused connections that may say their last word at once; beyond these, a refused
/// connection is closed without one.
const MAX_REFUSING: usize = 64;

/// How long a refused connection is kept at most for its last word to arrive.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Input a refused connection drains at most (closing on unread input sends a reset, which
/// can destroy the last word before the peer reads it).
const REFUSAL_DRAIN: usize = 64 * 1024;

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

    /// The last word, in this service's protocol, for a connection that is refused before it
    /// is served ([`Error::TooManyConnections`]); written just before the close. None by
    /// default: the connection is closed without a word.
    fn refusal(&self, error: &Error) -> Option<Vec<u8>> {
        let _ = error;
        None
    }

    /// The door this service is, for the metrics of refused connections; `None` (the
    /// default) counts none.
    fn door(&self) -> Option<Door> {
        None
    }
}

/// The id of the next connection, for the log span of each (`conn{id=…}`).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Serves `service` on `listener` until `shutdown` triggers.
///
/// A permit is taken before each accept, so at most `config.max_connections` connections are
/// served; the rest wait in the backlog. A TCP connection whose address already holds
/// `config.max_connections_per_ip` is refused: it gets the service's [`TcpService::refusal`]
/// and the close, and its permit goes to the next accept. Unix-socket peers are not counted
/// per address. Accept errors (out of file descriptors, say) back off from 5 ms to 1 s
/// instead of spinning, and never end the loop.
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
    let per_ip = PerIp::new(config.max_connections_per_ip);
    let rate = ConnectionRate::new(config.connection_rate, config.connection_burst);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
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
        let slot = match admit(rate.as_ref(), &per_ip, &peer) {
            Ok(slot) => slot,
            Err((error, reason)) => {
                debug!(%peer, "refused: {error}");
                if let Some(door) = service.door() {
                    metrics::refused(door, reason);
                }
                let last_word = service.refusal(&error);
                match refusing.clone().try_acquire_owned() {
                    Ok(refusal) => {
                        shutdown.tracker().spawn(async move {
                            refuse(stream, last_word).await;
                            drop(refusal);
                        });
                    }
                    Err(_) => refuse_now(stream, last_word.as_deref()),
                }
                // The permit goes back with `continue`: a refused connection holds none.
                continue;
            }
        };
        let conn = Conn {
            stream: IdleStream::new(stream, config.idle_timeout),
            peer,
            // A child of the server's token: the connection polls it between requests, and
            // a token of its own keeps those polls off the lock every connection would share.
            shutdown: shutdown.token().child_token(),
            config: config.clone(),
        };
        let service = service.clone();
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("conn", id, %peer);
        shutdown.tracker().spawn(
            async move {
                debug!("connected");
                match service.handle(conn).await {
                    Ok(()) => debug!("closed"),
                    Err(e) if e.is_disconnect() => debug!(error = %e, "peer went away"),
                    Err(e) => warn!(error = %e, "connection ended with an error"),
                }
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// The per-address slot of a connection from `peer` (none for Unix-socket peers), or the
/// refusal (and its reason) when its address opens connections too fast or holds its cap.
fn admit(
    rate: Option<&ConnectionRate>,
    per_ip: &Arc<PerIp>,
    peer: &Peer,
) -> Result<Option<IpSlot>, (Error, Refusal)> {
    let Peer::Tcp(addr) = peer else {
        return Ok(None);
    };
    let address = || match ip_bucket(addr.ip()) {
        IpAddr::V6(net) => format!("{net}/64"),
        v4 => v4.to_string(),
    };
    if let Some(rate) = rate
        && let Err(wait) = rate.admit(addr.ip())
    {
        let error = Error::TooManyConnections(format!(
            "{} opens connections faster than {} a second, the most one address may \
             (serve --connection-rate); try again in {:.1} s",
            address(),
            rate.per_second(),
            wait.as_secs_f64()
        ));
        return Err((error, Refusal::PerIpRate));
    }
    match per_ip.take(addr.ip()) {
        Some(slot) => Ok(Some(slot)),
        None => {
            let error = Error::TooManyConnections(format!(
                "{} already holds {} connections, the most one address may \
                 (serve --max-connections-per-ip)",
                address(),
                per_ip.cap()
            ));
            Err((error, Refusal::PerIpCap))
        }
    }
}

/// Writes `last_word` to a refused connection and closes it, draining what the peer sends
/// meanwhile (within [`REFUSAL_DRAIN`] bytes and [`REFUSAL_LINGER`]).
async fn refuse(mut stream: Stream, last_word: Option<Vec<u8>>) {
    let farewell = async {
        if let Some(bytes) = last_word
            && stream.write_all(&bytes).await.is_err()
        {
            return;
        }
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, farewell).await;
}

/// [`refuse`] without waiting, for when [`MAX_REFUSING`] farewells are under way already: one
/// non-blocking write (a fresh socket's send buffer takes a short last word whole), a
/// non-blocking drain of what has arrived, and the close.
fn refuse_now(stream: Stream, last_word: Option<&[u8]>) {
    use std::io::{Read, Write};
    // On the std socket the calls reach the kernel; tokio's `try_*` would answer
    // `WouldBlock` for a socket its reactor has not yet seen ready.
    let Stream::Tcp(tcp) = stream else {
        return;
    };
    let Ok(mut tcp) = tcp.into_std() else {
        return;
    };
    if let Some(bytes) = last_word {
        let _ = tcp.write(bytes);
    }
    let mut buf = [0u8; 4096];
    for _ in 0..REFUSAL_DRAIN / buf.len() {
        match tcp.read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Accept errors that concern one incoming connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
