//! `sockit bench` as a library call against an in-process server: it counts what it sent.
//! Behaviour only: how fast is for the benchmarks to say, never for a test.

use std::time::Duration;

use sockit::client::bench::{self, Config, EchoLoad, IdleLoad, Load, Until};

use crate::common::spawn_native;

fn config(server: &sockit::net::Endpoint, load: Load) -> Config {
    Config {
        load,
        server: server.clone(),
        tls: None,
        server_pid: Some(std::process::id()),
        threads: 1,
        from: None,
    }
}

#[tokio::test]
async fn echo_counts_every_request_of_every_connection() {
    let server = spawn_native().await;
    for pipeline in [1, 4] {
        let load = EchoLoad {
            connections: 2,
            until: Until::Count(10),
            body: 100,
            pipeline,
        };
        let report = bench::run(&config(&server.endpoint, Load::Echo(load)))
            .await
            .unwrap();
        assert_eq!((report.ok, report.errors), (20, 0), "{report:?}");
        assert!(report.server_process.is_some_and(|p| p.rss_bytes > 0));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ok"], 20);
    }
}

#[tokio::test]
async fn idle_answers_one_request_on_each_held_connection() {
    let server = spawn_native().await;
    let load = IdleLoad {
        connections: 20,
        hold: Duration::ZERO,
        budget: Duration::from_secs(30),
    };
    let report = bench::run(&config(&server.endpoint, Load::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (20, 0), "{report:?}");
    assert_eq!(report.idle.map(|i| i.held), Some(20));
}

#[tokio::test]
async fn idle_holds_more_connections_than_one_address_may_by_spreading_its_sources() {
    // The default per-address cap is 128: the bench's 200 come from 127.0.0.1 .. 127.0.0.4.
    let server = spawn_native().await;
    let load = IdleLoad {
        connections: 200,
        hold: Duration::ZERO,
        budget: Duration::from_secs(30),
    };
    let report = bench::run(&config(&server.endpoint, Load::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (200, 0), "{report:?}");
    assert_eq!(report.idle.map(|i| i.held), Some(200));
}

#[tokio::test]
async fn echo_for_a_duration_stops_sending_when_it_is_over() {
    let server = spawn_native().await;
    let load = EchoLoad {
        connections: 2,
        until: Until::Elapsed(Duration::from_millis(200)),
        body: 64,
        pipeline: 2,
    };
    let report = bench::run(&config(&server.endpoint, Load::Echo(load)))
        .await
        .unwrap();
    assert!(report.ok > 0 && report.errors == 0, "{report:?}");
    assert!(report.seconds >= 0.2, "{report:?}");
    assert_eq!(report.mode, bench::Mode::Echo);
}

#[tokio::test]
async fn no_server_is_a_setup_error_not_a_count() {
    // Bind and drop: a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let load = EchoLoad {
        connections: 1,
        until: Until::Count(1),
        body: 1,
        pipeline: 1,
    };
    let got = bench::run(&config(&server, Load::Echo(load))).await;
    assert!(matches!(got, Err(sockit::Error::Io(_))), "{got:?}");
}

/// `sockit bench MODE ARGS --json` with `env`, as a script runs it: its JSON report, or the
/// one line it failed with.
fn bench_cli(args: &[&str], env: &[(&str, String)]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(crate::common::sockit_bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .env_remove("SOCKIT_PLAINTEXT")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_bench_speaks_tls_like_every_client_and_counts_whole_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let out = crate::common::sockit_with_input(args, stdin);
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    run(
        &["user", "add", "ann", "--password-stdin", "--data", data_arg],
        "pw-ann\n",
    );
    let key = dir.path().join("id");
    run(&["key", "gen", key.to_str().unwrap()], "");
    let public = format!("{}.pub", key.display());
    run(
        &["user", "key", "add", "ann", &public, "--data", data_arg],
        "",
    );
    let server =
        crate::common::ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    let addr = server.addr("native");
    let pinned = server.client_env();

    let echo = bench_cli(&["echo", "-s", &addr, "-c", "3", "-n", "5"], &pinned).unwrap();
    assert_eq!(
        (echo["ok"].as_u64(), echo["errors"].as_u64()),
        (Some(15), Some(0))
    );
    assert_eq!(echo["tls"], true, "{echo}");
    let mut plain = pinned.clone();
    plain.push(("SOCKIT_PLAINTEXT", "1".into()));
    let echo = bench_cli(&["echo", "-s", &addr, "-c", "1", "-n", "1"], &plain).unwrap();
    assert_eq!(
        (echo["ok"].as_u64(), echo["tls"].as_bool()),
        (Some(1), Some(false))
    );

    // Whole sessions, by password and by key: every one a fresh connection that logs in.
    let mut by_password = pinned.clone();
    by_password.push(("SOCKIT_PASSWORD", "pw-ann".into()));
    let args = ["sessions", "-s", &addr, "-u", "ann", "-n", "12", "-c", "3"];
    let sessions = bench_cli(&args, &by_password).unwrap();
    assert_eq!(
        (sessions["ok"].as_u64(), sessions["errors"].as_u64()),
        (Some(12), Some(0))
    );
    assert_eq!(sessions["mode"], "sessions");
    let by_key = [&args[..], &["-i", key.to_str().unwrap()]].concat();
    let sessions = bench_cli(&by_key, &pinned).unwrap();
    assert_eq!(
        (sessions["ok"].as_u64(), sessions["errors"].as_u64()),
        (Some(12), Some(0))
    );

    // A verified upload over TLS, with what it cost each end: the CPU a run spent is the
    // figure that explains its speed when both ends share one host's cores.
    let pid = server.child.id().to_string();
    let args = [
        "put",
        "-s",
        &addr,
        "-u",
        "ann",
        "--size",
        "32MiB",
        "--server-pid",
        &pid,
    ];
    let put = bench_cli(&args, &by_password).unwrap();
    assert_eq!(
        (put["ok"].as_u64(), put["tls"].as_bool()),
        (Some(1), Some(true))
    );
    let spent = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    assert!(spent(&put["client_cpu_seconds"]) > 0.0, "{put}");
    assert!(spent(&put["server_process"]["cpu_seconds"]) > 0.0, "{put}");

    let mut wrong = pinned.clone();
    wrong.push(("SOCKIT_PASSWORD", "not-it".into()));
    let refused = bench_cli(&args, &wrong).unwrap_err();
    assert!(refused.contains("auth"), "{refused}");

    // Trust is checked as every client checks it: an unknown server is refused in a script,
    // and so is another certificate than the one pinned.
    let known = [(
        "SOCKIT_KNOWN_HOSTS",
        dir.path().join("known_hosts").display().to_string(),
    )];
    let refused = bench_cli(&["echo", "-s", &addr, "-n", "1"], &known).unwrap_err();
    assert!(refused.contains("not a known server"), "{refused}");
    let other = sockit::tls::Identity::load_or_create(&dir.path().join("other"))
        .unwrap()
        .fingerprint();
    let refused = bench_cli(
        &["echo", "-s", &addr, "-n", "1"],
        &[("SOCKIT_FINGERPRINT", other)],
    )
    .unwrap_err();
    assert!(refused.contains("TLS"), "{refused}");
}

/// A `sockit bench flood` child process; killed (and reaped) on drop.
struct FloodProcess(std::process::Child);

impl Drop for FloodProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_flood_from_one_address_is_refused_past_its_cap_while_another_address_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
        "--max-connections-per-ip",
        "10",
    ];
    let server = crate::common::ServerProcess::start(&args, 1);
    let addr = server.addr("native");
    let plain = [("SOCKIT_PLAINTEXT", "1".to_string())];

    // 300 attempts at once from 127.0.0.1, for longer than the test: it ends on Ctrl-C.
    let flood = std::process::Command::new(crate::common::sockit_bin())
        .args([
            "bench", "flood", "-s", &addr, "-k", "300", "-d", "600", "--json",
        ])
        .env("SOCKIT_PLAINTEXT", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut flood = FloodProcess(flood);

    // The flood says when its first refusal came back.
    let mut said = String::new();
    let mut stderr = std::io::BufReader::new(flood.0.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
    assert!(
        said.starts_with("sockit bench flood: first refusal: ") && said.contains("127.0.0.1"),
        "{said}"
    );
    let echo_from = |from: &str, connections: &str, requests: &str| {
        let args = ["echo", "-s", &addr, "--from", from];
        bench_cli(
            &[&args[..], &["-c", connections, "-n", requests]].concat(),
            &plain,
        )
    };
    // One more connection from 127.0.0.1 is refused too.
    let refused = echo_from("127.0.0.1", "1", "1").unwrap_err();
    assert!(refused.contains("too_many_connections"), "{refused}");

    // Meanwhile another address is served, every request of it.
    let echo = echo_from("127.0.0.2", "3", "20").unwrap();
    assert_eq!(
        (echo["ok"].as_u64(), echo["errors"].as_u64()),
        (Some(60), Some(0)),
        "{echo}"
    );
    assert!(flood.0.try_wait().unwrap().is_none(), "the flood ended");

    // Ctrl-C ends the flood, which reports what it met.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(flood.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut flood.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(flood.0.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "flood");
    let f = &report["flood"];
    let count = |key: &str| f[key].as_u64().unwrap_or_else(|| panic!("{key}: {f}"));
    assert_eq!(f["source"], "127.0.0.1");
    // Never more held than the cap, and refusals, told by the server in words.
    assert!(count("held_peak") <= 10, "{f}");
    assert!(count("refused_cap") + count("refused_rate") > 0, "{f}");
    assert!(
        count("attempts") >= count("held") + count("refused_cap"),
        "{f}"
    );
    assert_eq!(
        report["ok"].as_u64(),
        Some(count("held") + count("refused_cap") + count("refused_rate") + count("refused_other"))
    );
}
