//! The HTTP door (`serve --http ADDR`): HTTPS with the server's certificate, WebDAV at
//! `/dav/` (HTTP Basic) and the web page at `/`, each user's home as its root. A thin layer:
//! every file operation is a call on the core ([`crate::home::Home`]).
//!
//! TLS and plaintext share the port, told apart by the first byte as at the native port
//! ([`Transport`]): plaintext is served to loopback peers only, unless
//! `--allow-plaintext`; another plaintext peer gets one `403` and the close.
//!
//! What an unauthenticated peer can make this listener spend: one connection slot (the
//! global and per-address caps of the accept loop); `--idle-timeout` of silence, and
//! `--head-timeout` for the TLS handshake and for each request head; a head buffer of
//! `--max-header` bytes (hyper's read buffer, at least 8 KiB); a 401 for a request without
//! credentials (its body is not read); a wrong password costs it the native login's fixed
//! delay and counts against its address. Bodies stream to disk: a PUT needs a length, at most
//! `--max-body` and within the user's quota; WebDAV XML bodies are read up to 64 KiB.

mod cookies;
mod dav;
mod davfile;
mod download;
mod paths;
mod props;
mod web;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use dav_server::{DavConfig, DavHandler, memls::MemLs};
use headers::authorization::Basic;
use headers::{Authorization, HeaderMapExt};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use self::dav::HomeFs;
use self::paths::{check_paths, put_length};
use self::props::DeadProps;
use crate::home::Home;
use crate::net::{Peer, Stream};
use crate::ops::metrics::{self, Door};
use crate::server::{Conn, ServerConfig, TcpService};
use crate::service::session::{DoorLogin, FileService};
use crate::service::transport::Transport;
use crate::{Error, Result};

/// Bytes a WebDAV GET asks of a file at a time: small reads make small TLS records and many
/// trips to the blocking pool (dav-server's default is 16 KiB). The chunks the store reads.
const READ_CHUNK: usize = crate::storage::backend::STREAM_CHUNK;

/// The HTTP listener's service.
#[derive(Debug)]
pub struct Http {
    app: Arc<App>,
}

/// What every connection of the HTTP listener shares.
struct App {
    files: Arc<FileService>,
    transport: Transport,
    props: Arc<DeadProps>,
    /// WebDAV lock tables, one per user (a lock on `/a` of one user is no lock on
    /// another's `/a`); in memory, for the server's run.
    locks: Mutex<HashMap<String, DavHandler>>,
    /// The web page and its API.
    web: axum::Router,
    max_body: u64,
    max_header: usize,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What one connection knows: who is at the other end, and the login its Basic
/// credentials made (checked once per connection, then compared by digest).
struct ConnState {
    ip: IpAddr,
    login: Mutex<Option<Cached>>,
}

/// A connection's login: the SHA-256 of the `Authorization` value that made it.
struct Cached {
    digest: [u8; 32],
    user: String,
    login: DoorLogin,
}

impl Http {
    /// The door over `files`, with the native port's `transport` (certificate, plaintext
    /// rule) and the server's limits.
    pub(crate) fn new(
        files: Arc<FileService>,
        transport: Transport,
        config: &ServerConfig,
    ) -> Http {
        Http {
            app: Arc::new(App {
                web: web::router(files.clone()),
                files,
                transport,
                props: Arc::default(),
                locks: Mutex::default(),
                max_body: config.limits.max_body,
                max_header: usize::try_from(config.limits.max_header_len).unwrap_or(usize::MAX),
            }),
        }
    }
}

impl TcpService for Http {
    async fn handle(&self, conn: Conn) -> Result<()> {
        let _open = metrics::connection(Door::Http);
        let Conn {
            stream,
            peer,
            shutdown,
            config,
        } = conn;
        let (stream, refused) = self
            .app
            .transport
            .accept(stream, &peer, config.head_timeout, config.idle_timeout)
            .await?;
        if let Some(error) = refused {
            if matches!(error, Error::TlsRequired(_)) {
                refuse_plaintext(stream).await;
            }
            return Ok(());
        }
        let ip = match peer {
            Peer::Tcp(addr) => addr.ip(),
            Peer::Unix => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        debug!(
            tls = matches!(stream.get_ref(), Stream::TlsServer(_)),
            "http"
        );
        let state = Arc::new(ConnState {
            ip,
            login: Mutex::new(None),
        });
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req| {
            let (app, state) = (app.clone(), state.clone());
            async move { Ok::<_, Infallible>(app.serve(req, &state).await) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.head_timeout)
            .max_buf_size(self.app.max_header.max(8192));
        let served = http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(served);
        let ended = tokio::select! {
            ended = served.as_mut() => ended,
            () = shutdown.cancelled() => {
                served.as_mut().graceful_shutdown();
                served.await
            }
        };
        if let Err(e) = ended {
            // A peer that went away, sent a bad or slow head: its connection ends here.
            debug!(error = %e, "http connection ended");
        }
        Ok(())
    }

    fn door(&self) -> Option<Door> {
        Some(Door::Http)
    }

    fn refusal(&self, error: &Error) -> Option<Vec<u8>> {
        Some(plain_response(
            "503 Service Unavailable",
            &format!("{error}\n"),
        ))
    }
}

/// A whole `text/plain` response that closes its connection, as bytes.
fn plain_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to a plaintext request from off loopback.
fn tls_required() -> Vec<u8> {
    plain_response(
        "403 Forbidden",
        "this server speaks HTTPS to peers off loopback: use https:// (or the server may \
         allow plaintext with --allow-plaintext)\n",
    )
}

/// A short `text/plain` response.
fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A 401 that asks for Basic credentials.
fn challenge(why: &str) -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"sockit\", charset=\"UTF-8\""),
    );
    response
}

impl App {
    /// Answers one request.
    async fn serve(&self, mut req: Request<Incoming>, conn: &ConnState) -> Response<Body> {
        let path = req.uri().path();
        if path == "/dav" || path.starts_with("/dav/") {
            return self.dav(req, conn).await;
        }
        req.extensions_mut().insert(web::ClientIp(conn.ip));
        match tower::ServiceExt::oneshot(self.web.clone(), req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A WebDAV request: Basic login, then dav-server over the user's home.
    async fn dav(&self, req: Request<Incoming>, conn: &ConnState) -> Response<Body> {
        let (user, home) = match self.basic_login(&req, conn).await {
            Ok(logged_in) => logged_in,
            Err(refused) => return refused,
        };
        if let Some(refused) = check_paths(&req) {
            return refused;
        }
        if req.method() == Method::PUT {
            match put_length(&req) {
                None => {
                    return text(
                        StatusCode::LENGTH_REQUIRED,
                        "a PUT needs a Content-Length: its size is checked against your \
                         quota before it is stored\n",
                    );
                }
                Some(n) if n > self.max_body => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "{n} bytes is over this server's limit of {} (--max-body)\n",
                            self.max_body
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        let handler = self.dav_handler(&user);
        let fs = HomeFs::new(home, &user, self.props.clone());
        let config = DavConfig::new().filesystem(Box::new(fs)).principal(user);
        handler.handle_with(config, req).await.map(Body::new)
    }

    /// The user's WebDAV handler (their lock table), made on first use.
    fn dav_handler(&self, user: &str) -> DavHandler {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks
            .entry(user.to_owned())
            .or_insert_with(|| {
                DavHandler::builder()
                    .strip_prefix("/dav")
                    .read_buf_size(READ_CHUNK)
                    .locksystem(MemLs::new())
                    .build_handler()
            })
            .clone()
    }

    /// The user a request's Basic credentials name, and their home; or the 401 to answer.
    /// A connection's first credentials are checked as a native login is (throttle,
    /// bounded checks, fixed delay); the same credentials later on that connection are
    /// compared by digest, and the user store is asked again on each request.
    async fn basic_login(
        &self,
        req: &Request<Incoming>,
        conn: &ConnState,
    ) -> std::result::Result<(String, Home), Response<Body>> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Err(challenge("log in with your sockit user name and password"));
        };
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        {
            let mut cached = conn.login.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(login) = cached.as_mut().filter(|c| c.digest == digest) {
                match login.login.home(&self.files) {
                    Ok(home) => return Ok((login.user.clone(), home)),
                    Err(e) => {
                        *cached = None;
                        return Err(challenge(&e.to_string()));
                    }
                }
            }
        }
        let Some(Authorization(basic)) = req.headers().typed_get::<Authorization<Basic>>() else {
            return Err(challenge("only Basic credentials are taken here"));
        };
        let mut login = self
            .files
            .password_login(
                Door::Http,
                basic.username(),
                basic.password().into(),
                conn.ip,
            )
            .await
            .map_err(|e| challenge(&e.to_string()))?;
        let home = login
            .home(&self.files)
            .map_err(|e| challenge(&e.to_string()))?;
        let user = login
            .user(&self.files)
            .map_err(|e| challenge(&e.to_string()))?
            .name
            .clone();
        *conn.login.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
            digest,
            user: user.clone(),
            login,
        });
        Ok((user, home))
    }
}

/// How long a refused plaintext connection is kept at most for its 403 to arrive.
const FAREWELL: Duration = Duration::from_secs(1);

/// Writes the 403 of a plaintext request from off loopback and closes, reading (at most
/// 64 KiB, for [`FAREWELL`]) what the peer sent, so the close does not reset the answer away.
async fn refuse_plaintext(mut stream: crate::server::IoStream) {
    use tokio::io::AsyncReadExt;
    let farewell = async {
        stream.write_all(&tls_required()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(FAREWELL, farewell).await;
}
