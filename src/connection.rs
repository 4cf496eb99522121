//! `Connection`: frames over any async byte stream (TCP, Unix socket, TLS later).
//!
//! It owns the read buffer, so services never see a raw stream: they get a [`Head`], then the
//! body through [`Connection::body`] (buffered bytes first, then the socket, never past
//! `body_len`). Replies queue in a write buffer and go out with one write per flush, so a
//! reply is one segment, and pipelined requests get their replies batched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::protocol::frame::FrameError;
use crate::protocol::{Head, Limits, encode_head};
use crate::{Error, Result};

/// Bytes requested from the socket per read, and the size of streamed body chunks.
pub const CHUNK: usize = 64 * 1024;

/// The stack buffer of a read on an idle connection (one with nothing buffered).
const IDLE_READ: usize = 4 * 1024;

/// Heap read buffer taken when bytes arrive, and grown by when it runs low.
const READ_RESERVE: usize = 8 * 1024;

/// A framed, buffered connection.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    limits: Limits,
    /// Body bytes of the last head that nobody has read yet; skipped before the next head.
    unread_body: u64,
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
    /// ends inside a frame, and any I/O error of the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only awaits `read_buf`, and all progress lives in `self`.
    pub async fn read_head(&mut self) -> Result<Option<Head>> {
        self.discard_body().await?;
        loop {
            match Head::parse(&self.rbuf, &self.limits) {
                Ok((head, used)) => {
                    self.rbuf.advance(used);
                    self.unread_body = head.body_len;
                    return Ok(Some(head));
                }
                Err(FrameError::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            if self.fill().await? == 0 {
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

    /// The unread body of the last head, as a reader that ends at its last byte.
    pub fn body(&mut self) -> Body<'_, S> {
        Body { conn: self }
    }

    /// Body bytes of the last head not read yet.
    pub fn unread_body(&self) -> u64 {
        self.unread_body
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
        Ok(self.rbuf.split_to(len).freeze())
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

    /// Writes everything queued in one write and flushes the stream.
    ///
    /// # Errors
    /// I/O errors of the stream.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await?;
        Ok(())
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

    /// Sends one whole frame and reads one whole reply frame at the same time, the reply's
    /// body into memory (up to `max` bytes).
    ///
    /// Writing a large body before reading can deadlock against a peer that streams its reply
    /// while it reads (the echo op does): both sides' socket buffers fill and each waits for
    /// the other. Here the reply is read while the request is still being written.
    ///
    /// # Errors
    /// As [`Self::read_head`] and [`Self::read_body`]; an error reply that arrives while the
    /// request is still being written wins over the write failing.
    pub async fn exchange(
        &mut self,
        header: &(impl Serialize + ?Sized),
        body: &[u8],
        max: u64,
    ) -> Result<(Head, bytes::Bytes)> {
        self.discard_body().await?;
        self.queue_head(header, body.len() as u64)?;
        let Connection {
            stream,
            rbuf,
            wbuf,
            limits,
            ..
        } = self;
        let (mut rd, mut wr) = tokio::io::split(&mut *stream);
        let write = async {
            wr.write_all(wbuf).await?;
            wr.write_all(body).await?;
            wr.flush().await?;
            Ok::<(), Error>(())
        };
        let read = async {
            let head = loop {
                match Head::parse(rbuf, limits) {
                    Ok((head, used)) => {
                        rbuf.advance(used);
                        break head;
                    }
                    Err(FrameError::Incomplete) => {}
                    Err(e) => return Err(e.into()),
                }
                if rd.read_buf(rbuf).await? == 0 {
                    return Err(eof("the peer closed the connection before its reply"));
                }
            };
            if head.body_len > max {
                return Err(Error::TooLarge(format!(
                    "reply body of {} bytes is over the in-memory limit of {max}",
                    head.body_len
                )));
            }
            let len = head.body_len as usize;
            while rbuf.len() < len {
                rbuf.reserve(len - rbuf.len());
                if rd.read_buf(rbuf).await? == 0 {
                    return Err(eof("the peer closed the connection inside its reply"));
                }
            }
            Ok((head, rbuf.split_to(len).freeze()))
        };
        let (written, reply) = tokio::join!(write, read);
        wbuf.clear();
        match (written, reply) {
            (_, Ok(reply)) => Ok(reply),
            (Ok(()), Err(e)) | (Err(_), Err(e)) => Err(e),
        }
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

    /// One read into the read buffer.
    ///
    /// An idle connection holds no read buffer: with nothing buffered, the read goes to a
    /// stack buffer first, and a read that would wait gives the heap buffer back. So 10,000
    /// connections waiting for their next request cost no buffer memory; a busy one pays a
    /// small allocation per wait, which is far below the cost of the wait's system calls.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.is_empty() {
            let mut stack = [0u8; IDLE_READ];
            let mut read = ReadBuf::new(&mut stack);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if self.rbuf.capacity() > 0 {
                        self.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    self.rbuf.reserve(got.len().max(READ_RESERVE));
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

    /// Gives back the stream and whatever was read past the last frame (for protocol hand-off).
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.rbuf)
    }
}

/// The body of the last frame head, as an [`AsyncRead`] that ends where the body ends.
///
/// Dropping it early is fine: the rest is skipped before the next head is read.
#[derive(Debug)]
pub struct Body<'a, S> {
    conn: &'a mut Connection<S>,
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
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::AsyncReadExt;

    fn frame(op: &str, body: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_head(&json!({ "op": op }), body.len() as u64, &mut buf).unwrap();
        buf.extend_from_slice(body);
        buf.to_vec()
    }

    #[tokio::test]
    async fn several_messages_in_one_read_come_apart() {
        // The seeds' first 粘包 case: three small sends arrive as one chunk.
        let mut wire = frame("a", b"hello");
        wire.extend(frame("b", b"world"));
        wire.extend(frame("c", b""));
        let mut conn = Connection::new(tokio_test_stream(vec![wire]), Limits::default());
        for (op, body) in [("a", &b"hello"[..]), ("b", b"world"), ("c", b"")] {
            let head = conn.read_head().await.unwrap().unwrap();
            assert_eq!(head.header["op"], op);
            assert_eq!(&conn.read_body(1024).await.unwrap()[..], body);
        }
        assert!(conn.read_head().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn one_message_split_into_single_bytes_comes_together() {
        // The seeds' second 粘包 case, taken to the extreme: one byte per read.
        let body = vec![7u8; 3000];
        let wire = frame("big", &body);
        let chunks = wire.iter().map(|b| vec![*b]).collect();
        let mut conn = Connection::new(tokio_test_stream(chunks), Limits::default());
        let head = conn.read_head().await.unwrap().unwrap();
        assert_eq!(head.body_len, 3000);
        let mut got = Vec::new();
        conn.body().read_to_end(&mut got).await.unwrap();
        assert_eq!(got, body);
        assert!(conn.read_head().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unread_body_is_skipped_before_the_next_head() {
        let mut wire = frame("skip-me", &[1u8; 100_000]);
        wire.extend(frame("next", b"x"));
        let mut conn = Connection::new(tokio_test_stream(vec![wire]), Limits::default());
        conn.read_head().await.unwrap().unwrap();
        let head = conn.read_head().await.unwrap().unwrap();
        assert_eq!(head.header["op"], "next");
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error_not_a_clean_close() {
        let wire = frame("cut", b"0123456789");
        let mut conn = Connection::new(
            tokio_test_stream(vec![wire[..wire.len() - 3].to_vec()]),
            Limits::default(),
        );
        conn.read_head().await.unwrap().unwrap();
        let err = conn.read_body(100).await.unwrap_err();
        assert!(err.is_disconnect(), "{err:?}");

        let mut conn = Connection::new(
            tokio_test_stream(vec![wire[..6].to_vec()]),
            Limits::default(),
        );
        assert!(conn.read_head().await.unwrap_err().is_disconnect());
    }

    #[tokio::test]
    async fn read_body_refuses_bodies_over_its_limit() {
        let mut conn = Connection::new(
            tokio_test_stream(vec![frame("x", &[0; 64])]),
            Limits::default(),
        );
        conn.read_head().await.unwrap().unwrap();
        assert!(matches!(conn.read_body(63).await, Err(Error::TooLarge(_))));
    }

    #[tokio::test]
    async fn queued_replies_leave_in_one_write() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut conn = Connection::new(server, Limits::default());
        conn.queue(&json!({"n": 1}), b"one").unwrap();
        conn.queue(&json!({"n": 2}), b"two").unwrap();
        conn.flush().await.unwrap();
        drop(conn);
        let mut peer = Connection::new(client, Limits::default());
        for n in 1..=2 {
            let head = peer.read_head().await.unwrap().unwrap();
            assert_eq!(head.header["n"], n);
            peer.discard_body().await.unwrap();
        }
    }

    /// A stream that yields the given chunks, one per read, then EOF; writes are discarded.
    fn tokio_test_stream(chunks: Vec<Vec<u8>>) -> ChunkStream {
        ChunkStream {
            chunks: chunks.into(),
        }
    }

    struct ChunkStream {
        chunks: std::collections::VecDeque<Vec<u8>>,
    }

    impl AsyncRead for ChunkStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for ChunkStream {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}
