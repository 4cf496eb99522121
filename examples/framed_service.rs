//! A small service of your own on sockit's framing and framework: a `{"op": "upper"}` frame
//! is answered with `{"ok": true, "total_size": n}` + its body upper-cased, any other op with
//! an error reply. The example starts the server on a free port, sends three requests in one
//! write (messages that would stick together in the seeds' code) and prints the replies.
//!
//! Run: `cargo run --example framed_service`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use sockit::client::Client;
use sockit::connection::Connection;
use sockit::net::Listener;
use sockit::protocol::header::Empty;
use sockit::protocol::{ErrorCode, Reply, encode_head};
use sockit::server::{Conn, ServerConfig, Shutdown, TcpService, serve_tcp};

/// The service: one frame in, one frame out, until the client closes or the server stops.
struct Upper;

impl TcpService for Upper {
    async fn handle(&self, conn: Conn) -> sockit::Result<()> {
        let mut framed = Connection::new(conn.stream, conn.config.limits);
        loop {
            // `read_head` is cancel-safe, so racing it against shutdown loses nothing.
            let head = tokio::select! {
                _ = conn.shutdown.cancelled() => return Ok(()),
                head = framed.read_head() => head?,
            };
            let Some(head) = head else { return Ok(()) };
            if head.header.get("op").and_then(|v| v.as_str()) == Some("upper") {
                let body = framed.read_body(conn.config.max_inline_body).await?;
                framed
                    .write_frame(&Reply::ok(Empty {}), &body.to_ascii_uppercase())
                    .await?;
            } else {
                let refusal = Reply::error(ErrorCode::UnknownOp, "only `upper` is served here");
                framed.write_frame(&refusal, b"").await?; // the unread body is skipped
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = Listener::bind(&"127.0.0.1:0".parse().map_err(anyhow::Error::msg)?).await?;
    let endpoint = listener.local_endpoint()?;
    let shutdown = Shutdown::new();
    let config = Arc::new(ServerConfig::default());
    let server = tokio::spawn(serve_tcp(
        listener,
        Arc::new(Upper),
        config,
        shutdown.clone(),
    ));

    let mut client = Client::connect(&endpoint).await?;
    let mut wire = BytesMut::new();
    for (op, body) in [
        ("upper", "hello"),
        ("lower", "WORLD"),
        ("upper", "粘包 solved"),
    ] {
        encode_head(&json!({ "op": op }), body.len() as u64, &mut wire)?;
        wire.extend_from_slice(body.as_bytes());
    }
    client.connection().queue_raw(&wire);
    client.connection().flush().await?;
    for _ in 0..3 {
        match client.read_reply().await {
            Ok((_, body)) => println!("reply: {}", String::from_utf8_lossy(&body)),
            Err(e) => println!("error: {e}"),
        }
    }
    drop(client);
    shutdown.drain(Duration::from_secs(5)).await;
    server.await??;
    Ok(())
}
