//! Remote commands over the native protocol, with real shells, real process groups and real
//! sockets: streams, exit codes and signals, refusals, limits that kill the whole group,
//! disconnects, stdin, encodings; and `sockit exec` / `sockit shell` against `sockit serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sockit::Error;
use sockit::client::Client;
use sockit::client::exec::Sinks;
use sockit::protocol::{ErrorCode, Reply};
use sockit::runner::{ExecLimits, Exit};
use sockit::server::ServerConfig;
use sockit::service::Native;
use sockit::service::session::FileService;
use sockit::users::{HashCost, Password, Users};
use tempfile::TempDir;

use crate::common::{TestServer, spawn_tcp};

mod cli;

/// A hang guard for polls and child processes, not a synchronisation.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Users `ann` and `bob` (password `pw-NAME`) in `data`.
fn add_users(data: &Path) {
    let users = Users::open_with(data, HashCost::Minimal).unwrap();
    for name in ["ann", "bob"] {
        users
            .add(name, &Password::new(format!("pw-{name}")), None)
            .unwrap();
    }
}

/// An in-process server; `limits: None` runs it without `--allow-exec`.
struct Fixture {
    dir: TempDir,
    server: TestServer,
}

impl Fixture {
    async fn new(limits: Option<ExecLimits>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        add_users(dir.path());
        let users = Users::open_with(dir.path(), HashCost::Minimal).unwrap();
        let mut native = Native::with_files(Arc::new(FileService::with_users(users)));
        if let Some(limits) = limits {
            native = native.with_exec(limits);
        }
        let server = spawn_tcp(native, ServerConfig::default()).await;
        Fixture { dir, server }
    }

    fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("homes").join(user)
    }

    async fn client(&self, user: &str) -> Client {
        let mut c = Client::connect(&self.server.endpoint).await.unwrap();
        c.login(user, &format!("pw-{user}")).await.unwrap();
        c
    }
}

/// Runs `command` and returns (stdout, stderr, exit).
async fn run(c: &mut Client, command: &str) -> Result<(String, String, Exit), Error> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let sinks = Sinks {
        stdout: &mut out,
        stderr: &mut err,
        encoding: None,
    };
    let exit = c.exec(command, sinks).await?;
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    Ok((text(out), text(err), exit))
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> ErrorCode {
    match result {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaps: it runs no more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim()
            .starts_with('Z'),
    }
}

/// Waits (bounded) until every process of `pids` is gone, letting in-process servers run.
async fn wait_gone(pids: [u32; 2]) {
    let deadline = Instant::now() + HANG_GUARD;
    while !pids.iter().all(|p| gone(*p)) {
        assert!(Instant::now() < deadline, "still running: {pids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pids a command wrote to `sh.pid` and `bg.pid` in `home`.
fn pids(home: &Path) -> [u32; 2] {
    ["sh.pid", "bg.pid"].map(|f| {
        let text = std::fs::read_to_string(home.join(f)).unwrap();
        text.trim().parse().unwrap()
    })
}

/// Writes its pids (the shell's and a background grandchild's), says `ready`, then waits.
const PIDS_THEN_WAIT: &str = "sleep 600 & echo $! > bg.pid; echo $$ > sh.pid; echo ready; wait";

#[tokio::test]
async fn exec_streams_stdout_and_stderr_apart_with_the_exit_code_or_signal() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    let got = run(&mut c, "echo hi; echo oops >&2; exit 3").await.unwrap();
    assert_eq!(got, ("hi\n".into(), "oops\n".into(), Exit::Code(3)));
    let (out, _, exit) = run(&mut c, "pwd; echo $HOME $USER").await.unwrap();
    let home = std::fs::canonicalize(fx.home("ann")).unwrap();
    assert_eq!(out, format!("{0}\n{0} ann\n", home.display()));
    assert_eq!(exit, Exit::Code(0));
    let (_, _, exit) = run(&mut c, "kill -TERM $$").await.unwrap();
    assert_eq!((exit, exit.status_code()), (Exit::Signal(15), 143));
    // The connection is the frame loop's again.
    assert_eq!(&c.echo(b"after").await.unwrap()[..], b"after");
}

#[tokio::test]
async fn exec_is_refused_without_allow_exec_and_without_login() {
    let off = Fixture::new(None).await;
    let mut c = off.client("ann").await;
    assert_eq!(code(run(&mut c, "true").await), ErrorCode::ExecDisabled);

    let on = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = Client::connect(&on.server.endpoint).await.unwrap();
    assert_eq!(code(run(&mut c, "true").await), ErrorCode::AuthRequired);
    assert_eq!(code(c.login("ann", "wrong").await), ErrorCode::AuthFailed);
    assert_eq!(code(run(&mut c, "true").await), ErrorCode::AuthRequired);
    assert_eq!(&c.echo(b"still").await.unwrap()[..], b"still");
}

#[tokio::test]
async fn exec_forwards_stdin_while_output_streams_back() {
    let fx = Fixture::new(Some(ExecLimits {
        max_output: 64 << 20,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    // `cat` writes while it reads: both directions are full at once, many times over.
    let input: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let sinks = Sinks {
        stdout: &mut out,
        stderr: &mut err,
        encoding: None,
    };
    let exit = c.exec_with_input("cat", &input[..], sinks).await.unwrap();
    assert_eq!(exit, Exit::Code(0));
    assert!(out == input, "cat gave back {} bytes", out.len());

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let sinks = Sinks {
        stdout: &mut out,
        stderr: &mut err,
        encoding: None,
    };
    let exit = c.exec_with_input("wc -l", &b"a\nb\n"[..], sinks);
    assert_eq!(exit.await.unwrap(), Exit::Code(0));
    assert_eq!(String::from_utf8(out).unwrap().trim(), "2");
    // Input the command never reads is dropped, and the connection goes on.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let sinks = Sinks {
        stdout: &mut out,
        stderr: &mut err,
        encoding: None,
    };
    let exit = c
        .exec_with_input("exit 5", &input[..], sinks)
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(5));
    assert_eq!(run(&mut c, "echo ok").await.unwrap().0, "ok\n");
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_process_group() {
    let fx = Fixture::new(Some(ExecLimits {
        timeout: Duration::from_millis(500),
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    assert_eq!(code(run(&mut c, PIDS_THEN_WAIT).await), ErrorCode::Timeout);
    wait_gone(pids(&fx.home("ann"))).await;
    assert_eq!(run(&mut c, "echo next").await.unwrap().0, "next\n");
}

#[tokio::test]
async fn exec_output_over_the_cap_is_cut_and_killed() {
    let fx = Fixture::new(Some(ExecLimits {
        max_output: 100_000,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let sinks = Sinks {
        stdout: &mut out,
        stderr: &mut err,
        encoding: None,
    };
    assert_eq!(code(c.exec("yes", sinks).await), ErrorCode::TooLarge);
    assert_eq!(out.len(), 100_000);
}

/// Starts `command` on a raw connection and returns it once the command printed `ready`.
async fn started(c: &mut Client, command: &str) {
    let conn = c.connection();
    conn.write_frame(&json!({"op": "exec", "command": command}), b"")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"ready\n") {
        let head = conn.read_head().await.unwrap().unwrap();
        Reply::from_head(&head).unwrap();
        seen.extend_from_slice(&conn.read_body(1 << 20).await.unwrap());
    }
}

#[tokio::test]
async fn a_client_that_disconnects_takes_its_process_group_with_it() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    started(&mut c, PIDS_THEN_WAIT).await;
    let pids = pids(&fx.home("ann"));
    drop(c);
    wait_gone(pids).await;
}

#[tokio::test]
async fn a_reader_that_stops_holds_the_command_back() {
    let fx = Fixture::new(Some(ExecLimits {
        max_output: 1 << 30,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    let command = "echo $$ > sh.pid; exec head -c 500000000 /dev/zero";
    let conn = c.connection();
    conn.write_frame(&json!({"op": "exec", "command": command}), b"")
        .await
        .unwrap();
    let head = conn.read_head().await.unwrap().unwrap();
    Reply::from_head(&head).unwrap();
    // Read nothing more: the command must end up blocked writing to its full pipe, having
    // written about what the pipe and the sockets hold, not its 500 MB.
    let pid_file = fx.home("ann").join("sh.pid");
    let deadline = Instant::now() + HANG_GUARD;
    let pid = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", text.trim()));
        if text.ends_with('\n') && wchan.is_ok_and(|w| w.contains("pipe_write")) {
            break text.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the command never blocked on its pipe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let written: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    eprintln!(
        "a stalled reader held the command at {} KiB written",
        written >> 10
    );
    assert!(written < 64 << 20, "the command wrote {written} bytes");
    drop(c);
    wait_gone([pid.parse().unwrap(); 2]).await;
}

#[tokio::test]
async fn server_shutdown_kills_running_commands_and_says_so() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    started(&mut c, PIDS_THEN_WAIT).await;
    let pids = pids(&fx.home("ann"));
    fx.server.shutdown.trigger();
    let head = c.connection().read_head().await.unwrap().unwrap();
    match Reply::from_head(&head) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("shutting down"), "{message}");
        }
        other => panic!("expected the command's end, got {other:?}"),
    }
    wait_gone(pids).await;
}

#[tokio::test]
async fn commands_per_user_are_limited() {
    let fx = Fixture::new(Some(ExecLimits {
        max_per_user: 1,
        ..ExecLimits::default()
    }))
    .await;
    let mut first = fx.client("ann").await;
    started(&mut first, "echo ready; sleep 600").await;
    let mut second = fx.client("ann").await;
    assert_eq!(code(run(&mut second, "true").await), ErrorCode::Busy);
    let mut bob = fx.client("bob").await;
    assert_eq!(run(&mut bob, "echo bob").await.unwrap().0, "bob\n");
    drop(first);
    // The slot comes back once the server has seen the disconnect.
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match run(&mut second, "echo again").await {
            Ok((out, _, _)) => break assert_eq!(out, "again\n"),
            Err(e) => assert_eq!(code::<()>(Err(e)), ErrorCode::Busy),
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
