//! The idle timeout of a connection: a read or a write that waits longer than the limit
//! fails with `TimedOut`. A connection is idle when the peer neither sends nor takes bytes:
//! a write that moves bytes starts the read's wait afresh (the client of a long command
//! reads its output and may send nothing), while a write the peer does not take fails after
//! the limit whatever it sends. A failure ends its wait: a caller that goes on (a running
//! exec does not stop for a quiet client) gets the next `TimedOut` a whole timeout later.
//!
//! A timer per wait would be re-armed on every request, and re-arming costs: under load,
//! about one request in ten woke a parked worker thread to recompute its sleep (a `futex`
//! and an `eventfd` write each), which showed in the echo benchmark's tail latency. Here
//! each direction keeps one timer that is moved only when it fires: a wait notes when it
//! began, and a timer that fires before that wait's deadline is set to the deadline and
//! goes on. So a busy connection re-arms its timer about once per timeout period, not
//! once per request. That timer is `Deadline`; the head deadline of a connection
//! ([`crate::connection::Connection::with_head_timeout`]) uses one too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose reads and writes fail with [`io::ErrorKind::TimedOut`] after waiting
/// `timeout` without progress.
#[derive(Debug)]
pub struct IdleStream<S> {
    inner: S,
    timeout: Duration,
    read: Wait,
    write: Wait,
}

impl<S> IdleStream<S> {
    /// Wraps `inner`; each read and each write may wait at most `timeout`.
    pub(crate) fn new(inner: S, timeout: Duration) -> IdleStream<S> {
        IdleStream {
            inner,
            timeout,
            read: Wait::default(),
            write: Wait::default(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, unwrapped (to wrap it in TLS, say).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Notes a write's outcome: one that moved bytes shows the peer is there, so the read's
    /// wait starts afresh too.
    fn wrote(&mut self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.read.since = None;
        }
    }
}

/// One direction's wait: when it began, and its timer.
#[derive(Debug, Default)]
struct Wait {
    since: Option<Instant>,
    timer: Deadline,
}

impl Wait {
    /// Passes on one poll of the operation this wait times: progress starts the next wait
    /// afresh; pending registers the timer, or fails once this wait has lasted `timeout`.
    /// A failure ends the wait too, so that the next poll waits `timeout` again instead of
    /// failing at once (a loop that ignores the error would otherwise spin).
    fn watch<T>(
        &mut self,
        timeout: Duration,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.since = None;
            return polled;
        }
        let due = *self.since.get_or_insert_with(Instant::now) + timeout;
        match self.timer.poll_reached(due, cx) {
            Poll::Ready(()) => {
                self.since = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no progress for {timeout:?} (the idle timeout)"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A timer polled with deadlines that never move back (each wait's is later than the last
/// one's), made on first use and moved only when it fires: it re-arms about once per
/// period, not once per wait.
///
/// A timer that has not fired and already holds this task's waker is not polled again: it
/// will wake the task when it fires, and a poll would only register the same waker anew
/// (an atomic exchange per wait, which showed in the echo profile).
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker the timer was last polled with.
    waker: Option<Waker>,
}

impl Deadline {
    /// Ready once `due` has passed; otherwise the task is woken by then.
    pub(crate) fn poll_reached(&mut self, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
        // A timer left from an earlier wait is due no later than this one: it fires early
        // at worst, and is then moved to this wait's deadline.
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        let armed = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !timer.is_elapsed() {
            return Poll::Pending;
        }
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= due {
                self.waker = None;
                return Poll::Ready(());
            }
            timer.as_mut().reset(due);
        }
        if !armed {
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read.watch(this.timeout, cx, polled)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&polled);
        this.write.watch(this.timeout, cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        this.write.watch(this.timeout, cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.write.watch(this.timeout, cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.write.watch(this.timeout, cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_fails_after_the_timeout_and_progress_restarts_it() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut idle = IdleStream::new(near, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        // Progress every 6 s, 60 s in all: more than the timeout, never a wait as long.
        for _ in 0..10 {
            let read = idle.read(&mut buf);
            let write = async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                far.write_all(b"x").await
            };
            let (n, sent) = tokio::join!(read, write);
            assert_eq!(n.unwrap(), 1);
            sent.unwrap();
        }
        // Then silence: the read fails once it has waited 10 s.
        let started = Instant::now();
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_timeout_the_next_wait_is_a_whole_timeout_again() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut idle = IdleStream::new(near, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        // A caller that goes on after each timeout (exec with a quiet client) waits a whole
        // timeout each time: the error does not come again at once.
        for _ in 0..3 {
            let started = Instant::now();
            let err = idle.read(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(started.elapsed(), Duration::from_secs(10));
        }
        // Input that comes later is read as usual.
        let read = idle.read(&mut buf);
        let write = async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            far.write_all(b"late").await
        };
        let (n, sent) = tokio::join!(read, write);
        sent.unwrap();
        assert_eq!(&buf[..n.unwrap()], b"late");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_the_peer_takes_keep_a_quiet_read_waiting() {
        let (near, mut far) = tokio::io::duplex(64);
        let (mut reader, mut writer) =
            tokio::io::split(IdleStream::new(near, Duration::from_secs(10)));
        let mut buf = [0u8; 8];
        let mut out = [0u8; 8];
        // The peer sends nothing for 60 s but takes a byte every 6 s: the read waits on.
        let read = reader.read(&mut buf);
        let output = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                writer.write_all(b"o").await.unwrap();
                far.read_exact(&mut out[..1]).await.unwrap();
            }
            // Then the peer sends; the read gets it.
            far.write_all(b"in").await.unwrap();
        };
        let (n, ()) = tokio::join!(read, output);
        assert_eq!(&buf[..n.unwrap()], b"in");
        // With the output over too, the read fails a whole timeout after the last write.
        writer.write_all(b"o").await.unwrap();
        let started = Instant::now();
        let err = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_times_out() {
        let (near, _far) = tokio::io::duplex(16);
        let mut idle = IdleStream::new(near, Duration::from_secs(5));
        let err = idle.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
