//! WebDAV at `/dav/` (class 1 and 2): dav-server's handler over the file-service core. Every
//! call goes through [`Home`], so the jail, the quota, one writer per file and "nothing
//! visible until complete" hold here as at the native port; this file only translates.
//!
//! A PUT writes the upload's partial file and commits it only once exactly the announced
//! bytes arrived (dav-server calls `flush` at the end of the body); a body cut short drops
//! the file, which throws the partial bytes away. Locks live in memory, one lock table per
//! user; dead properties in [`super::props`].

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::props::DeadProps;
use crate::Error;
use crate::filecopy::blocking;
use crate::home::{Home, Pending};
use crate::storage::backend::LocalUpload;
use crate::storage::{Entry, EntryKind, WirePath};

/// The file system dav-server sees: one user's [`Home`], for one request.
#[derive(Clone)]
pub(crate) struct HomeFs {
    home: Home,
    user: Arc<str>,
    props: Arc<DeadProps>,
}

impl HomeFs {
    /// `user`'s `home`, with the server's dead properties.
    pub(crate) fn new(home: Home, user: &str, props: Arc<DeadProps>) -> HomeFs {
        HomeFs {
            home,
            user: user.into(),
            props,
        }
    }
}

/// The checked path of a dav-server path (already percent-decoded and normalised, prefix
/// stripped): every name goes through [`WirePath::resolve`], as at every door.
fn wire(path: &DavPath) -> FsResult<WirePath> {
    let text = std::str::from_utf8(path.as_bytes()).map_err(|_| FsError::Forbidden)?;
    WirePath::root().resolve(text).map_err(to_fs)
}

/// What dav-server answers for a core error (403, 404, 405/409, 507, 413, 500).
fn to_fs(e: Error) -> FsError {
    match e {
        Error::NotFound(_) => FsError::NotFound,
        Error::AlreadyExists(_) => FsError::Exists,
        Error::PermissionDenied(_) | Error::BadRequest(_) | Error::Busy(_) => FsError::Forbidden,
        Error::QuotaExceeded(_) | Error::StorageFull(_) => FsError::InsufficientStorage,
        Error::TooLarge(_) => FsError::TooLarge,
        e => {
            tracing::warn!(error = %e, "webdav: storage error");
            FsError::GeneralFailure
        }
    }
}

fn io(e: std::io::Error) -> FsError {
    to_fs(e.into())
}

/// A file's or folder's metadata, from the core's [`Entry`].
#[derive(Debug, Clone)]
struct Meta {
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
struct DirEntry {
    name: Vec<u8>,
    meta: Meta,
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
struct ReadFile {
    file: tokio::fs::File,
    meta: Meta,
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
struct WriteFile {
    home: Home,
    pending: Option<Pending<LocalUpload>>,
    file: tokio::fs::File,
    size: u64,
    written: u64,
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

    async fn commit(&mut self) -> FsResult<()> {
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
async fn discard(pending: &mut Pending<LocalUpload>) {
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

impl HomeFs {
    async fn stat(&self, path: &DavPath) -> FsResult<Meta> {
        let entry = self.home.stat(&wire(path)?).await.map_err(to_fs)?;
        Ok(Meta::from(&entry))
    }

    async fn open_write(&self, path: WirePath, options: OpenOptions) -> FsResult<WriteFile> {
        let exists = match self.home.stat(&path).await {
            Ok(entry) if entry.kind == EntryKind::Dir => return Err(FsError::Forbidden),
            Ok(_) if options.create_new => return Err(FsError::Exists),
            Err(Error::NotFound(_)) if !options.create && !options.create_new => {
                return Err(FsError::NotFound);
            }
            Err(Error::NotFound(_)) => false,
            Ok(_) => true,
            Err(e) => return Err(to_fs(e)),
        };
        let size = match (options.truncate, options.append, options.size) {
            // A PUT: the HTTP layer refused one of unknown length before it got here.
            (true, false, Some(size)) => size,
            // A LOCK of an unmapped URL makes an empty file (RFC 4918, 7.3).
            (false, false, None) if !exists => 0,
            // Partial PUTs (Content-Range, sabredav PATCH) would write into a visible file.
            _ => return Err(FsError::NotImplemented),
        };
        let mut pending = self
            .home
            .begin_upload(&path, size, false)
            .await
            .map_err(to_fs)?;
        let file = match open_partial(&mut pending, 0).await {
            Ok(file) => file,
            Err(e) => {
                discard(&mut pending).await;
                self.home.settle(pending).await;
                return Err(to_fs(e));
            }
        };
        let mut file = WriteFile {
            home: self.home.clone(),
            pending: Some(pending),
            file: tokio::fs::File::from_std(file),
            size,
            written: 0,
        };
        if !options.truncate {
            file.commit().await?;
        }
        Ok(file)
    }

    /// Copies a file through the core: read, upload, commit (quota and one writer apply).
    async fn copy_file(&self, from: &WirePath, to: &WirePath) -> crate::Result<()> {
        let (mut reader, len) = self.home.open_read(from).await?;
        let mut pending = self.home.begin_upload(to, len, false).await?;
        let copied = async {
            let mut out = open_partial(&mut pending, 0).await?;
            blocking(move || {
                std::io::copy(&mut reader, &mut out)?;
                Ok(())
            })
            .await?;
            self.home.commit(&mut pending, len).await
        }
        .await;
        if copied.is_err() {
            discard(&mut pending).await;
        }
        self.home.settle(pending).await;
        copied
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

impl DavFileSystem for HomeFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let target = wire(path)?;
            if options.write {
                let file: Box<dyn DavFile> = Box::new(self.open_write(target, options).await?);
                return Ok(file);
            }
            let entry = self.home.stat(&target).await.map_err(to_fs)?;
            let (file, _) = self.home.open_read(&target).await.map_err(to_fs)?;
            let file: Box<dyn DavFile> = Box::new(ReadFile {
                file: tokio::fs::File::from_std(file),
                meta: Meta::from(&entry),
            });
            Ok(file)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let folder = wire(path)?;
            if self.home.stat(&folder).await.map_err(to_fs)?.kind != EntryKind::Dir {
                return Err(FsError::Forbidden);
            }
            let entries = self.home.list(&folder).await.map_err(to_fs)?;
            let entries: Vec<FsResult<Box<dyn DavDirEntry>>> = entries
                .iter()
                .map(|entry| {
                    let entry: Box<dyn DavDirEntry> = Box::new(DirEntry {
                        name: entry.name.clone().into_bytes(),
                        meta: Meta::from(entry),
                    });
                    Ok(entry)
                })
                .collect();
            let stream: FsStream<Box<dyn DavDirEntry>> =
                Box::pin(futures_util::stream::iter(entries));
            Ok(stream)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let meta: Box<dyn DavMetaData> = Box::new(self.stat(path).await?);
            Ok(meta)
        }
        .boxed()
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.metadata(path)
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move { self.home.mkdir(&wire(path)?, false).await.map_err(to_fs) }.boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let path = wire(path)?;
            // dav-server removed (and lock-checked) what the folder held first.
            self.home.remove(&path, true).await.map_err(to_fs)?;
            self.props.remove(&self.user, &path);
            Ok(())
        }
        .boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let path = wire(path)?;
            self.home.remove(&path, false).await.map_err(to_fs)?;
            self.props.remove(&self.user, &path);
            Ok(())
        }
        .boxed()
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (wire(from)?, wire(to)?);
            self.home.rename(&from, &to).await.map_err(to_fs)?;
            self.props.rename(&self.user, &from, &to);
            Ok(())
        }
        .boxed()
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            let (from, to) = (wire(from)?, wire(to)?);
            self.copy_file(&from, &to).await.map_err(to_fs)?;
            self.props.copy(&self.user, &from, &to);
            Ok(())
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        async { true }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            self.stat(path).await?;
            Ok(self.props.patch(&self.user, &wire(path)?, patch))
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        async move { Ok(self.props.all(&self.user, &wire(path)?, do_content)) }.boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        async move {
            self.props
                .one(&self.user, &wire(path)?, &prop)
                .ok_or(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        // RFC 4331: quota-used-bytes and quota-available-bytes (quota less used).
        let space = self.home.space();
        async move { Ok((space.used, space.quota)) }.boxed()
    }
}
