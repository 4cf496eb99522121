//! `get -r`: a folder of the server to a local folder.

use std::collections::VecDeque;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::up::{Source, settle};
use super::{Job, TreeProgress, TreeReport, WINDOW, join, remote_folder, safe_local_name};
use crate::client::{Client, local_error, local_partial, typed};
use crate::filecopy::Quiet;
use crate::protocol::ops::{GetReady, Trailer};
use crate::protocol::{DigestKind, MAX_WRITE, Reply, Request};
use crate::storage::EntryKind;
use crate::{Error, Result};

/// A file fetched and checked, in its partial file, waiting for the group's sync.
struct Fetched {
    job: Job,
    part: PathBuf,
    dest: PathBuf,
}

impl Client {
    /// Fetches the server's folder `remote` and everything below it into the local folder
    /// `local` (created if missing), skipping files that are here with the same size and
    /// time (see the module doc of [`super`]).
    ///
    /// # Errors
    /// A remote path that is no folder, a local folder that cannot be made, and connection
    /// errors; a file that fails is reported in the [`TreeReport`] and the rest goes on.
    pub async fn get_tree(
        &mut self,
        remote: &str,
        local: &Path,
        progress: &mut dyn TreeProgress,
    ) -> Result<TreeReport> {
        let mut report = TreeReport::default();
        let mut folders = VecDeque::from([String::new()]);
        let mut jobs = Vec::new();
        while let Some(rel) = folders.pop_front() {
            let dir = local.join(&rel);
            if let Err(e) = local_dir(&dir, &mut report) {
                report.failed.push((rel, e.to_string()));
                continue;
            }
            let path = join(remote, &rel);
            let Some(listing) = remote_folder(self, &path).await? else {
                return Err(Error::NotFound(format!(
                    "{path}: no such folder on the server"
                )));
            };
            let mut entries: Vec<_> = listing.into_values().collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for entry in entries {
                let child = join(&rel, &entry.name);
                if !safe_local_name(&entry.name) {
                    report
                        .failed
                        .push((child, "the server listed an unsafe name".into()));
                    continue;
                }
                match entry.kind {
                    EntryKind::Dir => folders.push_back(child),
                    EntryKind::File => {
                        let job = Job {
                            rel: child,
                            size: entry.size,
                            modified: entry.modified,
                            mode: entry.mode,
                        };
                        let here = std::fs::symlink_metadata(local.join(&job.rel)).ok();
                        let here = here.map(|m| crate::storage::Entry {
                            name: String::new(),
                            kind: if m.is_file() {
                                EntryKind::File
                            } else {
                                EntryKind::Other
                            },
                            size: m.len(),
                            modified: m.mtime(),
                            mode: None,
                        });
                        let dest = local.join(&job.rel);
                        if super::same(&job, here.as_ref()) {
                            report.unchanged += 1;
                        } else if super::in_doubt(&job, here.as_ref())
                            && super::same_bytes(self, &dest, &join(remote, &job.rel), job.size)
                                .await?
                        {
                            // The same bytes: only the time (and mode) are brought over.
                            keep(&dest, &job)?;
                            report.unchanged += 1;
                            report.compared += 1;
                        } else {
                            jobs.push(job);
                        }
                    }
                    EntryKind::Symlink => {
                        report
                            .skipped
                            .push((child, "a symlink on the server, not followed".into()));
                    }
                    EntryKind::Other => {
                        report
                            .skipped
                            .push((child, "not a regular file or folder".into()));
                    }
                }
            }
        }
        progress.planned(jobs.len() as u64, jobs.iter().map(|j| j.size).sum());
        let (small, large): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(Job::small);
        let groups: Vec<&[Job]> = small.chunks(WINDOW).collect();
        if let Some(first) = groups.first() {
            self.request_group(remote, first)?;
        }
        for (i, group) in groups.iter().enumerate() {
            // The next group is asked for before this one is stored, so the server reads and
            // sends it while this side syncs and renames.
            if let Some(next) = groups.get(i + 1) {
                self.request_group(remote, next)?;
            }
            // Not waited for here: the server stops reading while a reply waits to be
            // read, and these requests may be more than the socket buffers hold. Reading
            // the replies writes them on as the server takes them (see `read_head`).
            let after = groups.get(i + 1).map_or(0, |next| next.len());
            self.get_group(local, group, after, &mut report, progress)
                .await?;
        }
        if !groups.is_empty() {
            // The last group's renames (each sync also made the group before's durable).
            sync_fs(local)?;
        }
        for job in large {
            let dest = local.join(&job.rel);
            let path = join(remote, &job.rel);
            let got = match self.get(&path, &dest, true, &mut Quiet).await {
                // A partial file of another version of it: start over once.
                Err(Error::DigestMismatch(_)) => self.get(&path, &dest, false, &mut Quiet).await,
                other => other,
            };
            let got = got.and_then(|_| keep(&dest, &job));
            settle(&job, (got, Source::Connection), &mut report, progress)?;
        }
        Ok(report)
    }

    /// Queues the pipelined `get`s of a group of small files; reading their replies sends them.
    fn request_group(&mut self, remote: &str, group: &[Job]) -> Result<()> {
        for job in group {
            let get = Request::Get {
                path: join(remote, &job.rel),
                offset: 0,
                digest: DigestKind::Blake3,
            };
            self.conn.queue(&get, b"")?;
        }
        Ok(())
    }

    /// Reads the replies to a group's `get`s (see [`Self::request_group`]) into partial
    /// files, makes them durable with one sync and renames them into place. That sync also
    /// makes the renames of the group before durable; the caller syncs once more after the
    /// last group. `after` replies were asked for behind this group's: when the group
    /// stops early, they (and the rest of this group's) are read and dropped, so that a
    /// shell's connection is at a frame boundary for its next command.
    async fn get_group(
        &mut self,
        local: &Path,
        group: &[Job],
        after: usize,
        report: &mut TreeReport,
        progress: &mut dyn TreeProgress,
    ) -> Result<()> {
        let mut fetched = Vec::new();
        for (i, job) in group.iter().enumerate() {
            match self.fetch_one(local, job).await {
                Ok(done) => fetched.push(done),
                Err(e @ (Error::Remote { .. } | Error::DigestMismatch(_))) => {
                    settle(job, (Err(e), Source::Local), report, progress)?;
                }
                Err(e) => {
                    self.skip_gets(group.len() - i - 1 + after).await;
                    return Err(e);
                }
            }
        }
        // Durable before visible, for the whole group at once.
        let synced = sync_fs(local);
        for Fetched { job, part, dest } in fetched {
            let moved = match &synced {
                Ok(()) => std::fs::rename(&part, &dest).map_err(|e| local_error(&dest, e)),
                Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
            };
            settle(&job, (moved, Source::Local), report, progress)?;
        }
        if synced.is_err() {
            self.skip_gets(after).await;
        }
        synced
    }

    /// Reads and drops the replies to `n` pipelined `get`s. Best effort: a connection that
    /// fails meanwhile is broken anyway, and the caller reports the first error.
    async fn skip_gets(&mut self, n: usize) {
        for _ in 0..n {
            let Ok(Some(head)) = self.conn.read_head().await else {
                return;
            };
            // A file's reply is its head, its bytes (skipped by the next read) and a
            // trailer; a refusal is one error frame.
            if Reply::from_head(&head).is_ok()
                && !matches!(self.conn.read_head().await, Ok(Some(_)))
            {
                return;
            }
        }
    }

    /// Reads the reply to one pipelined `get` and stores it in its partial file, checked.
    async fn fetch_one(&mut self, local: &Path, job: &Job) -> Result<Fetched> {
        let head = self
            .conn
            .read_head()
            .await?
            .ok_or_else(super::super::closed)?;
        let ready: GetReady = typed(Reply::from_head(&head)?)?;
        if ready.size > MAX_WRITE.max(job.size) {
            return Err(Error::BadReply(format!(
                "{}: {} bytes came for a file listed with {}",
                job.rel, ready.size, job.size
            )));
        }
        let body = self.conn.read_body(MAX_WRITE.max(job.size)).await?;
        let head = self
            .conn
            .read_head()
            .await?
            .ok_or_else(super::super::closed)?;
        let trailer: Trailer = typed(Reply::from_head(&head)?)?;
        let ours = blake3::hash(&body).to_hex();
        if !trailer
            .blake3
            .is_some_and(|t| t.eq_ignore_ascii_case(ours.as_str()))
        {
            return Err(Error::DigestMismatch(format!(
                "{}: the bytes received do not match the server's BLAKE3",
                job.rel
            )));
        }
        let dest = local.join(&job.rel);
        let part = local_partial(&dest);
        let job = Job {
            size: body.len() as u64,
            ..job.clone()
        };
        write_part(&part, &body, &job)?;
        Ok(Fetched { job, part, dest })
    }
}

/// Makes sure `dir` is a local folder (made if missing), never a symlink to one elsewhere.
fn local_dir(dir: &Path, report: &mut TreeReport) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::AlreadyExists(format!(
            "{} is here and is not a folder",
            dir.display()
        ))),
        Err(_) => {
            std::fs::create_dir(dir).map_err(|e| local_error(dir, e))?;
            report.folders_made += 1;
            Ok(())
        }
    }
}

/// Writes `body` to the partial file `part` (never through a symlink there), with `job`'s
/// permission bits and time.
fn write_part(part: &Path, body: &[u8], job: &Job) -> Result<()> {
    use std::io::Write;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(part)
    };
    // A partial file left by an earlier run is replaced; the usual case costs one call.
    let created = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(part).and_then(|()| create())
        }
        other => other,
    };
    let mut file = created.map_err(|e| local_error(part, e))?;
    file.write_all(body).map_err(|e| local_error(part, e))?;
    keep_on(&file, job).map_err(|e| local_error(part, e))
}

/// Gives the file at `dest` `job`'s permission bits and time.
fn keep(dest: &Path, job: &Job) -> Result<()> {
    let file = std::fs::File::open(dest).map_err(|e| local_error(dest, e))?;
    keep_on(&file, job).map_err(|e| local_error(dest, e))
}

fn keep_on(file: &std::fs::File, job: &Job) -> std::io::Result<()> {
    if let Some(mode) = job.mode {
        file.set_permissions(std::fs::Permissions::from_mode((mode & 0o777) | 0o600))?;
    }
    let secs = std::time::Duration::from_secs(job.modified.unsigned_abs());
    let at = if job.modified >= 0 {
        std::time::UNIX_EPOCH + secs
    } else {
        std::time::UNIX_EPOCH - secs
    };
    file.set_modified(at)
}

/// `syncfs` on the file system that holds `dir`: one call for a group of files.
fn sync_fs(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).map_err(|e| local_error(dir, e))?;
    rustix::fs::syncfs(&handle).map_err(|e| local_error(dir, e.into()))
}
