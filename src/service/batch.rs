//! `write`: whole small files, one frame each, pipelined by `put -r`, and made durable in
//! groups.
//!
//! Each `write` is checked as it arrives (path, quota, one writer, BLAKE3 of the body) and
//! its bytes go to the target's partial file, but nothing is committed and nothing answered
//! yet. The group ends when no further request is buffered (the client has stopped sending
//! for now), when it holds [`MAX_FILES`] files or [`MAX_BYTES`] bytes, or before any other
//! request is served. Then one `syncfs` makes every file of the group durable, each is
//! renamed into place (the rule holds: nothing is visible under its name before it is
//! verified and durable), a second `syncfs` makes the renames durable, and the replies
//! leave in request order, refusals included. A thousand small files cost a few dozen
//! syncs instead of a thousand `fsync`s. A group of fewer than [`MIN_GROUP`] files is made
//! durable file by file instead, so a client cannot turn each tiny file into a `syncfs` of
//! the whole file system.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::files::resolve;
use crate::connection::Connection;
use crate::filecopy::blocking;
use crate::home::{Home, Pending};
use crate::protocol::ops::Verified;
use crate::protocol::{DigestKind, Kept, MAX_WRITE, Reply};
use crate::storage::backend::{StoreUpload, Upload};
use crate::{Error, Result};

/// Files in one group at most: each holds its one-writer lock and a reservation until the
/// group ends.
pub(super) const MAX_FILES: usize = 64;
/// Bytes in one group at most.
pub(super) const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Fewer stored files than this are made durable one `fsync` each, as `put` does: a
/// `syncfs` flushes the whole file system, which a client must not be able to ask for
/// once per tiny file.
const MIN_GROUP: usize = 4;

/// The `write` requests received and not answered yet, in request order.
#[derive(Default)]
pub(super) struct Batch {
    home: Option<Home>,
    items: Vec<Item>,
    bytes: u64,
}

/// One `write` of a group: stored and verified, waiting for the group's sync, or refused.
enum Item {
    Stored {
        pending: Box<Pending<StoreUpload>>,
        path: String,
        size: u64,
        blake3: String,
    },
    Refused(Error),
}

impl Batch {
    /// Whether the group must end now.
    pub(super) fn is_full(&self) -> bool {
        self.items.len() >= MAX_FILES || self.bytes >= MAX_BYTES
    }

    /// A `write` refused before its body was looked at (no login, say): answered in turn.
    pub(super) fn refuse(&mut self, error: Error) {
        self.items.push(Item::Refused(error));
    }

    /// Receives the `write` whose head was just read: `path`, checked against `blake3`, for
    /// `home`. A refusal is kept to be answered in turn; only an I/O error of the stream
    /// (which closes the connection) is returned.
    ///
    /// # Errors
    /// The stream failed or ended inside the body.
    pub(super) async fn write<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        home: Home,
        (path, blake3, kept): (String, String, Kept),
        conn: &mut Connection<S>,
    ) -> Result<()> {
        let size = conn.unread_body();
        let item = match self.receive(&home, (&path, &blake3, kept), conn).await {
            Ok(pending) => Item::Stored {
                pending: Box::new(pending),
                path,
                size,
                blake3,
            },
            Err(e) if e.is_disconnect() || e.closes_connection() => return Err(e),
            Err(e) => Item::Refused(e),
        };
        self.bytes += size;
        self.items.push(item);
        self.home.get_or_insert(home);
        Ok(())
    }

    async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        home: &Home,
        (path, blake3, kept): (&str, &str, Kept),
        conn: &mut Connection<S>,
    ) -> Result<Pending<StoreUpload>> {
        let size = conn.unread_body();
        if size > MAX_WRITE {
            return Err(Error::TooLarge(format!(
                "{path}: a write carries at most {MAX_WRITE} bytes; send {size} with put"
            )));
        }
        let target = resolve(path)?;
        let mut pending = home.begin_upload(&target, size, false).await?;
        let stored = async {
            let body = conn.read_body(MAX_WRITE).await?;
            let ours = blake3::hash(&body).to_hex();
            if !ours.as_str().eq_ignore_ascii_case(blake3) {
                let problem = format!("BLAKE3 of the received bytes is {ours}, not {blake3}");
                return Err(reject(home, &mut pending, problem).await);
            }
            match &mut pending.upload {
                StoreUpload::Local(local) => {
                    let Some(mut partial) = local.partial.take() else {
                        return Err(Error::Internal("the upload has no partial file".into()));
                    };
                    let partial = blocking(move || {
                        use std::io::Write;
                        let mut file = partial.open_at(0)?;
                        file.write_all(&body)?;
                        Ok(partial)
                    })
                    .await?;
                    local.partial = Some(partial);
                }
                // Held in memory until the group commits: a single PUT each.
                StoreUpload::S3(s3) => {
                    s3.start(0, size, DigestKind::Blake3).await?;
                    s3.write(body).await?;
                }
            }
            pending.upload.keep(kept);
            Ok(())
        }
        .await;
        match stored {
            Ok(()) => Ok(pending),
            Err(e) => {
                home.settle(pending).await;
                Err(e)
            }
        }
    }

    /// Ends the group: makes its files durable, commits them, and queues every reply in
    /// request order. Nothing is written to the stream here; the frame loop flushes.
    ///
    /// # Errors
    /// Only a reply that cannot be encoded; storage errors become the files' replies.
    pub(super) async fn flush<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<()> {
        let items = std::mem::take(&mut self.items);
        self.bytes = 0;
        let Some(home) = self.home.take() else {
            return queue_refusals(items, conn);
        };
        let stored = items
            .iter()
            .filter(|i| matches!(i, Item::Stored { .. }))
            .count();
        let grouped = stored >= MIN_GROUP;
        // The bytes of every file, durable in one call (or, for a few, one fsync each).
        let synced = if grouped { home.sync().await } else { Ok(()) };
        let mut committed = 0;
        for item in items {
            match item {
                Item::Refused(e) => conn.queue(&Reply::error(e.code(), e.to_string()), b"")?,
                Item::Stored {
                    mut pending,
                    path,
                    size,
                    blake3,
                } => {
                    let done = match &synced {
                        Ok(()) => {
                            if grouped {
                                pending.upload.synced();
                            }
                            home.commit(&mut pending, size).await
                        }
                        Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
                    };
                    home.settle(*pending).await;
                    match done {
                        Ok(()) => {
                            committed += 1;
                            info!(%path, size, digest = %blake3, "stored");
                            let reply = Verified {
                                size,
                                md5: None,
                                blake3: Some(blake3),
                                resumed_from: 0,
                            };
                            conn.queue(&Reply::ok(reply), b"")?;
                        }
                        Err(e) => conn.queue(&Reply::error(e.code(), e.to_string()), b"")?,
                    }
                }
            }
        }
        if grouped && committed > 0 {
            // The renames, durable too, before anyone is told the files are stored.
            if let Err(e) = home.sync().await {
                tracing::warn!(error = %e, "syncing a group of commits");
            }
        }
        Ok(())
    }

    /// Whether nothing waits to be answered.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Queues the replies of a group that stored nothing.
fn queue_refusals<S: AsyncRead + AsyncWrite + Unpin>(
    items: Vec<Item>,
    conn: &mut Connection<S>,
) -> Result<()> {
    for item in items {
        if let Item::Refused(e) = item {
            conn.queue(&Reply::error(e.code(), e.to_string()), b"")?;
        }
    }
    Ok(())
}

/// Throws away an upload whose bytes do not match their digest: the error to answer.
pub(super) async fn reject(
    home: &Home,
    pending: &mut Pending<StoreUpload>,
    problem: String,
) -> Error {
    if let Some(local) = pending.upload.local() {
        return match local.partial.take() {
            Some(partial) => blocking(move || Ok(partial.reject(&problem)))
                .await
                .unwrap_or_else(|e| e),
            None => Error::Internal("the upload has no partial file".into()),
        };
    }
    let target = pending.upload.target().clone();
    home.discard(pending).await;
    Error::DigestMismatch(format!("{target}: {problem}; the upload was discarded"))
}
