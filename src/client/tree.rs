//! Whole folders both ways: `put -r` and `get -r`.
//!
//! Both sides are compared first (a listing of each remote folder, a walk of the local
//! tree) and only what is missing or changed moves: a file whose size and modification time
//! match on both sides is skipped, as rsync and `lftp mirror --continue` skip it, so a rerun
//! after an interruption sends only the rest. Where in doubt (the same size, another time:
//! a copy made without keeping times, a file touched), the digests decide: the server hashes
//! its file (a `get` from its end, so no bytes move) and this side its own, and equal BLAKE3s
//! skip the file. A download then sets the local time to the server's; an upload leaves the
//! server's time as it is (the protocol has no op to change it), so the next run compares
//! again. Small files (up to [`MAX_WRITE`]) travel in pipelined `write` frames, two groups
//! of [`WINDOW`] in flight, which the server makes durable in groups; larger ones go one at
//! a time by `put`/`get`, resuming a partial file left by an earlier run. A download asks
//! for the next group of small files before it stores the current one, and syncs each group
//! once before renaming its files into place: that sync also makes the renames of the group
//! before durable, and one more after the last group ends the run, so a file is never
//! visible under its name before its bytes are on disk. Permission bits and modification
//! times are kept; empty folders are made.
//!
//! Symlinks are never followed on either side, so neither tree can lead the transfer out of
//! itself: they are listed in the report as skipped, as are special files (FIFOs, devices)
//! and names the other side cannot hold (not UTF-8 here; refused by the server's path
//! rules there; `..`, `/` or our partial suffix in a name a server lists).

mod down;
mod up;

use std::collections::HashMap;
use std::path::Path;

use super::Client;
use crate::protocol::MAX_WRITE;
use crate::storage::{Entry, EntryKind};
use crate::{Error, Result};

/// Small files in a group: a server's group of writes (two are kept in flight by `put -r`),
/// and the gets `get -r` asks for before it syncs once. Each group costs the receiving side
/// two syncs, so fewer, larger groups cost less (on a journaled ext4, 64 to a group made the
/// syncs most of a 1,000-file `put -r`).
pub const WINDOW: usize = 256;

/// What a folder transfer did, file by file where it matters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeReport {
    /// Files sent (or fetched) and verified.
    pub transferred: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files skipped because the other side has them already: the same size and time, or
    /// the same size and the same BLAKE3 (see [`TreeReport::compared`]).
    pub unchanged: u64,
    /// Of the unchanged files, those whose times differed and whose digests were compared
    /// (the same bytes: a copy made without keeping times, a file touched).
    pub compared: u64,
    /// Folders created on the other side.
    pub folders_made: u64,
    /// What was left out on purpose: (path, why), e.g. a symlink, a FIFO.
    pub skipped: Vec<(String, String)>,
    /// What failed: (path, the error). The rest of the tree goes on.
    pub failed: Vec<(String, String)>,
}

/// Told of a folder transfer's progress.
pub trait TreeProgress: Send {
    /// The work is known: `files` to move, `bytes` in all (unchanged ones excluded).
    fn planned(&mut self, _files: u64, _bytes: u64) {}
    /// `path` (of `bytes` bytes) is done; `error` when it failed.
    fn file_done(&mut self, _path: &str, _bytes: u64, _error: Option<&str>) {}
}

impl TreeProgress for crate::filecopy::Quiet {}

/// One file to move: its path below the tree's top (with `/`), its size and time.
#[derive(Debug, Clone)]
struct Job {
    rel: String,
    size: u64,
    modified: i64,
    mode: Option<u32>,
}

impl Job {
    fn small(&self) -> bool {
        self.size <= MAX_WRITE
    }
}

/// Whether `have` has `job`'s size but another time: perhaps the same bytes, which the
/// digests tell.
fn in_doubt(job: &Job, have: Option<&Entry>) -> bool {
    have.is_some_and(|e| {
        e.kind == EntryKind::File && e.size == job.size && e.modified != job.modified
    })
}

/// Whether the local file `local` and the remote file `remote`, both of `size` bytes, hold
/// the same bytes: their BLAKE3, the remote one hashed by the server (no bytes move). An
/// error that leaves the connection usable (the file gone, say) counts as "not the same".
///
/// # Errors
/// Connection errors.
async fn same_bytes(client: &mut Client, local: &Path, remote: &str, size: u64) -> Result<bool> {
    let path = local.to_path_buf();
    let ours = crate::filecopy::blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| crate::client::local_error(&path, e))?;
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(file)
            .map_err(|e| crate::client::local_error(&path, e))?;
        Ok(hasher.finalize().to_hex().to_string())
    });
    let Ok(ours) = ours.await else {
        return Ok(false);
    };
    match client.remote_blake3(remote, size).await {
        Ok(theirs) => Ok(theirs.is_some_and(|t| t.eq_ignore_ascii_case(&ours))),
        Err(e) if !e.closes_connection() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `have` (an entry on the receiving side) makes sending `job` unneeded.
fn same(job: &Job, have: Option<&Entry>) -> bool {
    have.is_some_and(|e| {
        e.kind == EntryKind::File && e.size == job.size && e.modified == job.modified
    })
}

/// `top` joined with `rel` (both with `/`; either may be empty).
fn join(top: &str, rel: &str) -> String {
    match (top.trim_end_matches('/'), rel) {
        ("", rel) => rel.to_owned(),
        (top, "") => top.to_owned(),
        (top, rel) => format!("{top}/{rel}"),
    }
}

/// The name a folder transfer gives its copy when none is given: the last part of `path`.
///
/// # Errors
/// [`Error::BadRequest`] for a path with no last part (`/`, `..`).
pub fn default_name(path: &str) -> Result<String> {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::BadRequest(format!(
            "`{path}` names no folder to copy into; give the destination too"
        )));
    }
    Ok(name.to_owned())
}

/// The entries of one remote folder by name; an empty map when it does not exist.
async fn remote_folder(client: &mut Client, path: &str) -> Result<Option<HashMap<String, Entry>>> {
    match client.ls(path).await {
        Ok(entries) => {
            if let [only] = entries.as_slice()
                && only.kind != EntryKind::Dir
                && client.stat(path).await?.kind != EntryKind::Dir
            {
                return Err(Error::AlreadyExists(format!(
                    "{path} is a file, not a folder"
                )));
            }
            Ok(Some(
                entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
            ))
        }
        Err(Error::Remote {
            code: crate::protocol::ErrorCode::NotFound,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `name`, as a server listed it, is safe to create locally: one plain name that
/// cannot climb out of the folder or pose as a partial file.
fn safe_local_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !name.ends_with(super::LOCAL_PART_SUFFIX)
}

/// Whether the tree below `dir` is a local folder at all (not a symlink to one).
fn local_folder(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| super::local_error(dir, e))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{} is not a folder",
            dir.display()
        )))
    }
}
