//! Services of sockit's native protocol, one per file, and the frame loop that dispatches them.
//!
//! [`Native`] is the [`TcpService`] behind `sockit serve --listen`: it reads a head, turns it
//! into a typed [`Request`], runs the op, and queues the reply. Replies to pipelined requests
//! leave in one write, up to `MAX_QUEUED` bytes of them; an error that leaves the stream in
//! sync is answered and the loop goes on, one that does not is answered (if the peer still
//! listens) and the connection closes.

mod batch;
pub mod chat;
mod echo;
mod exec;
mod files;
mod report;
pub mod session;
pub mod time;
mod transfer;
pub mod transport;

pub use transfer::DEFAULT_MAX_READ_AHEAD;

use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::connection::Connection;
use crate::home::Home;
use crate::net::Peer;
use crate::ops::meter::Metered;
use crate::ops::metrics::{self, Door};
use crate::ops::shape::ServerRates;
use crate::protocol::{Reply, Request, encode_head};
use crate::server::{Conn, TcpService};
use crate::{Error, Result};

/// Input a closing connection still drains so that its error reply is not lost to a reset.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// How long a closing connection drains at most.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Replies queued past this many bytes are written before the next request is read, even
/// when more pipelined requests wait: a client that pipelines and does not read then meets
/// the socket's backpressure (and the idle timeout) instead of growing the queue.
const MAX_QUEUED: usize = 64 * 1024;

/// A connection whose requests never wait (a peer that pipelines without pause) looks at the
/// shutdown signal once per this many requests.
const SHUTDOWN_CHECK: u32 = 64;

/// The native protocol service.
#[derive(Debug)]
pub struct Native {
    /// Users, homes and quotas; without them only `echo` is served.
    files: Option<Arc<session::FileService>>,
    /// Remote commands (`serve --allow-exec`); without them `exec` is refused.
    exec: Option<Arc<exec::Exec>>,
    /// TLS on this port (next to plaintext for loopback); without it, plaintext only.
    transport: Option<transport::Shared>,
    /// The server-wide and per-connection bandwidth limits.
    rates: ServerRates,
    /// What all connections together may hold read ahead for pipelined gets.
    read_ahead: Arc<transfer::AheadBudget>,
}

impl Default for Native {
    fn default() -> Self {
        Native {
            files: None,
            exec: None,
            transport: None,
            rates: ServerRates::default(),
            read_ahead: transfer::AheadBudget::new(transfer::DEFAULT_MAX_READ_AHEAD),
        }
    }
}

impl Native {
    /// A native service with only the ops that need no login (`echo`).
    pub fn new() -> Self {
        Native::default()
    }

    /// A native service with the file ops too, on the users and homes of `files`.
    pub fn with_files(files: Arc<session::FileService>) -> Self {
        Native {
            files: Some(files),
            ..Native::default()
        }
    }

    /// This service with TLS on its port, plaintext kept for loopback peers (see
    /// [`transport`]).
    pub fn with_transport(self, transport: transport::Transport) -> Self {
        Native {
            transport: Some(Arc::new(transport)),
            ..self
        }
    }

    /// This service with the `exec` op allowed, within `limits`, in `sandbox` (see
    /// [`crate::runner::Sandbox::start`]).
    pub fn with_exec(
        self,
        limits: crate::runner::ExecLimits,
        sandbox: Arc<crate::runner::Sandbox>,
    ) -> Self {
        Native {
            exec: Some(Arc::new(exec::Exec::new(limits, sandbox))),
            ..self
        }
    }

    /// This service with bandwidth limits (`--max-rate-*`).
    pub fn with_rates(self, rates: ServerRates) -> Self {
        Native { rates, ..self }
    }

    /// This service with at most `bytes` read ahead for pipelined gets, all connections
    /// together (`--max-read-ahead`; 0: no reading ahead).
    pub fn with_max_read_ahead(self, bytes: u64) -> Self {
        Native {
            read_ahead: transfer::AheadBudget::new(bytes),
            ..self
        }
    }

    /// The file service, or the reason there is none.
    fn files(&self) -> Result<&session::FileService> {
        self.files
            .as_deref()
            .ok_or_else(|| Error::BadRequest("this server has no file service".into()))
    }

    /// Runs one request whose head was just read.
    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        request: Request,
        op: &str,
        cx: &mut Context,
        conn: &mut Connection<Metered<S>>,
    ) -> Result<()> {
        use files::FileOp;
        let file_op = match request {
            Request::Echo => return echo::handle(conn).await,
            Request::Unknown => return Err(Error::UnknownOp(op.to_string())),
            Request::Login {
                user,
                password,
                key,
                signature,
            } => {
                let credentials = match (password, key) {
                    (_, Some(key)) => session::Credentials::Key { key, signature },
                    (Some(password), None) => session::Credentials::Password(password),
                    (None, None) => {
                        return Err(Error::BadRequest("login needs a password or a key".into()));
                    }
                };
                let pair = (user, credentials);
                session::login(self.files()?, &mut cx.session, cx.peer, pair, conn).await?;
                // The user's bandwidth limits, shared by their sessions, from here on.
                if let Some(slot) = cx.session.slot() {
                    let (up, down) = (slot.up.clone(), slot.down.clone());
                    conn.get_mut().shape_user(up, down);
                }
                return Ok(());
            }
            Request::Put {
                path,
                size,
                resume,
                keep,
            } => {
                let home = self.home(cx)?;
                cx.moved = Some(transfer::put(home, (path, size, resume, keep), conn).await?);
                return Ok(());
            }
            Request::Write { .. } => {
                return Err(Error::Internal(
                    "a write is served by the group commit".into(),
                ));
            }
            Request::Get {
                path,
                offset,
                digest,
            } => {
                let home = self.home(cx)?;
                let request = (path, offset, digest);
                cx.moved = Some(transfer::get(home, request, &mut cx.ahead, conn).await?);
                return Ok(());
            }
            Request::Data { .. } | Request::Done { .. } => {
                return Err(Error::BadRequest(format!(
                    "`{op}` is only valid inside an upload, after put's go-ahead"
                )));
            }
            Request::Exec { command, stdin } => {
                let exec = self.exec.as_deref().ok_or(Error::ExecDisabled)?;
                let home = self.home(cx)?;
                let user = cx.session.user(self.files()?)?;
                let dir = self.files()?.users.home(&user.name)?;
                let request = (command, stdin);
                let ran = exec::handle(exec, (user, &dir), request, &cx.shutdown, conn).await;
                // A command may have changed the home behind the ledger's back.
                home.remeasure().await?;
                return ran;
            }
            Request::Stdin { .. } => {
                return Err(Error::BadRequest(
                    "`stdin` is only valid inside a running exec".into(),
                ));
            }
            Request::Ls { path, page } => FileOp::Ls(path, page),
            Request::Stat { path } => FileOp::Stat(path),
            Request::Mkdir { path, parents } => FileOp::Mkdir(path, parents),
            Request::Rm { path, recursive } => FileOp::Rm(path, recursive),
            Request::Mv { from, to } => FileOp::Mv(from, to),
            Request::Df => FileOp::Df,
        };
        files::handle(self.home(cx)?, file_op, conn).await
    }

    /// The home of the connection's user, priced against their quota as it is now.
    fn home(&self, cx: &mut Context) -> Result<Home> {
        let files = self.files()?;
        let user = cx.session.user(files)?;
        Ok(Home::new(
            &user.name,
            user.quota,
            user.store.clone(),
            &files.ledger,
        ))
    }
}

/// What the frame loop keeps about one connection.
#[derive(Debug)]
struct Context {
    peer: Peer,
    session: session::Session,
    /// The server's shutdown signal, for ops that run long (a command is killed on it).
    shutdown: tokio_util::sync::CancellationToken,
    /// The file bytes the last transfer moved, for its log line.
    moved: Option<u64>,
    /// Small files read ahead for the gets buffered behind the last one.
    ahead: transfer::ReadAhead,
}

impl TcpService for Native {
    async fn handle(&self, conn: Conn) -> Result<()> {
        let (stream, refused) = match &self.transport {
            Some(transport) => {
                let (deadline, idle) = (conn.config.head_timeout, conn.config.idle_timeout);
                transport
                    .accept(conn.stream, &conn.peer, deadline, idle)
                    .await?
            }
            None => (conn.stream, None),
        };
        let _open = metrics::connection(Door::Native);
        let binding = stream.get_ref().tls_binding();
        let mut stream = Metered::new(stream, Door::Native);
        self.rates.apply(&mut stream);
        let mut framed =
            Connection::new(stream, conn.config.limits).with_head_timeout(conn.config.head_timeout);
        let mut cx = Context {
            peer: conn.peer,
            session: session::Session::new(binding),
            shutdown: conn.shutdown.clone(),
            moved: None,
            ahead: transfer::ReadAhead::new(self.read_ahead.clone()),
        };
        let result = match refused {
            Some(refused) => {
                metrics::refused(Door::Native, metrics::Refusal::TlsRequired);
                Err(refused)
            }
            None => frame_loop(self, &mut cx, &mut framed, &conn.shutdown).await,
        };
        match &result {
            Err(e) if !e.is_disconnect() => {
                // One error frame if the peer still listens, then a polite close.
                let _ = framed.queue(&Reply::error(e.code(), e.to_string()), b"");
                let _ = framed.flush().await;
                framed.linger_close(LINGER_BYTES, LINGER_TIME).await;
            }
            _ => {
                let _ = framed.flush().await;
            }
        }
        result
    }

    fn door(&self) -> Option<Door> {
        Some(Door::Native)
    }

    /// One error frame.
    fn refusal(&self, error: &Error) -> Option<Vec<u8>> {
        let mut frame = bytes::BytesMut::new();
        encode_head(
            &Reply::error(error.code(), error.to_string()),
            0,
            &mut frame,
        )
        .ok()?;
        Some(frame.to_vec())
    }
}

/// Reads and answers requests until the peer closes, an error closes the stream, or shutdown.
async fn frame_loop<S: AsyncRead + AsyncWrite + Unpin>(
    native: &Native,
    cx: &mut Context,
    conn: &mut Connection<Metered<S>>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut batch = batch::Batch::default();
    let served = serve_requests(native, cx, conn, shutdown, &mut batch).await;
    // Writes received and verified before the end are committed (a rerun of `put -r` then
    // skips them), though their replies may have no one to read them.
    let _ = batch.flush(conn).await;
    served
}

/// The loop of [`frame_loop`], with its group of writes.
async fn serve_requests<S: AsyncRead + AsyncWrite + Unpin>(
    native: &Native,
    cx: &mut Context,
    conn: &mut Connection<Metered<S>>,
    shutdown: &tokio_util::sync::CancellationToken,
    batch: &mut batch::Batch,
) -> Result<()> {
    // Waited on across requests, so it registers with the token once, not once a request.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    // The waker `cancelled` was last polled with: it wakes this task when the token is
    // cancelled, so until a shutdown begins it need not be polled again.
    let mut registered: Option<Waker> = None;
    let mut served = 0u32;
    loop {
        // Shutdown is only heard between requests: one in flight runs to its end. Each look
        // at the token takes its locks, so it is looked at when the connection would wait
        // anyway (and there only once a server is stopping), and every SHUTDOWN_CHECK
        // requests for a peer that never lets it wait.
        served = served.wrapping_add(1);
        if served.is_multiple_of(SHUTDOWN_CHECK)
            && crate::server::any_triggered()
            && shutdown.is_cancelled()
        {
            return Ok(());
        }
        let head = {
            let read = conn.read_head();
            tokio::pin!(read);
            std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                Poll::Ready(head) => Poll::Ready(Some(head)),
                Poll::Pending => {
                    let fresh = !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
                    if !fresh && !crate::server::any_triggered() {
                        return Poll::Pending;
                    }
                    if fresh {
                        registered = Some(cx.waker().clone());
                    }
                    cancelled.as_mut().poll(cx).map(|()| None)
                }
            })
            .await
        };
        let Some(head) = head.transpose()?.flatten() else {
            return Ok(());
        };
        let op = head.header.get("op").and_then(|v| v.as_str()).unwrap_or("");
        debug!(op, body_len = head.body_len, "request");
        let request = Request::from_head(&head);
        let report = report::Report::begin(&request, conn.get_ref());
        cx.moved = None;
        if !cx.ahead.is_empty() && !matches!(request, Ok(Request::Get { .. })) {
            // Any other request may change the files read ahead.
            cx.ahead.clear();
        }
        let result = match request {
            // Whole small files join the group commit (see `batch`), answered when it ends.
            Ok(Request::Write { path, blake3, keep }) => match native.home(cx) {
                Ok(home) => batch.write(home, (path, blake3, keep), conn).await,
                Err(e) => {
                    batch.refuse(e);
                    Ok(())
                }
            },
            // Any other request is answered after the writes before it. Echo, the op under
            // the heaviest load, skips `dispatch`, whose state holds any op's.
            Ok(Request::Echo) if batch.is_empty() => echo::handle(conn).await,
            Ok(request) if batch.is_empty() => native.dispatch(request, op, cx, conn).await,
            Ok(request) => match batch.flush(conn).await {
                Ok(()) => native.dispatch(request, op, cx, conn).await,
                Err(e) => Err(e),
            },
            Err(e) => batch.flush(conn).await.and(Err(e)),
        };
        report.end(&result, cx.session.name(), cx.moved, conn.get_ref());
        if let Err(e) = result {
            if e.closes_connection() {
                return Err(e);
            }
            debug!(error = %e, "request refused");
            conn.queue(&Reply::error(e.code(), e.to_string()), b"")?;
        }
        let mut idle = !conn.has_buffered_head();
        if idle && !batch.is_empty() && !batch.is_full() {
            // More of the group may have arrived since the last read: the group ends when
            // the socket holds no further request, not when the buffer does.
            idle = !conn.head_ready().await?;
        }
        if !batch.is_empty() && (idle || batch.is_full()) {
            batch.flush(conn).await?;
        }
        // Small replies to pipelined requests leave together, in one write, up to MAX_QUEUED.
        if conn.queued() >= MAX_QUEUED || idle {
            conn.flush().await?;
        }
    }
}
