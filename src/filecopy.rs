//! Moving file bytes between a framed connection and a file, with the file I/O and the md5 on
//! a blocking thread, so the async side only moves chunks.
//!
//! Both directions use a small bounded channel: memory per transfer is a few chunks, whatever
//! the file size, and a slow disk slows the socket (and the other way round) instead of
//! buffering. Used by the file service (server side) and by the client alike.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use crate::connection::Connection;
use crate::{Error, Result};

/// Bytes per chunk moved between the socket and the disk.
pub const TRANSFER_CHUNK: usize = 256 * 1024;

/// Chunks in flight between the two sides.
const DEPTH: usize = 4;

/// Told about a transfer's progress (the CLI draws a bar; the server ignores it).
pub trait Progress: Send {
    /// The transfer of `total` bytes starts, with `done` already there (a resume).
    fn start(&mut self, _total: u64, _done: u64) {}
    /// `n` more bytes moved.
    fn advance(&mut self, _n: u64) {}
    /// The bytes are all moved (verification may follow).
    fn finish(&mut self) {}
}

/// No progress reporting.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {}

/// Runs `f` on the blocking pool.
///
/// # Errors
/// `f`'s error, or an internal error when the blocking task panicked or was cancelled.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("blocking task failed: {e}"))))?
}

/// Writes the unread body of the current frame on `conn` into `file` at its current
/// position. With `hash = Some((n, which))`, also returns the digests `which` of the file's
/// first `n` bytes (read back from `file`, which must then be readable) followed by the
/// body: the whole file's digests after a resumed transfer. Without, the sums are empty.
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the peer closes inside the body.
/// When the disk fails, the rest of the body is left unread (the connection skips it).
pub async fn receive_body<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    hash: Option<(u64, Digests)>,
    progress: &mut dyn Progress,
) -> Result<Sums> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    // Set when the socket side failed: the digests are then not worth waiting for.
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_failed = failed.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<Sums> {
        let mut summer = match hash {
            Some((n, which)) => Some(Summer::start(&mut file, n, which)?),
            None => None,
        };
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(s) = summer.as_mut() {
                s.update(&chunk);
            }
            file.write_all(&chunk)?;
        }
        file.flush()?;
        if writer_failed.load(std::sync::atomic::Ordering::Acquire) {
            // Dropping the summer lets its md5 thread finish the queued chunks on its own.
            return Ok(Sums::default());
        }
        summer.map_or(Ok(Sums::default()), Summer::finish)
    });
    let mut body = conn.body();
    let read_result: Result<()> = async {
        loop {
            let mut buf = BytesMut::with_capacity(TRANSFER_CHUNK);
            let mut failed = None;
            while buf.len() < TRANSFER_CHUNK {
                match body.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                // Keep what did arrive: a resumed transfer continues after it.
                if !buf.is_empty() {
                    let _ = tx.send(buf.freeze()).await;
                }
                return Err(e.into());
            }
            if buf.is_empty() {
                return Ok(());
            }
            let n = buf.len() as u64;
            if tx.send(buf.freeze()).await.is_err() {
                return Ok(()); // the writer failed; its error is reported below
            }
            progress.advance(n);
        }
    }
    .await;
    if read_result.is_err() {
        failed.store(true, std::sync::atomic::Ordering::Release);
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("writer task failed: {e}"))))?;
    read_result?;
    written
}

/// Sends `len` bytes of `file`, from its byte `offset` on, as the body of the head the
/// caller queued on `conn`; with `hash`, returns the md5 and BLAKE3 of the file's first
/// `offset + len` bytes (the skipped prefix is hashed too, so a resumed transfer still
/// verifies the whole file); without, the sums are empty (the caller knows them already).
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the file is shorter than announced
/// (the frame is then incomplete, so the caller must close the connection).
pub async fn send_file<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    offset: u64,
    len: u64,
    hash: bool,
    progress: &mut dyn Progress,
) -> Result<Sums> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let reader = tokio::task::spawn_blocking(move || -> Result<Sums> {
        let mut summer = if hash {
            Some(Summer::start(&mut file, offset, Digests::Both)?)
        } else {
            file.seek(SeekFrom::Start(offset))?;
            None
        };
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(TRANSFER_CHUNK);
            let mut buf = vec![0; want];
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was being sent",
                )));
            }
            buf.truncate(n);
            let chunk = Bytes::from(buf);
            if let Some(s) = summer.as_mut() {
                s.update(&chunk);
            }
            left -= n as u64;
            if tx.blocking_send(chunk).is_err() {
                break; // the socket side gave up; its error is reported
            }
        }
        summer.map_or(Ok(Sums::default()), Summer::finish)
    });
    // Ends when the reader is done or failed; the reader's result says which.
    let send_result: Result<()> = async {
        while let Some(chunk) = rx.recv().await {
            conn.send_body(&chunk).await?;
            progress.advance(chunk.len() as u64);
        }
        conn.flush().await
    }
    .await;
    drop(rx);
    let sums = reader
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("reader task failed: {e}"))))?;
    send_result?;
    sums
}

/// An md5 computed on a thread of its own from chunks handed to it (shared, not copied).
struct Hasher {
    tx: std::sync::mpsc::SyncSender<Bytes>,
    thread: std::thread::JoinHandle<Md5>,
}

impl Hasher {
    /// Starts hashing after the state `md5` (a prefix may already be in it).
    fn spawn(mut md5: Md5) -> Result<Hasher> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(2 * DEPTH);
        let thread = std::thread::Builder::new()
            .name("sockit-md5".into())
            .spawn(move || {
                for chunk in rx {
                    md5.update(&chunk);
                }
                md5
            })?;
        Ok(Hasher { tx, thread })
    }

    /// Hands one chunk over; blocks while the hasher is [`DEPTH`] chunks behind.
    fn update(&self, chunk: Bytes) {
        // A send fails only when the thread is gone, and `finish` reports that.
        let _ = self.tx.send(chunk);
    }

    /// Waits for the hash of everything handed over, as lowercase hex.
    fn finish(self) -> Result<String> {
        drop(self.tx);
        let md5 = self
            .thread
            .join()
            .map_err(|_| Error::Io(std::io::Error::other("the md5 thread failed")))?;
        Ok(hex::encode(md5.finalize()))
    }
}

/// Which digests a receiver computes. A sender always computes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// md5 only: the seeds' digest, what an older sockit peer sends.
    Md5,
    /// BLAKE3 only: the receiver checks the sender's BLAKE3 and takes its md5 as told.
    Blake3,
    /// Both.
    Both,
}

/// Digests of a transfer's bytes, lowercase hex; `None` for one that was not computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sums {
    /// md5 (the seeds' digest, kept in every header).
    pub md5: Option<String>,
    /// BLAKE3 (between sockit peers: about 6x cheaper than md5 per byte).
    pub blake3: Option<String>,
}

/// The digests of one stream: md5 on a thread of its own (at ~650 MB/s it would otherwise
/// hold back the disk or socket thread), BLAKE3 inline (several GB/s).
struct Summer {
    md5: Option<Hasher>,
    blake3: Option<blake3::Hasher>,
}

impl Summer {
    /// Starts the digests `which` over the first `prefix` bytes of `file`, leaving its
    /// position at `prefix`.
    fn start(file: &mut File, prefix: u64, which: Digests) -> Result<Summer> {
        let mut md5 = (which != Digests::Blake3).then(Md5::new);
        let mut b3 = (which != Digests::Md5).then(blake3::Hasher::new);
        file.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; if prefix > 0 { TRANSFER_CHUNK } else { 0 }];
        let mut left = prefix;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the partial file has {} bytes, not the {prefix} to resume from",
                        prefix - left
                    ),
                )));
            }
            if let Some(h) = md5.as_mut() {
                h.update(&buf[..n]);
            }
            if let Some(h) = b3.as_mut() {
                h.update(&buf[..n]);
            }
            left -= n as u64;
        }
        Ok(Summer {
            md5: md5.map(Hasher::spawn).transpose()?,
            blake3: b3,
        })
    }

    fn update(&mut self, chunk: &Bytes) {
        if let Some(h) = &self.md5 {
            h.update(chunk.clone());
        }
        if let Some(h) = self.blake3.as_mut() {
            h.update(chunk);
        }
    }

    fn finish(self) -> Result<Sums> {
        Ok(Sums {
            md5: self.md5.map(Hasher::finish).transpose()?,
            blake3: self.blake3.map(|h| h.finalize().to_hex().to_string()),
        })
    }
}

/// The extended attribute that remembers a stored file's digests.
const SUMS_XATTR: &str = "user.sockit.sums";

/// Records `md5` and `blake3` of `file`'s whole content in an extended attribute, stamped
/// with its size and modification time, so a later download can send the file without
/// hashing it. Best effort: a file system without user xattrs just gets no cache.
pub fn remember_sums(file: &File, md5: &str, blake3: &str) {
    let Some((len, mtime)) = stamp(file) else {
        return;
    };
    let value = format!("v1 {len} {mtime} {md5} {blake3}");
    let _ = rustix::fs::fsetxattr(
        file,
        SUMS_XATTR,
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    );
}

/// The digests [`remember_sums`] recorded for `file`, if its size and modification time
/// are still the ones they were recorded with (a file changed behind the server's back
/// is hashed again).
pub fn remembered_sums(file: &File) -> Option<Sums> {
    let (len, mtime) = stamp(file)?;
    let mut buf = [0u8; 256];
    let n = rustix::fs::fgetxattr(file, SUMS_XATTR, &mut buf).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    let mut fields = text.split(' ');
    let fresh = fields.next() == Some("v1")
        && fields.next()?.parse::<u64>().ok()? == len
        && fields.next()?.parse::<u128>().ok()? == mtime;
    let (md5, blake3) = (fields.next()?, fields.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (fresh && hex(md5, 32) && hex(blake3, 64)).then(|| Sums {
        md5: Some(md5.to_owned()),
        blake3: Some(blake3.to_owned()),
    })
}

/// Size and modification time (ns since the epoch) of `file`.
fn stamp(file: &File) -> Option<(u64, u128)> {
    let meta = file.metadata().ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_sums_are_dropped_once_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"hello").unwrap();
        let file = File::open(&path).unwrap();
        let (md5, b3) = ("5d41402abc4b2a76b9719d911017c592", "a".repeat(64));
        remember_sums(&file, md5, &b3);
        let Some(sums) = remembered_sums(&file) else {
            return; // this file system keeps no user xattrs: nothing is cached, nothing to test
        };
        assert_eq!(sums.md5.as_deref(), Some(md5));
        assert_eq!(sums.blake3.as_deref(), Some(b3.as_str()));
        std::fs::write(&path, b"hello, changed").unwrap();
        assert_eq!(remembered_sums(&File::open(&path).unwrap()), None);
    }
}
