//! Hostile bytes against the real `sockit serve` process: each costs only its own connection,
//! gets one error frame when the stream can still take one, and the server's memory stays small.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use sockit::blocking::Connection;
use sockit::protocol::Limits;

use crate::common::ServerProcess;

/// Writes `bytes`, closes the write side, and returns everything the server sent back.
fn send_raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    // A safety net against a hung test, not a synchronisation: every case ends with EOF.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The error code of the single error frame in `reply`.
fn error_code(reply: &[u8]) -> String {
    let mut conn = Connection::new(std::io::Cursor::new(reply.to_vec()), Limits::default());
    let head = conn.read_head().unwrap().expect("an error frame");
    assert_eq!(head.header["ok"], false, "{:?}", head.header);
    let code = head.header["error"]["code"].as_str().unwrap().to_string();
    assert!(conn.read_head().unwrap().is_none(), "exactly one frame");
    code
}

fn frame(header: &str) -> Vec<u8> {
    let mut v = (header.len() as i32).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v
}

fn echo_works(addr: &str) {
    let mut conn = Connection::new(TcpStream::connect(addr).unwrap(), Limits::default());
    conn.write_frame(&json!({"op": "echo"}), b"still alive")
        .unwrap();
    conn.read_head().unwrap().unwrap();
    assert_eq!(conn.read_body(1024).unwrap(), b"still alive");
}

#[test]
fn hostile_inputs_cost_one_connection_each() {
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0"], 1);
    let addr = server.addr("native");

    // A well-behaved client in the middle of its session, before and after every attack.
    let mut bystander = Connection::new(TcpStream::connect(&addr).unwrap(), Limits::default());

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "2 GiB header length",
            i32::MAX.to_le_bytes().to_vec(),
            "too_large",
        ),
        (
            "negative header length",
            (-5i32).to_le_bytes().to_vec(),
            "protocol",
        ),
        (
            "zero header length",
            0i32.to_le_bytes().to_vec(),
            "protocol",
        ),
        ("invalid JSON", frame("{\"op\": ech"), "protocol"),
        ("a JSON array", frame("[1, 2, 3]"), "protocol"),
        (
            "negative total_size",
            frame(r#"{"op":"echo","total_size":-1}"#),
            "protocol",
        ),
        (
            "string total_size",
            frame(r#"{"op":"echo","total_size":"10"}"#),
            "protocol",
        ),
        (
            "10^18 total_size",
            frame(r#"{"op":"echo","total_size":1000000000000000000}"#),
            "too_large",
        ),
    ];
    for (what, bytes, code) in cases {
        let reply = send_raw(&addr, &bytes);
        assert_eq!(error_code(&reply), code, "{what}");
        echo_works(&addr);
        bystander
            .write_frame(&json!({"op": "echo"}), what.as_bytes())
            .unwrap();
        bystander.read_head().unwrap().unwrap();
        assert_eq!(
            bystander.read_body(1024).unwrap(),
            what.as_bytes(),
            "{what}"
        );
    }

    // Header cut short, then the peer vanishes: nothing to answer, nothing lost.
    let mut cut = frame(r#"{"op":"echo","total_size":5}"#);
    cut.truncate(10);
    send_raw(&addr, &cut);
    echo_works(&addr);

    // A body cut short: the reply head may have gone out, but the connection just ends.
    let mut short = frame(r#"{"op":"echo","total_size":100}"#);
    short.extend_from_slice(b"only 20 bytes here..");
    send_raw(&addr, &short);
    echo_works(&addr);

    // 1 MiB of random bytes (deterministic xorshift), several times.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..5 {
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        send_raw(&addr, &noise);
        echo_works(&addr);
    }

    let rss = server.rss();
    assert!(
        rss < 64 << 20,
        "server RSS {rss} bytes after the hostile inputs"
    );
}
