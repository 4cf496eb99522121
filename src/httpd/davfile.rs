//! The file handles and metadata dav-server gets from [`super::dav::HomeFs`]: a file read
//! for a GET, and a PUT's upload, written into its partial file and committed by `flush`
//! only once all announced bytes arrived (dropped before: the partial bytes are thrown away).

use std::io::SeekFrom;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use dav_server::fs::{DavDirEntry, DavFile, DavMetaData, FsError, FsFuture, FsResult};
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncReadExt;

use super::dav::{io, to_fs};
use crate::Error;
use crate::filecopy::ReadAhead;
use crate::home::{Home, Pending, UploadWriter};
use crate::storage::backend::{STREAM_CHUNK, StoreReader, StoreUpload};
use crate::storage::s3::{Chunks, S3Reader};
use crate::storage::{Entry, EntryKind};

/// A file's or folder's metadata, from the core's [`Entry`].
#[derive(Debug, Clone)]
pub(super) struct Meta {
    len: u64,
    modified: SystemTime,
    kind: EntryKind,
}

impl From<&Entry> for Meta {
    fn from(entry: &Entry) -> Meta {
        let secs = Duration::from_secs(entry.modified.max(0).unsigned_abs());
        Meta {
            len: entry.size,
            modified: UNIX_EPOCH + secs,
            kind: entry.kind,
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.modified)
    }
    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
    fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink
    }
}

/// One entry of a folder listing.
pub(super) struct DirEntry {
    pub(super) name: Vec<u8>,
    pub(super) meta: Meta,
}

impl DavDirEntry for DirEntry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
}

/// A file opened for a GET.
#[derive(Debug)]
pub(super) struct ReadFile {
    pub(super) file: Source,
    pub(super) meta: Meta,
}

/// Where a GET reads from: a local file, or an object read from a position (a seek starts a
/// new ranged read).
#[derive(Debug)]
pub(super) enum Source {
    /// A local file, read ahead of the sending (`ReadAhead`).
    Local {
        /// The chunks from `pos` on (past what `rest` holds).
        ahead: ReadAhead,
        /// What is left of the chunk being handed out.
        rest: Bytes,
        /// Where the next byte handed out comes from.
        pos: u64,
        /// The file's length.
        len: u64,
    },
    /// An object in the store.
    S3 {
        /// The object.
        object: S3Reader,
        /// The read under way, from `pos`.
        reading: Option<tokio_util::io::StreamReader<Chunks, Bytes>>,
        /// Where the next byte comes from.
        pos: u64,
        /// The object's length.
        len: u64,
    },
}

impl Source {
    /// Opens what `reader` reads, of `len` bytes.
    pub(super) fn new(reader: StoreReader, len: u64) -> Source {
        match reader {
            StoreReader::Local(file) => Source::Local {
                ahead: ReadAhead::new(file, 0, len, STREAM_CHUNK),
                rest: Bytes::new(),
                pos: 0,
                len,
            },
            StoreReader::S3(object) => Source::S3 {
                object,
                reading: None,
                pos: 0,
                len,
            },
        }
    }

    /// Up to `count` bytes (none at the end): a local file's come as read, without a copy.
    async fn read_bytes(&mut self, count: usize) -> std::io::Result<Bytes> {
        if let Source::Local {
            ahead, rest, pos, ..
        } = self
        {
            if rest.is_empty() {
                match ahead.next().await {
                    Some(chunk) => *rest = chunk?,
                    None => return Ok(Bytes::new()),
                }
            }
            let out = rest.split_to(count.min(rest.len()));
            *pos += out.len() as u64;
            return Ok(out);
        }
        // dav-server asks for its read buffer's size (bounded); read until it is full or
        // the object ends, into memory that is not zeroed first.
        let want = count.min(STREAM_CHUNK);
        let mut buf = bytes::BytesMut::with_capacity(want);
        while buf.len() < want {
            let left = want - buf.len();
            if self
                .read_buf(&mut bytes::BufMut::limit(&mut buf, left))
                .await?
                == 0
            {
                break;
            }
        }
        Ok(buf.freeze())
    }

    async fn read_buf(&mut self, buf: &mut impl bytes::BufMut) -> std::io::Result<usize> {
        match self {
            Source::Local { .. } => Err(std::io::Error::other("a local file is read by chunks")),
            Source::S3 {
                object,
                reading,
                pos,
                ..
            } => {
                let reader = reading.get_or_insert_with(|| object.clone().into_async_read(*pos));
                let n = reader.read_buf(buf).await?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }

    async fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let (pos, len) = match self {
            Source::Local { pos, len, .. } | Source::S3 { pos, len, .. } => (*pos, *len),
        };
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
            SeekFrom::End(d) => len.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a seek before byte 0")
        })?;
        if target != pos {
            match self {
                Source::Local {
                    ahead, rest, pos, ..
                } => {
                    ahead.restart(target);
                    *rest = Bytes::new();
                    *pos = target;
                }
                Source::S3 { reading, pos, .. } => {
                    *reading = None;
                    *pos = target;
                }
            }
        }
        Ok(target)
    }
}

impl DavFile for ReadFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
    fn write_buf(&mut self, _: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }
    fn write_bytes(&mut self, _: Bytes) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }
    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move { self.file.read_bytes(count).await.map_err(io) }.boxed()
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move { self.file.seek(pos).await.map_err(io) }.boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

/// A PUT in progress: the upload's partial file, committed by `flush` once `size` bytes
/// arrived, thrown away when dropped before that.
pub(super) struct WriteFile {
    pub(super) home: Home,
    pub(super) pending: Option<Pending<StoreUpload>>,
    pub(super) file: UploadWriter,
    pub(super) size: u64,
    pub(super) written: u64,
}

impl std::fmt::Debug for WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile")
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl WriteFile {
    async fn write(&mut self, bytes: Bytes) -> FsResult<()> {
        let total = self.written.saturating_add(bytes.len() as u64);
        if total > self.size {
            // More than Content-Length announced: never stored.
            return Err(FsError::TooLarge);
        }
        let Some(pending) = self.pending.as_mut() else {
            return Err(FsError::GeneralFailure);
        };
        self.file.write(pending, bytes).await.map_err(to_fs)?;
        self.written = total;
        Ok(())
    }

    pub(super) async fn commit(&mut self) -> FsResult<()> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(()); // flushed before
        };
        let committed = if self.written == self.size {
            match self.file.finish(&mut pending, true).await {
                Ok(()) => self.home.commit(&mut pending, self.size).await,
                Err(e) => Err(e),
            }
        } else {
            Err(Error::BadRequest("the body ended before its length".into()))
        };
        if committed.is_err() {
            self.home.discard(&mut pending).await;
        }
        self.home.settle(pending).await;
        committed.map_err(to_fs)
    }
}

impl Drop for WriteFile {
    fn drop(&mut self) {
        // Cut off before its end: nothing becomes visible, and what the partial file held
        // is booked away in the background.
        if let Some(mut pending) = self.pending.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let home = self.home.clone();
            runtime.spawn(async move {
                home.discard(&mut pending).await;
                home.settle(pending).await;
            });
        }
    }
}

impl DavFile for WriteFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta {
            len: self.written,
            modified: SystemTime::now(),
            kind: EntryKind::File,
        });
        async move { Ok(meta) }.boxed()
    }
    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            while buf.has_remaining() {
                let chunk = Bytes::copy_from_slice(buf.chunk());
                let n = chunk.len();
                self.write(chunk).await?;
                buf.advance(n);
            }
            Ok(())
        }
        .boxed()
    }
    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.write(buf).await }.boxed()
    }
    fn read_bytes(&mut self, _: usize) -> FsFuture<'_, Bytes> {
        async { Err(FsError::Forbidden) }.boxed()
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        // Only where it is already: a PUT writes from its start to its end.
        let here = self.written;
        async move {
            match pos {
                SeekFrom::Start(n) if n == here => Ok(here),
                SeekFrom::Current(0) => Ok(here),
                _ => Err(FsError::NotImplemented),
            }
        }
        .boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move { self.commit().await }.boxed()
    }
}
