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
use sockit::runner::{ExecLimits, Exit, Sandbox, SandboxOptions};
use sockit::server::ServerConfig;
use sockit::service::Native;
use sockit::service::session::FileService;
use sockit::users::{HashCost, Password, Users};
use tempfile::TempDir;

use crate::common::{TestServer, sockit_bin, spawn_tcp};

mod limits;

mod cli;
mod confined;
mod degraded;
mod detached;
mod resources;

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

/// An in-process server; `limits: None` runs it without `--allow-exec`. Its commands run in
/// the whole sandbox, with the sockit binary as the helper (the test binary cannot be one).
struct Fixture {
    dir: TempDir,
    server: TestServer,
}

impl Fixture {
    async fn new(limits: Option<ExecLimits>) -> Fixture {
        Fixture::with_sandbox(limits, SandboxOptions::default()).await
    }

    async fn with_sandbox(limits: Option<ExecLimits>, options: SandboxOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        add_users(dir.path());
        let users = Users::open_with(dir.path(), HashCost::Minimal).unwrap();
        let mut native = Native::with_files(Arc::new(FileService::with_users(users)));
        if let Some(limits) = limits {
            let sandbox = Sandbox::start(sockit_bin().into(), options).await;
            let sandbox = sandbox.expect("this machine has the exec sandbox");
            native = native.with_exec(limits, Arc::new(sandbox));
        }
        let server = spawn_tcp(native, ServerConfig::default()).await;
        Fixture { dir, server }
    }

    fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("homes").join(user)
    }

    /// A fresh [`mark`] for a command of `user`, and the guard that kills what is left of it.
    fn mark(&self, user: &str) -> (String, Leftovers) {
        let mark = mark();
        let left = Leftovers {
            mark: mark.clone(),
            home: self.home(user),
        };
        (mark, left)
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

/// The running processes (not zombies) for which `pick(pid)` holds, from the server's side.
fn running(pick: impl Fn(&Path) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if pick(&entry.path()) && !gone(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The processes that have `arg` as one of their arguments. A command sees the pids of its own
/// PID namespace, not the server's: it marks the processes to find with an argument instead
/// (`sleep MARK`, see [`mark`]).
fn marked(arg: &str) -> Vec<u32> {
    running(|proc| {
        std::fs::read(proc.join("cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
    })
}

/// The processes whose current folder is `dir`: every process of a command that did not
/// change folder, the sandbox's helper and PID 1 among them.
fn running_in(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    running(|proc| std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd == dir))
}

/// A `sleep` duration no other command uses (600 s and a unique fraction), to mark
/// processes: `sleep MARK`.
fn mark() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("600.{}{n:03}", std::process::id())
}

/// Waits (bounded) until `pids()` finds exactly `n` processes, letting in-process servers run.
async fn wait_count(what: &str, n: usize, pids: impl Fn() -> Vec<u32>) {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let found = pids();
        if found.len() == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} processes, not {n}: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills (SIGKILL) what is left of a command when it drops (processes marked with its mark
/// or running in its home), so that a failed test leaves no sleeper behind.
struct Leftovers {
    mark: String,
    home: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mut pids = marked(&self.mark);
        if self.home.exists() {
            pids.extend(running_in(&self.home));
        }
        kill("-KILL", &pids);
    }
}

/// Sends `signal` (`-TERM`, `-KILL`) to `pids`; those already gone are no error.
fn kill(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
}

/// Shell code that starts four `sleep MARK`s detached from the command, as daemons are:
/// `setsid` in the background, `setsid -f`, a double fork into `setsid`, each in a session of
/// its own, and one in a process group of its own (Python's `setpgid`), all with their stdio
/// away from the command's pipes. It goes on once each has started (a fifo in the home).
fn detach(mark: &str) -> String {
    format!(
        r#"S='echo > "$0.fifo"; exec sleep {mark}'
rm -f setsid.fifo setsid-f.fifo forked.fifo pgrp.fifo
mkfifo setsid.fifo setsid-f.fifo forked.fifo pgrp.fifo
setsid sh -c "$S" setsid </dev/null >/dev/null 2>&1 &
setsid -f sh -c "$S" setsid-f </dev/null >/dev/null 2>&1
( setsid sh -c "$S" forked </dev/null >/dev/null 2>&1 & )
python3 -c "import os; os.setpgid(0, 0); open('pgrp.fifo', 'w').write('\n'); os.execvp('sleep', ['sleep', '{mark}'])" </dev/null >/dev/null 2>&1 &
for n in setsid setsid-f forked pgrp; do read x < $n.fifo; done
"#
    )
}

/// The jobs of [`detach`].
const DETACHED: usize = 4;

/// Starts the detached jobs of [`detach`], then exits 7.
fn detach_then_exit(mark: &str) -> String {
    detach(mark) + "exit 7"
}

/// Starts the detached jobs of [`detach`] and a background `sleep MARK` (five marked
/// processes in all), says `ready`, then waits.
fn marks_then_wait(mark: &str) -> String {
    detach(mark) + &format!("sleep {mark} & echo ready; wait")
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
    // Long enough for the command to start its jobs first.
    let fx = Fixture::new(Some(ExecLimits {
        timeout: Duration::from_secs(3),
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    let (mark, _left) = fx.mark("ann");
    // The jobs are seen running before the deadline, and gone after it.
    let command = marks_then_wait(&mark);
    let (ran, ()) = tokio::join!(
        run(&mut c, &command),
        wait_count("started", DETACHED + 1, || marked(&mark))
    );
    assert_eq!(code(ran), ErrorCode::Timeout);
    wait_ended(&mark, &fx.home("ann")).await;
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
    let (mark, _left) = fx.mark("ann");
    started(&mut c, &marks_then_wait(&mark)).await;
    wait_count("started", DETACHED + 1, || marked(&mark)).await;
    drop(c);
    wait_ended(&mark, &fx.home("ann")).await;
}

/// Waits (bounded) until nothing marked `mark` runs, and nothing in `home` (the helper and
/// PID 1 of the sandbox included).
async fn wait_ended(mark: &str, home: &Path) {
    wait_count("left running", 0, || marked(mark)).await;
    wait_count("left in the home", 0, || running_in(home)).await;
}
