//! `echo`: `{"op":"echo","total_size":n}` + n bytes is answered with `{"ok":true,"total_size":n}`
//! + the same n bytes (the contract op that outside load generators use). No login needed.
//!
//! The body streams through in chunks, so an echo of any allowed size costs one chunk of memory.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::connection::{CHUNK, Connection};
use crate::{Error, Result};

/// Answers the echo request whose head was just read on `conn`.
///
/// The reply is queued, not flushed: the frame loop flushes once no pipelined request waits.
///
/// # Errors
/// I/O errors, including the peer closing inside the body; the connection then closes.
pub(crate) async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
) -> Result<()> {
    let mut left = conn.unread_body();
    conn.queue_ok_head(left);
    // A small body came with its head: it goes straight into the reply.
    left -= conn.relay_buffered_body();
    if left == 0 {
        return Ok(());
    }
    let mut chunk = vec![0; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
    while left > 0 {
        let n = conn.body().read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        conn.send_body(&chunk[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}
