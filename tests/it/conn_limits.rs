//! What one connection, or one address, may make the server hold: the queued replies of
//! pipelined requests, the connections of one address, and the time a request head may take.
//! Against the real `sockit serve` process, on real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use sockit::blocking::Connection;
use sockit::protocol::{Limits, encode_head};
use sockit::users::{HashCost, Password, Users};
use tempfile::TempDir;

use crate::common::ServerProcess;

/// Longer than any wait here should take: a bound against a hung test, not a synchronisation.
const DEADLINE: Duration = Duration::from_secs(120);

/// One frame: `header` + `body`, as a client sends it.
fn frame(header: &serde_json::Value, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_head(header, body.len() as u64, &mut buf).unwrap();
    buf.extend_from_slice(body);
    buf.to_vec()
}

/// Files in alice's home, each with a 250-byte name: a listing of the home is ~3 KB.
const HOME_FILES: usize = 8;
/// Folders `m0`..`m9` in alice's home, each holding one file `marker-<digit>`.
const MARKERS: usize = 10;

/// A data folder with user `alice` (password `pw`) whose home holds [`HOME_FILES`] files with
/// long names and the [`MARKERS`] folders.
fn data_with_listing() -> TempDir {
    let (dir, home) = data_with_alice();
    for i in 0..HOME_FILES {
        let name = format!("{i:05}-{}", "x".repeat(244));
        std::fs::write(home.join(name), b"").unwrap();
    }
    for m in 0..MARKERS {
        std::fs::create_dir_all(home.join(format!("m{m}"))).unwrap();
        std::fs::write(home.join(format!("m{m}/marker-{m}")), b"").unwrap();
    }
    dir
}

/// A data folder (`data` in the temporary folder) with user `alice` (password `pw`), and
/// her home, made.
fn data_with_alice() -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::open_with(&dir.path().join("data"), HashCost::Minimal).unwrap();
    users.add("alice", &Password::new("pw"), None).unwrap();
    let home = users.home("alice").unwrap();
    std::fs::create_dir_all(&home).unwrap();
    (dir, home)
}

fn serve(data: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1)
}

/// Connects and logs in as alice.
fn login(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    log_in(&stream);
    stream
}

/// Logs in as alice on a connected stream.
fn log_in<S: Read + Write>(stream: S) {
    let mut conn = Connection::new(stream, Limits::default());
    conn.write_frame(
        &json!({"op": "login", "user": "alice", "password": "pw"}),
        b"",
    )
    .unwrap();
    let head = conn.read_head().unwrap().unwrap();
    assert_eq!(head.header["ok"], true, "{:?}", head.header);
    conn.discard_body().unwrap();
}

/// Bytes queued in the kernel for the TCP socket bound to `local`: (send, receive), from
/// /proc/net/tcp.
fn kernel_queues(local: SocketAddr) -> (u64, u64) {
    let SocketAddr::V4(v4) = local else {
        panic!("IPv4 only")
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&want.as_str()) {
            let (tx, rx) = cols[4].split_once(':').unwrap();
            return (
                u64::from_str_radix(tx, 16).unwrap(),
                u64::from_str_radix(rx, 16).unwrap(),
            );
        }
    }
    panic!("{local} not in /proc/net/tcp")
}

/// Request `i` of a pipeline: mostly `ls` of the home; every 97th lists marker folder
/// `m<digit>` instead, so that the replies show their order.
fn ls_request(i: usize) -> Vec<u8> {
    match marker(i) {
        Some(m) => frame(&json!({"op": "ls", "path": format!("m{m}")}), b""),
        None => frame(&json!({"op": "ls"}), b""),
    }
}

fn marker(i: usize) -> Option<usize> {
    (i % 97 == 96).then_some((i / 97) % MARKERS)
}

/// Checks that `reply` (head fields and body) is the answer to request `i`.
fn check_ls_reply(i: usize, header: &serde_json::Value, body: &[u8]) {
    assert_eq!(header["ok"], true, "reply {i}: {header:?}");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
    match marker(i) {
        Some(m) => {
            assert_eq!(entries.len(), 1, "reply {i}");
            assert_eq!(entries[0]["name"], format!("marker-{m}"), "reply {i}");
        }
        None => assert_eq!(entries.len(), HOME_FILES + MARKERS, "reply {i}"),
    }
}

/// Sends `n` pipelined `ls` requests on each of `conns` logged-in connections without reading
/// any reply, waits until the server makes no more progress (blocked on its writes, or done),
/// then reads and checks every reply. Returns the server's RSS before, and the most it reached
/// as sampled while waiting.
///
/// The first request carries a 60 KB header, which grows the server's read buffer so that
/// each of its reads takes in thousands of the tiny requests at once: before the fix, the
/// server answered all of those before it wrote anything.
fn pipeline_ls(server: &ServerProcess, conns: usize, n: usize) -> (u64, u64) {
    let addr = server.addr("native");
    let mut wire = frame(&json!({"op": "ls", "pad": "p".repeat(60_000)}), b"");
    for i in 1..n {
        wire.extend(ls_request(i));
    }
    let streams: Vec<TcpStream> = (0..conns).map(|_| login(&addr)).collect();
    let locals: Vec<SocketAddr> = streams.iter().map(|s| s.local_addr().unwrap()).collect();
    let before = server.rss();
    std::thread::scope(|scope| {
        for stream in &streams {
            let wire = &wire;
            // Its errors show as missing replies below; the write timeout frees the thread
            // if the reads below fail and leave the server blocked.
            scope.spawn(move || {
                let mut s = stream;
                let _ = s.write_all(wire);
            });
        }
        // Wait for the condition "nothing moves": the server's RSS and the kernel's queues of
        // every connection stay the same over five samples in a row (there is no event to
        // wait on; the samples are 200 ms apart, within DEADLINE). The largest RSS seen on
        // the way counts, so sampling early can only understate a pile-up, never fail.
        let started = Instant::now();
        let mut peak = 0;
        let mut last = None;
        let mut same = 0;
        while same < 5 {
            assert!(started.elapsed() < DEADLINE, "the server never settled");
            std::thread::sleep(Duration::from_millis(200));
            let rss = server.rss();
            peak = peak.max(rss);
            let now = Some((
                rss,
                locals.iter().map(|l| kernel_queues(*l)).collect::<Vec<_>>(),
            ));
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        // Every reply arrives, in order.
        for stream in &streams {
            let mut conn = Connection::new(stream, Limits::default());
            for i in 0..n {
                let head = conn.read_head().unwrap().expect("a reply");
                let body = conn.read_body(1 << 20).unwrap();
                check_ls_reply(i, &serde_json::Value::Object(head.header), &body);
            }
        }
        (before, peak)
    })
}

/// What the server may grow by while answering the pipelines: a queue of 64 KiB and a read
/// buffer per connection, with room for the allocator's own slack.
const RISE_BOUND: u64 = 4 << 20;

#[test]
fn pipelined_ls_replies_do_not_pile_up_in_the_server() {
    let dir = data_with_listing();
    let server = serve(&dir.path().join("data"), &[]);
    for conns in [1, 3] {
        let (before, peak) = pipeline_ls(&server, conns, 20_000);
        let rise = peak.saturating_sub(before);
        eprintln!(
            "{conns} connection(s) pipelining 20,000 ls: server RSS {} KiB before, {} KiB at most",
            before >> 10,
            peak >> 10
        );
        assert!(
            rise < RISE_BOUND,
            "{conns} connection(s): the server's RSS rose by {rise} bytes"
        );
    }
}

/// How long a reply that should come at once may take: a bound against a hung test.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// A connection to `addr` from `source`, one of lo's addresses (all of 127.0.0.0/8).
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    stream
}

/// A connection from `source` that sent the first 2 bytes of a frame, and stalls there.
fn stalled_from(source: &str, addr: &str) -> TcpStream {
    let mut stream = connect_from(source, addr);
    stream.write_all(&[20, 0]).unwrap();
    stream
}

/// One echo on `stream`: `Ok(body)`, or `Err(code)` of the error reply it got instead.
fn echo_on(stream: &TcpStream, text: &[u8]) -> Result<Vec<u8>, String> {
    let mut conn = Connection::new(stream, Limits::default());
    // A refused connection may be closed before the request is written.
    let _ = conn.write_frame(&json!({"op": "echo"}), text);
    let head = conn.read_head().unwrap().expect("a reply");
    if head.header["ok"] == true {
        return Ok(conn.read_body(1 << 20).unwrap());
    }
    Err(head.header["error"]["code"].as_str().unwrap().to_string())
}

/// Everything `stream` receives until the server closes it: exactly one error reply, whose
/// code and message it returns.
fn last_word(stream: &TcpStream) -> (String, String) {
    let mut rest = Vec::new();
    let mut s = stream;
    s.read_to_end(&mut rest).unwrap();
    let mut conn = Connection::new(std::io::Cursor::new(rest), Limits::default());
    let head = conn.read_head().unwrap().expect("an error reply");
    assert_eq!(head.header["ok"], false, "{:?}", head.header);
    assert!(conn.read_head().unwrap().is_none(), "exactly one reply");
    let error = &head.header["error"];
    let field = |f: &str| error[f].as_str().unwrap().to_string();
    (field("code"), field("message"))
}

#[test]
fn an_address_at_its_cap_is_refused_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--max-connections-per-ip", "20"]);
    let addr = server.addr("native");
    let mut held: Vec<TcpStream> = (0..20).map(|_| stalled_from("127.0.0.1", &addr)).collect();

    // Another address is served at once.
    let other = connect_from("127.0.0.2", &addr);
    assert_eq!(echo_on(&other, b"from .2").unwrap(), b"from .2");

    // One more from the full address gets one error reply and the close (accepts keep the
    // order of the connects, so the 20 above are counted first).
    let refused = connect_from("127.0.0.1", &addr);
    assert_eq!(echo_on(&refused, b"x"), Err("too_many_connections".into()));
    let (code, message) = last_word(&stalled_from("127.0.0.1", &addr));
    assert_eq!(code, "too_many_connections");
    assert!(message.contains("127.0.0.1"), "{message}");

    // A connection that ends gives its address a slot back: once the server has seen the
    // close, a new one from 127.0.0.1 is served.
    drop(held.pop());
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < DEADLINE, "the slot never came back");
        match echo_on(&connect_from("127.0.0.1", &addr), b"back") {
            Ok(body) => break assert_eq!(body, b"back"),
            Err(code) => assert_eq!(code, "too_many_connections"),
        }
    }
    assert_eq!(echo_on(&other, b"still").unwrap(), b"still");
}

#[test]
fn stalled_connections_of_one_address_do_not_lock_out_another() {
    // Default per-address cap; a global cap small enough to fill: one address may hold
    // half of it, 32.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--max-connections", "64"]);
    let addr = server.addr("native");
    let stalled: Vec<TcpStream> = (0..64).map(|_| stalled_from("127.0.0.1", &addr)).collect();
    let other = connect_from("127.0.0.2", &addr);
    assert_eq!(echo_on(&other, b"served").unwrap(), b"served");
    // The last of the 64 was over its address's cap.
    let (code, _) = last_word(&stalled[63]);
    assert_eq!(code, "too_many_connections");
}

#[test]
fn a_trickled_head_is_cut_off_at_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--head-timeout", "2", "--idle-timeout", "60"]);
    let addr = server.addr("native");
    // A 200-byte head sent one byte per 100 ms: every wait is far below the idle timeout,
    // and the whole would take 20 s.
    let request = frame(&json!({"op": "echo", "pad": "p".repeat(170)}), b"");
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let done = AtomicBool::new(false);
    let (code, message) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut s = &stream;
            for byte in &request {
                // Pacing the trickle, not waiting for the server.
                std::thread::sleep(Duration::from_millis(100));
                if done.load(Ordering::Relaxed) || s.write_all(&[*byte]).is_err() {
                    return;
                }
            }
        });
        let word = last_word(&stream);
        done.store(true, Ordering::Relaxed);
        word
    });
    assert_eq!(code, "timeout");
    assert!(message.contains("head timeout"), "{message}");
}

/// Gets a connection pipelines: 64 files of 64 KiB, a connection's whole read-ahead.
const GETS: usize = 64;

/// A data folder whose user alice has [`GETS`] files of 64 KiB in her home.
fn data_with_small_files() -> TempDir {
    let (dir, home) = data_with_alice();
    for i in 0..GETS {
        std::fs::write(home.join(format!("g{i:02}")), vec![i as u8; 64 * 1024]).unwrap();
    }
    dir
}

/// `conns` connections to the Unix socket `path` (whose buffers hold about 208 KiB and do not
/// grow), each logged in as alice, that pipeline gets of all [`GETS`] files and then read
/// nothing. Returns the server's RSS before, and the largest seen until nothing moves.
fn unread_gets(server: &ServerProcess, path: &Path, conns: usize) -> (u64, u64) {
    let mut wire = Vec::new();
    for i in 0..GETS {
        let get = json!({"op": "get", "path": format!("g{i:02}"), "offset": 0, "digest": "blake3"});
        wire.extend(frame(&get, b""));
    }
    let before = server.rss();
    let streams: Vec<std::os::unix::net::UnixStream> = (0..conns)
        .map(|_| {
            let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            log_in(&stream);
            (&stream).write_all(&wire).unwrap();
            stream
        })
        .collect();
    // No event tells when the server is done reading ahead and blocked on the full sockets:
    // wait for its RSS to stay the same over five samples in a row, 200 ms apart.
    let started = Instant::now();
    let (mut peak, mut last, mut same) = (0, 0, 0);
    while same < 5 {
        assert!(started.elapsed() < DEADLINE, "the server never settled");
        std::thread::sleep(Duration::from_millis(200));
        let rss = server.rss();
        peak = peak.max(rss);
        same = if rss == last { same + 1 } else { 0 };
        last = rss;
    }
    drop(streams);
    (before, peak)
}

#[test]
fn gets_pipelined_and_never_read_hold_no_more_than_the_read_ahead_budget() {
    let dir = data_with_small_files();
    let data = dir.path().join("data");
    let socket = dir.path().join("native.sock");
    let listen = format!("unix:{}", socket.display());
    let rise = |budget: &str| {
        let args = ["--listen", &listen, "--data", data.to_str().unwrap()];
        let server = ServerProcess::start(&[&args[..], &["--max-read-ahead", budget]].concat(), 1);
        let (before, peak) = unread_gets(&server, &socket, 24);
        eprintln!(
            "read-ahead budget {budget}: server RSS {} KiB before, {} KiB at most",
            before >> 10,
            peak >> 10
        );
        peak.saturating_sub(before)
    };
    // With room for all, 24 connections hold nearly 4 MiB each: the measure can tell.
    let open = rise("1GiB");
    assert!(open > 64 << 20, "24 connections' read-ahead: {open} bytes");
    // Within 8 MiB, the rest answered one by one: a file and a queue of replies each.
    let bounded = rise("8MiB");
    assert!(
        bounded < 24 << 20,
        "within an 8 MiB budget: {bounded} bytes"
    );
}
