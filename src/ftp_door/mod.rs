//! The FTP door (`serve --ftp ADDR`): FTP with explicit FTPS (`AUTH TLS`), served by
//! libunftp over the file-service core, so the jail, the quota, one writer per file and
//! "nothing visible until complete" hold for FTP clients as for sockit's own.
//!
//! sockit's accept loop ([`crate::server::serve_tcp`]) takes each control connection (the
//! connection caps, accept back-off, shutdown), then hands it to a libunftp server made for
//! that connection: its storage back-end is `backend::Door` over the core's `Home`, its
//! authenticator `auth::Login` over `FileService::password_login` (the native login's
//! throttle, bounded checks and fixed delay). A peer off loopback must secure the control
//! and data channels with TLS before `USER`/`PASS` unless `--allow-plaintext`, as on the
//! native port.
//!
//! What an unauthenticated peer can make it spend: one control connection (within
//! `--max-connections` and `--max-connections-per-ip`), held at most `--head-timeout` in all
//! before a login succeeds (a stalled `AUTH TLS` handshake included), and one command line
//! of at most `--max-header` bytes (a longer one gets `500` and the close). Passive data ports
//! come from `--ftp-passive-ports`, one listener per control connection at a time; active
//! mode (`PORT`, which would make the server connect anywhere) is off. Where TLS is required,
//! it is required of every data channel, whichever command opens it (`PASV` or `EPSV`).
//!
//! libunftp is vendored with two fixes of sockit's (the command line's bound, and the data
//! channel's TLS requirement checked on `EPSV`, not only `PASV`): see `vendor/VENDORED.md`.

mod auth;
mod backend;
mod upload;

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use libunftp::ServerBuilder;
use libunftp::options::{FtpsRequired, SiteMd5};
use tracing::{debug, info};

use crate::net::{Peer, Stream};
use crate::ops::metrics::{self, Door};
use crate::server::{Conn, TcpService};
use crate::service::session::FileService;
use crate::tls::Identity;
use crate::{Error, Result};

/// The default of `--ftp-passive-ports`: the IANA dynamic range's upper part.
pub const DEFAULT_PASSIVE_PORTS: RangeInclusive<u16> = 50000..=50999;

/// The FTP door: one libunftp session per accepted control connection.
#[derive(Debug)]
pub struct Ftp {
    files: Arc<FileService>,
    tls: Arc<rustls::ServerConfig>,
    passive_ports: RangeInclusive<u16>,
    allow_plaintext: bool,
}

impl Ftp {
    /// The door over `files`, securing `AUTH TLS` with `tls` (the server's certificate),
    /// offering passive data ports in `passive_ports`; with `allow_plaintext`, peers off
    /// loopback may log in without TLS.
    pub fn new(
        files: Arc<FileService>,
        tls: Arc<rustls::ServerConfig>,
        passive_ports: RangeInclusive<u16>,
        allow_plaintext: bool,
    ) -> Ftp {
        Ftp {
            files,
            tls,
            passive_ports,
            allow_plaintext,
        }
    }
}

/// The rustls settings of FTPS: the native port's (the server's certificate, TLS 1.3), but
/// with no session tickets. A ticket is data sent after the handshake, which a client that
/// only uploads never reads; closing a socket with unread data sends a reset instead of the
/// end of data, and the upload would look cut. libunftp needs no session resumption.
///
/// # Errors
/// As [`Identity::server_config`].
pub fn tls_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = (*identity.server_config()?).clone();
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Reads `--ftp-passive-ports`: `A-B`, two ports, `A <= B`.
///
/// # Errors
/// [`Error::Config`] for anything else.
pub fn parse_passive_ports(text: &str) -> Result<RangeInclusive<u16>> {
    let bad = || Error::Config {
        message: format!("ftp-passive-ports `{text}`: expected A-B, two ports with A <= B"),
        source: None,
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// Whether a peer at `ip` may log in without TLS: loopback peers, or any with
/// `--allow-plaintext` (the native port's rule).
pub(crate) fn plaintext_allowed(ip: IpAddr, allow_plaintext: bool) -> bool {
    allow_plaintext || ip.is_loopback() || ip.to_canonical().is_loopback()
}

/// A second handle on a session's control socket, kept beside libunftp's: it tells whether
/// the client is still there (an upload's end of data counts as complete only then) and
/// ends the session on shutdown or when the login deadline passes.
#[derive(Debug)]
pub(crate) struct Control(std::net::TcpStream);

impl Control {
    /// Whether the client has closed (or reset) the control connection. Non-blocking: the
    /// socket is libunftp's, in non-blocking mode, and this only peeks.
    pub(crate) fn gone(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.0.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }

    /// Whether the client leaves within `grace`: it closed the control connection, or does
    /// so before `grace` passes. A client still there sends nothing while it waits for the
    /// transfer's reply, so this waits the whole `grace` then; a killed client closes its
    /// control connection with its data connection, so this sees it at once.
    pub(crate) async fn leaves_within(&self, grace: Duration) -> bool {
        if self.gone() {
            return true;
        }
        // A handle of our own in the reactor (libunftp's is registered under its own fd).
        let watch = self.0.try_clone().and_then(tokio::net::TcpStream::from_std);
        let Ok(watch) = watch else {
            return self.gone();
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(grace, watch.peek(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => true,
            // A command already: the client is there.
            Ok(Ok(_)) => false,
            Err(_) => self.gone(),
        }
    }

    /// Ends the connection both ways: libunftp's session sees the end and stops.
    fn close(&self) {
        drop(self.0.shutdown(std::net::Shutdown::Both));
    }
}

impl TcpService for Ftp {
    fn door(&self) -> Option<Door> {
        Some(Door::Ftp)
    }

    async fn handle(&self, conn: Conn) -> Result<()> {
        let _open = metrics::connection(Door::Ftp);
        let Stream::Tcp(stream) = conn.stream.into_inner() else {
            return Err(Error::BadRequest("FTP is served on TCP only".into()));
        };
        let Peer::Tcp(peer) = conn.peer else {
            return Err(Error::BadRequest("FTP is served on TCP only".into()));
        };
        let control = Arc::new(Control(std::net::TcpStream::from(
            stream.as_fd().try_clone_to_owned()?,
        )));
        let idle = conn.config.idle_timeout;
        let plaintext = plaintext_allowed(peer.ip(), self.allow_plaintext);
        let login = auth::Login::new(self.files.clone(), plaintext, control.clone());
        let logged_in = login.logged_in();
        let storage = backend::Door::new(idle);
        let required = if plaintext {
            FtpsRequired::None
        } else {
            FtpsRequired::All
        };
        let server = ServerBuilder::<backend::Door, auth::User>::with_user_detail_provider(
            Box::new(move || storage.clone()),
            Arc::new(login.clone()),
        )
        .authenticator(Arc::new(login))
        .greeting("sockit FTP door ready")
        .ftps_manual::<&str>(self.tls.clone())
        .ftps_required(required, required)
        .passive_ports(self.passive_ports.clone())
        .idle_session_timeout(idle.as_secs().max(1))
        // A command line is FTP's request head: `--max-header` bounds it as it bounds the
        // native protocol's, so a line that never ends costs that much and the connection.
        .max_command_line(conn.config.limits.max_header_len as usize)
        .sitemd5(SiteMd5::Accounts)
        .build()
        .map_err(|e| Error::Internal(format!("the FTP session: {e}")))?;
        debug!(%peer, plaintext, "FTP session");
        let session = server.service(stream);
        tokio::pin!(session);
        // Logging in is the FTP session's request head: it gets the native head's time.
        let deadline = tokio::time::sleep(conn.config.head_timeout);
        tokio::pin!(deadline);
        let mut waiting_login = true;
        loop {
            tokio::select! {
                ended = &mut session => {
                    return ended.map_err(|e| Error::Io(std::io::Error::other(e.to_string())));
                }
                () = conn.shutdown.cancelled() => {
                    control.close();
                    // The session sees the end of its control connection and stops.
                    return Ok(());
                }
                () = &mut deadline, if waiting_login => {
                    if logged_in.load(std::sync::atomic::Ordering::Acquire) {
                        waiting_login = false;
                    } else {
                        info!(%peer, "FTP: no login in time; closing");
                        control.close();
                        waiting_login = false;
                    }
                }
            }
        }
    }

    fn refusal(&self, error: &Error) -> Option<Vec<u8>> {
        Some(format!("421 {error}\r\n").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_ports_are_a_range() {
        assert_eq!(parse_passive_ports("50000-50010").unwrap(), 50000..=50010);
        assert_eq!(parse_passive_ports("2121-2121").unwrap(), 2121..=2121);
        for bad in ["", "50000", "5-1", "0-10", "a-b", "1-70000"] {
            assert!(parse_passive_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plaintext_logins_are_for_loopback_peers_unless_allowed() {
        let off: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!plaintext_allowed(off, false));
        assert!(plaintext_allowed(off, true));
        assert!(plaintext_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(plaintext_allowed("::1".parse().unwrap(), false));
        assert!(plaintext_allowed(
            "::ffff:127.0.0.1".parse().unwrap(),
            false
        ));
        assert!(!plaintext_allowed(
            "::ffff:192.0.2.7".parse().unwrap(),
            false
        ));
    }
}
