//! Control groups of commands: where the machine lets the server make them, each command gets
//! a `pids` group (its processes and threads together, whoever runs them: `RLIMIT_NPROC`
//! does not bind root, and a server run as root maps its commands to root) and a `memory`
//! group (all its processes' memory together). The server makes the group and sets its
//! limits; the helper moves itself in before it forks; the server removes it afterwards.
//! Works with cgroup v1 hierarchies and with cgroup v2 where the controllers are delegated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A controller the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    /// Processes and threads.
    Pids,
    /// Memory.
    Memory,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
        }
    }

    /// The file that holds the limit, in cgroup v1 and v2.
    fn limit_files(self) -> [&'static str; 2] {
        match self {
            Controller::Pids => ["pids.max", "pids.max"],
            Controller::Memory => ["memory.limit_in_bytes", "memory.max"],
        }
    }
}

/// Where the server may make groups for its commands, per controller.
#[derive(Debug, Default)]
pub(crate) struct Cgroups {
    parents: Vec<(Controller, PathBuf)>,
}

/// A name for a group that no other of this process has: `sockit-exec-PID-N`.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sockit-exec-{}-{n}", std::process::id())
}

impl Cgroups {
    /// Finds, for each controller, the server's own group in it, and keeps those under which
    /// a group can be made with that controller's limit file (tried once, with a group made
    /// and removed again).
    pub(crate) fn find() -> Cgroups {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut parents = Vec::new();
        for controller in [Controller::Pids, Controller::Memory] {
            let found = candidates(&mounts, &own, controller.name())
                .into_iter()
                .find(|dir| usable(dir, controller));
            if let Some(dir) = found {
                sweep(&dir);
                parents.push((controller, dir));
            }
        }
        Cgroups { parents }
    }

    /// Whether commands get a group with `controller`.
    pub(crate) fn has(&self, controller: Controller) -> bool {
        self.parents.iter().any(|(c, _)| *c == controller)
    }

    /// Makes the groups of one command, with at most `processes` tasks and `memory` bytes.
    ///
    /// # Errors
    /// A group cannot be made or limited (those made are removed again).
    pub(crate) fn make(&self, processes: u64, memory: u64) -> std::io::Result<Group> {
        let name = unique_name();
        let mut group = Group { dirs: Vec::new() };
        for (controller, parent) in &self.parents {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir)?;
            group.dirs.push(dir.clone());
            let limit = match controller {
                Controller::Pids => processes,
                Controller::Memory => memory,
            };
            write_limit(&dir, *controller, limit)?;
        }
        Ok(group)
    }
}

/// The groups of one command; removed by [`Group::remove`].
#[derive(Debug)]
pub(crate) struct Group {
    dirs: Vec<PathBuf>,
}

impl Group {
    /// The group folders, for the helper to join.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Removes the groups once their last process is gone (a killed command's processes
    /// take a moment to be reaped); blocks, bounded, so call it off the async workers.
    pub(crate) fn remove(self) {
        for dir in &self.dirs {
            for _ in 0..500 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    // Busy: processes still in it.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

/// Moves the calling process into every group of `dirs` (the helper, before it forks).
///
/// # Errors
/// The kernel refused a move.
pub(crate) fn join(dirs: &[PathBuf]) -> Result<(), String> {
    let pid = std::process::id().to_string();
    for dir in dirs {
        std::fs::write(dir.join("cgroup.procs"), &pid)
            .map_err(|e| format!("cgroups: joining {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The folders where the server's own group of `controller` may be: under each v1
/// hierarchy that has it, and under the v2 hierarchy.
fn candidates(mountinfo: &str, own: &str, controller: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, options) = (right.next(), right.nth(1).unwrap_or(""));
        // The server's path in this hierarchy, from /proc/self/cgroup (`ID:CONTROLLERS:PATH`).
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = match fstype {
                Some("cgroup") if options.split(',').any(|o| o == controller) => {
                    controllers.split(',').any(|c| c == controller)
                }
                Some("cgroup2") => controllers.is_empty(),
                _ => false,
            };
            wanted.then_some(path)
        });
        if let Some(path) = path {
            dirs.push(Path::new(mount_point).join(path.trim_start_matches('/')));
        }
    }
    dirs
}

/// Removes the empty groups that servers gone without cleaning up (killed) left under
/// `parent`: `sockit-exec-PID-N` of a PID that no longer runs.
fn sweep(parent: &Path) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("sockit-exec-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Refused while processes are still in it: left for a later sweep.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Whether a group with `controller`'s limit can be made under `parent`.
fn usable(parent: &Path, controller: Controller) -> bool {
    let dir = parent.join(unique_name());
    if std::fs::create_dir(&dir).is_err() {
        return false;
    }
    let works = write_limit(&dir, controller, 1 << 20).is_ok();
    let _ = std::fs::remove_dir(&dir);
    works
}

/// Writes `limit` to the group's limit file (v1 or v2 name, whichever it has).
fn write_limit(dir: &Path, controller: Controller, limit: u64) -> std::io::Result<()> {
    let [v1, v2] = controller.limit_files();
    let file = if dir.join(v2).exists() { v2 } else { v1 };
    std::fs::write(dir.join(file), limit.to_string())
}
