//! Addresses, listeners and streams for both socket families of the seeds: AF_INET(6) and
//! AF_UNIX. `host:port` is TCP; `unix:/path/to.sock` is a Unix stream socket.
//!
//! Binding follows the seeds' advice (SO_REUSEADDR before bind, so a restarted server gets its
//! port back at once) with a large backlog instead of their `listen(5)`.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};

/// Pending connections the kernel may queue (it caps this at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// Where to listen or connect: `host:port` (TCP) or `unix:PATH` (Unix stream socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address, `host:port`, IPv4 or `[v6]:port`.
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, as in unix:/tmp/sockit.sock".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Endpoint::Tcp(s.to_string()))
            }
            _ => Err(format!(
                "`{s}` is not HOST:PORT (as 127.0.0.1:9900 or [::1]:9900) or unix:PATH"
            )),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => f.write_str(a),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Resolves a `host:port` to its first socket address.
///
/// # Errors
/// When the name does not resolve.
pub(crate) async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        )
    })
}

/// A bound listening socket of either family.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream socket; the file is removed when the listener is dropped.
    Unix(UnixListener, UnixPath),
}

/// The path of a bound Unix socket, removed on drop.
#[derive(Debug)]
pub struct UnixPath(PathBuf);

impl Drop for UnixPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Listener {
    /// Binds `endpoint` with SO_REUSEADDR and a backlog of `BACKLOG` (1024).
    ///
    /// A Unix socket file left by a crashed server (nobody accepts on it) is replaced; one that
    /// a live server still answers on is an `AddrInUse` error.
    ///
    /// # Errors
    /// Resolution and bind errors, with the address in the message.
    pub async fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Tcp(addr) => Ok(Listener::Tcp(bind_tcp(resolve(addr).await?)?)),
            Endpoint::Unix(path) => bind_unix(path).await,
        }
    }

    /// Accepts one connection; TCP streams get TCP_NODELAY (replies are written whole).
    ///
    /// # Cancel safety
    /// Cancel-safe, as the underlying `accept`.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), Peer::Tcp(addr)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The endpoint actually bound (with the real port when port 0 was asked for).
    ///
    /// # Errors
    /// When the socket cannot report its address.
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(l) => Ok(Endpoint::Tcp(l.local_addr()?.to_string())),
            Listener::Unix(_, p) => Ok(Endpoint::Unix(p.0.clone())),
        }
    }
}

/// Binds a TCP listener the way every sockit listener is bound.
///
/// # Errors
/// Socket and bind errors, with the address in the message.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| with_context(e, format!("binding {addr}")))?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds a UDP socket with SO_REUSEADDR.
///
/// # Errors
/// Resolution, socket and bind errors, with the address in the message.
pub async fn bind_udp(addr: &str) -> io::Result<UdpSocket> {
    let addr = resolve(addr).await?;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| with_context(e, format!("binding udp {addr}")))?;
    UdpSocket::from_std(socket.into())
}

async fn bind_unix(path: &Path) -> io::Result<Listener> {
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            // Nobody listens: a stale file from a server that did not clean up.
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| with_context(e, format!("binding unix:{}", path.display())))?;
    Ok(Listener::Unix(listener, UnixPath(path.to_path_buf())))
}

/// Connects to `endpoint`; TCP streams get TCP_NODELAY.
///
/// # Errors
/// Resolution and connect errors, with the address in the message.
pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let s = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| with_context(e, format!("connecting to {addr}")))?;
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Endpoint::Unix(path) => UnixStream::connect(path)
            .await
            .map(Stream::Unix)
            .map_err(|e| with_context(e, format!("connecting to unix:{}", path.display()))),
    }
}

/// Connects to the TCP address `addr` from the local address `source` (port chosen by the
/// kernel), with TCP_NODELAY.
///
/// # Errors
/// Bind errors (`source` is not an address of this machine) and connect errors, with the
/// addresses in the message.
pub(crate) async fn connect_from(addr: SocketAddr, source: IpAddr) -> io::Result<Stream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| with_context(e, format!("binding {source}")))?;
    let s = socket
        .connect(addr)
        .await
        .map_err(|e| with_context(e, format!("connecting to {addr} from {source}")))?;
    s.set_nodelay(true)?;
    Ok(Stream::Tcp(s))
}

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The unit that per-address limits count: an IPv4 address, or an IPv6 /64 (what one host
/// usually gets, so that rotating through its addresses does not reset the count). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
pub(crate) fn ip_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix socket peer (unnamed).
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// A connected stream of either family.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix stream socket.
    Unix(UnixStream),
    /// TLS over TCP, the server's side.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS over TCP, the client's side.
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TLS exporter value of this connection (32 bytes, label
    /// [`crate::keys::EXPORTER_LABEL`], no context) that a login by key signs; `None` on
    /// plaintext, where there is nothing to bind to.
    pub fn tls_binding(&self) -> Option<[u8; 32]> {
        let label = crate::keys::EXPORTER_LABEL;
        let exported = match self {
            Stream::Tcp(_) | Stream::Unix(_) => return None,
            Stream::TlsServer(s) => s.get_ref().1.export_keying_material([0; 32], label, None),
            Stream::TlsClient(s) => s.get_ref().1.export_keying_material([0; 32], label, None),
        };
        exported.ok()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::TlsServer($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            Stream::TlsClient($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => true,
            Stream::TlsServer(s) => s.is_write_vectored(),
            Stream::TlsClient(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Raises this process's soft limit on open files to its hard limit: a server holds a
/// descriptor per connection (10,000 by default), and the usual soft limit is 1,024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            "127.0.0.1:9900".parse(),
            Ok(Endpoint::Tcp("127.0.0.1:9900".into()))
        );
        assert_eq!("[::1]:0".parse(), Ok(Endpoint::Tcp("[::1]:0".into())));
        assert_eq!(
            "unix:/tmp/s.sock".parse(),
            Ok(Endpoint::Unix("/tmp/s.sock".into()))
        );
        for bad in ["9900", "host", ":80", "h:99999", "unix:"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64_and_a_mapped_ipv4_is_itself() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_bucket(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ip_bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            ip_bucket(ip("2001:db8:1:2:bbbb::9")),
            ip_bucket(ip("2001:db8:1:2:aaaa::1"))
        );
        assert_ne!(ip_bucket(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(ip_bucket(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }
}
