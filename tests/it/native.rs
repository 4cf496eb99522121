//! The native protocol through the library's `Client` and raw frames: echo, pipelining,
//! errors that keep the connection, body limits, Unix sockets (shutdown and idle timeouts are
//! in `framework.rs`).

use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use sockit::Error;
use sockit::client::Client;
use sockit::protocol::{ErrorCode, encode_head};
use sockit::server::ServerConfig;
use sockit::service::Native;
use tokio::io::AsyncReadExt;

use crate::common::{spawn_native, spawn_tcp};

#[tokio::test]
async fn echo_returns_the_same_bytes_for_every_size() {
    let server = spawn_native().await;
    let mut client = Client::connect(&server.endpoint).await.unwrap();
    for len in [0usize, 1, 64, 65_535, 65_536, 65_537, 3 << 20, 15 << 20] {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let reply = client.echo(&body).await.unwrap();
        assert_eq!(reply.len(), len);
        assert!(reply[..] == body[..], "echo of {len} bytes differs");
    }
}

#[tokio::test]
async fn a_body_larger_than_the_socket_buffers_is_exchanged_without_deadlock() {
    // 128 MiB is more than both directions' socket buffers can hold (here tcp_wmem caps a send
    // buffer at 4 MiB and tcp_rmem a receive buffer at 32 MiB): a client that wrote it all
    // before reading would wait forever on a server that streams the echo back while it
    // reads. `exchange` reads while it writes.
    let server = spawn_native().await;
    let stream = sockit::net::connect(&server.endpoint).await.unwrap();
    let mut conn = sockit::connection::Connection::new(stream, Default::default());
    let body: Vec<u8> = (0..128usize << 20).map(|i| (i % 249) as u8).collect();
    let header = json!({"op": "echo"});
    let exchange = conn.exchange(&header, &body, 128 << 20);
    // A hang guard, not a timing assertion: without concurrent reading this never ends.
    let (head, reply) = tokio::time::timeout(Duration::from_secs(120), exchange)
        .await
        .expect("deadlocked")
        .unwrap();
    assert_eq!(head.body_len, body.len() as u64);
    assert!(reply[..] == body[..]);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = spawn_native().await;
    let mut client = Client::connect(&server.endpoint).await.unwrap();
    let mut wire = BytesMut::new();
    for i in 0..200u32 {
        let body = format!("message {i}");
        encode_head(
            &json!({"op": "echo", "seq": i}),
            body.len() as u64,
            &mut wire,
        )
        .unwrap();
        wire.extend_from_slice(body.as_bytes());
    }
    // Every request in one write: the seeds' 粘包 case at its worst.
    client.connection().queue_raw(&wire);
    client.connection().flush().await.unwrap();
    for i in 0..200u32 {
        let (_, body) = client.read_reply().await.unwrap();
        assert_eq!(body, format!("message {i}").as_bytes());
    }
}

#[tokio::test]
async fn request_errors_are_answered_and_the_connection_goes_on() {
    let server = spawn_native().await;
    let mut client = Client::connect(&server.endpoint).await.unwrap();
    let cases = [
        (json!({"op": "fly"}), ErrorCode::UnknownOp),
        (json!({"filename": "no op"}), ErrorCode::BadRequest),
        (json!({"op": 42}), ErrorCode::BadRequest),
    ];
    for (header, code) in cases {
        // A body rides along: the server must skip it to stay in sync.
        match client.call(&header, &[7u8; 100_000]).await {
            Err(Error::Remote { code: got, .. }) => assert_eq!(got, code, "{header}"),
            other => panic!("{header}: expected an error reply, got {other:?}"),
        }
        assert_eq!(&client.echo(b"in sync").await.unwrap()[..], b"in sync");
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let config = ServerConfig {
        limits: sockit::protocol::Limits {
            max_body: 1000,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = spawn_tcp(Native::new(), config).await;
    let mut client = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(&client.echo(&[1; 1000]).await.unwrap()[..], &[1; 1000][..]);
    let mut stream = sockit::net::connect(&server.endpoint).await.unwrap();
    let mut head = BytesMut::new();
    encode_head(&json!({"op": "echo"}), 1001, &mut head).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &head)
        .await
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("too_large"), "{text}");
}

#[tokio::test]
async fn unix_socket_listener_serves_and_replaces_a_stale_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A crashed server's leftover: a socket file nobody accepts on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let endpoint: sockit::net::Endpoint = format!("unix:{}", path.display()).parse().unwrap();
    let listener = sockit::net::Listener::bind(&endpoint).await.unwrap();
    // A second server on a live socket is refused.
    let err = sockit::net::Listener::bind(&endpoint).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let shutdown = sockit::server::Shutdown::new();
    let task = tokio::spawn(sockit::server::serve_tcp(
        listener,
        std::sync::Arc::new(Native::new()),
        std::sync::Arc::new(ServerConfig::default()),
        shutdown.clone(),
    ));
    let mut client = Client::connect(&endpoint).await.unwrap();
    assert_eq!(
        &client.echo(b"over AF_UNIX").await.unwrap()[..],
        b"over AF_UNIX"
    );
    drop(client);
    assert!(shutdown.drain(Duration::from_secs(5)).await);
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}
