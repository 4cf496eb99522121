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
/// position. With `hash_prefix = Some(n)`, also returns the md5 of the file's first `n`
/// bytes (read back from `file`, which must then be readable) followed by the body: the
/// whole file's digest after a resumed transfer.
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the peer closes inside the body.
/// When the disk fails, the rest of the body is left unread (the connection skips it).
pub async fn receive_body<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    hash_prefix: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<Option<String>> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || -> Result<Option<String>> {
        // The digest runs on a thread of its own, beside the disk writes: md5 (~650 MB/s)
        // and page-cache writes each take most of a core at loopback speeds.
        let hasher = match hash_prefix {
            Some(n) => Some(Hasher::spawn(hash_prefix_of(&mut file, n)?)?),
            None => None,
        };
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(h) = &hasher {
                h.update(chunk.clone());
            }
            file.write_all(&chunk)?;
        }
        file.flush()?;
        hasher.map(Hasher::finish).transpose()
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
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("writer task failed: {e}"))))?;
    read_result?;
    written
}

/// Sends `len` bytes of `file`, from its byte `offset` on, as the body of the head the
/// caller queued on `conn`; returns the md5 of the file's first `offset + len` bytes (the
/// skipped prefix is hashed too, so a resumed transfer still verifies the whole file).
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the file is shorter than announced
/// (the frame is then incomplete, so the caller must close the connection).
pub async fn send_file<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    offset: u64,
    len: u64,
    progress: &mut dyn Progress,
) -> Result<String> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let reader = tokio::task::spawn_blocking(move || -> Result<String> {
        let hasher = Hasher::spawn(hash_prefix_of(&mut file, offset)?)?;
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
            hasher.update(chunk.clone());
            left -= n as u64;
            if tx.blocking_send(chunk).is_err() {
                break; // the socket side gave up; its error is reported
            }
        }
        hasher.finish()
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
    let md5 = reader
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("reader task failed: {e}"))))?;
    send_result?;
    md5
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

/// Hashes the first `n` bytes of `file`, leaving its position at `n`.
fn hash_prefix_of(file: &mut File, n: u64) -> Result<Md5> {
    let mut md5 = Md5::new();
    file.seek(SeekFrom::Start(0))?;
    let copied = std::io::copy(&mut (&mut *file).take(n), &mut Md5Writer(&mut md5))?;
    if copied != n {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the partial file has {copied} bytes, not the {n} to resume from"),
        )));
    }
    Ok(md5)
}

/// Adapts an md5 state to `io::Write`, for `io::copy`.
struct Md5Writer<'a>(&'a mut Md5);

impl Write for Md5Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
