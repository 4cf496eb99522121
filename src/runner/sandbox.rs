//! The server's side of the exec sandbox: what this machine allows, found once at start
//! ([`Sandbox::start`]), and the process that runs one command in it ([`Sandbox::command`]):
//! the sockit binary as the helper ([`super::helper`]), which builds the namespaces, the
//! Landlock rules and the limits and then runs `sh -c`.
//!
//! Why a helper process and not `pre_exec`: the crate forbids `unsafe`, and a `pre_exec`
//! closure runs in a fork of a multi-threaded server where only async-signal-safe calls are
//! sound, while building Landlock rules allocates and opens files, and the PID namespace
//! needs one more fork (for its PID 1) before the rules go on. The helper is ordinary,
//! single-threaded code with errors it can report, at the cost of one exec of this binary
//! (and one for the namespace's PID 1) per command: see `bench/exec_sandbox.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use super::cgroup::{Cgroups, Controller, Group};
use super::helper::{HELPER_ARG, Layer, OWN_PROCESSES, Plan};
use super::{ExecLimits, PATH, Spec};

/// The environment variable that makes the sandbox pretend a part is missing, for tests and
/// the benchmark only: `landlock`, `namespaces` or `helper`. It can only weaken the sandbox
/// together with `--exec-unconfined`: alone, it makes `serve --allow-exec` refuse to start.
pub const PRETEND_MISSING: &str = "SOCKIT_EXEC_PRETEND_MISSING";

/// What `serve` asks of the sandbox (`--exec-network`, `--exec-unconfined`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Commands may open sockets (`--exec-network on`); off, they get a network namespace
    /// with nothing in it.
    pub network: bool,
    /// Start exec even where the machine lacks the sandbox, with what it has
    /// (`--exec-unconfined`).
    pub unconfined: bool,
}

/// How much of the sandbox commands get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// All of it, or the command does not run: namespaces, Landlock, limits.
    Full,
    /// `--exec-unconfined` on a machine that lacks part of it: each part the machine has.
    Partial,
    /// None: a plain `sh -c` in a process group (a machine where the helper cannot run at
    /// all, with `--exec-unconfined`; and the runner's own tests).
    None,
}

/// How this server runs commands; made once by [`Sandbox::start`].
#[derive(Debug)]
pub struct Sandbox {
    confinement: Confinement,
    /// The sockit binary, run as the helper.
    helper: PathBuf,
    network: bool,
    /// The layer [`PRETEND_MISSING`] names.
    missing: Option<Layer>,
    /// What the machine lacks, when the sandbox is not [`Confinement::Full`].
    lacking: Option<String>,
    /// Where commands get control groups.
    cgroups: Cgroups,
}

impl Sandbox {
    /// Tries the sandbox once (a strict run of `true` through `helper`, the sockit binary)
    /// and decides with [`decide`].
    ///
    /// # Errors
    /// The machine lacks part of the sandbox and `options.unconfined` is off: the message
    /// says what is missing and what to do.
    pub async fn start(helper: PathBuf, options: SandboxOptions) -> Result<Sandbox, String> {
        let missing = std::env::var(PRETEND_MISSING)
            .ok()
            .and_then(|v| serde_json::from_value::<Layer>(serde_json::Value::String(v)).ok());
        let cgroups = tokio::task::spawn_blocking(|| {
            sweep_private_folders();
            Cgroups::find()
        })
        .await
        .unwrap_or_default();
        let mut sandbox = Sandbox {
            confinement: Confinement::Full,
            helper,
            network: options.network,
            missing,
            lacking: None,
            cgroups,
        };
        let probe = match sandbox.probe().await {
            // RLIMIT_NPROC does not bind root (commands of a root server are root), so a
            // root server needs a pids group to keep a fork bomb to its limit.
            Ok(()) if !sandbox.cgroups.has(Controller::Pids) && nix::unistd::getuid().is_root() => {
                Err(Lack {
                    helper_runs: true,
                    why: "processes: no pids control group can be made here, and \
                          RLIMIT_NPROC does not bind a server that runs as root"
                        .into(),
                })
            }
            probe => probe,
        };
        sandbox.confinement = decide(&probe, options.unconfined)?;
        sandbox.lacking = probe.err().map(|lack| lack.why);
        Ok(sandbox)
    }

    /// No sandbox: `sh -c` in a process group of its own, with the environment and the
    /// private temp folder, but no namespaces, Landlock or limits besides time and output.
    pub fn none() -> Sandbox {
        Sandbox {
            confinement: Confinement::None,
            helper: PathBuf::new(),
            network: true,
            missing: None,
            lacking: Some("no sandbox asked for".into()),
            cgroups: Cgroups::default(),
        }
    }

    /// How much of the sandbox commands get.
    pub fn confinement(&self) -> Confinement {
        self.confinement
    }

    /// What the machine lacks, when commands do not get all of the sandbox.
    pub fn lacking(&self) -> Option<&str> {
        self.lacking.as_deref()
    }

    /// Whether commands may use the network.
    pub fn network(&self) -> bool {
        self.network
    }

    /// Runs `true` in a strict sandbox, as a command would run; the helper's first line of
    /// stderr when it fails.
    async fn probe(&self) -> Result<(), Lack> {
        let lack = |helper_runs, why: String| Lack { helper_runs, why };
        if self.missing == Some(Layer::Helper) {
            let why = format!("helper: pretended missing ({PRETEND_MISSING})");
            return Err(lack(false, why));
        }
        let home = tempfile::tempdir()
            .map_err(|e| lack(false, format!("a folder to try the sandbox in: {e}")))?;
        let spec = Spec {
            command: "true",
            user: None,
            home: home.path(),
            stdin: false,
        };
        let limits = ExecLimits::default();
        let group = self
            .group(&limits)
            .map_err(|e| lack(true, format!("cgroups: {e}")))?;
        let mut command = self.command(&spec, home.path(), &limits, group.as_ref());
        command.kill_on_drop(true);
        let run = command.output();
        let output = tokio::time::timeout(Duration::from_secs(30), run).await;
        if let Some(group) = group {
            let _ = tokio::task::spawn_blocking(move || group.remove()).await;
        }
        let output = match output {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                let why = format!("cannot run the helper {}: {e}", self.helper.display());
                return Err(lack(false, why));
            }
            Err(_) => return Err(lack(false, "the helper did not finish in 30 s".into())),
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = match stderr.lines().next().map(str::trim) {
            Some(why) if !why.is_empty() => why
                .trim_start_matches("sockit: ")
                .trim_start_matches("exec sandbox: ")
                .to_string(),
            _ => format!("the helper failed ({})", output.status),
        };
        // Only the helper's own failure status means it ran and found a part missing.
        let ran = output.status.code() == Some(i32::from(super::helper::SANDBOX_FAILED));
        Err(lack(ran, why))
    }

    /// The control groups of one command within `limits`, where the machine has them (and
    /// the sandbox is on).
    ///
    /// # Errors
    /// A group cannot be made.
    pub(super) fn group(&self, limits: &ExecLimits) -> std::io::Result<Option<Group>> {
        if self.confinement == Confinement::None || !self.cgroups.has(Controller::Pids) {
            return Ok(None);
        }
        let tasks = limits.processes.saturating_add(OWN_PROCESSES);
        self.cgroups.make(tasks, limits.memory).map(Some)
    }

    /// The process for `spec` with `tmp` as its private temp folder, in a process group of
    /// its own (its id is the helper's pid, or the shell's without a helper), with nothing of
    /// the server's environment, and stdio pipes.
    pub(super) fn command(
        &self,
        spec: &Spec<'_>,
        tmp: &Path,
        limits: &ExecLimits,
        group: Option<&Group>,
    ) -> tokio::process::Command {
        let mut command = match self.confinement {
            Confinement::None => {
                let mut command = tokio::process::Command::new("/bin/sh");
                command.arg("-c").arg(spec.command);
                command
            }
            Confinement::Full | Confinement::Partial => {
                let plan = Plan {
                    home: spec.home.to_path_buf(),
                    tmp: tmp.to_path_buf(),
                    memory: limits.memory,
                    processes: limits.processes,
                    open_files: limits.open_files,
                    cpu_secs: limits.cpu_secs,
                    network: self.network,
                    strict: self.confinement == Confinement::Full,
                    cgroups: group.map(|g| g.dirs().to_vec()).unwrap_or_default(),
                    missing: self.missing,
                };
                let plan = serde_json::to_string(&plan).unwrap_or_default();
                let mut command = tokio::process::Command::new(&self.helper);
                command.arg(HELPER_ARG).arg(plan).arg(spec.command);
                command
            }
        };
        command
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", spec.home)
            .env("TMPDIR", tmp)
            .current_dir(spec.home)
            .stdin(if spec.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(name) = spec.user {
            command.env("USER", name).env("LOGNAME", name);
        }
        command
    }

    /// The read-only path of the sandbox under which `path` lies, if any (a data folder or TLS
    /// key there would be readable by every command); `None` without Landlock.
    pub fn exposes(&self, path: &Path) -> Option<PathBuf> {
        match self.confinement {
            Confinement::Full | Confinement::Partial => super::access::exposed_by(path),
            Confinement::None => None,
        }
    }
}

/// A new folder only the server's user may enter, in the system's temp folder:
/// `sockit-WHAT-PID-XXXXXX`, PID being the server's, so that [`sweep_private_folders`] can
/// tell those of a server that is gone.
///
/// # Errors
/// The folder cannot be made.
pub(crate) fn private_folder(what: &str) -> std::io::Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("sockit-{what}-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// Removes the private folders ([`private_folder`]) of servers that were killed before they
/// could remove them.
fn sweep_private_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("sockit-"))
            .and_then(|n| n.split_once('-'))
            .filter(|(what, _)| ["exec", "seed"].contains(what))
            .and_then(|(_, rest)| rest.split('-').next()?.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What a try of the sandbox found missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lack {
    /// Whether the helper ran at all (it can then apply the parts the machine has).
    pub helper_runs: bool,
    /// What is missing, as the helper said it.
    pub why: String,
}

/// Whether exec may start, and with how much of the sandbox, given the outcome of the try
/// (`probe`) and `--exec-unconfined`.
///
/// # Errors
/// Part of the sandbox is missing and `unconfined` is off: the message names it.
pub fn decide(probe: &Result<(), Lack>, unconfined: bool) -> Result<Confinement, String> {
    match probe {
        Ok(()) => Ok(Confinement::Full),
        Err(lack) if !unconfined => Err(format!(
            "exec needs its sandbox, and this machine lacks part of it ({}); without it a \
             command could read and change every user's files, users.db and the TLS key. \
             Start with --exec-unconfined to run commands with only what the machine allows",
            lack.why
        )),
        Err(lack) if lack.helper_runs => Ok(Confinement::Partial),
        Err(_) => Ok(Confinement::None),
    }
}
