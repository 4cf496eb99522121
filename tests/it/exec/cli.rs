//! `sockit exec` and `sockit shell`'s `exec` as a user runs them, against a real
//! `sockit serve --allow-exec` process: statuses, signals, stdin, encodings, refusals, Ctrl-C,
//! the server's memory while 200 MB stream through it, and its CPU while a client says
//! nothing past the idle timeout.

use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sockit::client::Client;
use sockit::client::command::Sinks;
use sockit::runner::Exit;
use tempfile::TempDir;

use super::{
    DETACHED, HANG_GUARD, Leftovers, add_users, mark, marked, marks_then_wait, run, running_in,
};
use crate::common::{ServerProcess, sockit_bin};

/// A `sockit serve` process with users ann and bob, and its data folder; `extra` are more
/// flags (`--allow-exec`, seed listeners).
pub(super) fn serve(extra: &[&str]) -> (ServerProcess, TempDir) {
    let data = tempfile::tempdir().unwrap();
    add_users(data.path());
    let mut args = vec!["--listen", "127.0.0.1:0", "--data"];
    args.push(data.path().to_str().unwrap());
    args.extend_from_slice(extra);
    let listeners = 1 + extra.iter().filter(|a| a.starts_with("--seed-")).count();
    (ServerProcess::start(&args, listeners), data)
}

/// Runs `sockit ARGS` as ann with `input` on stdin and waits (bounded) for it.
fn sockit(server: &ServerProcess, args: &[&str], input: &[u8]) -> Output {
    let addr = server.addr("native");
    let mut child = Command::new(sockit_bin())
        .args([args[0], "-s", &addr, "-u", "ann"])
        .args(&args[1..])
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", "pw-ann")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn sockit_exec_passes_on_streams_status_signals_stdin_and_encodings() {
    let (server, _data) = serve(&["--allow-exec"]);
    let out = sockit(&server, &["exec", "echo hi; echo oops >&2; exit 3"], b"");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        (&out.stdout[..], &out.stderr[..]),
        (&b"hi\n"[..], &b"oops\n"[..])
    );
    let out = sockit(&server, &["exec", "kill", "-TERM", "$$"], b"");
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(out.stderr.is_empty());
    let out = sockit(&server, &["exec", "wc -l"], b"a\nb\n");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    // 你好 in GBK, as a Windows server in China would print it.
    let gbk = r"printf '\304\343\272\303\n'";
    let out = sockit(&server, &["exec", "--encoding", "gbk", gbk], b"");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "你好\n");
    let out = sockit(&server, &["exec", gbk], b"");
    assert_eq!(out.stdout, b"\xc4\xe3\xba\xc3\n");
}

#[test]
fn sockit_exec_is_refused_with_a_clear_line() {
    let (server, _data) = serve(&[]);
    let out = sockit(&server, &["exec", "true"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.starts_with("sockit: ") && err.contains("[exec_disabled]"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let (server, _data) = serve(&["--allow-exec"]);
    let out = Command::new(sockit_bin())
        .args(["exec", "-s", &server.addr("native"), "-u", "ann", "true"])
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("[auth_failed]"), "{err}");
}

#[test]
fn ctrl_c_on_sockit_exec_kills_the_remote_process_group() {
    let (server, data) = serve(&["--allow-exec"]);
    let (mark, home) = (mark(), data.path().join("homes/ann"));
    let _left = Leftovers {
        mark: mark.clone(),
        home: home.clone(),
    };
    let mut child = Command::new(sockit_bin())
        .args(["exec", "-s", &server.addr("native"), "-u", "ann"])
        .envs(server.client_env())
        .arg(marks_then_wait(&mark))
        .env("SOCKIT_PASSWORD", "pw-ann")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    wait_until("the jobs run", || marked(&mark).len() == DETACHED + 1);
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(!child.wait().unwrap().success());
    wait_until("nothing left", || {
        marked(&mark).is_empty() && running_in(&home).is_empty()
    });
}

/// Waits (bounded, blocking) until `done()`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sockit_exec_into_a_closed_pipe_ends_quietly_and_so_does_the_command() {
    let (server, data) = serve(&["--allow-exec"]);
    let mut child = Command::new(sockit_bin())
        .args(["exec", "-s", &server.addr("native"), "-u", "ann"])
        .envs(server.client_env())
        .arg("exec yes")
        .env("SOCKIT_PASSWORD", "pw-ann")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `sockit exec yes | head -c 4`: read a little, then close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"y\ny\n");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = data.path().join("homes/ann");
    wait_until("nothing left", || running_in(&home).is_empty());
}

#[test]
fn shell_exec_runs_in_the_remote_folder() {
    let (server, data) = serve(&["--allow-exec"]);
    let script = b"mkdir 'my dir'\ncd 'my dir'\nexec pwd\nexec exit 4\nls\n";
    let out = sockit(&server, &["shell"], script);
    let home = std::fs::canonicalize(data.path().join("homes/ann")).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}/my dir\n", home.display())),
        "{stdout}"
    );
    // A command that fails stops the script, as any failing line does.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 4"), "{err}");
}

/// Counts what it is given and samples the server's memory as the bytes flow; a little
/// slow on purpose, so that the server would have to buffer if it did not wait.
struct Meter<'a> {
    server: &'a ServerProcess,
    bytes: u64,
    next_sample: u64,
    max_rss: u64,
}

impl tokio::io::AsyncWrite for Meter<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes += b.len() as u64;
        if self.bytes >= self.next_sample {
            self.next_sample += 4 << 20;
            self.max_rss = self.max_rss.max(self.server.rss());
            std::thread::sleep(Duration::from_millis(2));
        }
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn streaming_200_mb_of_output_keeps_the_server_small() {
    let (server, _data) = serve(&["--allow-exec", "--exec-max-output", "1GB"]);
    let endpoint = server.addr("native").parse().unwrap();
    let mut c = Client::connect(&endpoint).await.unwrap();
    c.login("ann", "pw-ann").await.unwrap();
    let mut meter = Meter {
        server: &server,
        bytes: 0,
        next_sample: 0,
        max_rss: 0,
    };
    let mut err = Vec::new();
    let sinks = Sinks {
        stdout: &mut meter,
        stderr: &mut err,
        encoding: None,
    };
    let exit = c.exec("head -c 200000000 /dev/zero", sinks).await.unwrap();
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(meter.bytes, 200_000_000);
    eprintln!(
        "server VmRSS peak while streaming 200 MB: {} KiB",
        meter.max_rss >> 10
    );
    assert!(
        meter.max_rss < 100 << 20,
        "server RSS {} bytes",
        meter.max_rss
    );
}

/// CPU time (user + system) process `pid` has used, from `/proc/PID/stat` (in clock ticks of
/// 1/100 s, the `USER_HZ` Linux reports them in).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn a_quiet_client_past_the_idle_timeout_costs_the_server_no_cpu() {
    let (server, _data) = serve(&["--allow-exec", "--idle-timeout", "1"]);
    let endpoint = server.addr("native").parse().unwrap();
    let mut c = Client::connect(&endpoint).await.unwrap();
    c.login("ann", "pw-ann").await.unwrap();
    let pid = server.child.id();
    let (cpu, started) = (cpu_time(pid), Instant::now());
    // The client sends nothing while the command runs four idle timeouts long.
    let got = run(&mut c, "sleep 4; echo done").await.unwrap();
    let (used, wall) = (cpu_time(pid) - cpu, started.elapsed());
    eprintln!("the server used {used:?} of CPU over the command's {wall:?}");
    assert_eq!(got, ("done\n".into(), String::new(), Exit::Code(0)));
    // A bound on work, not on speed: a server that spins uses most of the wall time.
    assert!(
        used * 10 < wall * 3,
        "the server used {used:?} of CPU over {wall:?}"
    );
    // The connection goes on.
    assert_eq!(&c.echo(b"after").await.unwrap()[..], b"after");
}
