//! `Storage`: what the file-service core ([`crate::home::Home`]) asks of the place a home's
//! files live, as async calls, and [`Local`], the local folder that answers them today.
//!
//! An object store answers the same calls next: every path is a checked [`WirePath`],
//! reads start at an offset (ranges), an upload is a handle that resumes and is committed in
//! one step only once verified. The rules (quota, names lock, one writer) stay in the core.

use std::future::Future;
use std::sync::Arc;

use super::s3::{S3Home, S3Listing, S3Reader, S3Upload};
use super::{Entry, Listing, PartProbe, PartialFile, Root, Usage, WirePath};
use crate::Result;
use crate::filecopy::blocking;
use crate::protocol::Kept;

/// The calls the core makes on a home's storage.
pub(crate) trait Storage: Send + Sync + 'static {
    /// A file opened for reading.
    type Reader: Send + 'static;
    /// An upload in progress: holds its one-writer lock until dropped.
    type Upload: Upload;

    /// A listing under way.
    type Listing: Send + 'static;

    /// Starts listing a folder a page at a time, in name order (a file lists as itself).
    fn open_list(&self, path: &WirePath) -> impl Future<Output = Result<Self::Listing>> + Send;
    /// The listing's next (up to) `limit` entries, and whether more come after them.
    fn next_page(
        &self,
        listing: &mut Self::Listing,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<Entry>, bool)>> + Send;
    /// Describes one path.
    fn stat(&self, path: &WirePath) -> impl Future<Output = Result<Entry>> + Send;
    /// Creates a folder (with `parents`, the missing ones above it too).
    fn mkdir(&self, path: &WirePath, parents: bool) -> impl Future<Output = Result<()>> + Send;
    /// How many of `path`'s folders, from its end, do not exist.
    fn missing(&self, path: &WirePath) -> impl Future<Output = Result<u64>> + Send;
    /// Removes a file, or with `recursive` a folder and everything in it.
    fn remove(&self, path: &WirePath, recursive: bool) -> impl Future<Output = Result<()>> + Send;
    /// Renames `from` to `to` (a file at `to` is replaced, a folder never).
    fn rename(&self, from: &WirePath, to: &WirePath) -> impl Future<Output = Result<()>> + Send;
    /// What `path` holds; with `refuse_busy`, `busy` while an upload writes inside it.
    fn usage(
        &self,
        path: &WirePath,
        refuse_busy: bool,
    ) -> impl Future<Output = Result<Usage>> + Send;
    /// Opens a regular file for reading: the reader and the file's length.
    fn open_read(
        &self,
        path: &WirePath,
    ) -> impl Future<Output = Result<(Self::Reader, u64)>> + Send;
    /// Starts or resumes the upload of `path`, taking its one-writer lock.
    fn begin_upload(&self, path: &WirePath) -> impl Future<Output = Result<Self::Upload>> + Send;
    /// Makes a verified upload of `size` bytes visible under its name, in one step.
    fn commit_upload(
        &self,
        upload: &mut Self::Upload,
        size: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Throws an upload's bytes away.
    fn discard_upload(&self, upload: &mut Self::Upload) -> impl Future<Output = Result<()>> + Send;
    /// Makes everything written to this storage so far durable, at once: the bytes of a
    /// group of uploads before they are committed, then the commits themselves.
    fn sync(&self) -> impl Future<Output = Result<()>> + Send;
}

/// An upload in progress, as the core sees it.
pub(crate) trait Upload: Send + 'static {
    /// Bytes already received: where a resume continues.
    fn received(&self) -> u64;
    /// What the upload's bytes cost against the quota now (0 once committed or discarded).
    fn cost(&self) -> impl Future<Output = u64> + Send;
    /// What they cost when the upload began (measured then, with no extra trip).
    fn cost_at_start(&self) -> u64;
    /// The path it is committed to.
    fn target(&self) -> &WirePath;
    /// Keeps `kept` (permission bits, modification time) on the committed file.
    fn keep(&mut self, kept: Kept);
    /// Marks the received bytes as durable already (the storage's [`Storage::sync`] ran
    /// after they were written), so the commit need not make them so one file at a time.
    fn synced(&mut self);
}

/// A home in a local folder, through a confined handle ([`Root`]); the file system calls
/// run on the blocking pool, or, for a caller on that pool already, where it runs (see
/// [`Local::inline`]).
#[derive(Debug, Clone)]
pub(crate) struct Local {
    root: Arc<Root>,
    here: bool,
}

/// Runs `f` where the caller runs (`here`: the caller is a blocking-pool thread already) or
/// on the blocking pool.
async fn on_pool<T: Send + 'static>(
    here: bool,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if here { f() } else { blocking(f).await }
}

impl Local {
    /// The home whose folder handle is `root`.
    pub(crate) fn new(root: Arc<Root>) -> Local {
        Local { root, here: false }
    }

    /// The same home, its file system calls made on the calling thread: for code that runs
    /// on the blocking pool already and makes many calls in one trip there (the group
    /// commit of small files). Each call blocks its caller.
    pub(crate) fn inline(&self) -> Local {
        Local {
            root: self.root.clone(),
            here: true,
        }
    }

    /// Runs `f` on the folder handle, on the blocking pool (or here, see [`Local::inline`]).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Root) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        on_pool(self.here, move || f(&root)).await
    }
}

/// An upload into a local folder: the partial file beside the target.
#[derive(Debug)]
pub(crate) struct LocalUpload {
    /// The partial file; `None` once committed or discarded.
    pub(crate) partial: Option<PartialFile>,
    probe: Arc<PartProbe>,
    received: u64,
    cost_at_start: u64,
    target: WirePath,
    kept: Kept,
    synced: bool,
    /// Its calls run on the calling thread (see [`Local::inline`]).
    here: bool,
}

impl LocalUpload {
    /// The partial file, opened for writing at `offset` (what lies past it is cut).
    ///
    /// # Errors
    /// File system errors.
    pub(crate) async fn open_at(&mut self, offset: u64) -> Result<std::fs::File> {
        let Some(mut partial) = self.partial.take() else {
            return Err(crate::Error::Internal(
                "the upload has no partial file".into(),
            ));
        };
        let (file, partial) = on_pool(self.here, move || {
            partial.open_at(offset).map(|f| (f, partial))
        })
        .await?;
        self.partial = Some(partial);
        Ok(file)
    }

    /// Writes `body`, the whole file, into the partial file (from its start), with the
    /// `kept` mode and time (see [`PartialFile::write_whole`]).
    ///
    /// # Errors
    /// File system errors.
    pub(crate) async fn write_whole(&mut self, body: bytes::Bytes, kept: Kept) -> Result<()> {
        let Some(mut partial) = self.partial.take() else {
            return Err(crate::Error::Internal(
                "the upload has no partial file".into(),
            ));
        };
        let partial = on_pool(self.here, move || {
            partial.write_whole(&body, kept)?;
            Ok(partial)
        })
        .await?;
        self.partial = Some(partial);
        Ok(())
    }
}

impl Upload for LocalUpload {
    fn received(&self) -> u64 {
        self.received
    }

    async fn cost(&self) -> u64 {
        let probe = self.probe.clone();
        on_pool(self.here, move || Ok(probe.cost()))
            .await
            .unwrap_or(0)
    }

    fn cost_at_start(&self) -> u64 {
        self.cost_at_start
    }

    fn target(&self) -> &WirePath {
        &self.target
    }

    fn keep(&mut self, kept: Kept) {
        self.kept = kept;
    }

    fn synced(&mut self) {
        self.synced = true;
    }
}

impl Storage for Local {
    type Reader = std::fs::File;
    type Upload = LocalUpload;
    type Listing = Listing;

    async fn open_list(&self, path: &WirePath) -> Result<Listing> {
        let path = path.clone();
        self.run(move |root| root.open_list(&path)).await
    }

    async fn next_page(&self, listing: &mut Listing, limit: usize) -> Result<(Vec<Entry>, bool)> {
        // Lent to the blocking pool and given back; a page that fails ends the listing.
        let mut lent = std::mem::replace(listing, Listing::done());
        let (lent, page) = on_pool(self.here, move || {
            let page = lent.next_page(limit);
            Ok((lent, page))
        })
        .await?;
        *listing = lent;
        page
    }

    async fn stat(&self, path: &WirePath) -> Result<Entry> {
        let path = path.clone();
        self.run(move |root| root.stat(&path)).await
    }

    async fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        let path = path.clone();
        self.run(move |root| root.mkdir(&path, parents)).await
    }

    async fn missing(&self, path: &WirePath) -> Result<u64> {
        let path = path.clone();
        self.run(move |root| root.missing(&path)).await
    }

    async fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        let path = path.clone();
        self.run(move |root| root.remove(&path, recursive)).await
    }

    async fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        let (from, to) = (from.clone(), to.clone());
        self.run(move |root| root.rename(&from, &to)).await
    }

    async fn usage(&self, path: &WirePath, refuse_busy: bool) -> Result<Usage> {
        let path = path.clone();
        self.run(move |root| root.measure(&path, refuse_busy)).await
    }

    async fn open_read(&self, path: &WirePath) -> Result<(std::fs::File, u64)> {
        let path = path.clone();
        self.run(move |root| root.open_read(&path)).await
    }

    async fn begin_upload(&self, path: &WirePath) -> Result<LocalUpload> {
        let path = path.clone();
        let here = self.here;
        self.run(move |root| {
            let partial = root.partial(&path)?;
            let probe = Arc::new(partial.probe()?);
            let received = partial.len()?;
            let cost_at_start = probe.cost();
            Ok(LocalUpload {
                partial: Some(partial),
                probe,
                received,
                cost_at_start,
                target: path,
                kept: Kept::default(),
                synced: false,
                here,
            })
        })
        .await
    }

    async fn commit_upload(&self, upload: &mut LocalUpload, size: u64) -> Result<()> {
        let Some(partial) = upload.partial.take() else {
            return Err(crate::Error::Internal(
                "the upload was already finished".into(),
            ));
        };
        let (kept, synced) = (upload.kept, upload.synced);
        on_pool(self.here, move || {
            partial.commit_verified(size, kept, synced)
        })
        .await
    }

    async fn sync(&self) -> Result<()> {
        self.run(Root::sync).await
    }

    async fn discard_upload(&self, upload: &mut LocalUpload) -> Result<()> {
        match upload.partial.take() {
            Some(partial) => on_pool(self.here, move || partial.discard()).await,
            None => Ok(()),
        }
    }
}

/// Where a user's home lives: a local folder or an object store, chosen by `serve --store`.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// A folder under `DATA/homes`.
    Local(Local),
    /// A prefix in an S3-compatible bucket.
    S3(S3Home),
}

/// A file opened for reading, in either store.
#[derive(Debug)]
pub(crate) enum StoreReader {
    /// A local file.
    Local(std::fs::File),
    /// An object, read by ranged requests.
    S3(S3Reader),
}

/// The chunks a file is read in when a door streams it out: large enough that a chunk is
/// many TLS records and few system calls, small enough that a download holds two.
pub(crate) const STREAM_CHUNK: usize = 1 << 20;

/// A file's bytes as a stream of chunks.
pub(crate) type ByteStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync>,
>;

impl Store {
    /// This home with its calls made on the calling thread, for a caller on the blocking
    /// pool already (see [`Local::inline`]); `None` for a home in an object store, whose
    /// calls are network requests that wait on the runtime.
    pub(crate) fn inline(&self) -> Option<Store> {
        match self {
            Store::Local(local) => Some(Store::Local(local.inline())),
            Store::S3(_) => None,
        }
    }
}

impl Store {
    /// Runs `then` on a local home's folder handle, in one trip to the blocking pool; `None`
    /// for a home in an object store.
    pub(crate) async fn with_local_root<T: Send + 'static>(
        &self,
        then: impl FnOnce(&Root) -> Result<T> + Send + 'static,
    ) -> Option<Result<T>> {
        let Store::Local(local) = self else {
            return None;
        };
        Some(local.run(then).await)
    }
}

impl StoreReader {
    /// The bytes `start..end`, in chunks of up to [`STREAM_CHUNK`]: a local file's read one
    /// chunk ahead by the blocking pool (`ReadAhead`), an object's by one ranged request.
    pub(crate) fn into_stream(self, start: u64, end: u64) -> ByteStream {
        let end = end.max(start);
        match self {
            StoreReader::Local(file) => Box::pin(crate::filecopy::ReadAhead::new(
                file,
                start,
                end,
                STREAM_CHUNK,
            )),
            StoreReader::S3(reader) => {
                use tokio::io::AsyncReadExt;
                Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    reader.into_async_read(start).take(end - start),
                    STREAM_CHUNK,
                ))
            }
        }
    }
}

/// An upload in progress, in either store.
#[derive(Debug)]
pub(crate) enum StoreUpload {
    /// Into a partial file beside the target.
    Local(LocalUpload),
    /// Into a multipart upload to the target's key (boxed: it holds its part buffers).
    S3(Box<S3Upload>),
}

impl StoreUpload {
    /// The local upload, for the paths that write a partial file directly.
    pub(crate) fn local(&mut self) -> Option<&mut LocalUpload> {
        match self {
            StoreUpload::Local(l) => Some(l),
            StoreUpload::S3(_) => None,
        }
    }
}

/// A listing under way, in either store.
#[derive(Debug)]
pub(crate) enum StoreListing {
    /// Of a local folder.
    Local(Listing),
    /// Of a folder in the store.
    S3(S3Listing),
}

impl Upload for StoreUpload {
    fn received(&self) -> u64 {
        match self {
            StoreUpload::Local(u) => u.received(),
            StoreUpload::S3(u) => u.received(),
        }
    }

    async fn cost(&self) -> u64 {
        match self {
            StoreUpload::Local(u) => u.cost().await,
            StoreUpload::S3(u) => u.cost().await,
        }
    }

    fn cost_at_start(&self) -> u64 {
        match self {
            StoreUpload::Local(u) => u.cost_at_start(),
            StoreUpload::S3(u) => u.cost_at_start(),
        }
    }

    fn target(&self) -> &WirePath {
        match self {
            StoreUpload::Local(u) => u.target(),
            StoreUpload::S3(u) => u.target(),
        }
    }

    fn keep(&mut self, kept: Kept) {
        match self {
            StoreUpload::Local(u) => u.keep(kept),
            StoreUpload::S3(u) => u.keep(kept),
        }
    }

    fn synced(&mut self) {
        match self {
            StoreUpload::Local(u) => u.synced(),
            StoreUpload::S3(u) => u.synced(),
        }
    }
}

fn mismatch() -> crate::Error {
    crate::Error::Internal("a handle from one store used with another".into())
}

impl Storage for Store {
    type Reader = StoreReader;
    type Upload = StoreUpload;
    type Listing = StoreListing;

    async fn open_list(&self, path: &WirePath) -> Result<StoreListing> {
        match self {
            Store::Local(s) => s.open_list(path).await.map(StoreListing::Local),
            Store::S3(s) => s.open_list(path).await.map(StoreListing::S3),
        }
    }

    async fn next_page(
        &self,
        listing: &mut StoreListing,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool)> {
        match (self, listing) {
            (Store::Local(s), StoreListing::Local(l)) => s.next_page(l, limit).await,
            (Store::S3(s), StoreListing::S3(l)) => s.next_page(l, limit).await,
            _ => Err(mismatch()),
        }
    }

    async fn stat(&self, path: &WirePath) -> Result<Entry> {
        match self {
            Store::Local(s) => s.stat(path).await,
            Store::S3(s) => s.stat(path).await,
        }
    }

    async fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        match self {
            Store::Local(s) => s.mkdir(path, parents).await,
            Store::S3(s) => s.mkdir(path, parents).await,
        }
    }

    async fn missing(&self, path: &WirePath) -> Result<u64> {
        match self {
            Store::Local(s) => s.missing(path).await,
            Store::S3(s) => s.missing(path).await,
        }
    }

    async fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        match self {
            Store::Local(s) => s.remove(path, recursive).await,
            Store::S3(s) => s.remove(path, recursive).await,
        }
    }

    async fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        match self {
            Store::Local(s) => s.rename(from, to).await,
            Store::S3(s) => s.rename(from, to).await,
        }
    }

    async fn usage(&self, path: &WirePath, refuse_busy: bool) -> Result<Usage> {
        match self {
            Store::Local(s) => s.usage(path, refuse_busy).await,
            Store::S3(s) => s.usage(path, refuse_busy).await,
        }
    }

    async fn open_read(&self, path: &WirePath) -> Result<(StoreReader, u64)> {
        match self {
            Store::Local(s) => s
                .open_read(path)
                .await
                .map(|(f, n)| (StoreReader::Local(f), n)),
            Store::S3(s) => s
                .open_read(path)
                .await
                .map(|(r, n)| (StoreReader::S3(r), n)),
        }
    }

    async fn begin_upload(&self, path: &WirePath) -> Result<StoreUpload> {
        match self {
            Store::Local(s) => s.begin_upload(path).await.map(StoreUpload::Local),
            Store::S3(s) => s
                .begin_upload(path)
                .await
                .map(|u| StoreUpload::S3(Box::new(u))),
        }
    }

    async fn commit_upload(&self, upload: &mut StoreUpload, size: u64) -> Result<()> {
        match (self, upload) {
            (Store::Local(s), StoreUpload::Local(u)) => s.commit_upload(u, size).await,
            (Store::S3(s), StoreUpload::S3(u)) => s.commit_upload(u, size).await,
            _ => Err(mismatch()),
        }
    }

    async fn discard_upload(&self, upload: &mut StoreUpload) -> Result<()> {
        match (self, upload) {
            (Store::Local(s), StoreUpload::Local(u)) => s.discard_upload(u).await,
            (Store::S3(s), StoreUpload::S3(u)) => s.discard_upload(u).await,
            _ => Err(mismatch()),
        }
    }

    async fn sync(&self) -> Result<()> {
        match self {
            Store::Local(s) => s.sync().await,
            Store::S3(s) => s.sync().await,
        }
    }
}
