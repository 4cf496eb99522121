//! WebDAV at `/dav/` (class 1 and 2): dav-server's handler over the file-service core. Every
//! call goes through [`Home`], so the jail, the quota, one writer per file and "nothing
//! visible until complete" hold here as at the native port; this file only translates.
//!
//! A PUT writes the upload's partial file and commits it only once exactly the announced
//! bytes arrived (dav-server calls `flush` at the end of the body); a body cut short drops
//! the file, which throws the partial bytes away. Locks live in memory, one lock table per
//! user; dead properties in [`super::props`].

use std::sync::Arc;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;
use futures_util::StreamExt;
use http::StatusCode;

use super::davfile::{DirEntry, Meta, ReadFile, Source, WriteFile};
use super::props::DeadProps;
use crate::Error;
use crate::home::Home;
use crate::storage::{EntryKind, WirePath};

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
pub(super) fn to_fs(e: Error) -> FsError {
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

pub(super) fn io(e: std::io::Error) -> FsError {
    to_fs(e.into())
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
        let file = match self.home.writer(&mut pending, 0, size).await {
            Ok(file) => file,
            Err(e) => {
                self.home.discard(&mut pending).await;
                self.home.settle(pending).await;
                return Err(to_fs(e));
            }
        };
        let mut file = WriteFile {
            home: self.home.clone(),
            pending: Some(pending),
            file,
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
        let (reader, len) = self.home.open_read(from).await?;
        let mut pending = self.home.begin_upload(to, len, false).await?;
        let copied = async {
            let mut out = self.home.writer(&mut pending, 0, len).await?;
            let mut chunks = reader.into_stream(0, len);
            while let Some(chunk) = chunks.next().await {
                out.write(&mut pending, chunk?).await?;
            }
            out.finish(&mut pending, true).await?;
            self.home.commit(&mut pending, len).await
        }
        .await;
        if copied.is_err() {
            self.home.discard(&mut pending).await;
        }
        self.home.settle(pending).await;
        copied
    }
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
            let (file, len) = self.home.open_read(&target).await.map_err(to_fs)?;
            let file: Box<dyn DavFile> = Box::new(ReadFile {
                file: Source::new(file, len),
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
            // dav-server removed (and lock-checked) what the folder held first; what came
            // in since is not removed with it (the core removes folders only recursively).
            if !self.home.list(&path).await.map_err(to_fs)?.is_empty() {
                return Err(FsError::Exists);
            }
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
