//! Remote commands over the native protocol, with real shells, real process groups and real
//! sockets: streams, exit codes and signals, refusals, limits that kill everything a command
//! started (jobs that detach too), a quiet client that costs nothing, disconnects, stdin,
//! encodings; and `sockit exec` / `sockit shell` against `sockit serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sockit::Error;
use sockit::client::Client;
use sockit::client::command::Sinks;
use sockit::protocol::{ErrorCode, Reply};
use sockit::runner::{ExecLimits, Exit, Sandbox, sandbox};
use sockit::server::ServerConfig;
use sockit::service::Native;
use sockit::service::session::FileService;
use sockit::users::{HashCost, Password, Users};
use tempfile::TempDir;

use crate::common::{TestServer, spawn_tcp};

mod limits;

mod cli;
mod detached;

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
async fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let running: Vec<u32> = pids.iter().copied().filter(|p| !gone(*p)).collect();
        if running.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {running:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pids a command wrote to `*.pid` files in `home` (the shell's, a background job's, and
/// those of jobs that detached).
fn pids(home: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pid") {
            let text = std::fs::read_to_string(&path).unwrap();
            pids.push(text.trim().parse().unwrap());
        }
    }
    pids
}

/// Kills (SIGKILL) the processes of `pids` still running when it drops, so that a failed
/// test leaves no sleeper behind.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !gone(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// Shell code that starts three `sleep 600`s detached from the command, as daemons are:
/// `setsid` in the background, `setsid -f`, and a double fork into `setsid`, each in a session
/// of its own with its stdio away from the command's pipes. Their pids go to `setsid.pid`,
/// `setsid-f.pid` and `forked.pid` in the home before the command goes on.
///
/// A sleeper reads its pid from `/proc/self/stat` and passes it through a fifo: in the
/// sandbox, `$$` of a grandchild is a pid of the command's own PID namespace, while `/proc` is
/// the server's.
macro_rules! detached {
    () => {
        r#"S='read pid rest < /proc/self/stat; echo $pid > "$0.fifo"; exec sleep 600'
rm -f setsid.fifo setsid-f.fifo forked.fifo; mkfifo setsid.fifo setsid-f.fifo forked.fifo
setsid sh -c "$S" setsid </dev/null >/dev/null 2>&1 &
setsid -f sh -c "$S" setsid-f </dev/null >/dev/null 2>&1
( setsid sh -c "$S" forked </dev/null >/dev/null 2>&1 & )
for n in setsid setsid-f forked; do read pid < $n.fifo; echo $pid > $n.pid; done
"#
    };
}

/// Starts three detached jobs (see [`detached!`]), then exits.
const DETACH_THEN_EXIT: &str = concat!(detached!(), "exit 7");

/// Writes its pids (the shell's and a background grandchild's), says `ready`, then waits.
macro_rules! pids_then_wait {
    () => {
        "sleep 600 & echo $! > bg.pid; echo $$ > sh.pid; echo ready; wait"
    };
}

/// [`pids_then_wait!`] with three detached jobs first (five pids in all), where the sandbox
/// catches them; where it cannot (see [`isolated`]) without them.
fn pids_then_wait() -> &'static str {
    if sandbox() == Sandbox::PidNamespace {
        concat!(detached!(), pids_then_wait!())
    } else {
        pids_then_wait!()
    }
}

/// Whether commands run in a PID namespace here; says that `test` is skipped otherwise (the
/// server then warns that detached jobs escape, and so they do).
fn isolated(test: &str) -> bool {
    let isolated = sandbox() == Sandbox::PidNamespace;
    if !isolated {
        eprintln!("{test}: skipped, no user and PID namespaces on this machine");
    }
    isolated
}

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
async fn exec_timeout_kills_everything_the_command_started() {
    // Long enough for the command to start its jobs (and tell their pids) first.
    let fx = Fixture::new(Some(ExecLimits {
        timeout: Duration::from_secs(3),
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    assert_eq!(
        code(run(&mut c, pids_then_wait()).await),
        ErrorCode::Timeout
    );
    let pids = pids(&fx.home("ann"));
    let _left = Leftovers(pids.clone());
    let expected = if sandbox() == Sandbox::PidNamespace {
        5
    } else {
        2
    };
    assert_eq!(pids.len(), expected, "{pids:?}");
    wait_gone(&pids).await;
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
async fn a_client_that_disconnects_takes_everything_its_command_started() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    started(&mut c, pids_then_wait()).await;
    let pids = pids(&fx.home("ann"));
    let _left = Leftovers(pids.clone());
    drop(c);
    wait_gone(&pids).await;
}
