//! The seeds' echo server (002 §3.2: link loop + communication loop, `recv(1024)`, `upper()`)
//! written on sockit's framework: the handler is the communication loop; `serve_tcp` is the
//! link loop, with a task per client, limits, idle timeouts and graceful shutdown.
//!
//! Run: `cargo run --example seed_echo_server [127.0.0.1:8080]`, then talk to it with the
//! seed's client (`python3 tests/seeds/echo_client.py 127.0.0.1 8080`) or
//! `sockit echo --seed -s 127.0.0.1:8080 hello`. Ctrl-C stops it.

use std::sync::Arc;
use std::time::Duration;

use sockit::net::Listener;
use sockit::server::{Conn, ServerConfig, Shutdown, TcpService, serve_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// socketserver's `BaseRequestHandler` with its `handle()`.
struct Upper;

impl TcpService for Upper {
    async fn handle(&self, mut conn: Conn) -> sockit::Result<()> {
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.stream.read(&mut buf).await?; // data = conn.recv(1024)
            if n == 0 {
                return Ok(()); // if len(data) == 0: break
            }
            buf[..n].make_ascii_uppercase();
            conn.stream.write_all(&buf[..n]).await?; // conn.send(data.upper())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = Listener::bind(&addr.parse().map_err(anyhow::Error::msg)?).await?;
    println!("seed echo server on {}", listener.local_endpoint()?);
    let shutdown = Shutdown::new();
    let config = Arc::new(ServerConfig::default());
    let server = tokio::spawn(serve_tcp(
        listener,
        Arc::new(Upper),
        config,
        shutdown.clone(),
    ));
    tokio::signal::ctrl_c().await?;
    shutdown.drain(Duration::from_secs(5)).await;
    server.await??;
    Ok(())
}
