//! The native port's transport: TLS 1.3 and plaintext on one port, told apart by the first
//! byte a client sends (a TLS record starts with 0x16, which no frame under the header limit
//! can, see [`crate::tls`]).
//!
//! Plaintext is served to loopback and Unix-socket peers, and to others only with
//! `serve --allow-plaintext`; any other plaintext peer gets one `tls_required` error frame and
//! the close. What an unauthenticated peer can spend here: one connection slot (per-address
//! and global caps), at most `--idle-timeout` before its first byte and `--head-timeout` for
//! the whole handshake after it, and the handshake's CPU (one signature per connection, as
//! any TLS server).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::net::{Peer, Stream};
use crate::server::IoStream;
use crate::server::idle::IdleStream;
use crate::tls::{HANDSHAKE, Identity};
use crate::{Error, Result};

/// TLS settings of the native port.
#[derive(Clone)]
pub struct Transport {
    acceptor: TlsAcceptor,
    fingerprint: String,
    allow_plaintext: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("fingerprint", &self.fingerprint)
            .field("allow_plaintext", &self.allow_plaintext)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// TLS with `identity`; with `allow_plaintext`, plaintext for peers off loopback too.
    ///
    /// # Errors
    /// When the identity's certificate and key cannot make TLS settings.
    pub fn new(identity: &Identity, allow_plaintext: bool) -> Result<Transport> {
        Ok(Transport {
            acceptor: TlsAcceptor::from(identity.server_config()?),
            fingerprint: identity.fingerprint(),
            allow_plaintext,
        })
    }

    /// The server certificate's fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Waits for the peer's first byte (up to `idle`) and sets up what it speaks: TLS (the
    /// handshake done within `deadline`, the head timeout) or plaintext. Returns the stream
    /// to frame, and the error to answer in plaintext before closing (a plaintext peer that
    /// must speak TLS, or no first byte in time).
    ///
    /// # Errors
    /// A failed or slow TLS handshake: the connection ends with nothing sent.
    pub(crate) async fn accept(
        &self,
        stream: IoStream,
        peer: &Peer,
        deadline: Duration,
        idle: Duration,
    ) -> Result<(IoStream, Option<Error>)> {
        let Stream::Tcp(tcp) = stream.get_ref() else {
            return Ok((stream, None)); // a Unix socket: its file permissions guard it
        };
        // The first byte may be as late as any request (a client that connects, then asks
        // its user for a password): the idle timeout, as for every silence.
        let mut first = [0u8; 1];
        let peeked = match tokio::time::timeout(idle, tcp.peek(&mut first)).await {
            Ok(peeked) => peeked?,
            Err(_) => return Ok((stream, Some(idle_error(idle)))),
        };
        if peeked == 0 || first[0] != HANDSHAKE {
            let refused = (peeked > 0 && !self.plaintext_for(peer)).then(|| {
                Error::TlsRequired(
                    "this server speaks TLS to peers off loopback; connect with TLS \
                     (or the server may allow plaintext with --allow-plaintext)"
                        .into(),
                )
            });
            return Ok((stream, refused));
        }
        let Stream::Tcp(tcp) = stream.into_inner() else {
            return Err(Error::Internal("the stream changed its kind".into()));
        };
        let tls = tokio::time::timeout(deadline, self.acceptor.accept(tcp))
            .await
            .map_err(|_| slow(deadline))??;
        let stream = Stream::TlsServer(Box::new(tls));
        Ok((IdleStream::new(stream, idle), None))
    }

    /// Whether `peer` may speak plaintext.
    fn plaintext_for(&self, peer: &Peer) -> bool {
        self.allow_plaintext
            || match peer {
                Peer::Unix => true,
                Peer::Tcp(addr) => is_loopback(addr.ip()),
            }
    }
}

/// Loopback, IPv4-mapped IPv6 included.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn slow(deadline: Duration) -> Error {
    Error::Timeout(format!(
        "the TLS handshake took longer than {deadline:?} (the head timeout)"
    ))
}

fn idle_error(idle: Duration) -> Error {
    Error::Timeout(format!("no first byte for {idle:?} (the idle timeout)"))
}

/// Shared by every connection of a listener.
pub(crate) type Shared = Arc<Transport>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A real loopback connection that sent `first`, as the server accepted it, and the
    /// peer address the transport is told (so a peer off loopback can be played).
    async fn accepted(first: &[u8]) -> (IoStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(first).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream = IdleStream::new(Stream::Tcp(server), Duration::from_secs(60));
        (stream, client)
    }

    #[tokio::test]
    async fn plaintext_off_loopback_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        let far: Peer = Peer::Tcp("192.0.2.7:5000".parse().unwrap());
        let near: Peer = Peer::Tcp("127.0.0.1:5000".parse().unwrap());
        let frame = b"\x0f\x00\x00\x00{\"op\":\"echo\"}";
        let second = Duration::from_secs(5);
        for (allow, peer, refused) in [
            (false, &far, true),
            (false, &near, false),
            (true, &far, false),
        ] {
            let transport = Transport::new(&identity, allow).unwrap();
            let (stream, _client) = accepted(frame).await;
            let (_, error) = transport
                .accept(stream, peer, second, second)
                .await
                .unwrap();
            assert_eq!(
                matches!(error, Some(Error::TlsRequired(_))),
                refused,
                "allow {allow}, {peer}: {error:?}"
            );
        }
        // The refusal is the wire's `tls_required`, and it closes the connection.
        let e = Error::TlsRequired(String::new());
        assert_eq!(e.code(), crate::protocol::ErrorCode::TlsRequired);
        assert!(e.closes_connection());
    }

    #[test]
    fn loopback_in_every_spelling() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
