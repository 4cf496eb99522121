//! What a command may touch, as Landlock rules that the helper puts on itself before it runs
//! the command (Landlock checks the file a path resolves to, so `..`, symlinks and
//! `/proc/PID/root` lead nowhere new). Everything not granted here is refused by the kernel,
//! root or not: other homes, the data folder and its `users.db`, the TLS key, `/etc/shadow`.
//!
//! Landlock cannot take a file back out of a granted folder, so `/etc` is granted file by
//! file (what programs read, no secret), and the server refuses to start exec when its own
//! files lie under a granted path ([`exposed_by`]).

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::helper::Plan;

/// The Landlock version whose rights a strict sandbox needs: ABI 3 is the first to handle
/// `truncate`, without which a command could empty any file it can name (`users.db`).
const REQUIRED: ABI = ABI::V3;
/// The newest version these rules were tested on; its extra rights (device ioctls, TCP
/// ports, signal and abstract-socket scopes) are used where the kernel has them.
const TESTED: ABI = ABI::V7;

/// Programs and libraries: read and run.
const PROGRAMS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// What programs read in `/etc` and holds no secret: the loader's cache, names of users,
/// groups, hosts and services, the time zone, certificates (not `ssl/private`), language
/// settings. Not `/etc` itself: `shadow`, `gshadow`, `ssh/` and anything a later package
/// puts there stay refused. Entries starting with `python3` or `perl` are their
/// interpreters' site settings.
const ETC: &[&str] = &[
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/debian_version",
    "/etc/gai.conf",
    "/etc/gitconfig",
    "/etc/group",
    "/etc/host.conf",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/inputrc",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ld.so.preload",
    "/etc/locale.alias",
    "/etc/localtime",
    "/etc/magic",
    "/etc/magic.mime",
    "/etc/mime.types",
    "/etc/networks",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/passwd",
    "/etc/perl",
    "/etc/pki/ca-trust/extracted",
    "/etc/pki/tls/certs",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/terminfo",
    "/etc/timezone",
];

/// Devices a command may open: read and write (and truncate, as `> /dev/null` does).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Every path a command may read, and how: the home and the temp folder (everything), the
/// read-only system paths, the devices. `/proc` is the namespace's own (only the command's
/// processes), read-only; Landlock keeps `/proc/PID/root`, `cwd`, `fd` and `mem` of any
/// process outside the command (its PID 1, the server) closed.
fn grants(plan: &Plan) -> Vec<(PathBuf, BitFlags<AccessFs>)> {
    let read = AccessFs::from_read(TESTED);
    let all = AccessFs::from_all(TESTED);
    let device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
    let mut grants = vec![(plan.home.clone(), all), (plan.tmp.clone(), all)];
    let system = PROGRAMS.iter().chain(ETC).map(PathBuf::from);
    grants.extend(system.chain(etc_interpreters()).map(|p| (p, read)));
    grants.extend(DEVICES.iter().map(|d| (PathBuf::from(d), device)));
    grants.push((
        PathBuf::from("/proc"),
        AccessFs::ReadFile | AccessFs::ReadDir,
    ));
    grants
}

/// `/etc/python3*` and `/etc/perl*`: site settings these interpreters read at start.
fn etc_interpreters() -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir("/etc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("python3") || name.starts_with("perl")
        })
        .map(|e| e.path())
}

/// Restricts this process (and so everything it starts) to [`grants`]; with the network
/// off, no TCP bind or connect either; no signal and no abstract UNIX socket out of the
/// sandbox where the kernel has those scopes. Strict: the rights of ABI 3 or an error;
/// otherwise whatever the kernel has.
///
/// # Errors
/// The kernel lacks what strict mode needs, the home or temp folder cannot be opened, or a
/// Landlock call failed.
pub(super) fn restrict(plan: &Plan) -> Result<(), String> {
    let failed = |e: landlock::RulesetError| format!("landlock: {e}");
    let level = if plan.strict {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(REQUIRED))
        .map_err(failed)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TESTED))
        .map_err(failed)?
        .scope(Scope::from_all(TESTED))
        .map_err(failed)?;
    if !plan.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(TESTED))
            .map_err(failed)?;
    }
    let mut created = ruleset.create().map_err(failed)?;
    for (path, access) in grants(plan) {
        let fd = match PathFd::new(&path) {
            Ok(fd) => fd,
            // A system path this machine does not have (`/lib32`, `/etc/timezone`).
            Err(_) if path != plan.home && path != plan.tmp => continue,
            Err(e) => return Err(format!("landlock: {e}")),
        };
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(TESTED)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(failed)?;
    }
    let status = created.restrict_self().map_err(failed)?;
    if plan.strict && status.ruleset == RulesetStatus::NotEnforced {
        return Err("landlock: not enforced by this kernel".into());
    }
    Ok(())
}

/// The granted path under which `path` lies, if any: a data folder or TLS key there would be
/// readable by every command.
pub(crate) fn exposed_by(path: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    PROGRAMS
        .iter()
        .chain(ETC)
        .chain(DEVICES)
        .map(PathBuf::from)
        .chain(etc_interpreters())
        .chain([PathBuf::from("/proc")])
        .filter_map(|granted| std::fs::canonicalize(granted).ok())
        .find(|granted| path.starts_with(granted))
}
