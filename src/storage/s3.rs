//! `S3Home`: homes in an S3-compatible object store (`serve --store s3://BUCKET[/PREFIX]`),
//! through the `object_store` crate, answering the same [`Storage`] calls as a local folder.
//!
//! Layout under the bucket's prefix:
//!
//! | key | what |
//! | --- | --- |
//! | `homes/USER/a/b.txt` | the file `/a/b.txt` of `USER` |
//! | `homes/USER/a/.sockit-folder` | an empty marker: `/a` is a folder (object stores have none) |
//! | `uploads/USER/HASH.json` | an upload in progress: its multipart id and the parts received |
//!
//! An upload is an S3 multipart upload to its final key, which no reader sees until it is
//! completed: that happens only once the size and digest match, so nothing is ever visible
//! half written. Each part is [`PART_SIZE`] bytes (the last one shorter), a few on their way
//! at once; once a part and all before it landed, the upload's state (multipart id, each
//! part's ETag and the BLAKE3 chaining value of its bytes) is written next to the homes, so
//! a resume, by this server after a restart or by another one, sends only the parts missing
//! and still checks the whole file's BLAKE3 without reading a byte back: the parts are whole
//! subtrees of the BLAKE3 tree (a power of two of chunks, at an aligned offset), so their
//! chaining values merge into the file's hash ([`merge_cvs`]).
//! The bytes after the last whole part are lost when a connection drops; the client resends
//! them. Files up to one part go up in a single `PUT` at the commit.
//!
//! Rename and remove of a folder are a copy and a delete per object: not atomic, as with
//! every S3 client. One writer per file holds on this server (a lock per key) and across the
//! servers sharing the store ([`Writers`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use md5::Digest as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::{Path, PathPart};
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::backend::{Storage, Upload};
use super::writers::{Held, Writers};
use super::{Entry, EntryKind, Usage, WirePath};
use super::{MAX_DEPTH, MAX_PATH_LEN};
use crate::filecopy::Sums;
use crate::protocol::{DigestKind, Kept};
use crate::{Error, Result};

/// Bytes in each part of a multipart upload but the last: 8 MiB, 8,192 BLAKE3 chunks (a power
/// of two, so each part is a whole subtree of the file's hash), above S3's 5 MiB minimum.
pub(crate) const PART_SIZE: usize = 8 << 20;

/// Parts of one upload on their way to the store at once: an upload holds at most this many
/// parts and the one it is filling in memory (40 MiB).
const PARTS_IN_FLIGHT: usize = 4;

/// Parts of all uploads on their way at once (512 MiB): however many connections upload, the
/// parts they hold waiting for the store stay within this.
const SERVER_PARTS: usize = 64;

/// The empty object that says "this is a folder".
pub(crate) const MARKER: &str = ".sockit-folder";

/// How long an upload may lie unfinished before [`Bucket::clean_abandoned`] aborts it, by
/// default (`serve --s3-keep-unfinished`).
pub(crate) const KEEP_UNFINISHED: Duration = Duration::from_secs(7 * 24 * 3600);

/// A bucket (and prefix) that holds every user's home; one per server, shared.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    inner: Arc<BucketInner>,
}

#[derive(Debug)]
struct BucketInner {
    store: AmazonS3,
    /// `s3://BUCKET/PREFIX` as given, for messages.
    url: String,
    /// The prefix inside the bucket (may be empty).
    root: Path,
    /// Keys with an upload in progress on this server: one writer each.
    writers: Mutex<HashSet<Path>>,
    /// Where servers sharing the store keep their uploads apart.
    shared_writers: Writers,
    /// Room for parts on their way to the store, all uploads together.
    parts: Arc<tokio::sync::Semaphore>,
}

/// Where the object store is and how to reach it (`serve --store`, `--s3-endpoint`,
/// `--s3-region`; credentials from the environment).
#[derive(Debug, Clone)]
pub struct S3Options {
    /// `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// The endpoint, for a store other than AWS (`http://127.0.0.1:8333`).
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// How long one request may take, retries included, before it fails as `unavailable`.
    pub timeout: Duration,
    /// How long an unfinished upload is kept for a resume.
    pub keep_unfinished: Duration,
}

impl Bucket {
    /// Connects to the bucket `options` name (no request is made yet; see [`Bucket::check`]).
    /// Credentials come from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not `s3://BUCKET[/PREFIX]`, or missing credentials.
    pub(crate) fn connect(options: &S3Options, shared_writers: Writers) -> Result<Bucket> {
        let config = |message: String| Error::Config {
            message,
            source: None,
        };
        let rest = options.url.strip_prefix("s3://").ok_or_else(|| {
            config(format!(
                "--store {}: expected s3://BUCKET[/PREFIX]",
                options.url
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(config("--store s3://: the bucket name is missing".into()));
        }
        let root = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| config(format!("--store {}: bad prefix: {e}", options.url)))?;
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            if std::env::var_os(var).is_none() {
                return Err(config(format!(
                    "--store {} needs the object store's credentials in {var}",
                    options.url
                )));
            }
        }
        // The HTTPS client of the store uses the process's rustls provider: ring, as the
        // native port does (already installed is fine).
        drop(rustls::crypto::ring::default_provider().install_default());
        let mut client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(options.timeout);
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(options.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: options.timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &options.endpoint {
            if endpoint.starts_with("http://") {
                client = client.with_allow_http(true);
            }
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .with_client_options(client)
            .build()
            .map_err(|e| config(format!("--store {}: {e}", options.url)))?;
        Ok(Bucket {
            inner: Arc::new(BucketInner {
                store,
                url: options.url.clone(),
                root,
                writers: Mutex::new(HashSet::new()),
                shared_writers,
                parts: Arc::new(tokio::sync::Semaphore::new(SERVER_PARTS)),
            }),
        })
    }

    /// `s3://BUCKET/PREFIX`, as configured.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    /// Makes one request, to learn at start whether the store answers and lets us in.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming the store and what it said.
    pub(crate) async fn check(&self) -> Result<()> {
        let probe = self.inner.root.clone().join("homes");
        let mut listing = self.inner.store.list(Some(&probe));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(self.unavailable(&e)),
        }
    }

    /// The home of `user` (nothing is created: a folder exists once something is in it).
    pub(crate) fn home(&self, user: &str) -> S3Home {
        S3Home {
            bucket: self.clone(),
            home: self.inner.root.clone().join("homes").join(user),
            uploads: self.inner.root.clone().join("uploads").join(user),
        }
    }

    /// Aborts the multipart uploads whose state is older than `age` and that no upload on
    /// this server holds, and removes their state: what a client that never came back left.
    /// Returns how many it ended.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the store cannot be listed.
    pub(crate) async fn clean_abandoned(&self, age: Duration) -> Result<usize> {
        let uploads = self.inner.root.clone().join("uploads");
        let found: Vec<_> = self
            .inner
            .store
            .list(Some(&uploads))
            .try_collect()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
        let mut ended = 0;
        for meta in found.into_iter().filter(|m| m.last_modified < cutoff) {
            let Ok(state) = self.load_state(&meta.location).await else {
                continue;
            };
            // A state that cannot be read names no upload to abort: it just goes.
            if let Some(state) = state {
                let Ok(key) = Path::parse(&state.key) else {
                    continue;
                };
                if self.writing(&key) {
                    continue;
                }
                if let Some(id) = &state.upload_id {
                    // Already gone (completed or aborted by someone else) is fine.
                    drop(self.inner.store.abort_multipart(&key, id).await);
                }
            }
            drop(self.inner.store.delete(&meta.location).await);
            ended += 1;
        }
        Ok(ended)
    }

    fn writing(&self, key: &Path) -> bool {
        self.writers().contains(key)
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashSet<Path>> {
        self.inner
            .writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn load_state(&self, at: &Path) -> Result<Option<UploadState>> {
        match self.inner.store.get(at).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.unavailable(&e))?;
                // A state we cannot read is treated as none: the upload starts over.
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn unavailable(&self, e: &object_store::Error) -> Error {
        Error::Unavailable(format!("object store {}: {e}", self.inner.url))
    }
}

/// One user's home in the bucket.
#[derive(Debug, Clone)]
pub(crate) struct S3Home {
    bucket: Bucket,
    /// `PREFIX/homes/USER`.
    home: Path,
    /// `PREFIX/uploads/USER`: the state of this user's uploads in progress.
    uploads: Path,
}

/// What an upload in progress has sent to the store, saved after each part.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    /// The object key it completes to.
    key: String,
    /// The multipart upload, once the first part went out.
    upload_id: Option<String>,
    /// Bytes in each part but the last.
    part_size: u64,
    /// Each whole part sent, in order.
    parts: Vec<PartState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartState {
    /// What the store said the part is (its ETag), for the completion.
    etag: String,
    /// The BLAKE3 chaining value of the part's bytes, in hex.
    cv: String,
}

impl UploadState {
    fn received(&self) -> u64 {
        self.part_size * self.parts.len() as u64
    }
}

impl S3Home {
    fn store(&self) -> &AmazonS3 {
        &self.bucket.inner.store
    }

    /// The key of `path`: the home's prefix and its names, each a checked object name.
    fn key(&self, path: &WirePath) -> Result<Path> {
        let mut key = self.home.clone();
        for name in path.parts() {
            if name == MARKER {
                return Err(Error::BadRequest(format!(
                    "`{MARKER}` is a name this server keeps for itself"
                )));
            }
            let part = PathPart::parse(name).map_err(|_| {
                Error::BadRequest(format!("`{name}` cannot be a name in the object store"))
            })?;
            key = key.join(part);
        }
        Ok(key)
    }

    fn fail(&self, path: &WirePath, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => {
                Error::NotFound(format!("{path}: no such file or folder"))
            }
            object_store::Error::AlreadyExists { .. } => {
                Error::AlreadyExists(format!("{path} already exists"))
            }
            e => self.bucket.unavailable(&e),
        }
    }

    /// What is at `path`: a file (its size and time), a folder, or nothing.
    async fn kind(&self, path: &WirePath) -> Result<Option<Entry>> {
        let name = path.name().unwrap_or("/").to_owned();
        if path.is_root() {
            return Ok(Some(folder(name, 0)));
        }
        let key = self.key(path)?;
        match self.store().head(&key).await {
            Ok(meta) => return Ok(Some(file(name, meta.size, &meta.last_modified))),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.fail(path, e)),
        }
        Ok(self
            .folder_time(&key)
            .await
            .map_err(|e| self.fail(path, e))?
            .map(|made| folder(name, made)))
    }

    /// Whether `key` is a folder, and when it was made: its marker says so, or (for a
    /// prefix another tool wrote, with no marker) any object below it. A prefix with
    /// nothing below it is no folder, though some stores list it as one for a while
    /// after its last object went.
    async fn folder_time(&self, key: &Path) -> object_store::Result<Option<i64>> {
        match self.store().head(&key.clone().join(MARKER)).await {
            Ok(marker) => return Ok(Some(marker.last_modified.timestamp())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.store().list(Some(key)).next().await {
            Some(Ok(_)) => Ok(Some(0)),
            None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    async fn require_folder(&self, path: &WirePath) -> Result<()> {
        match self.kind(path).await? {
            Some(e) if e.kind == EntryKind::Dir => Ok(()),
            Some(_) => Err(Error::BadRequest(format!("{path} is not a folder"))),
            None => Err(Error::NotFound(format!("{path}: no such folder"))),
        }
    }

    /// Every object at or below `path`'s key (the file itself, or a folder's whole tree),
    /// as the store lists them, a page at a time: never the whole tree in memory.
    fn objects(
        &self,
        path: &WirePath,
    ) -> Result<
        futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
    > {
        let key = self.key(path)?;
        let below = self
            .store()
            .list(Some(if path.is_root() { &self.home } else { &key }));
        if path.is_root() {
            return Ok(below);
        }
        // The file itself, if `path` is one (a listing gives what is below a prefix only).
        let store = self.store().clone();
        let itself = futures_util::stream::once(async move {
            match store.head(&key).await {
                Ok(meta) => Some(Ok(meta)),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .filter_map(futures_util::future::ready);
        Ok(itself.chain(below).boxed())
    }

    fn busy_inside(&self, path: &WirePath) -> Result<bool> {
        let key = self.key(path)?;
        Ok(self
            .bucket
            .writers()
            .iter()
            .any(|w| *w == key || w.prefix_matches(&key)))
    }

    fn state_key(&self, path: &WirePath) -> Path {
        let id = blake3::hash(path.to_string().as_bytes()).to_hex();
        self.uploads.clone().join(format!("{}.json", &id[..32]))
    }
}

fn folder(name: String, modified: i64) -> Entry {
    Entry {
        name,
        kind: EntryKind::Dir,
        size: 0,
        modified,
        mode: None,
    }
}

fn file(name: String, size: u64, modified: &chrono::DateTime<chrono::Utc>) -> Entry {
    Entry {
        name,
        kind: EntryKind::File,
        size,
        modified: modified.timestamp(),
        mode: None,
    }
}

/// A listing of a folder in the store, read whole (the store pages it) and handed out a page
/// at a time.
#[derive(Debug, Default)]
pub(crate) struct S3Listing {
    entries: std::vec::IntoIter<Entry>,
}

impl S3Listing {
    fn next_page(&mut self, limit: usize) -> (Vec<Entry>, bool) {
        let page: Vec<Entry> = self.entries.by_ref().take(limit).collect();
        (page, self.entries.len() > 0)
    }
}

/// A file in the store opened for reading: reads are ranged requests, each checked against
/// the version opened (a file replaced meanwhile fails the read instead of mixing versions).
#[derive(Debug, Clone)]
pub(crate) struct S3Reader {
    store: AmazonS3,
    bucket: Bucket,
    key: Path,
    etag: Option<String>,
    size: u64,
}

impl S3Reader {
    /// The file's bytes from `offset` to its end, as they arrive.
    pub(crate) fn stream(
        &self,
        offset: u64,
    ) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
        self.range(offset..self.size)
    }

    /// The file's bytes in `range`, as they arrive.
    pub(crate) fn range(
        &self,
        range: std::ops::Range<u64>,
    ) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
        let (store, key, bucket) = (self.store.clone(), self.key.clone(), self.bucket.clone());
        let empty = range.start >= range.end.min(self.size);
        let options = GetOptions {
            if_match: self.etag.clone(),
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        futures_util::stream::once(async move {
            if empty {
                return Ok(futures_util::stream::empty().boxed());
            }
            let got = store.get_opts(&key, options).await;
            got.map(object_store::GetResult::into_stream)
                .map_err(|e| bucket.unavailable(&e))
        })
        .map(move |opened| match opened {
            Ok(stream) => stream
                .map_err(move |e| Error::Unavailable(format!("object store read: {e}")))
                .left_stream(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten()
    }

    /// The file's bytes from `offset` on, as an [`tokio::io::AsyncRead`] (fed by a task that
    /// reads ahead a few chunks, and stops when the reader is dropped).
    pub(crate) fn into_async_read(
        self,
        offset: u64,
    ) -> tokio_util::io::StreamReader<Chunks, Bytes> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stream = self.stream(offset);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                let item = item.map_err(|e| std::io::Error::other(e.to_string()));
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        tokio_util::io::StreamReader::new(Chunks(rx))
    }
}

/// The chunks of an object as a reading task passes them on.
#[derive(Debug)]
pub(crate) struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_util::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// An upload in progress to the store.
#[derive(Debug)]
pub(crate) struct S3Upload {
    home: S3Home,
    key: Path,
    state_key: Path,
    target: WirePath,
    state: UploadState,
    /// Received bytes after the last whole part.
    tail: BytesMut,
    /// The last part sent to the store, if one is on its way: it resolves to every part
    /// of the upload, once it and all before it landed and were saved.
    in_flight: Option<JoinHandle<Result<Vec<PartState>>>>,
    /// Parts sent (landed or on their way).
    sent: usize,
    /// Room for the parts on their way at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// Set by a part that failed: no more are sent.
    failed: Arc<std::sync::atomic::AtomicBool>,
    md5: Option<md5::Md5>,
    /// The file's size, as the upload announced it.
    expected: u64,
    /// Held until the upload ends, or a part still in flight when it was dropped is saved.
    writer: Option<WriterLock>,
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // A connection that broke off while a part was on its way: the part saves itself
        // when it lands, so a resume need not send it again; the lock is held till then.
        let (Some(part), Ok(runtime)) =
            (self.in_flight.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let lock = self.writer.take();
        runtime.spawn(async move {
            drop(part.await);
            drop(lock);
        });
    }
}

async fn save_state(bucket: &Bucket, at: &Path, state: &UploadState) -> Result<()> {
    let json =
        serde_json::to_vec(state).map_err(|e| Error::Internal(format!("upload state: {e}")))?;
    bucket
        .inner
        .store
        .put(at, PutPayload::from(json))
        .await
        .map_err(|e| bucket.unavailable(&e))?;
    Ok(())
}

/// The one-writer lock on a key: this server's, and the one across servers.
#[derive(Debug)]
struct WriterLock {
    bucket: Bucket,
    key: Path,
    shared: Option<Held>,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        self.bucket.writers().remove(&self.key);
    }
}

impl S3Upload {
    /// Checks that the bytes about to come continue this upload at `offset`, hashed by
    /// `digest`: BLAKE3 resumes from any whole part; md5 only from the start (its state is
    /// not kept between connections), so a resumed md5 upload starts over.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for an offset this upload does not hold.
    pub(crate) async fn start(&mut self, offset: u64, size: u64, digest: DigestKind) -> Result<()> {
        self.expected = size;
        if offset > 0 && offset >= size {
            // Parts are sent only with a byte after them; an upload cut to fewer bytes
            // than it held starts over.
            self.restart().await?;
            return Err(Error::BadRequest(
                "the upload holds the whole file already: send it again from the start".into(),
            ));
        }
        if digest == DigestKind::Md5 {
            if offset > 0 {
                self.restart().await?;
                return Err(Error::BadRequest(
                    "an upload checked by md5 cannot be resumed on this server's object \
                     store: send it again from the start"
                        .into(),
                ));
            }
            self.md5 = Some(md5::Md5::new());
        }
        if offset == 0 && self.state.received() > 0 {
            self.restart().await?;
        }
        if offset != self.state.received() {
            return Err(Error::BadRequest(format!(
                "an upload to the object store continues from a whole part: byte {} (or 0), \
                 not {offset}",
                self.state.received()
            )));
        }
        Ok(())
    }

    /// At the end of a run of writes that does not commit (a chunk of the web page's upload):
    /// a whole part waiting for a byte after it is sent now, so the next run continues after
    /// it. Unless `last`, when the commit follows and keeps it.
    ///
    /// # Errors
    /// As [`S3Upload::write`].
    pub(crate) async fn checkpoint(&mut self, last: bool) -> Result<()> {
        if !last && self.tail.len() == self.state.part_size as usize && self.len() < self.expected {
            let whole = self.tail.split().freeze();
            self.send_part(whole).await?;
        }
        self.settle_in_flight().await
    }

    /// Throws away what an earlier connection sent, to start from byte 0.
    async fn restart(&mut self) -> Result<()> {
        self.abort().await;
        self.state.parts.clear();
        self.state.upload_id = None;
        self.sent = 0;
        Ok(())
    }

    /// Takes the next received bytes: a whole part goes to the store while the next one
    /// arrives (up to [`PARTS_IN_FLIGHT`] at once).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the store refuses a part or the state.
    pub(crate) async fn write(&mut self, mut bytes: Bytes) -> Result<()> {
        if let Some(md5) = self.md5.as_mut() {
            md5.update(&bytes);
        }
        let part = self.state.part_size as usize;
        while !bytes.is_empty() {
            // A whole part goes once a byte after it came: the last part is never sent
            // before the commit, so the file's root hash can always be made.
            if self.tail.len() == part {
                let whole = self.tail.split().freeze();
                self.send_part(whole).await?;
            }
            if self.tail.capacity() == 0 {
                let left = self.expected.saturating_sub(self.len());
                self.tail
                    .reserve(usize::try_from(left).unwrap_or(part).clamp(1, part));
            }
            let take = (part - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes.split_to(take));
        }
        Ok(())
    }

    async fn send_part(&mut self, bytes: Bytes) -> Result<()> {
        if self.failed.load(std::sync::atomic::Ordering::Acquire) {
            // A part on its way failed: nothing more goes to the store; its error is told.
            self.settle_in_flight().await?;
            return Err(Error::Unavailable(format!(
                "object store {}: a part of the upload failed",
                self.home.bucket.url()
            )));
        }
        let id = match &self.state.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .home
                    .store()
                    .create_multipart(&self.key)
                    .await
                    .map_err(|e| self.home.fail(&self.target, e))?;
                self.state.upload_id = Some(id.clone());
                // Saved before any part: a crash from here on leaves a state to clean up.
                self.save().await?;
                id
            }
        };
        // At most PARTS_IN_FLIGHT parts of this upload travel at once, and SERVER_PARTS of
        // all uploads together; the next waits for a slot of each.
        let closed = |e| Error::Internal(format!("part slots: {e}"));
        let mine = self.slots.clone().acquire_owned().await.map_err(closed)?;
        let server = self.home.bucket.inner.parts.clone();
        let slot = (mine, server.acquire_owned().await.map_err(closed)?);
        let index = self.sent;
        self.sent += 1;
        let offset = index as u64 * self.state.part_size;
        let before = self.in_flight.take();
        let failed = self.failed.clone();
        let part = Part {
            bucket: self.home.bucket.clone(),
            key: self.key.clone(),
            id,
            index,
            offset,
        };
        let state = (self.state_key.clone(), self.state.clone());
        self.in_flight = Some(tokio::spawn(async move {
            let sent = part.send(bytes, slot, before, state).await;
            if sent.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Release);
            }
            sent
        }));
        Ok(())
    }
}

/// One part of a multipart upload, on its way.
struct Part {
    bucket: Bucket,
    key: Path,
    id: String,
    index: usize,
    offset: u64,
}

impl Part {
    /// Sends the part's `bytes`, hashing them meanwhile, and lets go of its `slot`; then,
    /// once every part `before` it landed, saves the upload's state (`base` at `state_key`)
    /// with it. Returns the parts so far.
    async fn send(
        self,
        bytes: Bytes,
        slot: (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
        before: Option<JoinHandle<Result<Vec<PartState>>>>,
        (state_key, base): (Path, UploadState),
    ) -> Result<Vec<PartState>> {
        let (offset, hashed) = (self.offset, bytes.clone());
        let cv = tokio::task::spawn_blocking(move || subtree_cv(offset, &hashed));
        let sent = self
            .bucket
            .inner
            .store
            .put_part(
                &self.key,
                &self.id,
                self.index,
                PutPayload::from_bytes(bytes),
            )
            .await
            .map_err(|e| self.bucket.unavailable(&e));
        drop(slot);
        let cv = cv
            .await
            .map_err(|e| Error::Internal(format!("hashing a part: {e}")));
        // Recorded in order: after every part before it, whichever landed first.
        let mut parts = match before {
            Some(before) => before
                .await
                .map_err(|e| Error::Internal(format!("sending a part: {e}")))??,
            None => base.parts.clone(),
        };
        parts.push(PartState {
            etag: sent?.content_id,
            cv: hex::encode(cv?),
        });
        // Saved as soon as it and all before it landed: a resume continues after it.
        let state = UploadState {
            parts: parts.clone(),
            ..base
        };
        save_state(&self.bucket, &state_key, &state).await?;
        Ok(parts)
    }
}

impl S3Upload {
    /// Waits for the parts in flight (which save the state as they land) and records them.
    async fn settle_in_flight(&mut self) -> Result<()> {
        let Some(last) = self.in_flight.take() else {
            return Ok(());
        };
        let parts = last
            .await
            .map_err(|e| Error::Internal(format!("sending a part: {e}")))?;
        match parts {
            Ok(parts) => {
                self.state.parts = parts;
                Ok(())
            }
            Err(e) => {
                // What landed is in the saved state; this upload goes no further.
                self.sent = self.state.parts.len();
                Err(e)
            }
        }
    }

    async fn save(&self) -> Result<()> {
        save_state(&self.home.bucket, &self.state_key, &self.state).await
    }

    /// The digests of everything received, once the last byte is in: BLAKE3 from the parts'
    /// chaining values and the rest (no byte is read back), md5 if it was asked for.
    ///
    /// # Errors
    /// As [`S3Upload::write`].
    pub(crate) async fn finish(&mut self) -> Result<Sums> {
        self.settle_in_flight().await?;
        let cvs = self
            .state
            .parts
            .iter()
            .map(|p| {
                let mut cv = [0; 32];
                hex::decode_to_slice(&p.cv, &mut cv)
                    .map_err(|_| Error::Internal("a part's hash in the upload state".into()))?;
                Ok(cv)
            })
            .collect::<Result<Vec<ChainingValue>>>()?;
        let tail = self.tail.clone().freeze();
        let offset = self.state.received();
        let blake3 = tokio::task::spawn_blocking(move || file_hash(&cvs, offset, &tail))
            .await
            .map_err(|e| Error::Internal(format!("hashing: {e}")))?
            .ok_or_else(|| Error::Internal("an upload of one whole part and no more".into()))?;
        Ok(Sums {
            md5: self.md5.take().map(|m| hex::encode(m.finalize())),
            blake3: Some(blake3.to_hex().to_string()),
        })
    }

    fn len(&self) -> u64 {
        self.sent as u64 * self.state.part_size + self.tail.len() as u64
    }

    async fn abort(&mut self) {
        if let Some(part) = self.in_flight.take() {
            // Landed first, so that it does not save a state after this removes it.
            drop(part.await);
        }
        if let Some(id) = self.state.upload_id.take() {
            drop(self.home.store().abort_multipart(&self.key, &id).await);
        }
        drop(self.home.store().delete(&self.state_key).await);
    }
}

impl Upload for S3Upload {
    fn received(&self) -> u64 {
        self.state.received()
    }

    // Parts of an unfinished upload are not charged: the reservation covers them while it
    // runs, and an abandoned one is cleaned up (see `Bucket::clean_abandoned`).
    async fn cost(&self) -> u64 {
        0
    }

    fn cost_at_start(&self) -> u64 {
        0
    }

    fn target(&self) -> &WirePath {
        &self.target
    }

    fn keep(&mut self, _kept: Kept) {
        // The store sets the time itself and has no permission bits.
    }

    fn synced(&mut self) {}
}

impl Storage for S3Home {
    type Reader = S3Reader;
    type Upload = S3Upload;
    type Listing = S3Listing;

    async fn open_list(&self, path: &WirePath) -> Result<S3Listing> {
        let entry = self
            .kind(path)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{path}: no such file or folder")))?;
        if entry.kind != EntryKind::Dir {
            return Ok(S3Listing {
                entries: vec![entry].into_iter(),
            });
        }
        let key = self.key(path)?;
        let found = self
            .store()
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.fail(path, e))?;
        // Each folder checked, a few at a time (see `folder_time`).
        let prefixes = found.common_prefixes.clone();
        let folders: Vec<Option<Entry>> = futures_util::stream::iter(prefixes)
            .map(|prefix: Path| {
                let home = self.clone();
                async move {
                    let Some(name) = prefix.filename().map(str::to_owned) else {
                        return Ok(None);
                    };
                    let made = home.folder_time(&prefix).await?;
                    Ok(made.map(|made| folder(name, made)))
                }
            })
            .buffered(16)
            .try_collect()
            .await
            .map_err(|e| self.fail(path, e))?;
        let mut entries: Vec<Entry> = folders
            .into_iter()
            .flatten()
            .chain(found.objects.iter().filter_map(|o| {
                let name = o.location.filename()?;
                (name != MARKER).then(|| file(name.to_owned(), o.size, &o.last_modified))
            }))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(S3Listing {
            entries: entries.into_iter(),
        })
    }

    async fn next_page(&self, listing: &mut S3Listing, limit: usize) -> Result<(Vec<Entry>, bool)> {
        Ok(listing.next_page(limit))
    }

    async fn stat(&self, path: &WirePath) -> Result<Entry> {
        self.kind(path)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{path}: no such file or folder")))
    }

    async fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        match self.kind(path).await? {
            Some(e) if e.kind == EntryKind::Dir && parents => return Ok(()),
            Some(_) => return Err(Error::AlreadyExists(format!("{path} already exists"))),
            None => {}
        }
        let missing = self.missing(path).await?;
        if !parents && missing > 1 {
            let parent = path.parent().unwrap_or_default();
            return Err(Error::NotFound(format!("{parent}: no such folder")));
        }
        // From the top down, so a folder never exists without the ones above it.
        let mut at = Vec::new();
        let mut folder = path.clone();
        for _ in 0..missing {
            at.push(folder.clone());
            folder = folder.parent().unwrap_or_default();
        }
        // What the new folders go in must be a folder, not a file.
        self.require_folder(&folder).await?;
        for folder in at.iter().rev() {
            let marker = self.key(folder)?.join(MARKER);
            self.store()
                .put(&marker, PutPayload::default())
                .await
                .map_err(|e| self.fail(folder, e))?;
        }
        Ok(())
    }

    async fn missing(&self, path: &WirePath) -> Result<u64> {
        let mut missing = 0;
        let mut at = path.clone();
        while !at.is_root() && self.kind(&at).await?.is_none() {
            missing += 1;
            at = at.parent().unwrap_or_default();
        }
        Ok(missing)
    }

    async fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        if path.is_root() {
            return Err(Error::PermissionDenied(
                "your home folder itself cannot be removed".into(),
            ));
        }
        let entry = self.stat(path).await?;
        if entry.kind != EntryKind::Dir {
            let key = self.key(path)?;
            return self
                .store()
                .delete(&key)
                .await
                .map_err(|e| self.fail(path, e));
        }
        if !recursive {
            return Err(Error::BadRequest(format!("{path} is a folder, use -r")));
        }
        if self.busy_inside(path)? {
            return Err(Error::Busy(format!(
                "busy: an upload is in progress inside {path}"
            )));
        }
        let locations = self.objects(path)?.map_ok(|m| m.location);
        let mut deleted = self.store().delete_stream(locations.boxed());
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.fail(path, e)),
            }
        }
        Ok(())
    }

    async fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(Error::PermissionDenied(
                "your home folder itself cannot be moved or replaced".into(),
            ));
        }
        if from == to {
            return self.stat(from).await.map(drop);
        }
        if to.starts_with(from) {
            return Err(Error::BadRequest(format!(
                "cannot move {from} into itself ({to})"
            )));
        }
        let moved = self.stat(from).await?;
        match self.kind(to).await? {
            Some(e) if e.kind == EntryKind::Dir => {
                return Err(Error::AlreadyExists(format!(
                    "{to} is a folder; it is not replaced"
                )));
            }
            _ => {}
        }
        self.require_folder(&to.parent().unwrap_or_default())
            .await?;
        let (from_key, to_key) = (self.key(from)?, self.key(to)?);
        if moved.kind != EntryKind::Dir {
            return self
                .store()
                .rename(&from_key, &to_key)
                .await
                .map_err(|e| self.fail(from, e));
        }
        if self.busy_inside(from)? {
            return Err(Error::Busy(format!(
                "busy: an upload is in progress inside {from}"
            )));
        }
        // Every object's new path must fit the path limits, as on a local disk: checked
        // before anything is copied.
        let mut listed = self.objects(from)?;
        while let Some(meta) = listed.try_next().await.map_err(|e| self.fail(from, e))? {
            let below: Vec<String> = meta
                .location
                .prefix_match(&from_key)
                .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect())
                .unwrap_or_default();
            // A marker stands for its folder, one level up.
            let marker = below.last().is_some_and(|name| name == MARKER);
            let names = &below[..below.len() - usize::from(marker)];
            let len: usize = names.iter().map(|p| p.len() + 1).sum();
            if to.depth() + names.len() > MAX_DEPTH || to.display_len() + len > MAX_PATH_LEN {
                return Err(Error::BadRequest(format!(
                    "moving {from} to {to} would nest what it holds too deep: paths may have \
                     at most {MAX_PATH_LEN} bytes and {MAX_DEPTH} levels"
                )));
            }
        }
        // Copies first (a few at a time), then the deletes: a failure half way leaves both,
        // never neither.
        let (store, from_prefix) = (self.store().clone(), from_key.clone());
        self.objects(from)?
            .map(|meta| {
                let (store, from_prefix, to_key) =
                    (store.clone(), from_prefix.clone(), to_key.clone());
                async move {
                    let meta = meta?;
                    let mut target = to_key;
                    if let Some(parts) = meta.location.prefix_match(&from_prefix) {
                        for part in parts {
                            target = target.join(part);
                        }
                    }
                    store.copy(&meta.location, &target).await
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await
            .map_err(|e| self.fail(from, e))?;
        let locations = self.objects(from)?.map_ok(|m| m.location);
        let mut deleted = self.store().delete_stream(locations.boxed());
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.fail(from, e)),
            }
        }
        Ok(())
    }

    async fn usage(&self, path: &WirePath, refuse_busy: bool) -> Result<Usage> {
        if refuse_busy && self.busy_inside(path)? {
            return Err(Error::Busy(format!(
                "busy: an upload is in progress inside {path}"
            )));
        }
        // A folder's marker stands for the folder itself, and costs as an entry.
        let usage = self
            .objects(path)?
            .try_fold(Usage::default(), |mut usage, meta| {
                usage.entries += 1;
                usage.bytes = usage.bytes.saturating_add(meta.size);
                futures_util::future::ready(Ok(usage))
            })
            .await
            .map_err(|e| self.fail(path, e))?;
        if usage.entries == 0 && !path.is_root() {
            return Err(Error::NotFound(format!("{path}: no such file or folder")));
        }
        Ok(usage)
    }

    async fn open_read(&self, path: &WirePath) -> Result<(S3Reader, u64)> {
        let key = self.key(path)?;
        match self.store().head(&key).await {
            Ok(meta) => Ok((
                S3Reader {
                    store: self.store().clone(),
                    bucket: self.bucket.clone(),
                    key,
                    etag: meta.e_tag,
                    size: meta.size,
                },
                meta.size,
            )),
            Err(object_store::Error::NotFound { .. }) if self.kind(path).await?.is_some() => {
                Err(Error::BadRequest(format!("{path} is a folder, not a file")))
            }
            Err(e) => Err(self.fail(path, e)),
        }
    }

    async fn begin_upload(&self, path: &WirePath) -> Result<S3Upload> {
        let Some(parent) = path.parent() else {
            return Err(Error::PermissionDenied(
                "cannot upload onto your home folder itself".into(),
            ));
        };
        let key = self.key(path)?;
        if !self.bucket.writers().insert(key.clone()) {
            return Err(Error::Busy(format!(
                "busy: another upload of {path} is in progress"
            )));
        }
        let mut writer = WriterLock {
            bucket: self.bucket.clone(),
            key: key.clone(),
            shared: None,
        };
        writer.shared = self
            .bucket
            .inner
            .shared_writers
            .try_lock(key.as_ref())
            .await?;
        if writer.shared.is_none() {
            return Err(Error::Busy(format!(
                "busy: another server is uploading {path}"
            )));
        }
        self.require_folder(&parent).await?;
        if let Some(Entry {
            kind: EntryKind::Dir,
            ..
        }) = self.kind(path).await?
        {
            return Err(Error::AlreadyExists(format!("{path} is a folder")));
        }
        let state_key = self.state_key(path);
        let state = match self.bucket.load_state(&state_key).await? {
            Some(state) if state.key == key.as_ref() && state.part_size == PART_SIZE as u64 => {
                state
            }
            _ => UploadState {
                key: key.as_ref().to_owned(),
                upload_id: None,
                part_size: PART_SIZE as u64,
                parts: Vec::new(),
            },
        };
        let state_parts = state.parts.len();
        Ok(S3Upload {
            home: self.clone(),
            key,
            state_key,
            target: path.clone(),
            state,
            tail: BytesMut::new(),
            in_flight: None,
            sent: state_parts,
            slots: Arc::new(tokio::sync::Semaphore::new(PARTS_IN_FLIGHT)),
            failed: Arc::default(),
            md5: None,
            expected: 0,
            writer: Some(writer),
        })
    }

    async fn commit_upload(&self, upload: &mut S3Upload, size: u64) -> Result<()> {
        upload.settle_in_flight().await?;
        if upload.len() != size {
            return Err(Error::BadRequest(format!(
                "the upload holds {} bytes, not {size}",
                upload.len()
            )));
        }
        let tail = upload.tail.split().freeze();
        let target = upload.target.clone();
        match upload.state.upload_id.clone() {
            None => {
                self.store()
                    .put(&upload.key, PutPayload::from_bytes(tail))
                    .await
                    .map_err(|e| self.fail(&target, e))?;
            }
            Some(id) => {
                let mut parts: Vec<PartId> = upload
                    .state
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.etag.clone(),
                    })
                    .collect();
                if !tail.is_empty() {
                    let last = self
                        .store()
                        .put_part(&upload.key, &id, parts.len(), PutPayload::from_bytes(tail))
                        .await
                        .map_err(|e| self.fail(&target, e))?;
                    parts.push(last);
                }
                self.store()
                    .complete_multipart(&upload.key, &id, parts)
                    .await
                    .map_err(|e| self.fail(&target, e))?;
                upload.state.upload_id = None;
            }
        }
        drop(self.store().delete(&upload.state_key).await);
        Ok(())
    }

    async fn discard_upload(&self, upload: &mut S3Upload) -> Result<()> {
        upload.abort().await;
        upload.state.parts.clear();
        upload.sent = 0;
        upload.tail.clear();
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        // A store acknowledges a write once it is durable.
        Ok(())
    }
}

/// The chaining value of the bytes at `offset` (a multiple of their length, a power of two
/// of chunks): a non-root subtree of the file's BLAKE3 tree.
fn subtree_cv(offset: u64, bytes: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// The BLAKE3 hash of a file made of whole parts of equal size (their chaining values `cvs`)
/// and then `tail` (at `offset`, at most a part): the parts are the leaves of the tree BLAKE3
/// builds, the tail the last, possibly shorter, one. `None` for one whole part and no tail
/// (the root of a lone part cannot be had from its chaining value).
fn file_hash(cvs: &[ChainingValue], offset: u64, tail: &[u8]) -> Option<blake3::Hash> {
    if cvs.is_empty() {
        return Some(blake3::hash(tail));
    }
    let mut leaves = cvs.to_vec();
    if !tail.is_empty() {
        leaves.push(subtree_cv(offset, tail));
    }
    if leaves.len() == 1 {
        return None;
    }
    let split = left_leaves(leaves.len());
    let (left, right) = (merge_cvs(&leaves[..split]), merge_cvs(&leaves[split..]));
    Some(merge_subtrees_root(&left, &right, Mode::Hash))
}

/// How many of `n` leaves (n > 1, all whole but maybe the last) BLAKE3 puts on the left of
/// their subtree: the largest power of two below `n`.
fn left_leaves(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Joins leaves into their (non-root) subtree's chaining value.
fn merge_cvs(leaves: &[ChainingValue]) -> ChainingValue {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let split = left_leaves(leaves.len());
    merge_subtrees_non_root(
        &merge_cvs(&leaves[..split]),
        &merge_cvs(&leaves[split..]),
        Mode::Hash,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash from parts' chaining values is BLAKE3's own, for any number of parts and
    /// any tail (a small part here: 4 chunks, as 8 MiB is 8,192).
    #[test]
    fn the_file_hash_from_parts_is_blake3() {
        let part = 4 * 1024;
        let data: Vec<u8> = (0..part * 9 + 77).map(|i| (i * 31 % 251) as u8).collect();
        for len in [
            1,
            100,
            part - 1,
            part + 1,
            2 * part,
            2 * part + 5,
            3 * part,
            4 * part + 1,
            5 * part,
            7 * part + 3,
            8 * part,
            9 * part + 77,
        ] {
            let bytes = &data[..len];
            // Whole parts are those followed by at least one more byte, as `S3Upload` sends.
            let whole = (len - 1) / part;
            let cvs: Vec<_> = (0..whole)
                .map(|i| subtree_cv((i * part) as u64, &bytes[i * part..(i + 1) * part]))
                .collect();
            let got = file_hash(&cvs, (whole * part) as u64, &bytes[whole * part..]);
            assert_eq!(got, Some(blake3::hash(bytes)), "{len} bytes");
        }
    }
}
