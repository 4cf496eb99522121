//! The client side of the UDP services: one datagram out, one reply back (the seeds'
//! `sendto` + `recvfrom`), and the time client on top of it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::server::udp::MAX_DATAGRAM;
use crate::{Error, Result};

/// Sends `datagram` to `server` from a fresh socket and waits up to `wait` for one reply
/// (the seeds' `sendto` + `recvfrom`), which may be up to `MAX_DATAGRAM` (64 KiB) bytes.
///
/// # Errors
/// Resolution and socket errors; `TimedOut` when no reply came in time.
pub async fn request(server: &str, datagram: &[u8], wait: Duration) -> io::Result<Vec<u8>> {
    let socket = connect(server).await?;
    socket.send(datagram).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from udp {server} within {wait:?}"),
            )
        })??;
    buf.truncate(len);
    Ok(buf)
}

/// A UDP socket on an ephemeral port, connected to `server` so that it only hears from it.
///
/// # Errors
/// Resolution and socket errors, naming the address.
pub(crate) async fn connect(server: &str) -> io::Result<UdpSocket> {
    let addr = crate::net::resolve(server).await?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket
        .connect(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("udp {server}: {e}")))?;
    Ok(socket)
}

/// The time client: sends `format` and returns the server's reply text.
///
/// # Errors
/// [`Error::Remote`] for an `error: ` reply, [`Error::BadReply`] for one that is not UTF-8,
/// socket errors, `TimedOut` when no reply came within `wait`.
pub async fn time(server: &str, format: &str, wait: Duration) -> Result<String> {
    let reply = request(server, format.as_bytes(), wait).await?;
    let text = String::from_utf8(reply)
        .map_err(|_| Error::BadReply("the time server's reply is not UTF-8".into()))?;
    match text.strip_prefix(crate::service::time::ERROR_PREFIX) {
        Some(why) => Err(Error::Remote {
            code: crate::protocol::ErrorCode::BadRequest,
            message: why.to_string(),
        }),
        None => Ok(text),
    }
}
