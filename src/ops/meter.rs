//! [`Metered`]: a stream that counts the bytes through it into `sockit_bytes_*_total` of its
//! door, and shapes them when a bandwidth limit applies ([`Shaping`]). Counted in the
//! connection's own fields and handed to the shared counters every `FLUSH_EVERY` bytes
//! and at the end, so a busy connection touches a shared cache line once per 256 KiB, not
//! once per read; with metrics off and no limit it only adds two numbers and a `None` check.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::metrics::{self, Door};
use super::shape::{Bucket, MAX_SHAPED_WRITE, Shaping};

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
    /// The bandwidth limits that apply, if any.
    shaping: Option<Box<Shaping>>,
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
            shaping: None,
        }
    }

    /// Shapes the stream by the logged-in user's buckets, in place of an earlier user's.
    pub fn shape_user(&mut self, up: Option<Arc<Bucket>>, down: Option<Arc<Bucket>>) {
        match &mut self.shaping {
            Some(shaping) => shaping.set_user(up, down),
            None if up.is_none() && down.is_none() => {}
            None => self.shaping.get_or_insert_default().set_user(up, down),
        }
    }

    /// Shapes what the server reads by `up` and what it writes by `down` (on top of any
    /// limit set before).
    pub fn shape(&mut self, up: Option<Arc<Bucket>>, down: Option<Arc<Bucket>>) {
        if up.is_none() && down.is_none() {
            return;
        }
        self.shaping.get_or_insert_default().add(up, down);
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

    /// Notes `n` bytes written, and charges them to the shaping's buckets.
    fn wrote(&mut self, n: usize) {
        self.note(0, n as u64);
        if let Some(shaping) = &self.shaping {
            shaping.wrote(n);
        }
    }

    /// Notes more bytes read or written, flushing past `FLUSH_EVERY`.
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
        if let Some(shaping) = &mut this.shaping {
            std::task::ready!(shaping.poll_read_ready(cx));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.note(n as u64, 0);
            if let Some(shaping) = &this.shaping {
                shaping.read(n);
            }
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
        let mut buf = buf;
        if let Some(shaping) = &mut this.shaping {
            std::task::ready!(shaping.poll_write_ready(cx));
            buf = &buf[..buf.len().min(MAX_SHAPED_WRITE)];
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(shaping) = &mut this.shaping {
            // One slice at a time, within the shaped step.
            std::task::ready!(shaping.poll_write_ready(cx));
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            let first = &first[..first.len().min(MAX_SHAPED_WRITE)];
            let polled = Pin::new(&mut this.inner).poll_write(cx, first);
            if let Poll::Ready(Ok(n)) = polled {
                this.wrote(n);
            }
            return polled;
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
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
