//! `put` and `get`: verified, resumable transfers of a logged-in user.
//!
//! Upload, as frames on one connection:
//!
//! | step | client sends | server answers |
//! | --- | --- | --- |
//! | 1 | `{"op":"put","path":p,"size":n,"resume":b}` | `{"ok":true,"offset":k}` or an error (quota, busy, …) |
//! | 2 | `{"op":"data","total_size":n-k}` + the bytes from `k` on (sockit clients add `"digest":"blake3"`) | nothing yet |
//! | 3 | `{"op":"done","md5":m}` (md5 of the whole file; plus `"blake3":b` after `"digest":"blake3"`) | `{"ok":true,"size":n,"md5":m}` or `digest_mismatch` |
//!
//! The bytes land in the target's partial file; only when size and md5 match is it renamed
//! into place. The quota is checked before the go-ahead (with the reservation held until the
//! end, so concurrent uploads cannot overshoot together) and enforced while bytes arrive by
//! the data frame's fixed length. Download: `{"op":"get","path":p,"offset":k}` is answered
//! with `{"ok":true,"size":n,"offset":k}` + the bytes from `k` on, then a trailer frame
//! `{"ok":true,"md5":m,"blake3":b}` with the digests of the whole file.
//!
//! md5 stays in every header, as in the seeds, but it is the slow part (~650 MB/s a core):
//! between sockit peers the receiver checks BLAKE3 instead and takes the sender's md5 as
//! told, so md5 is computed once per transfer, on the sending side, off the I/O threads.

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::files::resolve;
use super::session::{FileService, LoggedIn};
use crate::connection::Connection;
use crate::filecopy::{
    Digests, Quiet, Sums, blocking, receive_body, remember_sums, remembered_sums, send_file,
};
use crate::protocol::{Reply, Request};
use crate::{Error, Result};

/// Go-ahead of a `put`: send the bytes from `offset` on.
#[derive(Debug, Serialize)]
pub struct PutReady {
    /// Bytes the server already has (0 unless resuming).
    pub offset: u64,
}

/// End of a transfer: what is stored, or what was sent.
#[derive(Debug, Serialize)]
pub struct Verified {
    /// Size of the whole file.
    pub size: u64,
    /// md5 of the whole file, lowercase hex.
    pub md5: String,
}

/// First reply of a `get`: the file's size and where the body starts.
#[derive(Debug, Serialize)]
pub struct GetReady {
    /// Size of the whole file.
    pub size: u64,
    /// Offset of the first body byte.
    pub offset: u64,
    /// The trailer will carry the BLAKE3 too (so a client may hash that instead of md5).
    pub blake3: bool,
}

/// Trailer of a `get`.
#[derive(Debug, Serialize)]
pub struct Digest {
    /// md5 of the whole file, lowercase hex.
    pub md5: String,
    /// BLAKE3 of the whole file, lowercase hex (sockit clients check this one: it is
    /// several times cheaper than md5; others ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// Runs an upload whose `put` head was just read.
///
/// # Errors
/// Storage, quota and digest errors (the connection goes on); I/O errors (it closes, and the
/// partial file stays for a later `--resume`).
pub async fn put<S: AsyncRead + AsyncWrite + Unpin>(
    files: &FileService,
    user: &LoggedIn,
    (path, size, resume): (String, u64, bool),
    conn: &mut Connection<S>,
) -> Result<()> {
    let target = resolve(&path)?;
    let root = user.root.clone();
    let (mut partial, have, used) = blocking(move || {
        let partial = root.partial(&target)?;
        let have = partial.len()?;
        // Bytes the upload will replace do not count against it: an old partial we
        // restart, or the file it overwrites.
        let old = match root.stat(&target) {
            Ok(entry) => entry.size,
            Err(_) => 0,
        };
        let used = root.usage()?.saturating_sub(old);
        Ok((partial, have, used))
    })
    .await?;
    let offset = if resume && have <= size { have } else { 0 };
    let used = if offset == 0 {
        used.saturating_sub(have)
    } else {
        used
    };
    let mut reservation = files
        .ledger
        .reserve(&user.name, used, user.quota, size - offset)?;
    conn.queue(&Reply::ok(PutReady { offset }), b"")?;
    conn.flush().await?;

    let head = conn.read_head().await?.ok_or_else(disconnected)?;
    // `"digest":"blake3"` on the data frame: the client will send the file's BLAKE3 with
    // the md5, so this side hashes BLAKE3 only (several times cheaper than md5).
    let blake3 = head.header.get("digest").and_then(|d| d.as_str()) == Some("blake3");
    if Request::from_head(&head)? != Request::Data {
        return Err(Error::BadRequest(
            "expected a `data` frame after put's go-ahead".into(),
        ));
    }
    if head.body_len != size - offset {
        return Err(Error::BadRequest(format!(
            "the data frame has {} bytes; {} were expected (size {size} from offset {offset})",
            head.body_len,
            size - offset
        )));
    }
    let file = blocking(move || partial.open_at(offset).map(|f| (f, partial))).await?;
    let (file, partial) = file;
    // A fresh upload is hashed while it streams in; a resumed one (whose prefix is not
    // readable through the write handle) is hashed whole at commit.
    let which = if blake3 {
        Digests::Blake3
    } else {
        Digests::Md5
    };
    let computed =
        receive_body(conn, file, (offset == 0).then_some((0, which)), &mut Quiet).await?;

    let head = conn.read_head().await?.ok_or_else(disconnected)?;
    let Request::Done { md5, blake3 } = Request::from_head(&head)? else {
        return Err(Error::BadRequest(
            "expected a `done` frame with the md5 after the data".into(),
        ));
    };
    let (root, target) = (user.root.clone(), resolve(&path)?);
    let stored = blocking(move || {
        let (stored, blake3) = match (computed, blake3) {
            // The bytes are checked by BLAKE3; the md5 is the client's, over the same bytes.
            (
                Sums {
                    blake3: Some(ours), ..
                },
                Some(theirs),
            ) => {
                if !ours.eq_ignore_ascii_case(&theirs) {
                    let target = partial.target().to_string();
                    partial.discard()?;
                    return Err(Error::DigestMismatch(format!(
                        "{target}: BLAKE3 of the received bytes is {ours}, not the announced \
                         {theirs}; the upload was discarded"
                    )));
                }
                (partial.commit_hashed(size, Some(&md5), &md5)?, Some(ours))
            }
            (
                Sums {
                    md5: Some(ours), ..
                },
                _,
            ) => (partial.commit_hashed(size, Some(&md5), &ours)?, None),
            // Resumed, or BLAKE3 announced but not sent: hash the whole file now.
            _ => (partial.commit(size, Some(&md5))?, None),
        };
        // Downloads of this file can then skip hashing it (see `get`).
        if let Some(blake3) = blake3
            && let Ok((file, _)) = root.open_read(&target)
        {
            remember_sums(&file, &stored, &blake3);
        }
        Ok(stored)
    })
    .await?;
    reservation.settle(size - offset);
    info!(user = %user.name, %path, size, md5 = %stored, "stored");
    conn.queue(&Reply::ok(Verified { size, md5: stored }), b"")
}

/// Answers a `get`.
///
/// # Errors
/// Storage errors before the first byte (the connection goes on); I/O errors after it (the
/// frame is broken, so the connection closes).
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    user: &LoggedIn,
    (path, offset): (String, u64),
    conn: &mut Connection<S>,
) -> Result<()> {
    let source = resolve(&path)?;
    let root = user.root.clone();
    let (file, size, known) = blocking(move || {
        let (file, size) = root.open_read(&source)?;
        let known = remembered_sums(&file);
        Ok((file, size, known))
    })
    .await?;
    if offset > size {
        return Err(Error::BadRequest(format!(
            "cannot resume {path} at byte {offset}: it has {size} bytes"
        )));
    }
    conn.queue_head(
        &Reply::ok(GetReady {
            size,
            offset,
            blake3: true,
        }),
        size - offset,
    )?;
    // Digests remembered at upload time spare the server the md5 (its slowest part).
    let hash = known.is_none();
    let sent = send_file(conn, file, offset, size - offset, hash, &mut Quiet).await?;
    let sums = known.unwrap_or(sent);
    info!(user = %user.name, %path, size, offset, "sent");
    let digest = Digest {
        md5: sums.md5.unwrap_or_default(),
        blake3: sums.blake3,
    };
    conn.queue(&Reply::ok(digest), b"")
}

fn disconnected() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the client left in the middle of an upload",
    ))
}
