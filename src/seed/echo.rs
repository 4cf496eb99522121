//! The seeds' echo: raw bytes in, `bytes.upper()` out (ASCII letters only, like Python).
//!
//! `Tcp` is the link loop + communication loop server of 002 §3.2 (`recv(1024)`, then
//! `send(data.upper())`, until an empty read); [`Udp`] is the datagram echo of 001 §五.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::SEED_BUFSIZE;
use crate::net::{Endpoint, connect};
use crate::server::{Conn, TcpService, UdpService};
use crate::{Error, Result};

/// The seed TCP echo server (`--seed-echo`).
#[derive(Debug, Default)]
pub(crate) struct Tcp {}

impl TcpService for Tcp {
    async fn handle(&self, mut conn: Conn) -> Result<()> {
        let mut buf = [0u8; SEED_BUFSIZE];
        while let Some(n) = super::recv(&mut conn, &mut buf).await? {
            buf[..n].make_ascii_uppercase();
            conn.stream.write_all(&buf[..n]).await?;
        }
        Ok(())
    }
}

/// The seed UDP echo server (`--udp-echo`): every datagram, even an empty one, comes back
/// upper-cased in one datagram.
#[derive(Debug, Default)]
pub struct Udp {}

impl UdpService for Udp {
    async fn handle(&self, data: &[u8], peer: SocketAddr, socket: &UdpSocket) -> Result<()> {
        socket.send_to(&data.to_ascii_uppercase(), peer).await?;
        Ok(())
    }
}

/// The seed echo client: sends `text` raw over TCP and returns what one `recv(1024)` gives.
///
/// # Errors
/// [`Error::BadRequest`] for empty text (TCP cannot carry an empty message: the seed server
/// would wait forever), connect and I/O errors, `UnexpectedEof` when the server closes.
pub async fn request_tcp(server: &Endpoint, text: &[u8]) -> Result<Bytes> {
    if text.is_empty() {
        return Err(Error::BadRequest(
            "the seed echo protocol cannot send an empty message".into(),
        ));
    }
    let mut stream = connect(server).await?;
    stream.write_all(text).await?;
    let mut buf = vec![0u8; SEED_BUFSIZE];
    let n = stream.read(&mut buf).await?;
    if n == 0 {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection without replying",
        )));
    }
    buf.truncate(n);
    Ok(buf.into())
}

/// The seed UDP echo client: one datagram out, one back (waiting up to `wait`).
///
/// # Errors
/// Socket errors, `TimedOut` when no reply came.
pub async fn request_udp(server: &str, text: &[u8], wait: Duration) -> Result<Bytes> {
    Ok(crate::client::udp::request(server, text, wait)
        .await?
        .into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn upper_is_ascii_only_like_python_bytes_upper() {
        // b'abc\xc3\xa9z'.upper() == b'ABC\xc3\xa9Z'
        assert_eq!("abcéz".as_bytes().to_ascii_uppercase(), "ABCéZ".as_bytes());
    }
}
