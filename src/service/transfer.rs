//! `put` and `get`: verified, resumable transfers of a logged-in user.
//!
//! Upload, as frames on one connection:
//!
//! | step | client sends | server answers |
//! | --- | --- | --- |
//! | 1 | `{"op":"put","path":p,"size":n,"resume":b}` | `{"ok":true,"offset":k}` or an error (quota, busy, …) |
//! | 2 | `{"op":"data","total_size":n-k}` + the bytes from `k` on (sockit clients add `"digest":"blake3"`) | nothing yet |
//! | 3 | `{"op":"done","md5":m}` (md5 of the whole file; after `"digest":"blake3"`, `"blake3":b` instead) | `{"ok":true,"size":n,"md5":m}` (or `"blake3":b`) or `digest_mismatch` |
//!
//! The bytes land in the target's partial file; only when size and digest match is it
//! renamed into place. The quota is checked before the go-ahead (with the reservation held
//! until the end, so concurrent uploads cannot overshoot together) and enforced while bytes
//! arrive by the data frame's fixed length. Download: `{"op":"get","path":p,"offset":k}` is
//! answered with `{"ok":true,"size":n,"offset":k}` + the bytes from `k` on, then a trailer
//! frame `{"ok":true,"md5":m,"blake3":b}` with the digests of the whole file.
//!
//! md5 is the seeds' digest and what any peer that names no other gets, but it is the slow
//! part (~650 MB/s a core): sockit peers check BLAKE3 instead (several GB/s, and stronger)
//! and never compute md5 at all. A get that asks for md5 of a file stored that way hashes it
//! while sending, on a thread of its own.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::files::resolve;
use crate::connection::Connection;
use crate::filecopy::{
    Digests, Quiet, Sums, blocking, receive_body, remember_sums, remembered_sums, send_file,
};
use crate::home::{Home, Pending};
use crate::protocol::ops::{GetReady, PutReady, Trailer, Verified};
use crate::protocol::{DigestKind, Kept, Reply, Request};
use crate::storage::backend::{StoreReader, StoreUpload, Upload};
use crate::storage::s3::{S3Reader, S3Upload};
use crate::storage::{Root, WirePath};
use crate::{Error, Result};

/// Runs an upload whose `put` head was just read.
///
/// # Errors
/// Storage, quota and digest errors (the connection goes on); I/O errors (it closes, and the
/// partial file stays for a later `--resume`).
pub(crate) async fn put<S: AsyncRead + AsyncWrite + Unpin>(
    home: Home,
    (path, size, resume, kept): (String, u64, bool, Kept),
    conn: &mut Connection<S>,
) -> Result<u64> {
    let target = resolve(&path)?;
    let mut pending = home.begin_upload(&target, size, resume).await?;
    pending.upload.keep(kept);
    // Whatever happens next, what the upload changed in the home is booked.
    let result = receive(&home, &mut pending, &path, size, conn).await;
    let moved = size - pending.offset;
    home.settle(pending).await;
    result.map(|()| moved)
}

/// The rest of an upload after its go-ahead was decided.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    home: &Home,
    pending: &mut Pending<StoreUpload>,
    path: &str,
    size: u64,
    conn: &mut Connection<S>,
) -> Result<()> {
    let offset = pending.offset;
    conn.queue(&Reply::ok(PutReady { offset }), b"")?;
    conn.flush().await?;
    let head = conn.read_head().await?.ok_or_else(disconnected)?;
    let Request::Data { digest } = Request::from_head(&head)? else {
        return Err(Error::BadRequest(
            "expected a `data` frame after put's go-ahead".into(),
        ));
    };
    if head.body_len != size - offset {
        return Err(Error::BadRequest(format!(
            "the data frame has {} bytes; {} were expected (size {size} from offset {offset})",
            head.body_len,
            size - offset
        )));
    }
    let ours = match &mut pending.upload {
        StoreUpload::Local(local) => {
            let file = local.open_at(offset).await?;
            // Hashed while it streams in (a resumed upload re-reads the prefix it keeps
            // first), by the one digest the client announced.
            let which = match digest {
                DigestKind::Md5 => Digests::Md5,
                DigestKind::Blake3 => Digests::Blake3,
            };
            // Durable: the commit `fsync`s the file before it becomes visible.
            receive_body(conn, file, Some((offset, which)), true, &mut Quiet).await?
        }
        StoreUpload::S3(s3) => match receive_to_store(conn, s3, (offset, size), digest).await {
            Ok(sums) => sums,
            Err(e) if e.closes_connection() => return Err(e),
            Err(e) => {
                // The store failed while the body came in (drained since): the client's
                // `done` frame is on its way and belongs to this upload, so it is read here
                // and the one reply is the error.
                let head = conn.read_head().await?.ok_or_else(disconnected)?;
                return match Request::from_head(&head) {
                    Ok(Request::Done { .. }) => Err(e),
                    _ => Err(Error::Io(std::io::Error::other(
                        "expected a `done` frame after the data",
                    ))),
                };
            }
        },
    };
    let head = conn.read_head().await?.ok_or_else(disconnected)?;
    let Request::Done { md5, blake3 } = Request::from_head(&head)? else {
        return Err(Error::BadRequest(
            "expected a `done` frame with the digest after the data".into(),
        ));
    };
    let stored = match checked(digest, ours, Sums { md5, blake3 })? {
        Ok(stored) => stored,
        Err(problem) => return Err(reject(home, pending, problem).await),
    };
    home.commit(pending, size).await?;
    // Downloads of this file can then skip hashing it (see `get`).
    if let Ok((StoreReader::Local(file), _)) = home.open_read(pending.upload.target()).await {
        let sums = stored.clone();
        blocking(move || {
            remember_sums(&file, &sums);
            Ok(())
        })
        .await?;
    }
    let digest = stored.blake3.as_deref().or(stored.md5.as_deref());
    // The transfer's own line (user, bytes, duration) is the frame loop's; this adds the digest.
    debug!(%path, size, digest, "stored");
    let reply = Verified {
        size,
        md5: stored.md5,
        blake3: stored.blake3,
        resumed_from: offset,
    };
    conn.queue(&Reply::ok(reply), b"")
}

/// Checks the digest the upload announced (`digest`): the client's claim in `done`
/// (`theirs`) against the one computed over the received bytes (`ours`). Returns what to
/// remember of the stored file: the checked digest, plus the client's md5 next to a
/// checked BLAKE3 (an older sockit client sends both; the md5 then labels only its own
/// file). The inner error is a mismatch (the upload is discarded); the outer one a `done`
/// frame without the announced digest (the partial file stays for a resume).
fn checked(
    digest: DigestKind,
    ours: Sums,
    theirs: Sums,
) -> Result<std::result::Result<Sums, String>> {
    let (name, ours, claimed) = match digest {
        DigestKind::Md5 => ("md5", ours.md5, theirs.md5.clone()),
        DigestKind::Blake3 => ("BLAKE3", ours.blake3, theirs.blake3.clone()),
    };
    let Some(claimed) = claimed else {
        return Err(Error::BadRequest(format!(
            "the `done` frame has no `{}`, the digest the data frame announced",
            name.to_ascii_lowercase()
        )));
    };
    let ours = ours.ok_or_else(|| Error::Io(std::io::Error::other("no digest was computed")))?;
    if !ours.eq_ignore_ascii_case(&claimed) {
        return Ok(Err(format!(
            "{name} of the received bytes is {ours}, not the announced {claimed}"
        )));
    }
    Ok(Ok(match digest {
        DigestKind::Md5 => Sums {
            md5: Some(ours),
            blake3: None,
        },
        DigestKind::Blake3 => Sums {
            // Recorded only when it looks like one: it is unchecked, and goes into the xattr.
            md5: theirs
                .md5
                .filter(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|m| m.to_ascii_lowercase()),
            blake3: Some(ours),
        },
    }))
}

/// Answers a `get`. A small file's answer may come from `ahead`, read with the get before
/// it; this get in turn reads ahead the small files of the gets buffered behind it.
///
/// # Errors
/// Storage errors before the first byte (the connection goes on); I/O errors after it (the
/// frame is broken, so the connection closes).
pub(crate) async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    home: Home,
    (path, offset, digest): (String, u64, DigestKind),
    ahead: &mut ReadAhead,
    conn: &mut Connection<S>,
) -> Result<u64> {
    let source = resolve(&path)?;
    if let Some(small) = ahead.take(&source, offset, digest) {
        let (size, known) = (small.size, small.sums);
        conn.queue(&ready(size, 0), &small.bytes)?;
        debug!(%path, size, "sent (read ahead)");
        let trailer = Trailer {
            md5: known.md5,
            blake3: known.blake3,
        };
        conn.queue(&Reply::ok(trailer), b"")?;
        return Ok(size);
    }
    // Digests remembered at upload time spare the server the hashing; md5 (its slowest
    // part) is computed only for a client that checks it. A small local file is opened,
    // read and hashed whole in one trip to the blocking pool, together with the small files
    // of the gets buffered behind it (`get -r`'s thousands of small files); a larger one
    // streams.
    let wanted = ReadAhead::wanted(conn);
    let budget = ahead.budget.clone();
    let shown = path.clone();
    let read = move |root: &Root| {
        let (file, size) = root.open_read(&source)?;
        if offset > size {
            return Err(bad_offset(&shown, offset, size));
        }
        let opened = if offset == 0 && size <= SMALL_GET {
            let (sums, bytes) = read_whole(&file, size, digest)?;
            (file, size, sums, Some(bytes))
        } else {
            let known = remembered_sums(&file).unwrap_or_default();
            (file, size, known, None)
        };
        Ok((opened, read_ahead(root, wanted, &budget)))
    };
    let ((file, size, known, whole), read) = match home.with_local_root(read).await {
        Some(opened) => opened?,
        None => match home.open_read(&resolve(&path)?).await? {
            (_, size) if offset > size => return Err(bad_offset(&path, offset, size)),
            (StoreReader::S3(object), size) => {
                return get_object(conn, &object, (size, offset), digest).await;
            }
            (StoreReader::Local(_), _) => {
                return Err(Error::Internal(
                    "a local file outside the local home".into(),
                ));
            }
        },
    };
    ahead.files = read;
    let ready = ready(size, offset);
    let sent = match whole {
        Some(bytes) => {
            conn.queue(&ready, &bytes)?;
            Sums::default()
        }
        None => {
            conn.queue_head(&ready, size - offset)?;
            let hash = match digest {
                DigestKind::Blake3 if known.blake3.is_none() => Some(Digests::Blake3),
                DigestKind::Md5 if known.md5.is_none() => Some(Digests::Both),
                _ => None,
            };
            send_file(conn, file, offset, size - offset, hash, &mut Quiet).await?
        }
    };
    debug!(%path, size, offset, "sent");
    let digest = Trailer {
        md5: known.md5.or(sent.md5),
        blake3: known.blake3.or(sent.blake3),
    };
    conn.queue(&Reply::ok(digest), b"")?;
    Ok(size - offset)
}

/// The go-ahead of a get of `size` bytes from `offset`.
fn ready(size: u64, offset: u64) -> Reply<GetReady> {
    Reply::ok(GetReady {
        size,
        offset,
        blake3: true,
    })
}

fn bad_offset(path: &str, offset: u64, size: u64) -> Error {
    Error::BadRequest(format!(
        "cannot resume {path} at byte {offset}: it has {size} bytes"
    ))
}

/// Reads a small file of `size` bytes whole: its bytes, and its BLAKE3 (always: `GetReady`
/// promises it) and, when `digest` asks for it, its md5, remembered or computed.
fn read_whole(file: &std::fs::File, size: u64, digest: DigestKind) -> Result<(Sums, Vec<u8>)> {
    let known = remembered_sums(file).unwrap_or_default();
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(size).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file got shorter while it was being sent",
        )));
    }
    let sums = Sums {
        blake3: known.blake3.or_else(|| Some(blake3_hex(&bytes))),
        md5: known
            .md5
            .or_else(|| (digest == DigestKind::Md5).then(|| hex::encode(Md5::digest(&bytes)))),
    };
    Ok((sums, bytes))
}

/// Gets read ahead at most, and their bytes: what a connection may hold for them.
const AHEAD_FILES: usize = 64;
const AHEAD_BYTES: u64 = 4 * 1024 * 1024;

/// The default of `serve --max-read-ahead`: what all connections together may hold read
/// ahead (16 connections' worth of [`AHEAD_BYTES`]).
pub const DEFAULT_MAX_READ_AHEAD: u64 = 64 * 1024 * 1024;
/// Buffered heads looked at for one get, in bytes: 64 gets of ordinary paths take a few
/// KiB; a peer that pads its heads gets a shorter look, not more parsing per request.
const AHEAD_HEADS: usize = 64 * 1024;

/// Small files read for the `get`s buffered behind the one being served, in its trip to the
/// blocking pool, and taken by those gets in turn: `get -r` pipelines a window of gets, each
/// of which would otherwise cost a trip of its own. A file is read only once its get has
/// arrived, so its answer is the file as it was after the request came. Any other request
/// drops what is left ([`ReadAhead::clear`]): it may change the files.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    files: std::collections::VecDeque<Small>,
    budget: Arc<AheadBudget>,
}

/// A small file read whole.
#[derive(Debug)]
struct Small {
    path: WirePath,
    size: u64,
    sums: Sums,
    bytes: Vec<u8>,
    /// Its bytes' share of the server's budget, given back with them.
    _held: Held,
}

/// What all connections together may hold read ahead (`serve --max-read-ahead`). A client
/// that pipelines gets and then reads nothing keeps its connection's read-ahead until the
/// idle timeout; past this budget, further gets read nothing ahead and are answered one by
/// one, as they would be without it.
#[derive(Debug)]
pub(crate) struct AheadBudget {
    left: AtomicU64,
}

impl AheadBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> Arc<AheadBudget> {
        Arc::new(AheadBudget {
            left: AtomicU64::new(bytes),
        })
    }

    /// `n` bytes of the budget, if that much is left; given back when dropped.
    fn take(self: &Arc<Self>, n: u64) -> Option<Held> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .ok()?;
        Some(Held {
            budget: self.clone(),
            bytes: n,
        })
    }

    /// Bytes left.
    #[cfg(test)]
    fn left(&self) -> u64 {
        self.left.load(Ordering::Acquire)
    }
}

/// Bytes taken from an [`AheadBudget`].
#[derive(Debug)]
struct Held {
    budget: Arc<AheadBudget>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

impl ReadAhead {
    /// Nothing read ahead yet, within `budget`, which the server's connections share.
    pub(crate) fn new(budget: Arc<AheadBudget>) -> ReadAhead {
        ReadAhead {
            files: std::collections::VecDeque::new(),
            budget,
        }
    }

    /// Whether nothing is read ahead.
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Forgets what was read ahead.
    pub(crate) fn clear(&mut self) {
        self.files.clear();
    }

    /// The file read ahead for a get of `path`, if that get is the next one expected.
    fn take(&mut self, path: &WirePath, offset: u64, digest: DigestKind) -> Option<Small> {
        let small = self.files.pop_front();
        match small {
            Some(small) if &small.path == path && offset == 0 && digest == DigestKind::Blake3 => {
                Some(small)
            }
            _ => {
                self.clear();
                None
            }
        }
    }

    /// The paths of the whole-file BLAKE3 gets buffered behind the one being served, up to
    /// the first other request.
    fn wanted<S: AsyncRead + AsyncWrite + Unpin>(conn: &Connection<S>) -> Vec<WirePath> {
        conn.buffered_heads(AHEAD_FILES, AHEAD_HEADS)
            .iter()
            .map_while(|head| match Request::from_head(head) {
                Ok(Request::Get {
                    path,
                    offset: 0,
                    digest: DigestKind::Blake3,
                }) => resolve(&path).ok(),
                _ => None,
            })
            .collect()
    }
}

/// Reads the small files of `paths` whole, in order, up to the first that is not one (or
/// cannot be read: its own get reports why), within [`AHEAD_BYTES`] and what is left of
/// `budget`.
fn read_ahead(
    root: &Root,
    paths: Vec<WirePath>,
    budget: &Arc<AheadBudget>,
) -> std::collections::VecDeque<Small> {
    let mut read = std::collections::VecDeque::new();
    let mut bytes = 0;
    for path in paths {
        let Ok((file, size)) = root.open_read(&path) else {
            break;
        };
        if size > SMALL_GET || bytes + size > AHEAD_BYTES {
            break;
        }
        let Some(held) = budget.take(size) else {
            break;
        };
        let Ok((sums, body)) = read_whole(&file, size, DigestKind::Blake3) else {
            break;
        };
        bytes += size;
        read.push_back(Small {
            path,
            size,
            sums,
            bytes: body,
            _held: held,
        });
    }
    read
}

/// Receives the data frame's body into an object-store upload, hashed by `digest`. A store
/// failure in the middle drains the rest of the body, so the error is answered and the
/// connection goes on.
async fn receive_to_store<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    upload: &mut S3Upload,
    (offset, size): (u64, u64),
    digest: DigestKind,
) -> Result<Sums> {
    let stored = async {
        use tokio::io::AsyncReadExt;
        upload.start(offset, size, digest).await?;
        let mut body = conn.body();
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.reserve(STORE_CHUNK);
            let n = body.read_buf(&mut buf).await?;
            if n == 0 || buf.len() >= STORE_CHUNK {
                upload.write(buf.split().freeze()).await?;
            }
            if n == 0 {
                break;
            }
        }
        upload.finish().await
    }
    .await;
    if let Err(e) = &stored
        && !e.closes_connection()
    {
        conn.discard_body().await?;
    }
    stored
}

/// Bytes taken from the connection at a time for an object-store upload.
const STORE_CHUNK: usize = 1 << 20;

/// Answers a `get` of a file in the object store: its bytes from `offset` as the store sends
/// them, hashed on the way (a resumed get reads the bytes before `offset` too, unsent, for
/// the trailer's digests of the whole file).
async fn get_object<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    object: &S3Reader,
    (size, offset): (u64, u64),
    digest: DigestKind,
) -> Result<u64> {
    // Hashed on a thread of its own while the bytes go out (BLAKE3 alone would hold the
    // sending task back by a third).
    let (hash_tx, mut hash_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let md5 = digest == DigestKind::Md5;
    let hashing = tokio::task::spawn_blocking(move || {
        let mut blake3 = blake3::Hasher::new();
        let mut md5 = md5.then(Md5::new);
        while let Some(chunk) = hash_rx.blocking_recv() {
            blake3.update(&chunk);
            if let Some(md5) = md5.as_mut() {
                md5.update(&chunk);
            }
        }
        Trailer {
            md5: md5.map(|m| hex::encode(m.finalize())),
            blake3: Some(blake3.finalize().to_hex().to_string()),
        }
    });
    let ended = |_| Error::Internal("the hashing thread ended".into());
    if offset > 0 {
        let mut before = std::pin::pin!(object.range(0..offset));
        while let Some(chunk) = before.next().await {
            hash_tx.send(chunk?).await.map_err(ended)?;
        }
    }
    let ready = Reply::ok(GetReady {
        size,
        offset,
        blake3: true,
    });
    conn.queue_head(&ready, size - offset)?;
    let mut sent = 0u64;
    let mut chunks = std::pin::pin!(object.stream(offset));
    while let Some(chunk) = chunks.next().await {
        // The head is out: a failure now breaks the frame, and the connection closes.
        let chunk = chunk.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        sent += chunk.len() as u64;
        if sent > size - offset {
            return Err(Error::Io(std::io::Error::other(
                "the object grew while it was being sent",
            )));
        }
        hash_tx.send(chunk.clone()).await.map_err(ended)?;
        conn.send_body(&chunk).await?;
    }
    if sent != size - offset {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the object got shorter while it was being sent",
        )));
    }
    drop(hash_tx);
    let trailer = hashing
        .await
        .map_err(|e| Error::Internal(format!("hashing: {e}")))?;
    conn.queue(&Reply::ok(trailer), b"")?;
    Ok(size - offset)
}

/// Files up to this size are read and sent in one piece (see [`get`]).
const SMALL_GET: u64 = 256 * 1024;

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn disconnected() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the client left in the middle of an upload",
    ))
}

/// Throws away an upload whose bytes do not match their digest: the error to answer.
async fn reject(home: &Home, pending: &mut Pending<StoreUpload>, problem: String) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten small files of 64 KiB, and a root on their folder.
    fn ten_files() -> (tempfile::TempDir, Root, Vec<WirePath>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![i as u8; 64 * 1024]).unwrap();
            paths.push(resolve(&format!("f{i}")).unwrap());
        }
        let root = Root::open(dir.path()).unwrap();
        (dir, root, paths)
    }

    #[test]
    fn read_ahead_stops_at_the_servers_budget_and_gives_it_back_with_the_files() {
        let (_dir, root, paths) = ten_files();
        let budget = AheadBudget::new(3 * 64 * 1024 + 1);
        let first = read_ahead(&root, paths.clone(), &budget);
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].bytes, vec![2; 64 * 1024]);
        // Another connection finds nothing left, and reads nothing ahead.
        assert!(read_ahead(&root, paths.clone(), &budget).is_empty());
        drop(first);
        assert_eq!(budget.left(), 3 * 64 * 1024 + 1);
        // A budget of nothing turns reading ahead off.
        assert!(read_ahead(&root, paths, &AheadBudget::new(0)).is_empty());
    }

    #[test]
    fn a_file_taken_by_its_get_or_dropped_with_the_rest_gives_its_bytes_back() {
        let (_dir, root, paths) = ten_files();
        let budget = AheadBudget::new(u64::MAX / 2);
        let mut ahead = ReadAhead::new(budget.clone());
        ahead.files = read_ahead(&root, paths.clone(), &budget);
        assert_eq!(ahead.files.len(), 10);
        let taken = ahead.take(&paths[0], 0, DigestKind::Blake3).unwrap();
        assert_eq!(budget.left(), u64::MAX / 2 - 10 * 64 * 1024);
        drop(taken);
        // Another get than the one expected drops them all.
        assert!(ahead.take(&paths[5], 0, DigestKind::Blake3).is_none());
        assert!(ahead.is_empty());
        assert_eq!(budget.left(), u64::MAX / 2);
    }
}
