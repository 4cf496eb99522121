//! `exec`: a logged-in user's command, run by [`crate::runner`] in their home, its output
//! streamed back while it runs. Only on `serve --allow-exec`; the connection belongs to the
//! command until it ends, then the frame loop goes on.
//!
//! | client sends | server sends |
//! | --- | --- |
//! | `{"op":"exec","command":c,"stdin":b}` | `{"ok":true,"started":true}` or an error (`exec_disabled`, `auth_required`, `busy`, …) |
//! | (if `stdin`) `{"op":"stdin"}` + bytes, …, then `{"op":"stdin","eof":true}` | `{"ok":true,"stream":"stdout"}` + bytes, `{"ok":true,"stream":"stderr"}` + bytes, … as the command writes |
//! | | last: `{"ok":true,"exit":n}`, `{"ok":true,"signal":n}`, or an error (`timeout`, `too_large`) |
//!
//! With `stdin`, the client always ends its input with the `eof` frame, even after the last
//! frame came; the server discards input that arrives after the command ended. A closed
//! connection kills everything the command started. Backpressure: one 64 KiB chunk is read
//! from a pipe only after the previous frame was written, so a slow reader slows the command.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::session::LoggedIn;
use crate::connection::Connection;
use crate::ops::metrics::{self, ExecEnd};
use crate::protocol::ops::{Output, Started};
use crate::protocol::{ErrorCode, Head, Reply, Request};
use crate::runner::{self, End, ExecLimits, Exit, OUTPUT_CHUNK, Sandbox, Spec};
use crate::{Error, Result};

/// Largest stdin frame accepted (the client sends at most 64 KiB per frame).
const MAX_STDIN_FRAME: u64 = 1 << 20;

/// Remote commands of a server: their limits and sandbox, and how many each user runs now.
#[derive(Debug)]
pub(crate) struct Exec {
    limits: ExecLimits,
    sandbox: Arc<Sandbox>,
    running: Mutex<HashMap<String, usize>>,
}

impl Exec {
    /// Commands allowed, within `limits`, in `sandbox`.
    pub(crate) fn new(limits: ExecLimits, sandbox: Arc<Sandbox>) -> Exec {
        Exec {
            limits,
            sandbox,
            running: Mutex::default(),
        }
    }

    /// Takes one of `user`'s command slots.
    fn acquire(&self, user: &str) -> Result<Slot<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(user.to_string()).or_insert(0);
        if *n >= self.limits.max_per_user {
            return Err(Error::Busy(format!(
                "{user} already runs {n} commands (the limit is {}); try again later",
                self.limits.max_per_user
            )));
        }
        *n += 1;
        Ok(Slot {
            exec: self,
            user: user.to_string(),
        })
    }
}

/// One running command of a user; gives its slot back on drop.
struct Slot<'a> {
    exec: &'a Exec,
    user: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = self.exec.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

/// What woke the loop up.
enum Event {
    Output(Option<(runner::Stream, usize)>),
    Exited(std::io::Result<Exit>),
    Wrote(std::io::Result<usize>),
    Frame(Result<Option<Head>>),
    Shutdown,
}

/// Runs an `exec` whose head was just read, to its last frame.
///
/// # Errors
/// Before the start: [`Error::Busy`] over the user's limit, [`Error::BadRequest`] for an
/// empty command, [`Error::Internal`] when the shell cannot start (the connection goes on).
/// During the run: I/O errors and a client that leaves (the command is killed, the
/// connection closes). A server shutdown kills the command and ends it with `internal`.
pub(crate) async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    exec: &Exec,
    (user, home): (&LoggedIn, &Path),
    (command, stdin): (String, bool),
    shutdown: &CancellationToken,
    conn: &mut Connection<S>,
) -> Result<()> {
    if command.trim().is_empty() {
        return Err(Error::BadRequest("exec needs a command".into()));
    }
    let _slot = exec.acquire(&user.name)?;
    // An absolute HOME, whatever the data folder was given as.
    let home = tokio::fs::canonicalize(home)
        .await
        .map_err(|e| Error::Internal(format!("the home folder of {}: {e}", user.name)))?;
    let spec = Spec {
        command: &command,
        user: Some(&user.name),
        home: &home,
        stdin,
    };
    let (process, output, pipe) = runner::spawn(&spec, &exec.limits, &exec.sandbox)
        .map_err(|e| Error::Internal(format!("cannot start the command: {e}")))?;
    info!(user = %user.name, command = %command, "exec");
    metrics::exec_started();
    conn.queue(&Reply::ok(Started { started: true }), b"")?;
    conn.flush().await?;
    let mut run = Run {
        process,
        output,
        pipe,
        pending: Bytes::new(),
        eof: !stdin,
    };
    let last = run.stream(conn, shutdown).await.inspect_err(|_| {
        // The client left (or its stream broke): the command dies with the connection.
        metrics::exec_ended(ExecEnd::Client);
    })?;
    let (code, message) = match last {
        Ok(End::Exit(exit)) => {
            info!(user = %user.name, ?exit, "exec ended");
            metrics::exec_ended(ExecEnd::Exit);
            conn.queue(&Reply::ok(exit), b"")?;
            return run.finish(conn).await;
        }
        Ok(End::Timeout) => (
            ErrorCode::Timeout,
            format!(
                "the command ran over {} s; it was killed with everything it started",
                exec.limits.timeout.as_secs_f64()
            ),
        ),
        Ok(End::OutputLimit) => (
            ErrorCode::TooLarge,
            format!(
                "the command wrote over {} bytes; it was killed with everything it started",
                exec.limits.max_output
            ),
        ),
        Err(e) => (e.code(), e.to_string()),
    };
    metrics::exec_ended(match code {
        _ if shutdown.is_cancelled() => ExecEnd::Shutdown,
        ErrorCode::Timeout => ExecEnd::Timeout,
        ErrorCode::TooLarge => ExecEnd::Output,
        _ => ExecEnd::Client,
    });
    info!(user = %user.name, %code, "exec stopped");
    conn.queue(&Reply::error(code, message), b"")?;
    if shutdown.is_cancelled() {
        // The frame loop stops here anyway: no input to wait for.
        return conn.flush().await;
    }
    run.finish(conn).await
}

/// One command on one connection.
struct Run {
    process: runner::Process,
    output: runner::Output,
    /// The command's stdin, while it is open.
    pipe: Option<ChildStdin>,
    /// Input read from the client and not yet taken by the command.
    pending: Bytes,
    /// Whether the client has sent its last input frame (or sends none).
    eof: bool,
}

impl Run {
    /// Moves output to the client and input to the command until the command ended.
    /// The outer error closes the connection; the inner one is the command's last frame.
    async fn stream<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        shutdown: &CancellationToken,
    ) -> Result<Result<End>> {
        let mut buf = vec![0u8; OUTPUT_CHUNK];
        let mut open = true;
        let mut exit = None;
        while open || exit.is_none() {
            // Every future here is cancel-safe: pipe reads and `wait` keep no state, a
            // stdin write either happened or not, and `read_head` keeps its progress in
            // `conn`. The client is read only when the last input went to the command, so
            // a command that reads nothing stalls the client (its send buffer fills) rather
            // than this server's memory.
            let event = tokio::select! {
                _ = shutdown.cancelled() => Event::Shutdown,
                chunk = self.output.read(&mut buf), if open => Event::Output(chunk),
                status = self.process.wait(), if exit.is_none() => Event::Exited(status),
                wrote = write_some(&mut self.pipe, &self.pending), if !self.pending.is_empty() => {
                    Event::Wrote(wrote)
                }
                head = conn.read_head(), if self.pending.is_empty() => Event::Frame(head),
            };
            match event {
                Event::Output(Some((stream, n))) => {
                    let header = Reply::ok(Output { stream });
                    conn.write_frame(&header, &buf[..n]).await?;
                }
                Event::Output(None) => open = false,
                Event::Exited(status) => {
                    exit = Some(status.map_err(|e| Error::Internal(e.to_string()))?)
                }
                Event::Wrote(Ok(n)) => {
                    self.pending.advance(n);
                    if self.pending.is_empty() && self.eof {
                        self.pipe = None; // the command sees the end of its input
                    }
                }
                Event::Wrote(Err(_)) => {
                    // The command closed its stdin: later input has nowhere to go.
                    self.pipe = None;
                    self.pending.clear();
                }
                Event::Shutdown => {
                    self.process.kill();
                    return Ok(Err(Error::Internal(
                        "the server is shutting down; the command was killed".into(),
                    )));
                }
                Event::Frame(frame) => {
                    if let Err(refused) = self.input(frame, conn).await? {
                        self.process.kill();
                        return Ok(Err(refused));
                    }
                }
            }
        }
        let exit = exit.unwrap_or(Exit::Code(-1));
        Ok(Ok(self.process.end(exit, &self.output)))
    }

    /// Takes one client frame during the run. The outer error closes the connection; the
    /// inner one stops the command (a frame that is not input).
    async fn input<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        frame: Result<Option<Head>>,
        conn: &mut Connection<S>,
    ) -> Result<Result<()>> {
        let head = match frame {
            // The idle timeout of a quiet client: no input is no reason to stop a command (its
            // own deadline bounds the run, and a client that is gone fails the output's
            // writes). The next read waits a whole idle timeout again, so this comes once
            // per timeout, not in a loop.
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(Ok(())),
            Err(e) => return Err(e),
            Ok(None) => return Err(left()),
            Ok(Some(head)) => head,
        };
        match Request::from_head(&head) {
            Ok(Request::Stdin { eof }) if !self.eof => {
                let body = conn.read_body(MAX_STDIN_FRAME).await;
                let body = match body {
                    Err(e @ Error::TooLarge(_)) => return Ok(Err(e)),
                    other => other?,
                };
                if self.pipe.is_some() {
                    self.pending = body;
                }
                if eof {
                    self.eof = true;
                    if self.pending.is_empty() {
                        self.pipe = None;
                    }
                }
                Ok(Ok(()))
            }
            Ok(Request::Stdin { .. }) => Ok(Err(Error::BadRequest(
                "stdin frame after the input's end (or for an exec without stdin)".into(),
            ))),
            Ok(_) => Ok(Err(Error::BadRequest(
                "a running exec takes only stdin frames; wait for its last frame".into(),
            ))),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Sends the queued last frame, then (with stdin) reads and drops input until the
    /// client's `eof`, so that the next frame the loop reads is a request again.
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<()> {
        conn.flush().await?;
        self.pipe = None;
        while !self.eof {
            let head = conn.read_head().await?.ok_or_else(left)?;
            match Request::from_head(&head)? {
                Request::Stdin { eof } => self.eof = eof,
                _ => {
                    return Err(Error::BadRequest(
                        "expected the exec's stdin to end with {\"op\":\"stdin\",\"eof\":true}"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Writes some of `pending` to the command's stdin.
async fn write_some(pipe: &mut Option<ChildStdin>, pending: &[u8]) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.write(pending).await,
        None => Ok(pending.len()),
    }
}

fn left() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the client left during exec; its command was killed",
    ))
}
