//! The file handles and metadata dav-server gets from [`super::dav::HomeFs`]: a file read
//! for a GET, and a PUT's upload, written into its partial file and committed by `flush`
//! only once all announced bytes arrived (dropped before: the partial bytes are thrown away).

use std::io::SeekFrom;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use dav_server::fs::{DavDirEntry, DavFile, DavMetaData, FsError, FsFuture, FsResult};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dav::{io, to_fs};
use crate::Error;
use crate::filecopy::blocking;
use crate::home::{Home, Pending};
use crate::storage::backend::LocalUpload;
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
    pub(super) file: tokio::fs::File,
    pub(super) meta: Meta,
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
        async move {
            // dav-server asks for its read buffer's size (bounded); read until it is full
            // or the file ends.
            let mut buf = vec![0u8; count.min(1 << 20)];
            let mut filled = 0;
            while filled < buf.len() {
                let n = self.file.read(&mut buf[filled..]).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        }
        .boxed()
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            tokio::io::AsyncSeekExt::seek(&mut self.file, pos)
                .await
                .map_err(io)
        }
        .boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

/// A PUT in progress: the upload's partial file, committed by `flush` once `size` bytes
/// arrived, thrown away when dropped before that.
pub(super) struct WriteFile {
    pub(super) home: Home,
    pub(super) pending: Option<Pending<LocalUpload>>,
    pub(super) file: tokio::fs::File,
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
    async fn write(&mut self, bytes: &[u8]) -> FsResult<()> {
        let total = self.written.saturating_add(bytes.len() as u64);
        if total > self.size {
            // More than Content-Length announced: never stored.
            return Err(FsError::TooLarge);
        }
        self.file.write_all(bytes).await.map_err(io)?;
        self.written = total;
        Ok(())
    }

    pub(super) async fn commit(&mut self) -> FsResult<()> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(()); // flushed before
        };
        let committed = if self.written == self.size {
            match self.file.flush().await {
                Ok(()) => self.home.commit(&mut pending, self.size).await,
                Err(e) => Err(e.into()),
            }
        } else {
            Err(Error::BadRequest("the body ended before its length".into()))
        };
        if committed.is_err() {
            discard(&mut pending).await;
        }
        self.home.settle(pending).await;
        committed.map_err(to_fs)
    }
}

/// Throws an upload's partial bytes away (a WebDAV PUT does not resume).
pub(super) async fn discard(pending: &mut Pending<LocalUpload>) {
    if let Some(partial) = pending.upload.partial.take() {
        let _ = blocking(move || partial.discard()).await;
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
                discard(&mut pending).await;
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
                let chunk = buf.chunk().to_vec();
                self.write(&chunk).await?;
                buf.advance(chunk.len());
            }
            Ok(())
        }
        .boxed()
    }
    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.write(&buf).await }.boxed()
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

/// The upload's partial file, opened for writing at `offset` (what lies past it is cut).
pub(super) async fn open_partial(
    pending: &mut Pending<LocalUpload>,
    offset: u64,
) -> crate::Result<std::fs::File> {
    let Some(mut partial) = pending.upload.partial.take() else {
        return Err(Error::Internal("the upload has no partial file".into()));
    };
    let (file, partial) = blocking(move || partial.open_at(offset).map(|f| (f, partial))).await?;
    pending.upload.partial = Some(partial);
    Ok(file)
}
