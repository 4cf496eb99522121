//! A minimal tokio echo server on sockit's framing, written without sockit: the reference for
//! what the runtime allows (`bench/run.sh` drives it with `sockit bench echo`).
//!
//! Per connection: one read buffer, every whole frame in it answered with
//! `{"ok":true,"total_size":n}` + the same n bytes, the replies of one read sent in one write.
//! No limits beyond a 64 KiB header and 16 MiB body, no timeouts, no logging, no shutdown:
//! it is a yardstick, not a server to deploy.
//!
//! Run: `cargo run --release --example tokio_echo [127.0.0.1:9901]`; it prints
//! `tokio_echo on ADDR` once listening.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEADER: usize = 64 * 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9901".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("tokio_echo on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

/// Answers echo frames until the peer closes or breaks the framing.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let mut wbuf = BytesMut::with_capacity(8 * 1024);
    loop {
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        while let Some(used) = echo_one(&rbuf, &mut wbuf)? {
            rbuf.advance(used);
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

/// Appends the reply to the whole frame at the start of `buf`; returns the bytes it took,
/// or `None` when the frame is not all there yet.
fn echo_one(buf: &[u8], out: &mut BytesMut) -> std::io::Result<Option<usize>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = i32::from_le_bytes(*prefix);
    if len <= 0 || len as usize > MAX_HEADER {
        return Err(bad("bad header length"));
    }
    let head_end = 4 + len as usize;
    if buf.len() < head_end {
        return Ok(None);
    }
    let header: serde_json::Value =
        serde_json::from_slice(&buf[4..head_end]).map_err(|_| bad("bad JSON"))?;
    let size = match header.get("total_size") {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| bad("bad total_size"))?,
    };
    if size > MAX_BODY {
        return Err(bad("body too large"));
    }
    let end = head_end + size as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let reply = format!(r#"{{"ok":true,"total_size":{size}}}"#);
    out.put_i32_le(reply.len() as i32);
    out.put_slice(reply.as_bytes());
    out.put_slice(&buf[head_end..end]);
    Ok(Some(end))
}
