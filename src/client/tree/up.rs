//! `put -r`: a local folder to the server.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{
    Job, TreeProgress, TreeReport, WINDOW, in_doubt, join, local_folder, remote_folder, same,
    same_bytes,
};
use crate::client::{Client, kept_of, typed, unchanged_since};
use crate::filecopy::Quiet;
use crate::protocol::ops::Verified;
use crate::protocol::{Kept, Request};
use crate::storage::Entry;
use crate::{Error, Result};

/// The local tree, walked without following symlinks.
#[derive(Default)]
struct Walk {
    /// Folders below the top, parents before children (`""` is the top itself).
    folders: Vec<String>,
    /// Regular files, by folder.
    files: Vec<(String, Job)>,
    /// Left out: (path, why).
    skipped: Vec<(String, String)>,
}

fn walk(top: &Path) -> Result<Walk> {
    let mut out = Walk {
        folders: vec![String::new()],
        ..Walk::default()
    };
    let mut next = 0;
    while next < out.folders.len() {
        let rel = out.folders[next].clone();
        next += 1;
        let dir = if rel.is_empty() {
            top.to_path_buf()
        } else {
            top.join(&rel)
        };
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| crate::client::local_error(&dir, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| crate::client::local_error(&dir, e))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            let shown = join(&rel, &name.to_string_lossy());
            let Some(name) = name.to_str() else {
                let why = "its name is not UTF-8; the server holds UTF-8 names only";
                out.skipped.push((shown, why.into()));
                continue;
            };
            let child = join(&rel, name);
            let meta = match entry.path().symlink_metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    out.skipped.push((child, e.to_string()));
                    continue;
                }
            };
            if meta.is_dir() {
                out.folders.push(child);
            } else if meta.is_file() {
                let job = Job {
                    rel: child,
                    size: meta.len(),
                    modified: meta.mtime(),
                    mode: Some(meta.mode() & 0o777),
                };
                out.files.push((rel.clone(), job));
            } else if meta.is_symlink() {
                let to = std::fs::read_link(entry.path()).unwrap_or_default();
                let why = format!("a symlink (to {}), not followed", to.display());
                out.skipped.push((child, why));
            } else {
                out.skipped
                    .push((child, "not a regular file or folder".into()));
            }
        }
    }
    Ok(out)
}

impl Client {
    /// Sends the folder `local` and everything below it to the folder `remote` (created if
    /// missing), skipping files the server has with the same size and time (see the module
    /// doc of [`super`]).
    ///
    /// # Errors
    /// A local folder that cannot be read, a remote one that is a file, and connection
    /// errors; a file that fails is reported in the [`TreeReport`] and the rest goes on.
    pub async fn put_tree(
        &mut self,
        local: &Path,
        remote: &str,
        progress: &mut dyn TreeProgress,
    ) -> Result<TreeReport> {
        local_folder(local)?;
        let tree = crate::filecopy::blocking({
            let local = local.to_path_buf();
            move || walk(&local)
        })
        .await?;
        let mut report = TreeReport {
            skipped: tree.skipped,
            ..TreeReport::default()
        };
        // What the server has, folder by folder; missing folders are made.
        let mut there: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        let mut unmade: Vec<String> = Vec::new();
        for rel in &tree.folders {
            if unmade.iter().any(|u| rel.starts_with(&format!("{u}/"))) {
                continue;
            }
            let path = join(remote, rel);
            let listing = match remote_folder(self, &path).await? {
                Some(listing) => listing,
                None => match self.mkdir(&path, true).await {
                    Ok(()) => {
                        report.folders_made += 1;
                        HashMap::new()
                    }
                    Err(e) if !e.closes_connection() => {
                        report.failed.push((rel.clone(), e.to_string()));
                        unmade.push(rel.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            there.insert(rel.clone(), listing);
        }
        let mut jobs = Vec::new();
        for (folder, job) in tree.files {
            let Some(listing) = there.get(&folder) else {
                report
                    .failed
                    .push((job.rel, "its folder could not be made".into()));
                continue;
            };
            let name = job.rel.rsplit('/').next().unwrap_or(&job.rel);
            let have = listing.get(name);
            if same(&job, have) {
                report.unchanged += 1;
            } else if in_doubt(&job, have)
                && same_bytes(
                    self,
                    &local.join(&job.rel),
                    &join(remote, &job.rel),
                    job.size,
                )
                .await?
            {
                report.unchanged += 1;
                report.compared += 1;
            } else {
                jobs.push(job);
            }
        }
        progress.planned(jobs.len() as u64, jobs.iter().map(|j| j.size).sum());
        let (small, large): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(Job::small);
        self.write_many(local, remote, small, &mut report, progress)
            .await?;
        for job in large {
            let path = join(remote, &job.rel);
            let from = local.join(&job.rel);
            if let Err(e) = std::fs::File::open(&from) {
                let e = crate::client::local_error(&from, e);
                settle(&job, (Err(e), Source::Local), &mut report, progress)?;
                continue;
            }
            let sent = match self.put(&from, &path, true, &mut Quiet).await {
                // A partial file of another version of it: start over once.
                Err(Error::Remote {
                    code: crate::protocol::ErrorCode::DigestMismatch,
                    ..
                }) => self.put(&from, &path, false, &mut Quiet).await,
                other => other,
            };
            settle(
                &job,
                (sent.map(|_| ()), Source::Connection),
                &mut report,
                progress,
            )?;
        }
        Ok(report)
    }

    /// Sends small files as pipelined `write` frames, two server groups ([`WINDOW`] each) in
    /// flight: the next group is on its way while the server stores the last. While the
    /// server takes no more, its replies are read as they come (up to [`REPLY_ROOM`]): a
    /// window of refusals, each naming its path, may be more than the socket buffers hold,
    /// and the server does not read on while its replies wait.
    async fn write_many(
        &mut self,
        local: &Path,
        remote: &str,
        jobs: Vec<Job>,
        report: &mut TreeReport,
        progress: &mut dyn TreeProgress,
    ) -> Result<()> {
        let mut in_flight: VecDeque<Job> = VecDeque::new();
        for job in jobs {
            let from = local.join(&job.rel);
            match read_whole(&from) {
                Ok((body, kept)) => {
                    let blake3 = blake3::hash(&body).to_hex().to_string();
                    let path = join(remote, &job.rel);
                    let write = Request::Write {
                        path,
                        blake3,
                        keep: kept,
                    };
                    self.conn.queue(&write, &body)?;
                    in_flight.push_back(job);
                }
                Err(e) => settle(&job, (Err(e), Source::Local), report, progress)?,
            }
            if in_flight.len() >= 2 * WINDOW || self.conn.queued() >= 1 << 20 {
                self.conn.flush_reading(REPLY_ROOM).await?;
            }
            while in_flight.len() >= 2 * WINDOW {
                self.answer(&mut in_flight, report, progress).await?;
            }
        }
        self.conn.flush_reading(REPLY_ROOM).await?;
        while !in_flight.is_empty() {
            self.answer(&mut in_flight, report, progress).await?;
        }
        Ok(())
    }

    /// Reads the reply to the oldest `write` in flight.
    async fn answer(
        &mut self,
        in_flight: &mut VecDeque<Job>,
        report: &mut TreeReport,
        progress: &mut dyn TreeProgress,
    ) -> Result<()> {
        let Some(job) = in_flight.pop_front() else {
            return Ok(());
        };
        let stored = match self.read_reply().await {
            Ok((fields, _)) => typed::<Verified>(fields).map(|_| ()),
            Err(e) => Err(e),
        };
        settle(&job, (stored, Source::Connection), report, progress)
    }
}

/// Replies to a window of `write`s taken in while requests are still written: a refusal
/// names its path (4 KiB at most), twice at worst, so two windows of them fit.
const REPLY_ROOM: usize = 2 * WINDOW * 16 * 1024;

/// A whole small file and what to keep of it, read so that a file changing meanwhile is
/// caught rather than sent torn.
fn read_whole(path: &Path) -> Result<(Vec<u8>, Kept)> {
    let before =
        std::fs::symlink_metadata(path).map_err(|e| crate::client::local_error(path, e))?;
    let body = std::fs::read(path).map_err(|e| crate::client::local_error(path, e))?;
    if body.len() as u64 != before.len() {
        return Err(Error::Io(std::io::Error::other(format!(
            "{}: it changed while it was being read; not sent",
            path.display()
        ))));
    }
    unchanged_since(path, &before)
        .map_err(|e| Error::Io(std::io::Error::other(format!("{e}; not sent"))))?;
    Ok((body, kept_of(&before)))
}

/// Where an outcome's error came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The local file: the error is that file's alone.
    Local,
    /// The connection: an I/O error there ends the whole transfer (a rerun resumes it).
    Connection,
}

/// Books the outcome of one file; an I/O error of the connection ends the whole transfer.
pub(super) fn settle(
    job: &Job,
    (outcome, source): (Result<()>, Source),
    report: &mut TreeReport,
    progress: &mut dyn TreeProgress,
) -> Result<()> {
    match outcome {
        Ok(()) => {
            report.transferred += 1;
            report.bytes += job.size;
            progress.file_done(&job.rel, job.size, None);
            Ok(())
        }
        Err(e @ Error::Io(_)) if source == Source::Connection => Err(e),
        Err(e) => {
            let message = e.to_string();
            progress.file_done(&job.rel, job.size, Some(&message));
            report.failed.push((job.rel.clone(), message));
            Ok(())
        }
    }
}
