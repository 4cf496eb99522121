//! The server framework under load and at its limits: many clients, the connection limit,
//! idle timeouts (paused time), graceful shutdown, restart after SIGKILL, Unix sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use sockit::client::Client;
use sockit::protocol::encode_head;
use sockit::server::ServerConfig;
use sockit::service::Native;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{ServerProcess, sockit_bin, spawn_native, spawn_tcp};

/// Longer than anything here takes; with paused time it is virtual.
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_busy_clients_beside_fifty_idle_ones() {
    // All 350 come from 127.0.0.1: above the default per-address cap (128).
    let config = ServerConfig {
        max_connections_per_ip: 1_000,
        ..ServerConfig::default()
    };
    let server = spawn_tcp(Native::new(), config).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(Client::connect(&server.endpoint).await.unwrap());
    }
    let mut busy = Vec::new();
    for i in 0..300 {
        let endpoint = server.endpoint.clone();
        busy.push(tokio::spawn(async move {
            let mut client = Client::connect(&endpoint).await.unwrap();
            for j in 0..50 {
                let text = format!("client {i} message {j}");
                let reply = client.echo(text.as_bytes()).await.unwrap();
                assert_eq!(reply, text.as_bytes());
            }
        }));
    }
    for task in busy {
        task.await.unwrap();
    }
    // The idle ones were held all along and are still served.
    for (i, client) in idle.iter_mut().enumerate() {
        let text = format!("idle {i}");
        assert_eq!(client.echo(text.as_bytes()).await.unwrap(), text.as_bytes());
    }
    assert!(server.stop(Duration::from_secs(10)).await);
}

/// Queues one echo request without waiting for its reply.
async fn send_echo(client: &mut Client, text: &[u8]) {
    let mut wire = BytesMut::new();
    encode_head(&json!({"op": "echo"}), text.len() as u64, &mut wire).unwrap();
    wire.extend_from_slice(text);
    client.connection().queue_raw(&wire);
    client.connection().flush().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_third_client_waits_until_one_of_two_leaves() {
    let config = ServerConfig {
        max_connections: 2,
        idle_timeout: 24 * HOUR,
        ..ServerConfig::default()
    };
    let server = spawn_tcp(Native::new(), config).await;
    let mut a = Client::connect(&server.endpoint).await.unwrap();
    let mut b = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(&a.echo(b"a").await.unwrap()[..], b"a");
    assert_eq!(&b.echo(b"b").await.unwrap()[..], b"b");

    // The kernel completes the connect (backlog); the server does not serve it.
    let mut c = Client::connect(&server.endpoint).await.unwrap();
    send_echo(&mut c, b"c").await;
    // Time is paused: it only moves on when every task, the server's included, is idle.
    assert!(tokio::time::timeout(HOUR, c.read_reply()).await.is_err());
    assert_eq!(&b.echo(b"b again").await.unwrap()[..], b"b again");

    drop(a);
    let (_, body) = tokio::time::timeout(HOUR, c.read_reply())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"c");
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_dropped_after_its_timeout_and_an_active_one_is_not() {
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let server = spawn_tcp(Native::new(), config).await;
    let mut idle = sockit::net::connect(&server.endpoint).await.unwrap();
    let mut active = Client::connect(&server.endpoint).await.unwrap();
    let start = tokio::time::Instant::now();

    for i in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let text = format!("tick {i}");
        assert_eq!(active.echo(text.as_bytes()).await.unwrap(), text.as_bytes());
    }
    // 30 s passed: the idle one was closed (after one timeout error frame), the other was not.
    let mut rest = Vec::new();
    tokio::time::timeout(HOUR, idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rest).contains("timeout"),
        "{rest:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(30));
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let server = spawn_native().await;
    let mut conn = sockit::net::connect(&server.endpoint).await.unwrap();
    let body: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    let mut head = BytesMut::new();
    encode_head(&json!({"op": "echo"}), body.len() as u64, &mut head).unwrap();
    conn.write_all(&head).await.unwrap();
    conn.write_all(&body[..200_000]).await.unwrap();
    // The reply's first bytes prove the server is inside this request.
    let mut first = [0u8; 4];
    conn.read_exact(&mut first).await.unwrap();

    server.shutdown.trigger();
    let (mut rd, mut wr) = tokio::io::split(conn);
    let rest = body[200_000..].to_vec();
    let writer = tokio::spawn(async move { wr.write_all(&rest).await.map(|_| wr) });
    let mut reply = first.to_vec();
    rd.read_to_end(&mut reply).await.unwrap();
    let _wr = writer.await.unwrap().unwrap();

    let mut framed = sockit::blocking::Connection::new(
        std::io::Cursor::new(reply),
        sockit::protocol::Limits::default(),
    );
    framed.read_head().unwrap().unwrap();
    assert_eq!(framed.read_body(2_000_000).unwrap(), body);
    // The server closed after that request (read_to_end returned), and drains cleanly.
    assert!(framed.read_head().unwrap().is_none());
    assert!(server.stop(Duration::from_secs(10)).await);
}

fn echo_round_trip(addr: &str) {
    let mut conn = sockit::blocking::Connection::new(
        TcpStream::connect(addr).unwrap(),
        sockit::protocol::Limits::default(),
    );
    conn.write_frame(&json!({"op": "echo"}), b"ping").unwrap();
    conn.read_head().unwrap().unwrap();
    assert_eq!(conn.read_body(16).unwrap(), b"ping");
}

fn seed_round_trip(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"abc").unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ABC");
    s
}

#[test]
fn killed_with_clients_connected_it_restarts_on_the_same_ports() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let common = ["--data", data, "--listen"];
    let mut first = ServerProcess::start(
        &[
            &common[..],
            &[
                "127.0.0.1:0",
                "--seed-echo",
                "127.0.0.1:0",
                "--udp-echo",
                "127.0.0.1:0",
            ],
        ]
        .concat(),
        3,
    );
    let (native, seed, udp) = (
        first.addr("native"),
        first.addr("seed-echo"),
        first.addr("udp-echo"),
    );
    echo_round_trip(&native);
    let _held_native = TcpStream::connect(&native).unwrap();
    let _held_seed = seed_round_trip(&seed);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let again = ServerProcess::start(
        &[
            &common[..],
            &[native.as_str(), "--seed-echo", &seed, "--udp-echo", &udp],
        ]
        .concat(),
        3,
    );
    assert_eq!(again.addr("native"), native);
    echo_round_trip(&native);
    seed_round_trip(&seed);
    let out = Command::new(sockit_bin())
        .args(["echo", "--udp", "-s", &udp, "back"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "BACK\n");
}

#[test]
fn unix_socket_listener_end_to_end_replacing_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A crashed server's leftover: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let endpoint = format!("unix:{}", path.display());
    let data = dir.path().join("data");
    let server = ServerProcess::start(
        &["--data", data.to_str().unwrap(), "--listen", &endpoint],
        1,
    );
    assert_eq!(server.addr("native"), endpoint);
    let out = Command::new(sockit_bin())
        .args(["echo", "-s", &endpoint, "over a unix socket"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over a unix socket\n");

    // A live socket is not taken over.
    let second = Command::new(sockit_bin())
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &endpoint,
        ])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));

    // Ctrl-C: a clean exit that removes the socket file.
    assert!(server.interrupt().success());
    assert!(!path.exists());
}

#[test]
fn serve_takes_its_settings_from_a_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sockit.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata = {:?}\nudp_time = \"127.0.0.1:0\"\nseed-echo = \"127.0.0.1:0\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // The file's listen address (port 1) would fail to bind: the flag wins.
    let server = ServerProcess::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        3,
    );
    echo_round_trip(&server.addr("native"));
    seed_round_trip(&server.addr("seed-echo"));
    let out = Command::new(sockit_bin())
        .args(["time", "-s", &server.addr("udp-time"), "%%"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "%\n");
    assert!(data.exists(), "the data folder comes from the file");

    std::fs::write(&config, "max_conections = 5\n").unwrap();
    let bad = Command::new(sockit_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max-conections"));
}

#[test]
fn completions_are_printed_for_a_shell() {
    let out = Command::new(sockit_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("sockit") && script.contains("--seed-echo"),
        "{script}"
    );
}
