//! Moving file bytes between a framed connection and a file, with the file I/O and the md5 on
//! a blocking thread, so the async side only moves chunks.
//!
//! Both directions use a small bounded channel: memory per transfer is a few chunks, whatever
//! the file size, and a slow disk slows the socket (and the other way round) instead of
//! buffering. The chunks go back the other way once used, so a transfer cycles through a
//! few buffers instead of allocating (and faulting in, and zeroing) one per chunk; a chunk
//! still shared (an md5 thread may hold it) is dropped instead. Used by the file service
//! (server side) and by the client alike.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

mod digest;
mod direct;
mod read_ahead;

pub(crate) use digest::{Digests, Sums, remember_sums, remembered_sums};
pub(crate) use read_ahead::ReadAhead;

use crate::connection::Connection;
use crate::{Error, Result};
use digest::Summer;
use direct::{ALIGN, BLOCK, DirectWriter};

/// Bytes per chunk moved between the socket and the disk.
const TRANSFER_CHUNK: usize = 256 * 1024;

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
pub(crate) async fn blocking<T: Send + 'static>(
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
/// With `durable`, the bytes go to the disk while more arrive (the caller will `fsync` the
/// file, and finds little left to wait for): written with `O_DIRECT` where the file system
/// takes it (see [`direct`]), else through the page cache with a write-behind.
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the peer closes inside the body.
/// When the disk fails, the rest of the body is left unread (the connection skips it).
pub(crate) async fn receive_body<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    hash: Option<(u64, Digests)>,
    durable: bool,
    progress: &mut dyn Progress,
) -> Result<Sums> {
    // Blocks of a MiB (see `direct`): fewer in flight than the smaller chunks of a send.
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let (spare_tx, mut spare) = mpsc::unbounded_channel::<Bytes>();
    // Set when the socket side failed: the digests are then not worth waiting for.
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_failed = failed.clone();
    let start = file.stream_position()?;
    let writer = tokio::task::spawn_blocking(move || -> Result<Sums> {
        let mut summer = match hash {
            Some((n, which)) => Some(Summer::start(&mut file, n, which)?),
            None => None,
        };
        let mut writer = DirectWriter::new(file.try_clone()?, start, durable, spare_tx);
        let mut behind = None;
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(s) = summer.as_mut() {
                s.update(&chunk);
            }
            let n = chunk.len();
            writer.write(chunk)?;
            if durable && !writer.is_direct() {
                // Through the page cache after all: a write-behind keeps the fsync short.
                let b = match behind.as_mut() {
                    Some(b) => b,
                    None => behind.insert(WriteBehind::start(&file)?),
                };
                b.wrote(n);
            }
        }
        writer.finish()?;
        behind.map_or(Ok(()), WriteBehind::finish)?;
        if writer_failed.load(std::sync::atomic::Ordering::Acquire) {
            // Dropping the summer lets its md5 thread finish the queued chunks on its own.
            return Ok(Sums::default());
        }
        summer.map_or(Ok(Sums::default()), Summer::finish)
    });
    let mut body = conn.body();
    // The first block ends on a block boundary of the file, so the others start on one.
    let mut want = match (start % ALIGN as u64) as usize {
        0 => BLOCK,
        into => ALIGN - into,
    };
    let read_result: Result<()> = async {
        loop {
            // A block the writer is done with, if it came back whole; else a new one.
            let mut buf = spare
                .try_recv()
                .ok()
                .and_then(|b| b.try_into_mut().ok())
                .filter(direct::is_block)
                .map(|mut b| {
                    b.clear();
                    b
                })
                .unwrap_or_else(direct::block);
            let mut failed = None;
            while buf.len() < want {
                let room = want - buf.len();
                match body.read_buf(&mut (&mut buf).limit(room)).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            want = BLOCK;
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
/// caller queued on `conn`; with `hash`, returns those digests of the file's first
/// `offset + len` bytes (the skipped prefix is hashed too, so a resumed transfer still
/// verifies the whole file); without, the sums are empty (the caller knows them already).
///
/// # Errors
/// I/O errors on either side; an `UnexpectedEof` when the file is shorter than announced
/// (the frame is then incomplete, so the caller must close the connection).
pub(crate) async fn send_file<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    mut file: File,
    offset: u64,
    len: u64,
    hash: Option<Digests>,
    progress: &mut dyn Progress,
) -> Result<Sums> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let (spare_tx, spare) = std::sync::mpsc::channel::<Bytes>();
    let reader = tokio::task::spawn_blocking(move || -> Result<Sums> {
        let mut summer = match hash {
            Some(which) => Some(Summer::start(&mut file, offset, which)?),
            None => {
                file.seek(SeekFrom::Start(offset))?;
                None
            }
        };
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(TRANSFER_CHUNK);
            // A buffer the socket side is done with still holds initialised bytes:
            // reused, it needs no zeroing (and no fresh pages) before the read.
            let mut buf = spare
                .try_recv()
                .ok()
                .and_then(|b| b.try_into_mut().ok())
                .map(Vec::from)
                .unwrap_or_default();
            buf.resize(want, 0);
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
            let _ = spare_tx.send(chunk); // back to the reader, for the next chunk
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

/// Bytes written between two write-behind flushes.
const WRITE_BEHIND: usize = 32 << 20;

/// Write-behind for a file that will be `fsync`ed when complete: every [`WRITE_BEHIND`]
/// bytes, a thread of its own asks the disk to write what is there so far
/// (`fdatasync`), while the writer goes on. The final `fsync` then waits for the last
/// stretch only, instead of the whole file (about 0.4 s a GiB on this project's VMs).
struct WriteBehind {
    tx: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
    unflushed: usize,
}

impl WriteBehind {
    fn start(file: &File) -> std::io::Result<WriteBehind> {
        let file = file.try_clone()?;
        // One request waits at most: a flush asked for while one runs covers the same bytes.
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sockit-sync".into())
            .spawn(move || {
                // The first error is kept for the writer: the kernel reports a write-back
                // error once per open file, and this one shares the writer's.
                rx.iter().try_for_each(|()| file.sync_data())
            })?;
        Ok(WriteBehind {
            tx,
            thread,
            unflushed: 0,
        })
    }

    /// `n` more bytes were written.
    fn wrote(&mut self, n: usize) {
        self.unflushed += n;
        if self.unflushed >= WRITE_BEHIND {
            self.unflushed = 0;
            let _ = self.tx.try_send(()); // full: a flush is already asked for
        }
    }

    /// Waits for the flush in progress; returns the first write-back error.
    fn finish(self) -> std::io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the write-behind thread failed"))?
    }
}
