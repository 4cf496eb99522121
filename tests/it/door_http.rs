//! The HTTP door (`serve --http`) as its users' clients meet it: litmus (the WebDAV
//! compliance suite) and curl against `/dav/`, over HTTPS with the server's own certificate
//! and over plaintext on loopback; hostile paths, credentials and cut bodies.
//!
//! Needs `litmus` and `curl` (scripts/test.sh installs them); without them the tests fail
//! and say what is missing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{ServerProcess, output_with_input, sockit_bin};

/// A server with `--http`, its data folder, and users `ann` (quota 1 MB) and `bob`.
pub(crate) struct Door {
    /// The server process (stopped when this drops).
    server: ServerProcess,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Door {
    pub(crate) fn start() -> Door {
        Door::start_with(&[])
    }

    /// As [`Door::start`], with more `sockit serve` flags.
    pub(crate) fn start_with(extra_flags: &[&str]) -> Door {
        let dir = tempfile::tempdir().unwrap();
        for (name, extra) in [("ann", &["--quota", "1MB"][..]), ("bob", &[][..])] {
            let mut args = vec!["user", "add", name, "--password-stdin", "--data"];
            let data = dir.path().join("data");
            let data = data.to_str().unwrap();
            args.push(data);
            args.extend_from_slice(extra);
            let mut command = Command::new(sockit_bin());
            command.args(&args);
            let out = output_with_input(&mut command, &format!("{name}-pw\n"));
            assert!(out.status.success(), "{out:?}");
        }
        let data = dir.path().join("data");
        let mut flags = vec![
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ];
        flags.extend_from_slice(extra_flags);
        let server = ServerProcess::start(&flags, 2);
        let addr = server.addr("http");
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Door { server, dir, port }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn home(&self, user: &str) -> PathBuf {
        self.data().join("homes").join(user)
    }

    /// `https://localhost:PORT{path}`, checked against the server's certificate.
    pub(crate) fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// curl's arguments that trust exactly the server's certificate for `localhost`.
    pub(crate) fn tls_args(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.data().join("tls/cert.pem").to_str().unwrap().into(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.port),
        ]
    }

    /// Runs curl with `args` over HTTPS: (status code, body).
    pub(crate) fn curl(&self, args: &[&str]) -> (u16, Vec<u8>) {
        let body = self.dir.path().join("curl-body");
        let _ = std::fs::remove_file(&body);
        let mut all: Vec<String> = vec!["-sS".into(), "--path-as-is".into()];
        all.extend(self.tls_args());
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend([
            "-o".into(),
            body.to_str().unwrap().into(),
            "-w".into(),
            "%{http_code}".into(),
        ]);
        let out = curl(&all);
        let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (code, std::fs::read(&body).unwrap_or_default())
    }
}

fn curl(args: &[String]) -> Output {
    match Command::new("curl").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("curl is needed for this test (scripts/test.sh installs it): {e}"),
    }
}

/// Every file under `dir` with its bytes, to show that nothing outside was touched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), b"<dir>".to_vec());
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| !n.to_string_lossy().contains("users.db"))
            {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Deterministic bytes (xorshift from `seed`), for file contents.
pub(crate) fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn door_http_litmus_basic_copymove_props_and_locks_all_pass() {
    let door = Door::start();
    let work = door.dir.path().join("litmus");
    std::fs::create_dir(&work).unwrap();
    // Plaintext on loopback, as the native port allows: litmus (neon) would not trust the
    // self-signed certificate. The TLS path is curl's, below.
    let url = format!("http://127.0.0.1:{}/dav/", door.port);
    let out = match Command::new("litmus")
        .args([url.as_str(), "ann", "ann-pw"])
        .env("TESTS", "basic copymove props locks")
        .current_dir(&work)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("litmus is needed for this test (scripts/test.sh installs it): {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for group in ["basic", "copymove", "props", "locks"] {
        let summary = text
            .lines()
            .find(|l| l.starts_with(&format!("<- summary for `{group}'")))
            .unwrap_or_else(|| panic!("no summary for {group}:\n{text}"));
        assert!(summary.contains(" 0 failed"), "{summary}\n{text}");
    }
    assert!(!text.contains("SKIPPED"), "{text}");
    assert!(out.status.success(), "{text}");
}

#[test]
fn door_http_curl_uploads_and_downloads_over_https_and_quota_is_507() {
    let door = Door::start();
    let local = door.dir.path().join("up.bin");
    let bytes = random_bytes(300_000, 7);
    std::fs::write(&local, &bytes).unwrap();
    let up = door.curl(&[
        "-u",
        "ann:ann-pw",
        "-T",
        local.to_str().unwrap(),
        &door.https("/dav/up.bin"),
    ]);
    assert_eq!(up.0, 201, "{up:?}");
    assert_eq!(
        std::fs::read(door.home("ann").join("up.bin")).unwrap(),
        bytes
    );
    let (code, down) = door.curl(&["-u", "ann:ann-pw", &door.https("/dav/up.bin")]);
    assert_eq!(code, 200);
    assert!(down == bytes, "downloaded bytes differ");
    // A range, as a resumed download asks for it.
    let (code, part) = door.curl(&[
        "-u",
        "ann:ann-pw",
        "-r",
        "1000-1999",
        &door.https("/dav/up.bin"),
    ]);
    assert_eq!(code, 206);
    assert_eq!(part, bytes[1000..2000]);

    // Over the quota (1 MB, 300 kB used): refused before a byte is stored.
    let big = door.dir.path().join("big.bin");
    std::fs::write(&big, random_bytes(900_000, 9)).unwrap();
    let (code, body) = door.curl(&[
        "-u",
        "ann:ann-pw",
        "-T",
        big.to_str().unwrap(),
        &door.https("/dav/big.bin"),
    ]);
    assert_eq!(code, 507, "{}", String::from_utf8_lossy(&body));
    let names: Vec<_> = std::fs::read_dir(door.home("ann"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["up.bin"], "nothing of the refused upload is left");

    // The quota as RFC 4331 reports it.
    let (code, body) = door.curl(&[
        "-u",
        "ann:ann-pw",
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "--data",
        r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>"#,
        &door.https("/dav/"),
    ]);
    assert_eq!(code, 207);
    let xml = String::from_utf8_lossy(&body);
    let value = |tag: &str| -> u64 {
        let open = format!("<D:{tag}>");
        let start = xml.find(&open).unwrap_or_else(|| panic!("{tag} in {xml}")) + open.len();
        xml[start..].split('<').next().unwrap().parse().unwrap()
    };
    let (used, available) = (value("quota-used-bytes"), value("quota-available-bytes"));
    assert!(used >= 300_000, "{xml}");
    assert_eq!(used + available, 1_000_000, "{xml}");
}

#[test]
fn door_http_hostile_paths_and_credentials_are_refused_and_touch_nothing() {
    let door = Door::start();
    let bob = door.home("bob");
    std::fs::create_dir_all(&bob).unwrap();
    std::fs::write(bob.join("secret"), b"bob's").unwrap();
    let ann = door.home("ann");
    std::fs::create_dir_all(&ann).unwrap();
    std::fs::write(ann.join("mine"), b"ann's").unwrap();
    let local = door.dir.path().join("evil.txt");
    std::fs::write(&local, b"evil").unwrap();
    let before = snapshot(&door.data());
    let auth = ["-u", "ann:ann-pw"];
    let evil = local.to_str().unwrap();
    let host = format!("localhost:{}", door.port);

    let mut cases: Vec<(&str, Vec<String>)> = Vec::new();
    let mut case = |what: &'static str, args: Vec<String>| cases.push((what, args));
    for path in [
        "/dav/../bob/secret",
        "/dav/%2e%2e/bob/secret",
        "/dav/%2E%2E/%2e%2e/users.db",
        "/dav/..%2fbob/secret",
        "/dav/a/../../bob/secret",
    ] {
        case("GET climbing", vec![door.https(path)]);
        case(
            "PUT climbing",
            vec!["-T".into(), evil.into(), door.https(path)],
        );
        case(
            "DELETE climbing",
            vec!["-X".into(), "DELETE".into(), door.https(path)],
        );
    }
    for destination in [
        format!("https://{host}/dav/../bob/evil"),
        format!("https://{host}/dav/%2e%2e/bob/evil"),
        "/bob/evil".to_string(),
        "/dav/../../evil".to_string(),
        "https://elsewhere.example/dav/evil".to_string(),
        "file:///tmp/evil".to_string(),
    ] {
        for method in ["COPY", "MOVE"] {
            case(
                "Destination outside",
                vec![
                    "-X".into(),
                    method.into(),
                    "-H".into(),
                    format!("Destination: {destination}"),
                    door.https("/dav/mine"),
                ],
            );
        }
    }
    for (what, args) in cases {
        let mut all: Vec<&str> = auth.to_vec();
        all.extend(args.iter().map(String::as_str));
        let (code, body) = door.curl(&all);
        assert!(
            (400..600).contains(&code),
            "{what} {args:?}: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // An absolute URL in the request line itself (a proxy-style request): the path is
    // the one judged, and `..` in it is refused too.
    let mut raw = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    write!(
        raw,
        "GET http://{host}/dav/../bob/secret HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Basic YW5uOmFubi1wdw==\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(!reply.contains("bob's"), "{reply}");

    // No credentials, and wrong ones: 401, whatever the method.
    for user in [None, Some("ann:wrong"), Some("nobody:ann-pw")] {
        for method in ["GET", "PUT", "DELETE", "PROPFIND", "MKCOL"] {
            let url = door.https("/dav/mine");
            let mut args = vec!["-X", method, url.as_str()];
            if let Some(user) = user {
                args.extend(["-u", user]);
            }
            let (code, _) = door.curl(&args);
            assert_eq!(code, 401, "{method} as {user:?}");
        }
    }
    assert!(
        snapshot(&door.data()) == before,
        "something on disk changed"
    );
}

#[test]
fn door_http_a_put_cut_mid_body_is_never_visible() {
    let door = Door::start();
    let mut raw = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    write!(
        raw,
        "PUT /dav/cut.bin HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Basic YW5uOmFubi1wdw==\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    raw.write_all(&random_bytes(40_000, 3)).unwrap();
    raw.flush().unwrap();
    // The server has the bytes once the partial file holds them (or the upload began).
    let ann = door.home("ann");
    let deadline = Instant::now() + Duration::from_secs(30);
    let partial_len = || {
        std::fs::read_dir(&ann).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().contains("cut.bin"))
                .and_then(|e| e.metadata().ok())
                .map(|m| m.len())
        })
    };
    while partial_len().unwrap_or(0) < 40_000 {
        assert!(Instant::now() < deadline, "the partial file never filled");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!ann.join("cut.bin").exists(), "visible before its end");
    drop(raw);
    // Gone for good: neither under its name nor as a partial file.
    while partial_len().is_some() {
        assert!(Instant::now() < deadline, "the partial file stayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!ann.join("cut.bin").exists());
    let (code, _) = door.curl(&["-u", "ann:ann-pw", &door.https("/dav/cut.bin")]);
    assert_eq!(code, 404);
}

#[test]
fn door_http_slow_heads_and_idle_connections_are_bounded() {
    let door = Door::start_with(&["--head-timeout", "1", "--max-connections-per-ip", "4"]);
    // A head that never ends: the connection is closed (with or without a 408).
    let mut slow = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    slow.write_all(b"GET /dav/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    let ended = slow.read_to_end(&mut rest);
    assert!(ended.is_ok(), "the slow head was never closed: {ended:?}");
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{rest:?}"
    );

    // Idle keep-alive connections count against the address's cap: the fifth is refused.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
            write!(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            c
        })
        .collect();
    let mut fifth = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    let mut reply = String::new();
    let _ = fifth.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("max-connections-per-ip"), "{reply}");
    drop(idle);
}

/// Sends `GET /api/list?path=/` (answered 401 without a session: small) on `c` and reads the whole
/// answer, leaving the connection open and idle.
fn one_request(c: &mut TcpStream) -> Vec<u8> {
    c.write_all(b"GET /api/list?path=/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if body.len() >= len {
                return answer;
            }
        }
    }
}

#[test]
fn door_http_ten_thousand_idle_keep_alive_connections_cost_little_and_others_are_served() {
    // One address may hold them all here (its cap and rate are lifted): what is measured is
    // what an idle keep-alive connection costs the server.
    sockit::net::raise_fd_limit();
    let door = Door::start_with(&[
        "--max-connections",
        "20000",
        "--max-connections-per-ip",
        "12000",
        "--connection-rate",
        "0",
    ]);
    let before = door.server.rss();
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
            let answer = one_request(&mut c);
            assert!(
                answer.starts_with(b"HTTP/1.1 401"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
            c
        })
        .collect();
    let after = door.server.rss();
    let each = after.saturating_sub(before) / 10_000;
    assert!(
        each < 48 * 1024,
        "an idle keep-alive connection costs {each} bytes of server memory"
    );
    // Another client is served beside them, and every idle one still is.
    let mut other = TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    assert!(one_request(&mut other).starts_with(b"HTTP/1.1 401"));
    let mut last = idle.into_iter().last().unwrap();
    assert!(one_request(&mut last).starts_with(b"HTTP/1.1 401"));
    eprintln!("10,000 idle keep-alive connections: {each} bytes of server memory each");
}

#[test]
fn cadaver_puts_lists_gets_makes_and_moves_through_webdav() {
    let door = Door::start();
    let scratch = door.dir.path().join("cadaver");
    std::fs::create_dir_all(&scratch).unwrap();
    // cadaver reads its login from ~/.netrc and its commands from stdin; plaintext HTTP on
    // loopback, which the door serves (a certificate prompt would need a terminal).
    std::fs::write(
        scratch.join(".netrc"),
        "machine 127.0.0.1\nlogin bob\npassword bob-pw\n",
    )
    .unwrap();
    let payload = (0..300_000u32).map(|i| (i % 249) as u8).collect::<Vec<_>>();
    std::fs::write(scratch.join("local.bin"), &payload).unwrap();
    let script = "put local.bin remote.bin\nls\nget remote.bin back.bin\nmkcol folder\n\
                  move remote.bin folder/moved.bin\nls folder\nquit\n";
    assert!(
        Command::new("cadaver").arg("--version").output().is_ok(),
        "cadaver is not installed (scripts/test.sh installs it)"
    );
    let mut cadaver = Command::new("cadaver");
    cadaver
        .arg(format!("http://127.0.0.1:{}/dav/", door.port))
        .env("HOME", &scratch)
        .current_dir(&scratch);
    let out = output_with_input(&mut cadaver, script);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(!said.contains("failed"), "{said}");
    assert!(
        said.contains("remote.bin") && said.contains("moved.bin"),
        "{said}"
    );
    assert_eq!(std::fs::read(scratch.join("back.bin")).unwrap(), payload);
    let home = door.home("bob");
    assert_eq!(
        std::fs::read(home.join("folder/moved.bin")).unwrap(),
        payload
    );
    assert!(!home.join("remote.bin").exists());
}
