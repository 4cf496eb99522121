//! `write`: whole small files, one frame each, pipelined by `put -r`, and made durable in
//! groups.
//!
//! Each `write`'s body is read and checked against its BLAKE3 as it arrives, and held; nothing
//! is stored and nothing answered yet. The group ends when no further request is buffered
//! (the client has stopped sending for now), when it holds [`MAX_FILES`] files or
//! [`MAX_BYTES`] bytes, or before any other request is served. Then its files are stored
//! (path, quota and one writer checked, the bytes written to each target's partial file),
//! one `syncfs` makes them all durable, each is renamed into place (the rule holds: nothing
//! is visible under its name before it is verified and durable), a second `syncfs` makes
//! the renames durable, and the replies leave in request order, refusals included. A
//! thousand small files cost a few dozen syncs instead of a thousand `fsync`s, and, in a
//! local home, a few dozen trips to the blocking pool instead of several per file. A group
//! of fewer than [`MIN_GROUP`] files is made durable file by file instead, so a client
//! cannot turn each tiny file into a `syncfs` of the whole file system.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::files::resolve;
use crate::connection::Connection;
use crate::filecopy::blocking;
use crate::home::{Home, Pending};
use crate::protocol::ops::Verified;
use crate::protocol::{DigestKind, Kept, MAX_WRITE, Reply};
use crate::storage::WirePath;
use crate::storage::backend::{StoreUpload, Upload};
use crate::{Error, Result};

/// Files in one group at most: each holds its one-writer lock and a reservation from the
/// group's end until its commit.
pub(super) const MAX_FILES: usize = 256;
/// Bytes in one group at most: a connection holds them in memory until the group ends (the
/// `write` that crosses this line, up to [`MAX_WRITE`] bytes, is the group's last).
pub(super) const MAX_BYTES: u64 = 4 * 1024 * 1024;
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

/// One `write` of a group: received and verified, waiting for the group's end, or refused.
enum Item {
    Received(Received),
    Refused(Error),
}

/// A whole small file, its bytes checked against its BLAKE3, held until the group stores it.
struct Received {
    target: WirePath,
    path: String,
    body: Bytes,
    blake3: String,
    kept: Kept,
}

/// A received file whose upload has begun and holds its bytes.
struct Stored {
    pending: Pending<StoreUpload>,
    path: String,
    size: u64,
    blake3: String,
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
        let item = match receive((path, blake3, kept), conn).await {
            Ok(received) => Item::Received(received),
            Err(e) if e.is_disconnect() || e.closes_connection() => return Err(e),
            Err(e) => Item::Refused(e),
        };
        self.bytes += size;
        self.items.push(item);
        self.home.get_or_insert(home);
        Ok(())
    }

    /// Ends the group: stores its files, makes them durable, commits them, and queues
    /// every reply in request order. Nothing is written to the stream here; the frame loop
    /// flushes.
    ///
    /// In a local home every file system call of the group is made in one trip to the
    /// blocking pool: a trip costs two thread hand-offs, which, made for each call of each
    /// file, were most of a small file's time.
    ///
    /// # Errors
    /// Only a reply that cannot be encoded, or the blocking-pool task lost (a panic); storage
    /// errors become the files' replies.
    pub(super) async fn flush<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<()> {
        let items = std::mem::take(&mut self.items);
        self.bytes = 0;
        let Some(home) = self.home.take() else {
            return queue_refusals(items, conn);
        };
        let outcomes = match home.inline() {
            Some(here) => {
                let runtime = tokio::runtime::Handle::current();
                blocking(move || Ok(runtime.block_on(store(&here, items)))).await?
            }
            None => store(&home, items).await,
        };
        for outcome in outcomes {
            match outcome {
                Ok((path, size, blake3)) => {
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
        Ok(())
    }

    /// Whether nothing waits to be answered.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Reads the body of the `write` whose head was just read and checks it against its digest.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    (path, blake3, kept): (String, String, Kept),
    conn: &mut Connection<S>,
) -> Result<Received> {
    let size = conn.unread_body();
    if size > MAX_WRITE {
        return Err(Error::TooLarge(format!(
            "{path}: a write carries at most {MAX_WRITE} bytes; send {size} with put"
        )));
    }
    let target = resolve(&path)?;
    let body = conn.read_body(MAX_WRITE).await?;
    let ours = blake3::hash(&body).to_hex();
    if !ours.as_str().eq_ignore_ascii_case(&blake3) {
        return Err(Error::DigestMismatch(format!(
            "{target}: BLAKE3 of the received bytes is {ours}, not {blake3}; \
             the upload was discarded"
        )));
    }
    Ok(Received {
        target,
        path,
        body,
        blake3,
        kept,
    })
}

/// What became of each item of a group, in order: the stored file's path, size and digest,
/// or why it was not stored.
type Outcome = Result<(String, u64, String)>;

/// Stores a group: each file's upload begun (one writer, quota) and its bytes written, then
/// one sync for all, each committed, and one sync for the commits (see the module's
/// comment; a group of fewer than [`MIN_GROUP`] files is synced file by file).
async fn store(home: &Home, items: Vec<Item>) -> Vec<Outcome> {
    let mut begun = Vec::with_capacity(items.len());
    for item in items {
        begun.push(match item {
            Item::Refused(e) => Err(e),
            Item::Received(file) => begin(home, file).await,
        });
    }
    let grouped = begun.iter().filter(|b| b.is_ok()).count() >= MIN_GROUP;
    // The bytes of every file, durable in one call (or, for a few, one fsync each).
    let synced = if grouped { home.sync().await } else { Ok(()) };
    let mut committed = 0;
    let mut outcomes = Vec::with_capacity(begun.len());
    for stored in begun {
        let Stored {
            mut pending,
            path,
            size,
            blake3,
        } = match stored {
            Ok(stored) => stored,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        let done = match &synced {
            Ok(()) => {
                if grouped {
                    pending.upload.synced();
                }
                home.commit(&mut pending, size).await
            }
            Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
        };
        home.settle(pending).await;
        if done.is_ok() {
            committed += 1;
        }
        outcomes.push(done.map(|()| (path, size, blake3)));
    }
    if grouped && committed > 0 {
        // The renames, durable too, before anyone is told the files are stored.
        if let Err(e) = home.sync().await {
            tracing::warn!(error = %e, "syncing a group of commits");
        }
    }
    outcomes
}

/// Begins the upload of a received file and writes its bytes.
async fn begin(home: &Home, file: Received) -> Result<Stored> {
    let size = file.body.len() as u64;
    let mut pending = home.begin_upload(&file.target, size, false).await?;
    let written = match &mut pending.upload {
        StoreUpload::Local(local) => local.write_whole(file.body, file.kept).await,
        // Held in memory until the group commits: a single PUT each.
        StoreUpload::S3(s3) => match s3.start(0, size, DigestKind::Blake3).await {
            Ok(()) => s3.write(file.body).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        home.settle(pending).await;
        return Err(e);
    }
    pending.upload.keep(file.kept);
    Ok(Stored {
        pending,
        path: file.path,
        size,
        blake3: file.blake3,
    })
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
