//! Shared helpers: in-process servers on port 0, and the real `sockit` binary as a child
//! process that is killed when its handle drops.

#![allow(dead_code)] // each test module uses its own subset

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sockit::net::{Endpoint, Listener};
use sockit::server::{ServerConfig, Shutdown, TcpService, serve_tcp};
use sockit::service::Native;
use tokio::task::JoinHandle;

/// An in-process server; shut down by [`TestServer::stop`] or aborted on drop.
pub struct TestServer {
    pub endpoint: Endpoint,
    pub shutdown: Shutdown,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Triggers shutdown and waits up to `grace` for connections; returns whether all ended.
    pub async fn stop(mut self, grace: Duration) -> bool {
        let clean = self.shutdown.drain(grace).await;
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        clean
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `service` on 127.0.0.1:0 with `config`.
pub async fn spawn_tcp<S: TcpService>(service: S, config: ServerConfig) -> TestServer {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve_tcp(
        listener,
        Arc::new(service),
        Arc::new(config),
        shutdown.clone(),
    ));
    TestServer {
        endpoint,
        shutdown,
        task: Some(task),
    }
}

/// The native protocol server on 127.0.0.1:0 with default limits.
pub async fn spawn_native() -> TestServer {
    spawn_tcp(Native::new(), ServerConfig::default()).await
}

/// The TCP address of an endpoint (tests only use TCP endpoints here).
pub fn addr(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Tcp(a) => a.clone(),
        Endpoint::Unix(p) => panic!("not a TCP endpoint: {}", p.display()),
    }
}

/// The built `sockit` binary.
pub fn sockit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockit")
}

/// Runs `sockit ARGS` with `stdin` written to its standard input: its output.
pub fn sockit_with_input(args: &[&str], stdin: &str) -> std::process::Output {
    output_with_input(Command::new(sockit_bin()).args(args), stdin)
}

/// Runs `command` with `stdin` written to its standard input: its output.
pub fn output_with_input(command: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
/// A `sockit serve` child process; killed (and reaped) on drop.
pub struct ServerProcess {
    pub child: Child,
    /// Every "sockit: <what> on <addr>" line it printed at start, as (what, addr).
    pub listeners: Vec<(String, String)>,
    /// The native port's TLS fingerprint (`SHA256:…`) from its listener line.
    pub fingerprint: Option<String>,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `sockit serve ARGS` and waits until it has printed `expected` listener lines.
    pub fn start(args: &[&str], expected: usize) -> ServerProcess {
        ServerProcess::start_logging(args, expected, Stdio::null())
    }

    /// As [`ServerProcess::start`], with the server's log (stderr) written to the file `log`.
    pub fn start_logging_to(
        args: &[&str],
        expected: usize,
        log: &std::path::Path,
    ) -> ServerProcess {
        let log = std::fs::File::create(log).expect("create the server log");
        ServerProcess::start_logging(args, expected, Stdio::from(log))
    }

    /// [`ServerProcess::start`] with the server's logs (stderr) going to `logs`.
    pub fn start_logging(args: &[&str], expected: usize, logs: Stdio) -> ServerProcess {
        ServerProcess::start_with(args, expected, logs, &[])
    }

    /// [`ServerProcess::start_logging`] with `env` added to the server's environment.
    pub fn start_with(
        args: &[&str],
        expected: usize,
        logs: Stdio,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut child = Command::new(sockit_bin())
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .expect("spawn sockit serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut listeners = Vec::new();
        let mut fingerprint = None;
        while listeners.len() < expected {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                panic!("sockit serve exited ({status}) before listening");
            }
            if let Some((what, rest)) = line
                .trim()
                .strip_prefix("sockit: ")
                .and_then(|l| l.rsplit_once(" on "))
            {
                // `ADDR`, or `ADDR (TLS SHA256:…)` for the native port.
                let (addr, tls) = match rest.split_once(" (TLS ") {
                    Some((addr, fp)) => (addr, Some(fp.trim_end_matches(')').to_string())),
                    None => (rest, None),
                };
                if tls.is_some() {
                    fingerprint = tls;
                }
                listeners.push((what.to_string(), addr.to_string()));
            }
        }
        ServerProcess {
            child,
            listeners,
            fingerprint,
            stdout,
        }
    }

    /// The environment that makes a `sockit` client trust this server, as a script would:
    /// its certificate's fingerprint, from the listener line.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        self.fingerprint
            .iter()
            .map(|fp| ("SOCKIT_FINGERPRINT", fp.clone()))
            .collect()
    }

    /// The address of the first listener whose description contains `what`.
    pub fn addr(&self, what: &str) -> String {
        self.listeners
            .iter()
            .find(|(w, _)| w.contains(what))
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no `{what}` listener in {:?}", self.listeners))
    }

    /// Resident memory of the server process, in bytes (Linux /proc).
    pub fn rss(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    /// The most resident memory the server process ever had, in bytes (Linux /proc).
    pub fn rss_peak(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        // Sent at once, as a terminal's Ctrl-C is (not by a `kill` process started first).
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        self.child.wait().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic bytes (xorshift from `state`, which must not be 0), for file contents.
pub fn noise_from(state: u64, len: usize) -> Vec<u8> {
    let mut x = state;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
