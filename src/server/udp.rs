//! The UDP datagram loop: socketserver's `UDPServer` for tokio. One datagram is one request;
//! the service answers on the shared socket. A datagram's error is logged, never fatal.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::{Instrument, debug, info_span, warn};

use super::Shutdown;

/// The receive buffer: larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6),
/// so a datagram is never truncated without the service seeing its real size.
pub(crate) const MAX_DATAGRAM: usize = 65_536;

/// A UDP service: socketserver's `BaseRequestHandler.handle()` for datagram servers, where
/// `self.request` is `(data, socket)`.
pub trait UdpService: Send + Sync + 'static {
    /// Answers one datagram `data` from `peer`, replying (if at all) with `socket.send_to`.
    ///
    /// # Errors
    /// Whatever went wrong with this datagram; the loop logs it and goes on.
    fn handle(
        &self,
        data: &[u8],
        peer: SocketAddr,
        socket: &UdpSocket,
    ) -> impl Future<Output = crate::Result<()>> + Send;
}

/// Serves `service` on `socket` until `shutdown` triggers.
///
/// Datagrams are handled one at a time, in arrival order: every service here answers from
/// memory, and the kernel's receive queue absorbs bursts. Receive errors (an ICMP error
/// reported on the socket, say) are logged; repeated ones back off from 5 ms to 1 s.
///
/// # Errors
/// None today; the `Result` leaves room for fatal socket errors.
///
/// # Cancel safety
/// Only `recv_from`, which is cancel-safe, races the shutdown signal.
pub async fn serve_udp<S: UdpService>(
    socket: UdpSocket,
    service: Arc<S>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut backoff = Duration::from_millis(5);
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.triggered() => return Ok(()),
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                warn!(error = %e, ?backoff, "udp receive failed");
                tokio::select! {
                    _ = shutdown.triggered() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let span = info_span!("datagram", %peer, len);
        let data = &buf[..len];
        async {
            debug!("received");
            if let Err(e) = service.handle(data, peer, &socket).await {
                warn!(error = %e, "datagram not answered");
            }
        }
        .instrument(span)
        .await;
    }
}
