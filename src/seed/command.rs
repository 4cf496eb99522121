//! The seeds' remote command execution, "终极版" (002 §5.3.2): a raw command in one
//! `recv(1024)`, answered with `struct.pack('i', len(header))` + `{"total_size": n}` + n bytes
//! of stdout followed by stderr, in one write.
//!
//! Unlike the seed, every command runs bounded, through [`crate::runner`]: `sh -c` in the
//! same sandbox as a user's command, rooted at a scratch folder of the connection's own
//! (removed when it closes) instead of a home, with a minimal environment, killed (with
//! everything it started) past a wall-clock timeout or an output cap, and the reply says so.
//! The output is buffered (the reply's header carries its size first), never more than the
//! cap. The listener has no login, so `sockit serve` opens it only on loopback with
//! `--allow-exec`.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::info;

use super::SEED_BUFSIZE;
use crate::connection::Connection;
use crate::net::{Endpoint, connect};
use crate::protocol::header::Empty;
use crate::protocol::{Limits, encode_head};
pub(crate) use crate::runner::ExecLimits;
use crate::runner::{End, Sandbox, Spec, run_buffered};
use crate::server::{Conn, TcpService};
use crate::{Error, Result};

/// The seed exec server (`--seed-exec`).
#[derive(Debug)]
pub(crate) struct Exec {
    /// Limits of every command.
    pub(crate) limits: ExecLimits,
    /// The sandbox every command runs in.
    pub(crate) sandbox: Arc<Sandbox>,
}

impl TcpService for Exec {
    async fn handle(&self, mut conn: Conn) -> Result<()> {
        let mut buf = [0u8; SEED_BUFSIZE];
        // The connection's commands share one folder, as the seed's share the server's
        // working folder; it goes with the connection.
        let scratch = crate::runner::private_folder("seed")?;
        while let Some(n) = super::recv(&mut conn, &mut buf).await? {
            let command = String::from_utf8_lossy(&buf[..n]).into_owned();
            info!(peer = %conn.peer, command = %command, "seed exec");
            let output = run(&command, scratch.path(), self.limits, &self.sandbox).await;
            let mut reply = BytesMut::with_capacity(64 + output.len());
            encode_head(&Empty {}, output.len() as u64, &mut reply)?;
            reply.extend_from_slice(&output);
            conn.stream.write_all(&reply).await?;
        }
        Ok(())
    }
}

/// Runs `sh -c command` in `scratch` within `limits` and `sandbox`, and returns stdout then
/// stderr, plus a note when the command was killed or could not start. Never fails: the seed
/// client must get a reply.
async fn run(command: &str, scratch: &Path, limits: ExecLimits, sandbox: &Sandbox) -> Vec<u8> {
    let spec = Spec {
        command,
        user: None,
        home: scratch,
        stdin: false,
    };
    let done = match run_buffered(&spec, &limits, sandbox).await {
        Ok(done) => done,
        Err(e) => return format!("sockit: cannot run the command: {e}\n").into_bytes(),
    };
    let mut out = done.stdout;
    out.extend_from_slice(&done.stderr);
    let note = match done.end {
        End::Exit(_) => return out,
        End::OutputLimit => format!(
            "\n[sockit: output over {} bytes; the command was killed]\n",
            limits.max_output
        ),
        End::Timeout => format!(
            "\n[sockit: the command ran over {}s; it was killed]\n",
            limits.timeout.as_secs_f64()
        ),
    };
    out.extend_from_slice(note.as_bytes());
    out
}

/// The seed exec client: sends `command` raw, reads the framed reply and copies its body to
/// `out`. Returns the number of bytes copied.
///
/// # Errors
/// [`Error::BadRequest`] for an empty command or one over 1024 bytes (the seed server reads
/// one `recv(1024)`); connect, protocol and I/O errors.
pub async fn request(
    server: &Endpoint,
    command: &str,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<u64> {
    if command.trim().is_empty() {
        return Err(Error::BadRequest("no command given".into()));
    }
    if command.len() > SEED_BUFSIZE {
        return Err(Error::BadRequest(format!(
            "the command is {} bytes; the seed protocol takes at most {SEED_BUFSIZE}",
            command.len()
        )));
    }
    let mut stream = connect(server).await?;
    stream.write_all(command.as_bytes()).await?;
    let mut conn = Connection::new(stream, Limits::default());
    if conn.read_head().await?.is_none() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection without replying",
        )));
    }
    let copied = tokio::io::copy(&mut conn.body(), out).await?;
    out.flush().await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `command` in a scratch folder, without a sandbox (the helper is the sockit binary,
    /// which unit tests do not have; tests/it/exec/sandbox.rs runs the seed listener in it).
    async fn run(command: &str, limits: ExecLimits) -> Vec<u8> {
        let scratch = tempfile::tempdir().unwrap();
        super::run(command, scratch.path(), limits, &Sandbox::none()).await
    }

    #[tokio::test]
    async fn stdout_comes_before_stderr() {
        let out = run("echo err >&2; echo out", ExecLimits::default()).await;
        assert_eq!(out, b"out\nerr\n");
    }

    #[tokio::test]
    async fn output_over_the_cap_kills_the_command() {
        let limits = ExecLimits {
            max_output: 1000,
            ..ExecLimits::default()
        };
        let out = run("yes", limits).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("y\ny\n"), "{text}");
        assert!(text.ends_with("the command was killed]\n"), "{text}");
    }

    #[tokio::test]
    async fn a_command_over_its_time_is_killed_with_its_children() {
        let limits = ExecLimits {
            timeout: Duration::from_millis(200),
            ..ExecLimits::default()
        };
        // The background sleep holds stdout open: only killing the group ends it.
        let out = run("sleep 60 & echo started; wait", limits).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("started\n"), "{text}");
        assert!(text.contains("it was killed"), "{text}");
    }
}
