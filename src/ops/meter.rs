//! [`Metered`]: a stream that counts the bytes through it into `sockit_bytes_*_total` of its
//! door. Counted in the connection's own fields and handed to the shared counters every
//! [`FLUSH_EVERY`] bytes and at the end, so a busy connection touches a shared cache line
//! once per 256 KiB, not once per read; with metrics off it only adds two numbers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::metrics::{self, Door};

/// Bytes a connection counts on its own before it adds them to the shared counters.
const FLUSH_EVERY: u64 = 256 * 1024;

/// A stream of `door` whose bytes in and out are counted.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    door: Door,
    /// Bytes read and written so far.
    received: u64,
    sent: u64,
    /// Of those, the bytes handed to the shared counters.
    counted: (u64, u64),
}

impl<S> Metered<S> {
    /// Counts what passes through `inner` as `door`'s bytes.
    pub fn new(inner: S, door: Door) -> Metered<S> {
        Metered {
            inner,
            door,
            received: 0,
            sent: 0,
            counted: (0, 0),
        }
    }

    /// Bytes read from the stream so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes written to the stream so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Hands the bytes counted so far to the shared counters.
    fn flush_counts(&mut self) {
        let (received, sent) = self.counted;
        metrics::bytes(self.door, self.received - received, self.sent - sent);
        self.counted = (self.received, self.sent);
    }

    /// Notes more bytes read or written, flushing past [`FLUSH_EVERY`].
    fn note(&mut self, received: u64, sent: u64) {
        self.received += received;
        self.sent += sent;
        let (r, s) = self.counted;
        if self.received - r + self.sent - s >= FLUSH_EVERY {
            self.flush_counts();
        }
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.flush_counts();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.note(n as u64, 0);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.note(0, n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.note(0, n as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
