//! FTP `STOR` (and `REST n` + `STOR`, `APPE`) over the core's uploads: the bytes land in the
//! target's partial file, each chunk reserved against the quota before it is written, and
//! the file takes its name only once the data connection ended as a finished transfer.
//!
//! FTP says neither the size nor a digest of an upload, and on a plain data connection the
//! end of a finished transfer and of a killed client look the same (a FIN). So an end of
//! data counts as finished only if the client is still on its control connection (a
//! killed client's control connection closes with it), and, under TLS, only after the
//! client's `close_notify` (rustls reports a cut otherwise). A cut upload keeps its partial
//! file, invisible, for a later `REST` + `STOR`.
//!
//! | `REST n` | bytes kept before the new ones |
//! | --- | --- |
//! | none (0) | none: the partial file starts over |
//! | n <= the partial file's length | the partial file's first n (a resume) |
//! | otherwise | the stored file's first n (an append; refused if it has fewer) |

use std::future::Future;
use std::io::Read;

use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::info;

use crate::filecopy::blocking;
use crate::home::{Home, Pending, UploadWriter};
use crate::storage::WirePath;
use crate::storage::backend::Upload as _;
use crate::storage::backend::{StoreReader, StoreUpload};
use crate::{Error, Result};

/// Bytes read from the data connection (and reserved) at a time.
const CHUNK: usize = 256 * 1024;

/// The most of a refused upload read (and dropped) so that its client hears why.
const MAX_DRAIN: u64 = 16 * 1024 * 1024;

/// Stores what `input` sends as `target`, keeping the first `start` bytes as the table
/// above says; returns the bytes received. `left` tells whether the client left once the
/// data ended.
///
/// # Errors
/// [`Error::QuotaExceeded`] (the upload is thrown away), [`Error::BadRequest`] for a
/// restart past what is stored, I/O errors and a cut transfer (the partial file stays).
pub(crate) async fn store<R: AsyncRead + Unpin>(
    home: &Home,
    target: &WirePath,
    mut input: R,
    start: u64,
    left: impl Future<Output = bool>,
) -> Result<u64> {
    let result = match home.begin_upload(target, start, start > 0).await {
        Ok(mut pending) => {
            let result = receive(home, &mut pending, target, &mut input, start, left).await;
            home.settle(pending).await;
            result
        }
        Err(e) => Err(e),
    };
    if let Err(Error::QuotaExceeded(_)) = &result {
        drain(&mut input).await;
    }
    result
}

/// Reads and drops what the client still sends of a refused upload, up to [`MAX_DRAIN`]:
/// a client that is still writing when the data connection closes fails on the write
/// (curl: "send failure") without reading the refusal's 552 on the control connection.
async fn drain<R: AsyncRead + Unpin>(input: &mut R) {
    drop(tokio::io::copy(&mut input.take(MAX_DRAIN), &mut tokio::io::sink()).await);
}

/// The rest of [`store`], once the upload holds the one-writer lock.
async fn receive<R: AsyncRead + Unpin>(
    home: &Home,
    pending: &mut Pending<StoreUpload>,
    target: &WirePath,
    input: &mut R,
    start: u64,
    left: impl Future<Output = bool>,
) -> Result<u64> {
    let have = pending.upload.received();
    let mut writer = if start > have {
        append(home, pending, target, start).await?
    } else {
        // FTP says no size: the store's upload is told the most it could be.
        home.writer(pending, start, u64::MAX).await?
    };
    pending.offset = start;
    let mut buf = bytes::BytesMut::new();
    let mut received = 0u64;
    loop {
        buf.reserve(CHUNK);
        let n = input.read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Err(e) = home.reserve_more(pending, n as u64) {
            drop(writer);
            home.discard(pending).await;
            return Err(e);
        }
        writer.write(pending, buf.split().freeze()).await?;
        received += n as u64;
    }
    // Every write done before the commit reopens, syncs and renames the partial file.
    writer.finish(pending, true).await?;
    drop(writer);
    if left.await {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!(
                "{target}: the client left before the transfer was confirmed; kept for a restart"
            ),
        )));
    }
    let size = start + received;
    home.commit(pending, size).await?;
    info!(path = %target, size, resumed_from = start, "stored (FTP)");
    Ok(received)
}

/// An append (`REST n` past what the partial file holds): the stored file's first `start`
/// bytes are copied into the partial file first. Local homes only: an object-store upload
/// continues from its parts alone.
async fn append(
    home: &Home,
    pending: &mut Pending<StoreUpload>,
    target: &WirePath,
    start: u64,
) -> Result<UploadWriter> {
    let (stored, len) = match home.open_read(target).await? {
        (StoreReader::Local(file), len) => (file, len),
        (StoreReader::S3(_), _) => {
            return Err(Error::BadRequest(format!(
                "cannot restart {target} at byte {start} on this server's object store: \
                 send it from 0 or from where its upload stopped"
            )));
        }
    };
    if len < start {
        return Err(Error::BadRequest(format!(
            "cannot restart {target} at byte {start}: {len} bytes are stored"
        )));
    }
    let Some(local) = pending.upload.local() else {
        return Err(Error::Internal(
            "a local file in an object-store upload".into(),
        ));
    };
    let mut partial = local
        .partial
        .take()
        .ok_or_else(|| Error::Internal("the upload has no partial file".into()))?;
    let opened = blocking(move || {
        let mut part = partial.open_at(0)?;
        let copied = std::io::copy(&mut stored.take(start), &mut part)?;
        if copied != start {
            return Err(Error::Busy(format!(
                "the stored file changed while it was read ({copied} of {start} bytes)"
            )));
        }
        Ok((part, partial))
    })
    .await;
    let (file, partial) = opened?;
    local.partial = Some(partial);
    Ok(UploadWriter::Local(tokio::fs::File::from_std(file)))
}
