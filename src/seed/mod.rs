//! The seeds' own raw protocols, byte for byte, on both sides: the listeners `sockit serve`
//! opens with `--seed-echo`, `--seed-exec`, `--seed-upload` and `--udp-echo`, and the client
//! calls behind `sockit echo --seed/--udp`, `exec --seed` and `put --seed`.
//!
//! These protocols are the seeds' and keep their limits (one `recv(1024)` per command, no
//! framing of requests); sockit's own protocol lives in [`crate::service`].

pub mod command;
pub mod echo;
pub mod upload;

/// The seeds' receive size: `recv(1024)` / `recvfrom(1024)`.
const SEED_BUFSIZE: usize = 1024;

/// One `recv(1024)` of a seed server's communication loop: the bytes read, or `None` when
/// the client closed (the seeds' `if len(data) == 0: break`) or the server shuts down.
///
/// # Errors
/// I/O errors of the stream, the idle timeout among them.
///
/// # Cancel safety
/// Only `read` races the shutdown signal, so a shutdown between two messages loses nothing.
pub(crate) async fn recv(
    conn: &mut crate::server::Conn,
    buf: &mut [u8; SEED_BUFSIZE],
) -> crate::Result<Option<usize>> {
    use tokio::io::AsyncReadExt;
    let n = tokio::select! {
        biased;
        _ = conn.shutdown.cancelled() => return Ok(None),
        n = conn.stream.read(buf) => n?,
    };
    Ok((n > 0).then_some(n))
}
