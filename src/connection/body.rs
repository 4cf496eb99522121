//! [`Body`]: the body of the last head as a reader, buffered bytes first, then the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{Connection, clamp};

/// The body of the last frame head, as an [`AsyncRead`] that ends where the body ends.
///
/// Dropping it early is fine: the rest is skipped before the next head is read.
#[derive(Debug)]
pub struct Body<'a, S> {
    pub(super) conn: &'a mut Connection<S>,
}

impl<S> Body<'_, S> {
    /// Body bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.conn.unread_body
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Body<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut *self.get_mut().conn;
        let want = clamp(conn.unread_body).min(buf.remaining());
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        // Bytes that arrived with the head come first.
        if !conn.rbuf.is_empty() {
            let n = want.min(conn.rbuf.len());
            buf.put_slice(&conn.rbuf[..n]);
            conn.rbuf.advance(n);
            conn.unread_body -= n as u64;
            return Poll::Ready(Ok(()));
        }
        // `take` limits the read to this body without zeroing `buf`'s unfilled part (large
        // transfers read into uninitialised chunks; zeroing each cost as much as the copy).
        let filled = buf.filled().len();
        let mut limited = (&mut conn.stream).take(want as u64);
        ready!(Pin::new(&mut limited).poll_read(cx, buf))?;
        let n = buf.filled().len() - filled;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a frame body",
            )));
        }
        conn.unread_body -= n as u64;
        Poll::Ready(Ok(()))
    }
}
