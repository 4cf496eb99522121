//! Child processes for remote commands: `sh -c` in the exec sandbox ([`Sandbox`]: its own
//! namespaces, Landlock rules, resource limits), in a process group of its own, with a
//! minimal environment, a private temp folder, a wall-clock deadline and an output cap.
//! Everything it started (detached jobs too) is killed when the deadline passes, when the
//! output passes the cap, when the shell exits, and whenever the `Process` handle drops.
//! No sockets here: the native `exec` op streams the pipes, the seed-exec listener buffers them.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

mod access;
mod cgroup;
mod helper;
mod sandbox;
pub use helper::{SANDBOX_FAILED, helper_main};
pub(crate) use sandbox::private_folder;
pub use sandbox::{Confinement, Lack, PRETEND_MISSING, Sandbox, SandboxOptions, decide};

/// The `PATH` every command gets; nothing else is inherited from the server.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Bytes read from a pipe at a time (and so the largest output frame).
pub(crate) const OUTPUT_CHUNK: usize = 64 * 1024;

/// How long, how loud, how big and how many commands may run (`serve --exec-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Wall-clock time before the command (everything it started) is killed (`--exec-timeout`).
    pub timeout: Duration,
    /// Bytes of stdout + stderr together; past this the command is killed (`--exec-max-output`).
    pub max_output: u64,
    /// Commands one user may run at once over the native protocol (`--exec-max-per-user`).
    pub max_per_user: usize,
    /// Address space of each process of a command, in bytes (`RLIMIT_AS`, `--exec-memory`).
    pub memory: u64,
    /// Processes and threads of one command at once (`RLIMIT_NPROC` in the command's own
    /// user namespace, `--exec-processes`).
    pub processes: u64,
    /// Open files of each process (`RLIMIT_NOFILE`, `--exec-open-files`).
    pub open_files: u64,
    /// CPU seconds of each process (`RLIMIT_CPU`, `--exec-cpu-secs`).
    pub cpu_secs: u64,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            timeout: Duration::from_secs(30),
            max_output: 16 << 20,
            max_per_user: 4,
            memory: 512 << 20,
            processes: 64,
            open_files: 256,
            cpu_secs: 60,
        }
    }
}

/// What to run, and for whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec<'a> {
    /// The command line, given to `sh -c`.
    pub(crate) command: &'a str,
    /// The user's name, for `USER` and `LOGNAME` (none for the seed listener).
    pub(crate) user: Option<&'a str>,
    /// The folder the command runs in, as `HOME`, and the only one it may write to besides
    /// its temp folder: the user's home, or the seed listener's scratch folder. Absolute.
    pub(crate) home: &'a Path,
    /// Whether the command gets a stdin pipe (the third value of [`spawn`]); otherwise
    /// `/dev/null`.
    pub(crate) stdin: bool,
}

/// Which output pipe a chunk came from, and how a command ended: wire types.
pub use crate::protocol::ops::{Exit, OutputStream as Stream};

impl Exit {
    fn from_status(status: ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }
    }

    /// The exit status a shell would report: the code, or 128 + the signal.
    pub fn status_code(self) -> u8 {
        let n = match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
        };
        // Exit statuses are 8 bits on Unix; the low byte is what a shell shows.
        (n & 0xff) as u8
    }
}

/// How a command's run ended, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The shell ended by itself.
    Exit(Exit),
    /// The deadline passed; the group was killed.
    Timeout,
    /// The output passed the cap; the group was killed.
    OutputLimit,
}

/// A process group to kill; a copy of the group id, no ownership. In the sandbox the group
/// holds the helper and the namespace's PID 1, so the kill reaches every process of the
/// command.
#[derive(Debug, Clone, Copy)]
struct Group(Option<Pid>);

impl Group {
    fn kill(self) {
        if let Some(pgid) = self.0 {
            // ESRCH (nobody left in the group) is the normal case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// A running command. Dropping it kills the whole process group (and namespace), then
/// removes the command's temp folder.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    group: Group,
    timed_out: Arc<AtomicBool>,
    timer: JoinHandle<()>,
    exit: Option<Exit>,
    tmp: Option<TempDir>,
    cgroup: Option<cgroup::Group>,
}

/// The output pipes of a [`Process`], read together, counted against the output cap.
#[derive(Debug)]
pub(crate) struct Output {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    group: Group,
    left: u64,
    over: bool,
    /// Which pipe is tried first next time, so a chatty one cannot starve the other.
    stderr_first: bool,
}

/// Starts `spec` in `sandbox` within `limits`: the process, its output pipes, and its stdin
/// pipe when `spec.stdin` asked for one.
///
/// # Errors
/// When the temp folder cannot be made, or the helper (or `sh`) cannot be started, or the
/// home is missing.
pub(crate) fn spawn(
    spec: &Spec<'_>,
    limits: &ExecLimits,
    sandbox: &Sandbox,
) -> io::Result<(Process, Output, Option<ChildStdin>)> {
    let tmp = private_folder("exec")?;
    let cgroup = sandbox.group(limits)?;
    let spawned = sandbox
        .command(spec, tmp.path(), limits, cgroup.as_ref())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            if let Some(cgroup) = cgroup {
                cgroup.remove();
            }
            return Err(e);
        }
    };
    // process_group(0): the group id is the child's pid.
    let group = Group(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let timeout = limits.timeout;
    // A task of its own, so the deadline holds even while the caller waits on a slow peer.
    let timer = tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        flag.store(true, Ordering::SeqCst);
        group.kill();
    });
    let output = Output {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        group,
        left: limits.max_output,
        over: false,
        stderr_first: false,
    };
    let stdin = child.stdin.take();
    let process = Process {
        child,
        group,
        timed_out,
        timer,
        exit: None,
        tmp: Some(tmp),
        cgroup,
    };
    Ok((process, output, stdin))
}

impl Process {
    /// Waits for the shell to exit, then kills what is left of its group and namespace
    /// (background and detached jobs), so that the output pipes close.
    ///
    /// # Errors
    /// I/O errors of waiting.
    ///
    /// # Cancel safety
    /// Cancel-safe: it awaits only `Child::wait`, and the result is kept once known.
    pub(crate) async fn wait(&mut self) -> io::Result<Exit> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let exit = Exit::from_status(self.child.wait().await?);
        self.exit = Some(exit);
        self.group.kill();
        Ok(exit)
    }

    /// Kills the whole process group (and namespace) now.
    pub(crate) fn kill(&self) {
        self.group.kill();
    }

    /// How the run ended, given the shell's `exit` and the output it produced.
    pub(crate) fn end(&self, exit: Exit, output: &Output) -> End {
        if output.over {
            End::OutputLimit
        } else if self.timed_out.load(Ordering::SeqCst)
            && exit == Exit::Signal(Signal::SIGKILL as i32)
        {
            End::Timeout
        } else {
            End::Exit(exit)
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.timer.abort();
        self.group.kill();
        // A command may leave many files behind, and its control groups can only go once
        // the kernel has reaped its processes: both off the async workers.
        let (tmp, cgroup) = (self.tmp.take(), self.cgroup.take());
        let clean = move || {
            drop(tmp);
            if let Some(cgroup) = cgroup {
                cgroup.remove();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(clean)),
            Err(_) => clean(),
        }
    }
}

impl Output {
    /// Reads the next chunk from whichever pipe has output, into `buf`; `None` once both
    /// pipes are closed, or once the output passed the cap (the group is then killed and
    /// the rest discarded; the last chunk is cut at the cap).
    ///
    /// # Cancel safety
    /// Cancel-safe: it only polls the pipes, and returns as soon as one yields bytes.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> Option<(Stream, usize)> {
        std::future::poll_fn(|cx| {
            if self.over {
                return Poll::Ready(None);
            }
            self.stderr_first = !self.stderr_first;
            let order = if self.stderr_first {
                [Stream::Stderr, Stream::Stdout]
            } else {
                [Stream::Stdout, Stream::Stderr]
            };
            for stream in order {
                let pipe: Option<Pin<&mut dyn AsyncRead>> = match stream {
                    Stream::Stdout => self.stdout.as_mut().map(|p| Pin::new(p) as _),
                    Stream::Stderr => self.stderr.as_mut().map(|p| Pin::new(p) as _),
                };
                let Some(pipe) = pipe else { continue };
                let mut read = ReadBuf::new(buf);
                match pipe.poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                        let n = read.filled().len();
                        return Poll::Ready(Some((stream, self.count(n))));
                    }
                    // End of the pipe, or a read error: either way nothing more comes.
                    Poll::Ready(_) => self.close(stream),
                    Poll::Pending => {}
                }
            }
            if self.stdout.is_none() && self.stderr.is_none() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Counts `n` new bytes against the cap; returns how many of them may be passed on.
    fn count(&mut self, n: usize) -> usize {
        let n64 = n as u64;
        if n64 <= self.left {
            self.left -= n64;
            return n;
        }
        let keep = self.left as usize; // less than n, so it fits
        self.left = 0;
        self.over = true;
        self.group.kill();
        self.stdout = None;
        self.stderr = None;
        keep
    }

    fn close(&mut self, stream: Stream) {
        match stream {
            Stream::Stdout => self.stdout = None,
            Stream::Stderr => self.stderr = None,
        }
    }
}

/// A command's whole output, buffered (for the seed protocol, which sends the size first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Buffered {
    /// Everything written to stdout (up to the cap).
    pub(crate) stdout: Vec<u8>,
    /// Everything written to stderr (up to the cap, with stdout).
    pub(crate) stderr: Vec<u8>,
    /// How it ended.
    pub(crate) end: End,
}

/// Runs `spec` to its end within `limits`, keeping its output in memory (at most
/// `limits.max_output` bytes of it).
///
/// # Errors
/// When the command cannot be started or waited for.
pub(crate) async fn run_buffered(
    spec: &Spec<'_>,
    limits: &ExecLimits,
    sandbox: &Sandbox,
) -> io::Result<Buffered> {
    let (mut process, mut output, stdin) = spawn(spec, limits, sandbox)?;
    drop(stdin);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let mut exit = None;
    let mut open = true;
    while open || exit.is_none() {
        tokio::select! {
            chunk = output.read(&mut buf), if open => match chunk {
                Some((Stream::Stdout, n)) => stdout.extend_from_slice(&buf[..n]),
                Some((Stream::Stderr, n)) => stderr.extend_from_slice(&buf[..n]),
                None => open = false,
            },
            status = process.wait(), if exit.is_none() => exit = Some(status?),
        }
    }
    let exit = exit.unwrap_or(Exit::Code(-1));
    let end = process.end(exit, &output);
    Ok(Buffered {
        stdout,
        stderr,
        end,
    })
}

#[cfg(test)]
mod tests;
