//! `Connection`: frames over any async byte stream (TCP, Unix socket, TLS later).
//!
//! It owns the read buffer, so services never see a raw stream: they get a [`Head`], then the
//! body through [`Connection::body`] (buffered bytes first, then the socket, never past
//! `body_len`). Replies queue in a write buffer and go out with one write per flush, so a
//! reply is one segment, and pipelined requests get their replies batched (the caller bounds
//! the batch, see [`Connection::queued`]). Either buffer gives its memory back once drained if
//! a burst grew it; a server gives each head a deadline ([`Connection::with_head_timeout`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::protocol::frame::FrameError;
use crate::protocol::{Head, Limits, encode_head, encode_ok_head};
use crate::server::idle::Deadline;
use crate::{Error, Result};

mod body;
mod exchange;

pub use body::Body;

/// Bytes requested from the socket per read, and the size of streamed body chunks.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The stack buffer of a read on an idle connection (one with nothing buffered).
const IDLE_READ: usize = 4 * 1024;

/// Capacity the read buffer of a connection waiting for its next request may keep.
const KEEP_IDLE: usize = 512;

/// What the read buffer grows by when it runs low.
const READ_RESERVE: usize = 8 * 1024;

/// Capacity a drained buffer may keep; a buffer that grew past it (a large head, an inline
/// body, a burst of replies) is given back once it is empty, so one burst does not cost a
/// connection memory for the rest of its life.
const KEEP_CAPACITY: usize = 4 * CHUNK;

/// A framed, buffered connection.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    limits: Limits,
    /// Body bytes of the last head that nobody has read yet; skipped before the next head.
    unread_body: u64,
    /// The longest a head may take from its first byte to its last (none: no limit).
    head_timeout: Option<std::time::Duration>,
    /// When the head being read began, once its first bytes are buffered.
    head_since: Option<tokio::time::Instant>,
    /// The timer of `head_timeout`.
    head_timer: Deadline,
    /// Bytes written by [`Self::poll_push`] that the stream may still hold (TLS records
    /// not yet on the socket): a read that waits flushes them.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected stream, enforcing `limits` on every frame read.
    pub fn new(stream: S, limits: Limits) -> Self {
        Connection {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            limits,
            unread_body: 0,
            head_timeout: None,
            head_since: None,
            head_timer: Deadline::default(),
            unflushed: false,
        }
    }

    /// This connection with a deadline on every head it reads: from the head's first byte
    /// until its last, however slowly the bytes trickle in (the idle timeout only bounds
    /// each wait).
    pub fn with_head_timeout(self, timeout: std::time::Duration) -> Self {
        Connection {
            head_timeout: Some(timeout),
            ..self
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads the next frame head, skipping whatever the previous frame's body left unread.
    ///
    /// Returns `Ok(None)` when the peer closed the stream cleanly between frames.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a broken frame, an `UnexpectedEof` I/O error when the stream
    /// ends inside a frame, [`Error::Timeout`] when a head takes longer than its timeout
    /// (see [`Self::with_head_timeout`]), and any I/O error of the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only awaits `read_buf`, and all progress (the head's start time
    /// included) lives in `self`.
    pub async fn read_head(&mut self) -> Result<Option<Head>> {
        self.discard_body().await?;
        loop {
            match Head::parse(&self.rbuf, &self.limits) {
                Ok((head, used)) => {
                    self.rbuf.advance(used);
                    release_if_large(&mut self.rbuf);
                    self.unread_body = head.body_len;
                    self.head_since = None;
                    return Ok(Some(head));
                }
                Err(FrameError::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            if std::future::poll_fn(|cx| self.poll_fill_head(cx)).await? == 0 {
                if self.rbuf.is_empty() {
                    return Ok(None);
                }
                return Err(eof("the peer closed the connection inside a frame header"));
            }
        }
    }

    /// Whether a whole next head is already buffered, i.e. the peer pipelined another request.
    pub fn has_buffered_head(&self) -> bool {
        self.unread_body == 0 && Head::check(&self.rbuf, &self.limits).is_ok()
    }

    /// Whether a whole next head is buffered once what the socket holds now is read: reads
    /// without waiting, until a head is whole or a read would wait (or the stream ended,
    /// which the next [`Self::read_head`] reports).
    ///
    /// # Errors
    /// I/O errors of the stream.
    pub async fn head_ready(&mut self) -> Result<bool> {
        loop {
            if self.unread_body > 0 {
                return Ok(false);
            }
            match Head::check(&self.rbuf, &self.limits) {
                Ok(_) => return Ok(true),
                Err(FrameError::Incomplete) => {}
                // A broken head is not read past (so this buffer stays within one head's
                // limit): the next `read_head` reports it.
                Err(_) => return Ok(false),
            }
            // One poll: `Pending` leaves this task's waker with the socket (a wake-up for
            // nothing, at worst), and the buffer as it was.
            match std::future::poll_fn(|cx| Poll::Ready(self.poll_fill(cx))).await {
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(Ok(_)) | Poll::Pending => return Ok(false),
                Poll::Ready(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The heads buffered after the last one read, parsed but left in place, up to `max`
    /// of them and within `max_bytes` of buffer, stopping at the first with a body or not yet
    /// whole: a look ahead, for a server that prepares answers together. (The byte bound
    /// keeps a look ahead per request from parsing more than one request's worth of
    /// headers.)
    pub fn buffered_heads(&self, max: usize, max_bytes: usize) -> Vec<Head> {
        let mut heads = Vec::new();
        if self.unread_body > 0 {
            return heads;
        }
        let mut at = 0;
        while heads.len() < max && at < max_bytes {
            match Head::parse(&self.rbuf[at..], &self.limits) {
                Ok((head, used)) if head.body_len == 0 => {
                    at += used;
                    heads.push(head);
                }
                _ => break,
            }
        }
        heads
    }

    /// Bytes queued for the peer and not written yet.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// The unread body of the last head, as a reader that ends at its last byte.
    pub fn body(&mut self) -> Body<'_, S> {
        Body { conn: self }
    }

    /// Body bytes of the last head not read yet.
    pub fn unread_body(&self) -> u64 {
        self.unread_body
    }

    /// Moves the part of the last head's body that is already buffered (it came with the
    /// head) into the write queue, for a reply that repeats it (echo): no read, and no copy
    /// through a chunk. Returns how many bytes moved; the rest is still to be read.
    pub fn relay_buffered_body(&mut self) -> u64 {
        let n = self.rbuf.len().min(clamp(self.unread_body));
        self.wbuf.extend_from_slice(&self.rbuf[..n]);
        self.rbuf.advance(n);
        self.unread_body -= n as u64;
        n as u64
    }

    /// Reads the whole body of the last head into memory.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the body is over `max` bytes (it is then skipped, not read);
    /// I/O errors, including `UnexpectedEof` when the stream ends early.
    pub async fn read_body(&mut self, max: u64) -> Result<bytes::Bytes> {
        if self.unread_body > max {
            return Err(Error::TooLarge(format!(
                "body of {} bytes is over the in-memory limit of {max}",
                self.unread_body
            )));
        }
        // Fits in usize: it is at most `max`, a configured in-memory limit.
        let len = self.unread_body as usize;
        while self.rbuf.len() < len {
            self.rbuf.reserve(len - self.rbuf.len());
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(eof("the peer closed the connection inside a frame body"));
            }
        }
        self.unread_body = 0;
        let body = self.rbuf.split_to(len).freeze();
        release_if_large(&mut self.rbuf);
        Ok(body)
    }

    /// Skips the unread body of the last head.
    ///
    /// # Cancel safety
    /// Cancel-safe: progress is counted down in `self` as bytes are dropped.
    pub async fn discard_body(&mut self) -> Result<()> {
        while self.unread_body > 0 {
            if self.rbuf.is_empty() && self.fill().await? == 0 {
                return Err(eof("the peer closed the connection inside a frame body"));
            }
            let n = self.rbuf.len().min(clamp(self.unread_body));
            self.rbuf.advance(n);
            self.unread_body -= n as u64;
        }
        Ok(())
    }

    /// Queues a whole frame (head and in-memory body) without writing it yet.
    ///
    /// # Errors
    /// [`Error::Protocol`] when `header` does not encode to a JSON object.
    pub fn queue(&mut self, header: &(impl Serialize + ?Sized), body: &[u8]) -> Result<()> {
        encode_head(header, body.len() as u64, &mut self.wbuf)?;
        self.wbuf.extend_from_slice(body);
        Ok(())
    }

    /// Queues bytes that are already framed (a relay, or a test of pipelining).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Queues a head whose `body_len` bytes the caller sends next with [`Self::send_body`]
    /// or [`Self::send_body_from`].
    ///
    /// # Errors
    /// As [`Self::queue`].
    pub fn queue_head(&mut self, header: &(impl Serialize + ?Sized), body_len: u64) -> Result<()> {
        encode_head(header, body_len, &mut self.wbuf)?;
        Ok(())
    }

    /// Queues the head of the bare success reply (see [`encode_ok_head`]); the caller sends
    /// its `body_len` bytes of body after it.
    pub fn queue_ok_head(&mut self, body_len: u64) {
        encode_ok_head(body_len, &mut self.wbuf);
    }

    /// Writes everything queued in one write and flushes the stream; a queue that grew large
    /// gives its memory back once written.
    ///
    /// # Errors
    /// I/O errors of the stream.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            release_if_large(&mut self.wbuf);
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// [`Self::flush`] for a side with requests in flight: whenever the peer takes no more
    /// bytes, what it sends meanwhile (replies to the requests before) is read into the read
    /// buffer, up to `room` bytes, for the next [`Self::read_head`]. A server that stops
    /// reading while its replies wait to be written (as one that bounds its memory must)
    /// then never waits on this side while this side waits on it.
    ///
    /// # Errors
    /// I/O errors of the stream; an `UnexpectedEof` when the peer closes while this side
    /// still writes.
    pub async fn flush_reading(&mut self, room: usize) -> Result<()> {
        std::future::poll_fn(|cx| {
            loop {
                if let Poll::Ready(done) = self.poll_push(cx) {
                    return Poll::Ready(done);
                }
                // The peer takes nothing now: take in what it sends, so that it can.
                if self.rbuf.len() >= room {
                    return Poll::Pending;
                }
                match ready!(self.poll_fill(cx)) {
                    Ok(0) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection while requests were sent",
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await?;
        release_if_large(&mut self.wbuf);
        Ok(())
    }

    /// Writes what is queued as far as the stream takes it now, then flushes the stream;
    /// `Ready` once all of it is written and flushed. What a read waits for may be the
    /// answer to what is still queued, so a head's read pushes the queue too (see
    /// [`Self::poll_fill_head`]).
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            match ready!(Pin::new(&mut self.stream).poll_write(cx, &self.wbuf)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.unflushed = true;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Queues a frame and flushes: one write for the head and body together.
    ///
    /// # Errors
    /// As [`Self::queue`] and [`Self::flush`].
    pub async fn write_frame(
        &mut self,
        header: &(impl Serialize + ?Sized),
        body: &[u8],
    ) -> Result<()> {
        if body.len() <= CHUNK {
            self.queue(header, body)?;
            return self.flush().await;
        }
        // A large body goes straight from the caller's buffer: no copy into wbuf.
        self.queue_head(header, body.len() as u64)?;
        self.send_body(body).await
    }

    /// Sends body bytes after a queued head: small ones join the queue, large ones are written
    /// through after it.
    ///
    /// # Errors
    /// I/O errors of the stream.
    pub async fn send_body(&mut self, body: &[u8]) -> Result<()> {
        if self.wbuf.len() + body.len() <= 2 * CHUNK {
            self.wbuf.extend_from_slice(body);
            if self.wbuf.len() < CHUNK {
                return Ok(());
            }
            return self.flush().await;
        }
        self.flush().await?;
        self.stream.write_all(body).await?;
        Ok(())
    }

    /// Sends exactly `len` body bytes read from `reader` after a queued head, and flushes.
    ///
    /// # Errors
    /// An `UnexpectedEof` I/O error when `reader` ends before `len` bytes, and I/O errors of
    /// either side. The frame is then incomplete on the wire, so the caller must close.
    pub async fn send_body_from<R: AsyncRead + Unpin>(
        &mut self,
        mut reader: R,
        len: u64,
    ) -> Result<()> {
        let mut left = len;
        while left > 0 {
            self.wbuf.reserve(CHUNK);
            let want = clamp(left).min(CHUNK);
            let n = (&mut reader)
                .take(want as u64)
                .read_buf(&mut self.wbuf)
                .await?;
            if n == 0 {
                return Err(eof("the body's source ended before its announced size"));
            }
            left -= n as u64;
            if self.wbuf.len() >= CHUNK {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Closes the write side, then reads and drops what the peer still sends, up to
    /// `max_bytes` or `max_time`.
    ///
    /// Closing a socket with unread input makes the kernel send RST, which can destroy the
    /// error reply queued just before it; draining first lets that reply arrive.
    pub async fn linger_close(&mut self, max_bytes: usize, max_time: std::time::Duration) {
        let _ = self.stream.shutdown().await;
        let drain = async {
            let mut dropped = 0;
            while dropped < max_bytes {
                self.rbuf.clear();
                match self.fill().await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dropped += n,
                }
            }
        };
        let _ = tokio::time::timeout(max_time, drain).await;
    }

    /// Reads more bytes from the stream into the read buffer; 0 means end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// One read into the read buffer for the head being read: once the head has begun, the
    /// read fails with [`Error::Timeout`] when the head's deadline passes.
    fn poll_fill_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize>> {
        if let Some(timeout) = self.head_timeout
            && !self.rbuf.is_empty()
        {
            let since = *self
                .head_since
                .get_or_insert_with(tokio::time::Instant::now);
            if self.head_timer.poll_reached(since + timeout, cx).is_ready() {
                return Poll::Ready(Err(Error::Timeout(format!(
                    "a request head took longer than {timeout:?} (the head timeout)"
                ))));
            }
        }
        // Requests queued and not all written yet (a window of pipelined ones): written as
        // the peer takes them, while their replies are read.
        if (!self.wbuf.is_empty() || self.unflushed)
            && let Poll::Ready(Err(e)) = self.poll_push(cx)
        {
            return Poll::Ready(Err(e.into()));
        }
        self.poll_fill(cx).map_err(Error::from)
    }

    /// One read into the read buffer.
    ///
    /// An idle connection holds at most a small read buffer: with nothing buffered, the read
    /// goes to a stack buffer first, and a read that would wait gives back a heap buffer
    /// larger than [`KEEP_IDLE`]. So 10,000 connections waiting for their next request cost
    /// at most 5 MiB of buffers, and one that sends small requests keeps the buffer they fit
    /// in, instead of an allocation and a free per request.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.is_empty() {
            // Not zeroed: `ReadBuf` tracks what the read initialised (zeroing 4 KiB twice
            // a request showed in the echo profile).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
            let mut read = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if self.rbuf.capacity() > KEEP_IDLE {
                        self.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    // Just what arrived: a small request (the usual case) then costs a
                    // small allocation, which the allocator serves from its thread cache,
                    // where a fixed 8 KiB one went through its slow path every request. A
                    // head that is not all there yet gets room by the branch below.
                    let got = read.filled();
                    self.rbuf.reserve(got.len());
                    self.rbuf.extend_from_slice(got);
                    return Poll::Ready(Ok(got.len()));
                }
            }
        }
        // Reads of large bodies bypass this buffer (see `Body`), and `read_body` reserves
        // what it needs, so 8 KiB steps suffice for heads.
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_RESERVE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf)
    }

    /// The stream, to ask about it (as its TLS session); reading or writing it directly
    /// would break the framing.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, to change how it is carried (its bandwidth limits); reading or writing
    /// it directly would break the framing.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives back the stream and whatever was read past the last frame (for protocol hand-off).
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.rbuf)
    }
}

/// Drops the allocation of an empty buffer that grew past [`KEEP_CAPACITY`].
fn release_if_large(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = BytesMut::new();
    }
}

/// `min(n, usize::MAX)` as a usize.
fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn eof(what: &str) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        what.to_string(),
    ))
}

#[cfg(test)]
mod tests;
