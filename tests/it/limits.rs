//! Limits an operator sets on a real server: the per-address connection cap and rate (one
//! address refused while another, 127.0.0.2, is served), sessions per user, and bandwidth
//! limits per user under which a transfer still verifies and resumes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sockit::client::Client;

use crate::common::{ServerProcess, output_with_input, sockit_bin};
use crate::ops::{PASSWORD, add_user, serve, sockit};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A connection from `source` (a loopback address) to `server`.
fn connect_from(source: &str, server: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let remote: SocketAddr = server.parse().unwrap();
    socket.connect(&remote.into()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket.into()
}

/// One native `echo` from `source`: `Ok` with the bytes back, or the error the server
/// answered with (its message).
fn echo_from(source: &str, server: &str) -> Result<(), String> {
    let mut stream = connect_from(source, server);
    let header = json!({"op": "echo", "total_size": 5}).to_string();
    let mut frame = (header.len() as i32).to_le_bytes().to_vec();
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(b"hello");
    // A refused connection may be closed before it reads this: its last word still came.
    let _ = stream.write_all(&frame);
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut head = vec![0u8; i32::from_le_bytes(len) as usize];
    stream.read_exact(&mut head).unwrap();
    let head: Value = serde_json::from_slice(&head).unwrap();
    if head["ok"] != true {
        return Err(format!(
            "{} {}",
            head["error"]["code"], head["error"]["message"]
        ));
    }
    let mut body = [0u8; 5];
    stream.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"hello");
    Ok(())
}

#[test]
fn an_address_over_its_connection_cap_is_refused_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--max-connections-per-ip", "2"], 1);
    let addr = server.addr("native");
    // Two connections held open from 127.0.0.1, each served (an echo proves it).
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = connect_from("127.0.0.1", &addr);
            let header = json!({"op": "echo", "total_size": 0}).to_string();
            let mut frame = (header.len() as i32).to_le_bytes().to_vec();
            frame.extend_from_slice(header.as_bytes());
            c.write_all(&frame).unwrap();
            let mut len = [0u8; 4];
            c.read_exact(&mut len).unwrap();
            c
        })
        .collect();
    let refused = echo_from("127.0.0.1", &addr).unwrap_err();
    assert!(
        refused.contains("too_many_connections") && refused.contains("--max-connections-per-ip"),
        "{refused}"
    );
    echo_from("127.0.0.2", &addr).expect("another address is served");
    drop(held);
}

#[test]
fn an_address_opening_connections_too_fast_is_refused_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &["--connection-rate", "1", "--connection-burst", "3"],
        1,
    );
    let addr = server.addr("native");
    for _ in 0..3 {
        echo_from("127.0.0.1", &addr).expect("within the burst");
    }
    // One more a second after the burst: of the next three, at least one is refused.
    let next: Vec<_> = (0..3).map(|_| echo_from("127.0.0.1", &addr)).collect();
    let refused = next
        .iter()
        .find_map(|r| r.clone().err())
        .unwrap_or_else(|| panic!("none refused: {next:?}"));
    assert!(
        refused.contains("too_many_connections") && refused.contains("--connection-rate"),
        "{refused}"
    );
    echo_from("127.0.0.2", &addr).expect("another address is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_their_sessions_cap_is_refused_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ann");
    let server = serve(dir.path(), &["--max-sessions-per-user", "1"], 1);
    let addr = server.addr("native");
    let mut first = Client::connect(&addr.parse().unwrap()).await.unwrap();
    first.login("ann", PASSWORD).await.unwrap();
    let ls = ["ls", "-s", addr.as_str(), "-u", "ann"];
    let refused = sockit(dir.path(), &server, PASSWORD, &ls);
    assert!(!refused.status.success());
    let message = text(&refused);
    assert!(
        message.contains("busy") && message.contains("--max-sessions-per-user"),
        "{message}"
    );
    drop(first);
    // The server frees the session once it sees the close.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sockit(dir.path(), &server, PASSWORD, &ls);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
    }
}

#[test]
fn a_shaped_transfer_verifies_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ann");
    let mut limit = Command::new(sockit_bin());
    limit
        .args(["user", "limit", "ann", "--up", "2MB", "--down", "2MB"])
        .args(["--data", "data"])
        .current_dir(dir.path());
    let set = output_with_input(&mut limit, "");
    assert!(set.status.success(), "{set:?}");
    let mut list = Command::new(sockit_bin());
    list.args(["user", "list", "--data", "data"])
        .current_dir(dir.path());
    let listed = text(&output_with_input(&mut list, ""));
    assert!(listed.contains("up 1.9 MiB/s, down 1.9 MiB/s"), "{listed}");

    let data = dir.path().join("data");
    let server = serve(dir.path(), &[], 1);
    let addr = server.addr("native");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &payload).unwrap();
    let as_ann = ["-s", addr.as_str(), "-u", "ann"];

    // An upload cut off part way by a server killed mid-transfer (at 2 MB/s the file
    // takes 1.5 s; the client's socket buffers would hold what a killed client had sent),
    // then resumed against the server restarted on the same port.
    let mut cut = Command::new(sockit_bin());
    cut.args(["put", "big.bin"])
        .args(as_ann)
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", PASSWORD)
        .env("SOCKIT_KNOWN_HOSTS", dir.path().join("known_hosts"))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut cut = cut.spawn().unwrap();
    let part = data.join("homes/ann/.big.bin.sockit-part");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 300_000 {
        assert!(Instant::now() < deadline, "the upload never began");
        assert!(cut.try_wait().unwrap().is_none(), "the upload ended early");
        std::thread::yield_now();
    }
    drop(server); // SIGKILL, mid-upload
    assert!(!cut.wait().unwrap().success());
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept < payload.len() as u64, "{kept}");
    let server = ServerProcess::start(&["--listen", &addr, "--data", data.to_str().unwrap()], 1);

    let resume = [&["put", "--resume", "big.bin"][..], &as_ann].concat();
    let put = sockit(dir.path(), &server, PASSWORD, &resume);
    assert!(put.status.success(), "{put:?}");
    assert!(text(&put).contains(", resumed at "), "{}", text(&put));
    assert_eq!(
        std::fs::read(data.join("homes/ann/big.bin")).unwrap(),
        payload
    );

    let get = sockit(
        dir.path(),
        &server,
        PASSWORD,
        &[&["get", "big.bin", "back.bin"][..], &as_ann].concat(),
    );
    assert!(get.status.success(), "{get:?}");
    assert!(text(&get).contains("verified"), "{}", text(&get));
    assert_eq!(std::fs::read(dir.path().join("back.bin")).unwrap(), payload);
}
