//! The seeds' own Python programs (tests/seeds/*.py) against a real `sockit serve`, and
//! sockit's client subcommands against the seeds' Python servers. Needs `python3`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sockit::blocking::Connection;
use sockit::protocol::Limits;

use crate::common::{ServerProcess, sockit_bin};

mod reverse;

/// A hang guard, not a synchronisation: every process here ends on its own well before.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seeds")
        .join(name)
}

/// Waits for `child` to exit (killing it past [`HANG_GUARD`]) and collects its output.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `program args`, feeds it `input` on stdin, closes stdin, and returns its output.
fn run(program: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    finish(child)
}

/// Runs a seed client script against `addr` (host:port), typing `input`.
fn python_client(name: &str, addr: &str, extra: &[&str], input: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let path = script(name);
    let mut args = vec![path.to_str().unwrap(), host, port];
    args.extend_from_slice(extra);
    let out = run("python3", &args, input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `sockit ARGS` and returns (success, stdout, stderr).
fn sockit(args: &[&str]) -> (bool, String, String) {
    let out = run(sockit_bin(), args, "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `sockit serve ARGS` with a fresh data folder, waiting for `listeners` lines.
fn serve(args: &[&str], listeners: usize) -> (ServerProcess, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut all = vec!["--data", data.path().to_str().unwrap()];
    all.extend_from_slice(args);
    (ServerProcess::start(&all, listeners), data)
}

/// A seed server script; killed on drop.
struct PythonServer {
    child: Option<Child>,
    addr: String,
}

impl PythonServer {
    /// Starts `name` and reads the port it prints first.
    fn start(name: &str, args: &[&str]) -> PythonServer {
        let mut child = Command::new("python3")
            .arg(script(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // The seed servers print every message; a closed pipe would kill them.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} printed {line:?}"));
        PythonServer {
            child: Some(child),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Waits for the server to exit on its own.
    fn finish(mut self) -> Output {
        finish(self.child.take().unwrap())
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Deterministic bytes (xorshift), for file contents.
fn noise(len: usize) -> Vec<u8> {
    crate::common::noise_from(0x2545_F491_4F6C_DD1D, len)
}

/// Waits for `path` to exist: the server renames a complete upload into place in one step.
fn wait_for_file(path: &Path) -> Vec<u8> {
    let deadline = Instant::now() + HANG_GUARD;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read(path).unwrap()
}

#[test]
fn seed_echo_client_against_sockit() {
    let (server, _data) = serve(
        &["--listen", "127.0.0.1:0", "--seed-echo", "127.0.0.1:0"],
        2,
    );
    let out = python_client(
        "echo_client.py",
        &server.addr("seed-echo"),
        &[],
        "hello\n\nworld 你好\n",
    );
    assert!(out.contains("b'HELLO'"), "{out}");
    assert!(out.contains(r"b'WORLD \xe4\xbd\xa0\xe5\xa5\xbd'"), "{out}");
}

#[test]
fn seed_exec_client_against_sockit() {
    let (server, _data) = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--seed-exec",
            "127.0.0.1:0",
            "--allow-exec",
        ],
        2,
    );
    let input = "echo hello from sh\nls /no/such/dir\nseq 1 3000\n";
    let out = python_client("exec_client.py", &server.addr("seed-exec"), &[], input);
    assert!(out.contains("hello from sh\n"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    // Over 1024 bytes: the reply frame carries it whole.
    assert!(out.contains("\n2999\n3000\n"), "{out}");
}

#[test]
fn seed_exec_needs_allow_exec_and_loopback() {
    let (ok, _, err) = sockit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--seed-exec",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("--allow-exec"), "{err}");
    let (ok, _, err) = sockit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--seed-exec",
        "0.0.0.0:0",
        "--allow-exec",
    ]);
    assert!(!ok);
    assert!(err.contains("non-loopback"), "{err}");
}

#[test]
fn seed_upload_client_against_sockit() {
    let files = tempfile::tempdir().unwrap();
    let local = files.path().join("config");
    let content = noise(200_000);
    std::fs::write(&local, &content).unwrap();
    let (server, data) = serve(
        &["--listen", "127.0.0.1:0", "--seed-upload", "127.0.0.1:0"],
        2,
    );
    python_client(
        "upload_client.py",
        &server.addr("seed-upload"),
        &[local.to_str().unwrap()],
        "",
    );
    assert_eq!(wait_for_file(&data.path().join("uploads/config")), content);
}

/// Sends one raw seed-upload frame, closes the write side, and returns what came back.
fn raw_upload(addr: &str, header: serde_json::Value, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(&header).unwrap();
    let mut wire = (json.len() as i32).to_le_bytes().to_vec();
    wire.extend_from_slice(&json);
    wire.extend_from_slice(body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let _ = s.write_all(&wire);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

#[test]
fn seed_upload_keeps_base_names_and_never_shows_a_partial_file() {
    let (server, data) = serve(
        &["--listen", "127.0.0.1:0", "--seed-upload", "127.0.0.1:0"],
        2,
    );
    let addr = server.addr("seed-upload");
    let uploads = data.path().join("uploads");

    // A hostile name stays inside, by its base name. Success is silent, as in the seed.
    let reply = raw_upload(
        &addr,
        json!({"filename": "../../escape.txt", "filesize": 3}),
        b"abc",
    );
    assert!(reply.is_empty(), "{reply:?}");
    assert_eq!(std::fs::read(uploads.join("escape.txt")).unwrap(), b"abc");
    assert!(!data.path().parent().unwrap().join("escape.txt").exists());

    // Cut off: 10 of 1000 bytes, then the client closes. The server's close is the signal.
    raw_upload(
        &addr,
        json!({"filename": "cut.bin", "filesize": 1000}),
        &[7; 10],
    );
    // Lying md5: one error frame, nothing kept.
    let reply = raw_upload(
        &addr,
        json!({"filename": "lie.bin", "file_size": 4, "md5": "00000000000000000000000000000000"}),
        b"data",
    );
    let mut conn = Connection::new(std::io::Cursor::new(reply), Limits::default());
    let head = conn.read_head().unwrap().expect("an error frame");
    assert_eq!(head.header["ok"], false);
    // A name with nothing left: refused.
    let reply = raw_upload(&addr, json!({"filename": "dir/..", "filesize": 1}), b"x");
    assert!(!reply.is_empty());

    let mut names: Vec<String> = std::fs::read_dir(&uploads)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["escape.txt"],
        "no partial or refused file may remain"
    );

    // sockit's own seed client: md5 in the header, and the server's close means it is saved.
    let local = data.path().join("local.bin");
    let content = noise(300_000);
    std::fs::write(&local, &content).unwrap();
    let (ok, out, err) = sockit(&[
        "put",
        "--seed",
        "-s",
        &addr,
        local.to_str().unwrap(),
        "sub/dir/remote.bin",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(uploads.join("remote.bin")).unwrap(), content);
}

#[test]
fn seed_udp_clients_against_sockit() {
    let (server, _data) = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--udp-echo",
            "127.0.0.1:0",
            "--udp-time",
            "127.0.0.1:0",
        ],
        3,
    );
    let out = python_client(
        "udp_echo_client.py",
        &server.addr("udp-echo"),
        &[],
        "hello udp\n\n",
    );
    assert!(out.contains("b'HELLO UDP'"), "{out}");
    assert!(
        out.contains("b''"),
        "an empty datagram is echoed too: {out}"
    );

    let before = chrono::Local::now();
    let out = python_client(
        "time_client.py",
        &server.addr("udp-time"),
        &[],
        "%Y\n\n%Q\n",
    );
    let after = chrono::Local::now();
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit(">>: ").next().unwrap())
        .collect();
    let years = [
        before.format("%Y").to_string(),
        after.format("%Y").to_string(),
    ];
    assert!(years.contains(&lines[0].to_string()), "{out}");
    let default = lines[1];
    assert!(
        default.len() == 19 && default.as_bytes()[4] == b'-' && default.as_bytes()[13] == b':',
        "{out}"
    );
    assert!(lines[2].starts_with("error: "), "{out}");
}

#[tokio::test]
async fn seed_qq_client_in_the_sockit_chat_room() {
    let (server, _data) = serve(&["--listen", "127.0.0.1:0", "--udp-chat", "127.0.0.1:0"], 2);
    let addr = server.addr("udp-chat");
    let ann = sockit::client::chat::Client::connect(&addr).await.unwrap();
    ann.send("JOIN ann").await.unwrap();
    ann.reply(Duration::from_secs(30), &mut Vec::new())
        .await
        .unwrap();

    let input = "狗哥alex\n你好 ann\nquit\n";
    let out = tokio::task::spawn_blocking(move || python_client("qq_client.py", &addr, &[], input))
        .await
        .unwrap();
    assert!(
        out.contains("的一条消息:\x1b[1;44mOK delivered to 1 members\x1b[0m"),
        "{out}"
    );
    let got = tokio::time::timeout(HANG_GUARD, ann.recv())
        .await
        .unwrap()
        .unwrap();
    match got {
        sockit::client::chat::Incoming::Message {
            from,
            text,
            direct: false,
        } => {
            assert!(from.starts_with("127.0.0.1:"), "{from}");
            assert_eq!(text, "你好 ann");
        }
        other => panic!("{other:?}"),
    }
}
