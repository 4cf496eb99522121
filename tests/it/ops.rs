//! Operations as an operator meets them: `serve --metrics` scraped with curl after a real
//! run of the sockit client, `/healthz`, `--log-format json` lines, and a stop on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ServerProcess, output_with_input, sockit_bin};

/// The password of every test user (never to be seen in a log).
pub(crate) const PASSWORD: &str = "hunter2-correct-horse";
const WRONG: &str = "battery-staple-wrong";

/// `sockit ARGS` as a user runs it against `server`, with `password`.
pub(crate) fn sockit(dir: &Path, server: &ServerProcess, password: &str, args: &[&str]) -> Output {
    let mut command = Command::new(sockit_bin());
    command
        .args(args)
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", password)
        .env("SOCKIT_KNOWN_HOSTS", dir.join("known_hosts"))
        .env_remove("SOCKIT_USER")
        .current_dir(dir);
    output_with_input(&mut command, "")
}

/// `sockit user add NAME` in `dir/data`, password [`PASSWORD`].
pub(crate) fn add_user(dir: &Path, name: &str) {
    let mut command = Command::new(sockit_bin());
    command
        .args(["user", "add", name, "--password-stdin", "--data", "data"])
        .current_dir(dir);
    let out = output_with_input(&mut command, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{out:?}");
}

/// `sockit serve` on `dir/data`, the native port on 127.0.0.1:0, with `extra` flags;
/// waits for `listeners` listener lines.
pub(crate) fn serve(dir: &Path, extra: &[&str], listeners: usize) -> ServerProcess {
    let data = dir.join("data");
    let mut args = vec!["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, listeners)
}

/// A plain HTTP GET with curl: the status and the body.
fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}", url])
        .output()
        .unwrap_or_else(|e| {
            panic!("curl is needed for this test (scripts/test.sh installs it): {e}")
        });
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// The value of the series `series` (name and labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Scrapes until every native connection has ended (the client processes have exited,
/// but the server notices their close a moment later), then returns the text.
fn scrape_settled(metrics: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = curl(&format!("http://{metrics}/metrics"));
        assert_eq!(status, 200);
        if sample(&text, r#"sockit_connections_open{door="native"}"#) == Some(0.0) {
            return text;
        }
        assert!(Instant::now() < deadline, "connections stay open:\n{text}");
        std::thread::yield_now();
    }
}

#[test]
fn metrics_count_a_real_put_get_exec_and_echo_run() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ann");
    let server = serve(dir.path(), &["--allow-exec", "--metrics", "127.0.0.1:0"], 2);
    let (native, metrics) = (server.addr("native"), server.addr("metrics"));
    let size = 1_000_000usize;
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("secret-name.bin"), &payload).unwrap();
    let as_ann = ["-s", native.as_str(), "-u", "ann"];
    // The options first: exec takes the rest of the line as its command.
    let ran = [
        ("put", vec!["secret-name.bin"]),
        ("get", vec!["secret-name.bin", "back.bin"]),
        ("exec", vec!["echo", "hi"]),
    ];
    for (op, rest) in ran {
        let args: Vec<&str> = [op].into_iter().chain(as_ann).chain(rest).collect();
        let out = sockit(dir.path(), &server, PASSWORD, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    assert_eq!(std::fs::read(dir.path().join("back.bin")).unwrap(), payload);
    let echo = sockit(dir.path(), &server, "", &["echo", "hello", "-s", &native]);
    assert!(echo.status.success(), "{echo:?}");
    let refused = sockit(dir.path(), &server, WRONG, &[&["ls"][..], &as_ann].concat());
    assert!(!refused.status.success());

    let text = scrape_settled(&metrics);
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    // put, get, exec, echo and the refused ls: five connections, each through the native door.
    assert_eq!(
        count(r#"sockit_connections_accepted_total{door="native"}"#),
        5.0
    );
    for (op, result, n) in [
        ("put", "ok", 1.0),
        ("get", "ok", 1.0),
        ("exec", "ok", 1.0),
        ("echo", "ok", 1.0),
        ("login", "ok", 3.0),
        ("login", "auth_failed", 1.0),
    ] {
        let series =
            format!(r#"sockit_requests_total{{door="native",op="{op}",result="{result}"}}"#);
        assert_eq!(count(&series), n, "{series}");
    }
    assert_eq!(
        count(r#"sockit_logins_total{door="native",result="ok"}"#),
        3.0
    );
    assert_eq!(
        count(r#"sockit_logins_total{door="native",result="failed"}"#),
        1.0
    );
    assert_eq!(
        count(r#"sockit_request_duration_seconds_count{door="native",op="put"}"#),
        1.0
    );
    assert_eq!(count("sockit_exec_started_total"), 1.0);
    assert_eq!(count(r#"sockit_exec_ended_total{reason="exit"}"#), 1.0);
    assert_eq!(count("sockit_uploads_in_progress"), 0.0);
    assert_eq!(count("sockit_quota_refusals_total"), 0.0);
    // The file crossed once each way; the rest is frame headers, logins and the echo.
    let slack = 64.0 * 1024.0;
    for series in [
        r#"sockit_bytes_received_total{door="native"}"#,
        r#"sockit_bytes_sent_total{door="native"}"#,
    ] {
        let bytes = count(series);
        assert!(
            bytes >= size as f64 && bytes <= size as f64 + slack,
            "{series} = {bytes}, for a file of {size} bytes"
        );
    }
    assert!(
        !text.contains("ann") && !text.contains("secret-name"),
        "no user name or path in the series:\n{text}"
    );
    assert_eq!(
        curl(&format!("http://{metrics}/healthz")),
        (200, "ok\n".into())
    );
}

#[test]
fn healthz_fails_when_the_storage_back_end_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(dir.path(), &["--metrics", "127.0.0.1:0"], 2);
    let health = format!("http://{}/healthz", server.addr("metrics"));
    assert_eq!(curl(&health).0, 200);
    std::fs::rename(data.join("homes"), data.join("homes.moved")).unwrap();
    let (status, body) = curl(&health);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("storage"), "{body}");
    std::fs::rename(data.join("homes.moved"), data.join("homes")).unwrap();
    assert_eq!(curl(&health).0, 200);
}

/// Runs a put and a failed login against a server logging in `format`, stops it with
/// SIGTERM, and returns its exit status and log text.
fn logged_run(format: &str, size: usize) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ann");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = ServerProcess::start_logging(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().join("data").to_str().unwrap(),
            "--log-format",
            format,
        ],
        1,
        Stdio::from(log),
    );
    let native = server.addr("native");
    std::fs::write(dir.path().join("up.bin"), vec![7u8; size]).unwrap();
    let put = sockit(
        dir.path(),
        &server,
        PASSWORD,
        &["put", "up.bin", "-s", &native, "-u", "ann"],
    );
    assert!(put.status.success(), "{put:?}");
    let wrong = sockit(
        dir.path(),
        &server,
        WRONG,
        &["ls", "-s", &native, "-u", "ann"],
    );
    assert!(!wrong.status.success());
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    (status, std::fs::read_to_string(&log_path).unwrap())
}

#[test]
fn json_logs_give_a_line_per_transfer_and_failed_login_and_never_a_password() {
    let size = 123_456;
    let (status, log) = logged_run("json", size);
    assert!(
        status.success(),
        "SIGTERM stops the server cleanly: {status}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let transfer = lines
        .iter()
        .find(|l| l["message"] == "transfer" && l["op"] == "put")
        .unwrap_or_else(|| panic!("no transfer line in:\n{log}"));
    assert_eq!(transfer["bytes"], size);
    assert_eq!(transfer["user"], "ann");
    assert_eq!(transfer["result"], "ok");
    assert_eq!(transfer["path"], "up.bin");
    assert!(transfer["duration_ms"].is_u64(), "{transfer}");
    assert!(
        transfer["span"]["id"].is_u64(),
        "a connection id: {transfer}"
    );
    assert!(
        transfer["span"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{transfer}"
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "failed login")
        .unwrap_or_else(|| panic!("no failed login line in:\n{log}"));
    assert_eq!(failed["user"], "ann");
    assert_eq!(failed["result"], "auth_failed");
    assert!(lines.iter().any(|l| l["message"] == "shutting down"));
    assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{log}");
}

#[test]
fn text_logs_never_carry_a_password_either() {
    let (status, log) = logged_run("text", 1000);
    assert!(status.success(), "{status}");
    assert!(
        log.contains("transfer") && log.contains("bytes=1000"),
        "{log}"
    );
    assert!(log.contains("failed login"), "{log}");
    assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{log}");
}
