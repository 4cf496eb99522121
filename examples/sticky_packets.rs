//! The seeds' two 粘包 experiments, run for real on loopback, next to the same exchange over
//! sockit's framing. Run with `cargo run --example sticky_packets`.
//!
//! 1. Several small sends read as one: the client sends "hello", "world", "egon"; the server's
//!    single `recv(1024)` gets "helloworldegon".
//! 2. One send read in pieces: the client sends "hello feng"; the server's `recv(2)` gets "he",
//!    and its next `recv(10)` gets the rest.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use serde_json::json;
use sockit::blocking::Connection;
use sockit::protocol::Limits;

fn main() -> std::io::Result<()> {
    println!("-- raw TCP: the problem --");
    raw_case(
        "several small sends",
        &["hello", "world", "egon"],
        &[1024, 1024],
    );
    raw_case("one send, small reads", &["hello feng"], &[2, 10]);

    println!("\n-- sockit framing: the fix --");
    framed_case(&["hello", "world", "egon"]);
    framed_case(&["hello feng"]);
    Ok(())
}

/// The client sends `sends`, one `write` each, and closes; then the server reads with
/// `recv(n)` for each n in `reads`, as the seeds' servers do.
fn raw_case(what: &str, sends: &[&str], reads: &[usize]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sends: Vec<String> = sends.iter().map(|s| s.to_string()).collect();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for msg in &sends {
            s.write_all(msg.as_bytes()).unwrap();
        }
    });
    let (mut conn, _) = listener.accept().unwrap();
    // Let the client finish, as a busy server would: everything is in the buffer by now.
    client.join().unwrap();
    let got: Vec<String> = reads
        .iter()
        .map(|n| {
            let mut buf = vec![0; *n];
            let k = conn.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..k]).into_owned()
        })
        .collect();
    println!("{what:24} recv calls got {got:?}");
}

/// The same messages, each framed: however the bytes arrive, they come apart exactly.
fn framed_case(sends: &[&str]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sends: Vec<String> = sends.iter().map(|s| s.to_string()).collect();
    let client = thread::spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        let mut conn = Connection::new(stream, Limits::default());
        for msg in &sends {
            conn.write_frame(&json!({"op": "say"}), msg.as_bytes())
                .unwrap();
        }
    });
    let (stream, _) = listener.accept().unwrap();
    client.join().unwrap();
    let mut conn = Connection::new(stream, Limits::default());
    let mut got = Vec::new();
    while let Some(head) = conn.read_head().unwrap() {
        let body = conn.read_body(1024).unwrap();
        got.push(format!(
            "{} bytes: {}",
            head.body_len,
            String::from_utf8_lossy(&body)
        ));
    }
    println!(
        "{:24} frames read: {got:?}",
        format!("{} framed sends", got.len())
    );
}
