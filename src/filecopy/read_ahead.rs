//! [`ReadAhead`]: a stretch of a local file as a stream of chunks, each read by the blocking
//! pool while the consumer is still sending the one before.
//!
//! A door that reads a file through `tokio::fs::File` pays for a blocking-pool trip per read,
//! a copy of every byte out of tokio's own buffer, and a wait: nothing is read while the
//! last chunk is encrypted and sent. Here each chunk is read (`pread`, into memory that is
//! not zeroed first) straight into the buffer that is handed on, and the next read starts
//! as soon as a chunk is taken, so disk and socket overlap. No thread waits for a slow
//! consumer: a read is started only when the one before was taken, and at most two chunks
//! exist per stream (the one being sent, the one being read).

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::task::JoinHandle;

/// Chunks of a file, `pos..end`, read one ahead of the consumer.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    file: Arc<File>,
    /// Where the next read starts (reads in flight are past it).
    pos: u64,
    end: u64,
    chunk: usize,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl ReadAhead {
    /// The bytes `start..end` of `file`, in chunks of `chunk` bytes (the last one shorter).
    pub(crate) fn new(file: File, start: u64, end: u64, chunk: usize) -> ReadAhead {
        ReadAhead {
            file: Arc::new(file),
            pos: start,
            end,
            chunk: chunk.max(1),
            reading: None,
        }
    }

    /// From now on, the bytes from `start` (to the same end); a read under way is dropped.
    pub(crate) fn restart(&mut self, start: u64) {
        self.reading = None;
        self.pos = start;
    }

    /// Starts the next chunk's read, unless one is under way or the end is reached.
    fn read_next(&mut self) {
        if self.reading.is_some() || self.pos >= self.end {
            return;
        }
        let want = usize::try_from(self.end - self.pos)
            .unwrap_or(usize::MAX)
            .min(self.chunk);
        let (file, at) = (self.file.clone(), self.pos);
        self.pos += want as u64;
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_at(&file, at, want)
        }));
    }
}

impl Stream for ReadAhead {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.read_next();
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let chunk = read.unwrap_or_else(|e| Err(io::Error::other(format!("reading: {e}"))));
        if chunk.is_ok() {
            // The next read runs while the caller sends this chunk.
            this.read_next();
        } else {
            this.pos = this.end;
        }
        Poll::Ready(Some(chunk))
    }
}

/// `want` bytes of `file` from `at`, or an error if the file ends first.
fn read_at(file: &File, mut at: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(want);
    while buf.len() < want {
        // Into the vector's spare capacity, which then counts as its length: no zeroing.
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was being sent",
            ));
        }
        at += n as u64;
    }
    // The capacity may be more than asked for, and read into.
    buf.truncate(want);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures_util::StreamExt;

    use super::*;

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    async fn collect(mut ahead: ReadAhead) -> io::Result<(Vec<u8>, Vec<usize>)> {
        let (mut all, mut sizes) = (Vec::new(), Vec::new());
        while let Some(chunk) = ahead.next().await {
            let chunk = chunk?;
            sizes.push(chunk.len());
            all.extend_from_slice(&chunk);
        }
        Ok((all, sizes))
    }

    #[tokio::test]
    async fn a_stretch_comes_whole_in_chunks_of_the_size_asked() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (all, sizes) = collect(ReadAhead::new(file_of(&bytes), 1_000, 9_500, 3_000))
            .await
            .unwrap();
        assert_eq!(all, bytes[1_000..9_500]);
        assert_eq!(sizes, [3_000, 3_000, 2_500]);
        let (all, _) = collect(ReadAhead::new(file_of(&bytes), 0, 0, 3_000))
            .await
            .unwrap();
        assert!(all.is_empty());
    }

    #[tokio::test]
    async fn a_restart_reads_from_its_new_start() {
        let bytes: Vec<u8> = (0..5_000u32).map(|i| (i % 13) as u8).collect();
        let mut ahead = ReadAhead::new(file_of(&bytes), 0, 5_000, 1_000);
        assert_eq!(ahead.next().await.unwrap().unwrap(), bytes[..1_000]);
        ahead.restart(4_200);
        let (all, _) = collect(ahead).await.unwrap();
        assert_eq!(all, bytes[4_200..]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_is_an_error_not_a_short_copy() {
        let mut ahead = ReadAhead::new(file_of(&[7; 1_500]), 0, 4_000, 1_000);
        assert_eq!(ahead.next().await.unwrap().unwrap().len(), 1_000);
        let err = ahead.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(ahead.next().await.is_none());
    }
}
