//! `sockit demo`: the whole system in one run, on free loopback ports, with readable output.
//!
//! It starts a server in this process on 127.0.0.1:0, runs each feature once as a client
//! would, and shuts the server down, leaving nothing behind.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use sockit::client::Client;
use sockit::net::{Endpoint, Listener};
use sockit::protocol::encode_head;
use sockit::server::{ServerConfig, Shutdown, serve_tcp};
use sockit::service::Native;

/// Runs the demo, writing what happens to `out`.
///
/// # Errors
/// Any step that does not behave as shown.
pub async fn run(out: &mut impl Write) -> Result<()> {
    writeln!(out, "sockit demo: a server and its clients on loopback\n")?;
    let listener = Listener::bind(&"127.0.0.1:0".parse().map_err(anyhow::Error::msg)?).await?;
    let server = listener.local_endpoint()?;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve_tcp(
        listener,
        Arc::new(Native::new()),
        Arc::new(ServerConfig::default()),
        shutdown.clone(),
    ));
    writeln!(out, "[server] native protocol on {server}")?;

    let mut client = Client::connect(&server).await?;
    let reply = client.echo("hello, sockit".as_bytes()).await?;
    writeln!(
        out,
        "[echo]   sent \"hello, sockit\" -> got \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;

    sticky_packets(out, &mut client).await?;

    let big = vec![b'x'; 8 << 20];
    let reply = client.echo(&big).await?;
    writeln!(
        out,
        "[echo]   an 8 MiB message, streamed through 64 KiB chunks -> {} bytes back, {}",
        reply.len(),
        if reply[..] == big[..] { "identical" } else { "DIFFERENT" }
    )?;

    match client.call(&json!({"op": "fly"}), b"").await {
        Err(e) => writeln!(out, "[error]  unknown op `fly` -> the server replies: {e}")?,
        Ok(_) => bail!("the server accepted an unknown op"),
    }

    hostile_peer(out, &server).await?;
    let reply = client.echo(b"still here?").await?;
    writeln!(
        out,
        "[echo]   the first client, afterwards -> \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;

    drop(client);
    let clean = shutdown.drain(Duration::from_secs(5)).await;
    task.await.context("server task")??;
    writeln!(
        out,
        "\n[server] shut down {}",
        if clean { "cleanly" } else { "after the grace period" }
    )?;
    Ok(())
}

/// The seeds' 粘包 case: several messages written at once must still come back one by one.
async fn sticky_packets(out: &mut impl Write, client: &mut Client) -> Result<()> {
    let words = ["one", "two", "three"];
    let mut wire = BytesMut::new();
    for w in words {
        encode_head(&json!({"op": "echo"}), w.len() as u64, &mut wire)?;
        wire.extend_from_slice(w.as_bytes());
    }
    let conn = client.connection();
    conn.queue_raw(&wire);
    conn.flush().await?;
    let mut got = Vec::new();
    for _ in words {
        let (_, body) = client.read_reply().await?;
        got.push(String::from_utf8_lossy(&body).into_owned());
    }
    writeln!(
        out,
        "[粘包]   3 requests in one write ({} bytes) -> 3 separate replies: {got:?}",
        wire.len()
    )?;
    Ok(())
}

/// A peer that announces a 2 GiB header gets one error frame and loses only its connection.
async fn hostile_peer(out: &mut impl Write, server: &Endpoint) -> Result<()> {
    let mut raw = sockit::net::connect(server).await?;
    raw.write_all(&i32::MAX.to_le_bytes()).await?;
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(reply.get(4..).unwrap_or_default());
    writeln!(
        out,
        "[hostile] a 2 GiB header length -> one error frame {text}, then the server closes that connection"
    )?;
    Ok(())
}
