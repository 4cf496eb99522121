//! A real PostgreSQL server for the tests of `--users postgres://…`: the Debian package
//! `postgresql`'s `initdb` and `postgres`, on 127.0.0.1 and a free port, as the
//! unprivileged `postgres` user when the tests run as root (PostgreSQL refuses root).
//!
//! One server is shared by the whole test run ([`shared`]); each test makes its own database
//! in it ([`PgServer::database`]). A test that stops the server starts its own
//! ([`PgServer::start`]). The server is started with a parent-death signal (SIGINT: fast
//! shutdown) from a thread that lives as long as the test process, so it never outlives the
//! run; a dropped [`PgServer`] stops it by PID at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The password of the `postgres` database user; tests assert it never shows.
pub const PASSWORD: &str = "pg-Secret-7f3a9c";

/// How long the server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running PostgreSQL server of the tests.
pub struct PgServer {
    bin: PathBuf,
    /// The data folder, the socket folder and the password file; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    postmaster: Mutex<Option<Child>>,
}

/// The server the tests share, started on first use. Being static, it is never dropped:
/// the parent-death signal stops it, and the next run removes its folder ([`sweep`]).
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        sweep();
        PgServer::start()
    })
}

/// Removes the folders of earlier runs' shared servers: those whose server is gone and
/// that are over ten minutes old (a younger one may be a server between a stop and a start).
fn sweep() {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("sockit-pg-"));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600));
        let running = std::fs::read_to_string(path.join("db/postmaster.pid"))
            .ok()
            .and_then(|pid| pid.lines().next().map(str::to_owned))
            .is_some_and(|pid| Path::new("/proc").join(pid.trim()).exists());
        if ours && old && !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The folder of the PostgreSQL binaries (the newest installed version).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             install the Debian package `postgresql` (scripts/test.sh does)"
        )
    })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program` run as the `postgres` system user when we are root, with `pdeathsig`.
fn as_postgres(program: &Path, pdeathsig: Option<&str>) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
        ]);
        if let Some(signal) = pdeathsig {
            command.args(["--pdeathsig", signal]);
        }
        command.arg("--").arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Makes a new cluster in a temporary folder and starts it; waits until it accepts
    /// connections.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sockit-pg-")
            .tempdir()
            .unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the PostgreSQL folder");
        }
        let init = as_postgres(&bin.join("initdb"), None)
            .arg("-D")
            .arg(dir.path().join("db"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--no-instructions"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let server = PgServer {
            bin,
            dir,
            port: free_port(),
            postmaster: Mutex::new(None),
        };
        server.resume();
        server
    }

    /// Starts the (stopped) server again on the same port and data; waits until it is ready.
    pub fn resume(&self) {
        let mut command = as_postgres(&self.bin.join("postgres"), Some("INT"));
        command
            .arg("-D")
            .arg(self.dir.path().join("db"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("log"))
                    .unwrap(),
            );
        // The parent-death signal follows the thread that started the process: start it
        // from one that lives as long as the test process.
        let child = spawn_from_keeper(command);
        *self.postmaster.lock().unwrap() = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits for it to exit.
    pub fn stop(&self) {
        // A server a test froze (and then failed) would never act on the shutdown signal.
        self.signal_all(nix::sys::signal::Signal::SIGCONT);
        if let Some(mut child) = self.postmaster.lock().unwrap().take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = child.wait();
        }
    }

    /// Creates a new database `name` and returns its URL, with the password.
    pub fn database(&self, name: &str) -> String {
        let made = as_postgres(&self.bin.join("createdb"), None)
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string(), "-U", "postgres", name])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}?connect_timeout=2",
            self.port
        )
    }

    /// Sends `signal` to the server and every process it started (its backends), by PID:
    /// SIGSTOP makes a server that keeps its connections open and never answers.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        let Some(pid) = self.postmaster.lock().unwrap().as_ref().map(Child::id) else {
            return;
        };
        let mut pids = vec![pid];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // `PID (comm) STATE PPID …`; comm may hold spaces, so split after its `)`.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if parent == Some(pid) {
                pids.push(child);
            }
        }
        for pid in pids {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `command` from a thread that never ends (so that a parent-death signal fires
/// only when the test process exits), and returns the child.
fn spawn_from_keeper(command: Command) -> Child {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut command, answer) in rx {
                let _ = answer.send(command.spawn());
            }
            // Only reached when the sender is dropped, which a static never is.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper.lock().unwrap().send((command, tx)).unwrap();
    rx.recv()
        .unwrap()
        .expect("start postgres (is the Debian package `postgresql` installed?)")
}
