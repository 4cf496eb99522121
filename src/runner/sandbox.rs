//! The one place a command's process is built: `sh -c` behind `unshare --user --pid`, so
//! that everything the command starts, detached (`setsid`, double forks) or not, lives in a
//! PID namespace that dies with it. Where the machine has no such namespaces, a plain process
//! group, with a warning. Limits that wrap the command (Landlock, rlimits) belong here too.

use std::process::Stdio;
use std::sync::OnceLock;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::{PATH, Spec};

/// How a command's processes are held together; found once per server (see [`sandbox()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// A user and a PID namespace of the command's own: killing the command's process group
    /// kills its namespace's first process, and with it every process the command started,
    /// however it detached.
    PidNamespace,
    /// Only a process group: a job that leaves the group (`setsid`) outlives its command, its
    /// limits and the per-user count.
    ProcessGroup,
}

/// The wrapper shell, run by `unshare` *without* `--fork`: this shell stays in the server's
/// PID namespace while its children go to the new one. Its first child, a `sleep` that only
/// waits, becomes the namespace's PID 1, in the command's process group (where a group kill
/// reaches it and nothing can move it out); when it dies the kernel kills every process left
/// in the namespace (a command that kills it ends only its own processes). The shell then
/// becomes the command's own `sh -c`. So the command's shell is still the server's direct
/// child, its `$$` a pid of the server's namespace, its exit status or signal exact: as PID 1
/// it would ignore signals sent from inside (`kill $$`), and an init between it and the
/// server could only pass on a signal as `128 + N`.
const INIT_THEN_COMMAND: &str = r#"sleep 2147483647 </dev/null >/dev/null 2>&1 & exec sh -c "$1""#;

/// The process for `spec` under `sandbox`, in a process group of its own (its id is the
/// command's pid), with nothing of the server's environment, and stdio pipes.
pub(super) fn command(spec: &Spec<'_>, sandbox: Sandbox) -> tokio::process::Command {
    let mut command = match sandbox {
        Sandbox::PidNamespace => {
            let mut command = tokio::process::Command::new("unshare");
            // `--map-current-user` keeps `id` and file owners as they were outside.
            command.args(["--user", "--map-current-user", "--pid", "--"]);
            command.args(["sh", "-c", INIT_THEN_COMMAND, "sh", spec.command]);
            command
        }
        Sandbox::ProcessGroup => {
            let mut command = tokio::process::Command::new("sh");
            command.arg("-c").arg(spec.command);
            command
        }
    };
    command
        .env_clear()
        .env("PATH", PATH)
        .env("LANG", "C.UTF-8")
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some((name, home)) = spec.user {
        command
            .current_dir(home)
            .env("HOME", home)
            .env("USER", name)
            .env("LOGNAME", name);
    }
    command
}

/// The sandbox commands run in here: [`Sandbox::PidNamespace`] when `unshare` can make the
/// namespaces (tried once, with `true` as the command, on the first call), otherwise
/// [`Sandbox::ProcessGroup`] and a warning in the log that says what that leaves open.
///
/// Blocks for the try (a few milliseconds) on the first call; `sockit serve` makes it at
/// start.
pub fn sandbox() -> Sandbox {
    static FOUND: OnceLock<Sandbox> = OnceLock::new();
    *FOUND.get_or_init(|| match try_namespaces() {
        Ok(()) => {
            info!("exec: commands run in a user and PID namespace of their own (unshare)");
            Sandbox::PidNamespace
        }
        Err(why) => {
            warn!(
                "exec: no user and PID namespaces here ({why}): commands run in a process \
                 group only, so a job that detaches from it (setsid, setsid -f, a double fork \
                 into setsid) outlives its command's timeout, the client's disconnect, the \
                 server's shutdown and the per-user limit"
            );
            Sandbox::ProcessGroup
        }
    })
}

/// Runs `true` the way a command would run, and says why not when it fails.
fn try_namespaces() -> Result<(), String> {
    let spec = Spec {
        command: "true",
        user: None,
        stdin: false,
    };
    let child = command(&spec, Sandbox::PidNamespace)
        .into_std()
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let group = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let output = child.wait_with_output();
    // The namespace's PID 1 outlives `true`, as it outlives any command: end it the same way.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let output = output.map_err(|e| format!("waiting for unshare: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    match stderr.lines().next().map(str::trim) {
        Some(why) if !why.is_empty() => Err(format!("`unshare --user --pid`: {why}")),
        _ => Err(format!("`unshare --user --pid` failed, {}", output.status)),
    }
}
