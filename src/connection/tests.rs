//! Connection over in-memory streams: 粘包 both ways, skipped bodies, EOF, limits, the head
//! deadline (paused time) and buffers that give their memory back.

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

#[tokio::test(start_paused = true)]
async fn a_trickled_head_fails_at_its_deadline_and_silence_before_it_does_not_count() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::time::{Instant, sleep};

    let (mut client, server) = tokio::io::duplex(1024);
    let mut conn =
        Connection::new(server, Limits::default()).with_head_timeout(Duration::from_secs(5));
    let wire = frame("echo", b"");
    let start = Instant::now();
    let peer = async {
        // A minute of silence, then one whole head: served, the silence is not the head's.
        sleep(Duration::from_secs(60)).await;
        client.write_all(&wire).await.unwrap();
        // Then a head one byte per second: each wait is short, the whole is not.
        for byte in &wire {
            client.write_all(&[*byte]).await.unwrap();
            sleep(Duration::from_secs(1)).await;
        }
        client
    };
    let server = async {
        let head = conn.read_head().await.unwrap().unwrap();
        assert_eq!(head.header["op"], "echo");
        let began = Instant::now();
        let err = conn.read_head().await.unwrap_err();
        (began.elapsed(), err)
    };
    let (_client, (took, err)) = tokio::join!(peer, server);
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(err.code(), crate::protocol::ErrorCode::Timeout);
    assert_eq!(took, Duration::from_secs(5));
    assert!(wire.len() > 5, "the trickle outlasts the deadline");
    assert!(start.elapsed() >= Duration::from_secs(65));
}

#[tokio::test]
async fn a_queue_that_grew_large_gives_its_memory_back_once_written() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let mut conn = Connection::new(server, Limits::default());
    let reader = tokio::spawn(async move {
        let mut client = client;
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all.len()
    });
    let body = vec![7u8; 1000];
    for _ in 0..1000 {
        conn.queue(&json!({"ok": true}), &body).unwrap();
    }
    assert!(conn.wbuf.capacity() >= 1_000_000);
    conn.flush().await.unwrap();
    assert_eq!(conn.wbuf.capacity(), 0);
    // A small queue keeps its buffer: batching small replies costs no allocation each.
    conn.queue(&json!({"ok": true}), &body).unwrap();
    conn.flush().await.unwrap();
    assert!(conn.wbuf.capacity() > 0);
    drop(conn);
    assert!(reader.await.unwrap() > 1_000_000);
}

#[tokio::test]
async fn a_read_buffer_grown_by_a_large_head_is_given_back_once_drained() {
    let big = json!({"op": "big", "pad": "p".repeat(500_000)});
    let mut buf = BytesMut::new();
    encode_head(&big, 0, &mut buf).unwrap();
    let wire = buf.to_vec();
    let limits = Limits {
        max_header_len: 1 << 20,
        ..Limits::default()
    };
    let mut conn = Connection::new(tokio_test_stream(vec![wire]), limits);
    let head = conn.read_head().await.unwrap().unwrap();
    assert_eq!(head.header["op"], "big");
    assert!(
        conn.rbuf.capacity() <= KEEP_CAPACITY,
        "{}",
        conn.rbuf.capacity()
    );
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
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A peer that answers each request before it reads the next, over a pipe that holds 1 KiB:
/// a window of 200 requests is only ever written whole if its replies are taken in while it
/// is written, and requests still queued are only sent if reading their replies sends them.
#[tokio::test]
async fn a_window_larger_than_the_pipe_goes_out_while_its_replies_come_in() {
    let (ours, theirs) = tokio::io::duplex(1024);
    let server = tokio::spawn(async move {
        let mut conn = Connection::new(theirs, Limits::default());
        while let Some(head) = conn.read_head().await.unwrap() {
            let n = head.header["n"].clone();
            conn.write_frame(&json!({ "ok": true, "n": n, "pad": "x".repeat(100) }), b"")
                .await
                .unwrap();
        }
    });
    // Stuck, both sides would wait for ever: the deadline turns that into a failure.
    let client = async move {
        let mut conn = Connection::new(ours, Limits::default());
        window(&mut conn, 0..200);
        conn.flush_reading(1 << 20).await.unwrap();
        for n in 0..100 {
            let head = conn.read_head().await.unwrap().unwrap();
            assert_eq!(head.header["n"], n);
        }
        // Another window, queued and not flushed: the reads of the replies send it.
        window(&mut conn, 200..400);
        for n in 100..400 {
            let head = conn.read_head().await.unwrap().unwrap();
            assert_eq!(head.header["n"], n);
        }
    };
    let limit = std::time::Duration::from_secs(60);
    tokio::time::timeout(limit, client)
        .await
        .expect("the window got stuck");
    server.await.unwrap();
}

/// Queues a `stat` request numbered `n` for each of `ns`.
fn window<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Connection<S>, ns: std::ops::Range<u32>) {
    for n in ns {
        conn.queue(
            &json!({ "op": "stat", "n": n, "pad": "y".repeat(100) }),
            b"",
        )
        .unwrap();
    }
}
