//! The sandbox's own processes: the sockit binary run by the server as
//! `sockit __sandbox PLAN COMMAND`, single-threaded and before any runtime, and its child
//! `sockit __sandbox-init`. No sockets, no logging; a failure is one line on the command's
//! stderr (the binary prints it) and exit status [`SANDBOX_FAILED`].
//!
//! The helper, in this order:
//! 0. joins the command's control groups (made and limited by the server), if any;
//! 1. `unshare`s a user, PID and mount namespace (and a network namespace when the network is
//!    off), mapping the server's uid and gid to themselves;
//! 2. starts the namespace's PID 1, `__sandbox-init`, which mounts a fresh `/proc` (showing
//!    the command's processes only), says so, then reaps orphans until the helper is gone;
//! 3. restricts itself with Landlock ([`super::access`]) and the resource limits;
//! 4. runs `/bin/sh -c COMMAND` as its child (PID 2 of the namespace, so `kill $$` works),
//!    waits for it, and ends as it ended: its exit code, or its signal raised on itself.
//!
//! Its environment, folder and stdio are the command's, set by the server.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, Signal, raise};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{getgid, getuid};
use serde::{Deserialize, Serialize};

/// The first argument that makes the sockit binary the sandbox helper.
pub(crate) const HELPER_ARG: &str = "__sandbox";
/// The first argument that makes it the sandbox's PID 1.
const INIT_ARG: &str = "__sandbox-init";
/// The exit status of a command that never ran because its sandbox could not be built (as
/// `env`, `chroot` and container runtimes use 125 for their own failures).
pub const SANDBOX_FAILED: u8 = 125;
/// Tasks of the sandbox itself in the command's user namespace (the helper, and its PID 1
/// with the thread that watches the lifeline), added to the process limit so that the
/// command gets the number asked for.
pub(crate) const OWN_PROCESSES: u64 = 3;

/// Parts of the sandbox (for the test hook that pretends one is missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Layer {
    /// The Landlock file system (and network) rules.
    Landlock,
    /// The user, PID, mount and network namespaces.
    Namespaces,
    /// The helper itself: commands run as a plain `sh -c`.
    Helper,
}

/// What the helper builds around one command; the server passes it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// The command's home: read, written, run from.
    pub(crate) home: PathBuf,
    /// The command's private temp folder (`TMPDIR`).
    pub(crate) tmp: PathBuf,
    /// `RLIMIT_AS` of every process, in bytes.
    pub(crate) memory: u64,
    /// Processes (and threads) of the command at once (`RLIMIT_NPROC` in its user namespace).
    pub(crate) processes: u64,
    /// `RLIMIT_NOFILE` of every process.
    pub(crate) open_files: u64,
    /// `RLIMIT_CPU` of every process, in seconds.
    pub(crate) cpu_secs: u64,
    /// Whether the command may use the network (otherwise it gets an empty network namespace).
    pub(crate) network: bool,
    /// Every layer or no command (otherwise each layer only where the machine has it).
    pub(crate) strict: bool,
    /// Control groups to join first (their limits set by the server), if the machine has them.
    pub(crate) cgroups: Vec<PathBuf>,
    /// A layer to treat as missing (the test hook of [`super::sandbox`]).
    pub(crate) missing: Option<Layer>,
}

/// Runs this process as the sandbox helper or its PID 1 when `args` (the process's own,
/// program name first) say so; `None` otherwise.
///
/// # Errors
/// What kept the sandbox from being built, as one line; the command did not run.
pub fn helper_main(args: &[OsString]) -> Option<Result<ExitCode, String>> {
    match args.get(1)?.to_str()? {
        HELPER_ARG => Some(helper(&args[2..])),
        INIT_ARG => Some(Ok(init())),
        _ => None,
    }
}

/// The helper: `PLAN COMMAND`.
fn helper(args: &[OsString]) -> Result<ExitCode, String> {
    let [plan, command] = args else {
        return Err("usage: sockit __sandbox PLAN COMMAND".into());
    };
    let plan: Plan = plan
        .to_str()
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or("the plan is not valid JSON")?;
    close_inherited();
    // First, so that every process of the command is counted.
    if let Err(e) = super::cgroup::join(&plan.cgroups)
        && plan.strict
    {
        return Err(e);
    }
    let mut init = match plan.layer(Layer::Namespaces, || namespaces(&plan))? {
        true => Some(Init::start(plan.strict)?),
        false => None,
    };
    plan.layer(Layer::Landlock, || super::access::restrict(&plan))?;
    limits(&plan, init.is_some())?;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .status()
        .map_err(|e| format!("starting /bin/sh: {e}"))?;
    if let Some(init) = init.take() {
        init.stop();
    }
    Ok(mirror(status))
}

impl Plan {
    /// Builds a layer under this plan: its error in strict mode, `false` (not in effect) when
    /// best effort lets it go, and a pretended failure, without trying, for the test hook's
    /// layer.
    fn layer(
        &self,
        layer: Layer,
        build: impl FnOnce() -> Result<(), String>,
    ) -> Result<bool, String> {
        let outcome = match self.missing {
            Some(missing) if missing == layer => Err(format!(
                "{}: pretended missing (SOCKIT_EXEC_PRETEND_MISSING)",
                layer.name()
            )),
            _ => build(),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(e) if self.strict => Err(e),
            Err(_) => Ok(false),
        }
    }
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Landlock => "landlock",
            Layer::Namespaces => "namespaces",
            Layer::Helper => "helper",
        }
    }
}

/// Closes every descriptor but stdin, stdout and stderr: whatever the server inherited
/// without close-on-exec and passed on would be open to the command, Landlock or not (it
/// checks opens, not descriptors already open).
fn close_inherited() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    // The folder's own descriptor is in the list, and closed already (EBADF).
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// Folders of the machine's UNIX sockets (the Docker daemon's, D-Bus, systemd's) and shared
/// memory, hidden under an empty file system of the command's own: Landlock (before ABI 9)
/// does not check `connect` to a socket file, and the network namespace covers only the
/// abstract ones.
const HIDDEN: &[&str] = &["/run", "/var/run", "/dev/shm"];

/// New user, PID and mount namespaces (and network, unless the plan allows it): the
/// server's ids mapped to themselves, mounts private to the namespace, [`HIDDEN`] folders
/// hidden (those that do not hold the home or temp folder). The helper's next child becomes
/// the new PID namespace's PID 1.
fn namespaces(plan: &Plan) -> Result<(), String> {
    let (uid, gid) = (getuid(), getgid());
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    if !plan.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("namespaces: unshare({flags:?}): {e}"))?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| format!("namespaces: writing {file}: {e}"))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    // Nothing mounted here (the fresh /proc) shows outside.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("namespaces: making mounts private: {e}"))?;
    for dir in HIDDEN {
        let Ok(real) = std::fs::canonicalize(dir) else {
            continue;
        };
        // `/var/run` is mostly a link to `/run`, hidden already.
        if real.as_os_str() != *dir || plan.home.starts_with(&real) || plan.tmp.starts_with(&real) {
            continue;
        }
        mount(
            Some("sockit-hidden"),
            &real,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            Some("size=4k,mode=0755"),
        )
        .map_err(|e| format!("namespaces: hiding {dir}: {e}"))?;
    }
    Ok(())
}

/// The PID namespace's first process, and the pipe whose end tells it to go.
struct Init {
    child: Child,
    /// Never written: when it closes (the helper ended, however), init exits, and the
    /// kernel kills every process left in the namespace.
    lifeline: Option<ChildStdin>,
}

impl Init {
    /// Starts `sockit __sandbox-init` and waits until it has mounted `/proc` (or, unless
    /// `strict`, failed to: the command then sees the server's `/proc`, where Landlock still
    /// keeps it from other processes' files).
    fn start(strict: bool) -> Result<Init, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding the sockit binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg(INIT_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("namespaces: starting the PID 1: {e}"))?;
        let lifeline = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let init = Init { child, lifeline };
        match line.trim_end().split_once(' ') {
            None if line == "ready\n" => Ok(init),
            Some(("no-proc", _)) if !strict => Ok(init),
            Some(("no-proc", why)) => {
                init.stop();
                Err(format!("namespaces: mounting a fresh /proc: {why}"))
            }
            _ => {
                init.stop();
                Err("namespaces: the PID 1 did not start".into())
            }
        }
    }

    /// Ends the namespace: closes the lifeline and waits for init (the kernel has killed
    /// every other process of the namespace by the time it is reaped).
    fn stop(mut self) {
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}

/// The resource limits of every process of the command, the helper's included. The process
/// limit counts in the command's own user namespace, so it only applies with one (without,
/// it would count every process of the server's user).
fn limits(plan: &Plan, own_user_namespace: bool) -> Result<(), String> {
    let set = |resource: Resource, soft: u64, hard: u64| {
        setrlimit(resource, soft, hard).map_err(|e| format!("limits: {resource:?}: {e}"))
    };
    set(Resource::RLIMIT_AS, plan.memory, plan.memory)?;
    set(Resource::RLIMIT_NOFILE, plan.open_files, plan.open_files)?;
    // SIGXCPU at the limit (a shell reports it), SIGKILL a second later.
    set(
        Resource::RLIMIT_CPU,
        plan.cpu_secs,
        plan.cpu_secs.saturating_add(1),
    )?;
    // No core files in the home, nor of the helper when it passes a signal on.
    set(Resource::RLIMIT_CORE, 0, 0)?;
    if own_user_namespace {
        let n = plan.processes.saturating_add(OWN_PROCESSES);
        set(Resource::RLIMIT_NPROC, n, n)?;
    }
    Ok(())
}

/// Ends the helper as the shell ended: its exit code, or its signal raised on the helper
/// itself, so that the server reads the same status it would from the shell.
fn mirror(status: ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let Some(signal) = status.signal() else {
        return ExitCode::FAILURE;
    };
    if let Ok(sig) = Signal::try_from(signal) {
        // Twice: the first raise of SIGSEGV or SIGBUS lands in std's stack-overflow handler,
        // which puts the default action back and returns.
        let _ = raise(sig);
        let _ = raise(sig);
    }
    // Still here: a signal this process ignores (Rust ignores SIGPIPE), told as a shell would.
    ExitCode::from((128 + signal).clamp(0, 255) as u8)
}

/// `sockit __sandbox-init`, the PID namespace's first process: mounts `/proc` for the
/// namespace, reports `ready` (or `no-proc WHY`) on stdout, then reaps the orphans the
/// namespace hands it until its stdin (the helper's lifeline) closes. Its exit ends the
/// namespace.
fn init() -> ExitCode {
    // Blocked before anything can exit, so that no SIGCHLD is lost; `SigSet::wait` takes
    // them one by one.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if chld.thread_block().is_err() {
        return ExitCode::FAILURE;
    }
    let report = match mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        Ok(()) => "ready\n".to_string(),
        Err(e) => format!("no-proc {e}\n"),
    };
    let mut out = std::io::stdout();
    if out
        .write_all(report.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    loop {
        if chld.wait().is_err() {
            continue;
        }
        // One SIGCHLD may stand for several exits.
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }
}
