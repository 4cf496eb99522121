//! libunftp's storage back-end over the file-service core: every FTP path goes through
//! [`WirePath`] (the jail), every change through [`Home`] (quota, one writer, commit), and
//! every core error becomes one FTP reply, in [`ftp_error`].

use std::fmt::Debug;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use unftp_core::storage::{
    self as ftp, ErrorKind, FEATURE_RESTART, FEATURE_SITEMD5, Fileinfo, Metadata, StorageBackend,
};

use super::auth::User;
use super::upload;
use crate::filecopy::{blocking, remembered_sums};
use crate::server::idle::IdleStream;
use crate::storage::backend::{ByteStream, StoreReader};
use crate::storage::{Entry, EntryKind, WirePath};
use crate::{Error, Result};

/// Bytes read at a time when hashing a file for `SITE MD5`.
const HASH_CHUNK: usize = 256 * 1024;

/// The storage of FTP sessions: the logged-in user's home.
#[derive(Debug, Clone)]
pub(crate) struct Door {
    /// How long a data connection may stall before the transfer fails.
    idle: Duration,
}

impl Door {
    /// Sessions whose data connections may stall for `idle` at most.
    pub(crate) fn new(idle: Duration) -> Door {
        Door { idle }
    }
}

/// One entry, as libunftp lists it.
#[derive(Debug, Clone)]
pub(crate) struct Meta(Entry);

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn is_dir(&self) -> bool {
        self.0.kind == EntryKind::Dir
    }

    fn is_file(&self) -> bool {
        self.0.kind == EntryKind::File
    }

    fn is_symlink(&self) -> bool {
        self.0.kind == EntryKind::Symlink
    }

    fn modified(&self) -> ftp::Result<SystemTime> {
        let secs = u64::try_from(self.0.modified).unwrap_or(0);
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }

    fn permissions(&self) -> ftp::Permissions {
        let default = if self.is_dir() { 0o755 } else { 0o644 };
        ftp::Permissions(self.0.mode.unwrap_or(default))
    }
}

/// The path libunftp joined from the session's folder and the command's argument, checked
/// against the home: `..` above it, NUL bytes, over-long names are refused here.
pub(crate) fn wire(path: &Path) -> Result<WirePath> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::BadRequest("a path must be UTF-8".into()))?;
    WirePath::root().resolve(text)
}

/// The FTP reply for a core error: one place, as [`Error::code`] is for the native protocol.
pub(crate) fn ftp_error(e: Error) -> ftp::Error {
    let kind = match &e {
        Error::NotFound(_) | Error::AlreadyExists(_) => ErrorKind::PermanentFileNotAvailable,
        Error::PermissionDenied(_) | Error::AuthFailed(_) | Error::AuthRequired => {
            ErrorKind::PermissionDenied
        }
        // 552: exceeded storage allocation.
        Error::QuotaExceeded(_) => ErrorKind::ExceededStorageAllocationError,
        Error::StorageFull(_) => ErrorKind::InsufficientStorageSpaceError,
        Error::Busy(_) => ErrorKind::TransientFileNotAvailable,
        Error::BadRequest(_) => ErrorKind::FileNameNotAllowedError,
        Error::Timeout(_) => ErrorKind::ConnectionClosed,
        Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::TimedOut
            ) =>
        {
            ErrorKind::ConnectionClosed
        }
        _ => ErrorKind::LocalError,
    };
    ftp::Error::new(kind, e)
}

impl Door {
    /// The user's home and the checked path: what every operation starts with.
    fn at(user: &User, path: &Path) -> Result<(crate::home::Home, WirePath)> {
        Ok((user.home()?, wire(path)?))
    }

    async fn cwd_checked(user: &User, path: &Path) -> Result<()> {
        let (home, path) = Door::at(user, path)?;
        match home.stat(&path).await?.kind {
            EntryKind::Dir => Ok(()),
            _ => Err(Error::NotFound(format!("{path} is not a folder"))),
        }
    }

    async fn remove(user: &User, path: &Path, dir: bool) -> Result<()> {
        let (home, path) = Door::at(user, path)?;
        let is_dir = home.stat(&path).await?.kind == EntryKind::Dir;
        if is_dir != dir {
            let what = if dir { "not a folder" } else { "a folder" };
            return Err(Error::BadRequest(format!("{path} is {what}")));
        }
        home.remove(&path, false).await
    }

    async fn md5_of(user: &User, path: &Path) -> Result<String> {
        let (home, path) = Door::at(user, path)?;
        let file = match home.open_read(&path).await? {
            (StoreReader::Local(file), _) => file,
            (StoreReader::S3(object), _) => {
                let mut md5 = Md5::new();
                let mut chunks = std::pin::pin!(object.stream(0));
                while let Some(chunk) = chunks.next().await {
                    md5.update(&chunk?);
                }
                return Ok(hex::encode(md5.finalize()));
            }
        };
        blocking(move || {
            if let Some(md5) = remembered_sums(&file).and_then(|sums| sums.md5) {
                return Ok(md5);
            }
            let mut file = file;
            let mut md5 = Md5::new();
            let mut buf = vec![0u8; HASH_CHUNK];
            loop {
                // A read error is an error, never a digest of what was read before it.
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                md5.update(&buf[..n]);
            }
            Ok(hex::encode(md5.finalize()))
        })
        .await
    }

    async fn open_at(user: &User, path: &Path, start: u64) -> Result<ByteStream> {
        let (home, wire) = Door::at(user, path)?;
        let (file, len) = home.open_read(&wire).await?;
        if start > len {
            return Err(Error::BadRequest(format!(
                "cannot restart {wire} at byte {start}: it has {len} bytes"
            )));
        }
        Ok(file.into_stream(start, len))
    }
}

#[async_trait]
impl StorageBackend<User> for Door {
    type Metadata = Meta;

    fn name(&self) -> &str {
        "sockit"
    }

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART | FEATURE_SITEMD5
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> ftp::Result<Meta> {
        let path = path.as_ref().to_path_buf();
        let stat = async {
            let (home, path) = Door::at(user, &path)?;
            home.stat(&path).await
        };
        stat.await.map(Meta).map_err(ftp_error)
    }

    async fn md5<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> ftp::Result<String>
    where
        P: AsRef<Path> + Send + Debug,
    {
        Door::md5_of(user, path.as_ref()).await.map_err(ftp_error)
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> ftp::Result<Vec<Fileinfo<PathBuf, Meta>>> {
        let path = path.as_ref().to_path_buf();
        let list = async {
            let (home, path) = Door::at(user, &path)?;
            home.list(&path).await
        };
        let entries = list.await.map_err(ftp_error)?;
        Ok(entries
            .into_iter()
            .map(|entry| Fileinfo {
                path: PathBuf::from(&entry.name),
                metadata: Meta(entry),
            })
            .collect())
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> ftp::Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let mut chunks = Door::open_at(user, path.as_ref(), start_pos)
            .await
            .map_err(ftp_error)?;
        // A client that stops reading costs the transfer after the idle time, not forever.
        let mut output = IdleStream::new(output, self.idle);
        let mut copied = 0;
        let sent: std::io::Result<()> = async {
            // Each chunk is written as read (read ahead of the sending), without a copy.
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                output.write_all(&chunk).await?;
                copied += chunk.len() as u64;
            }
            output.flush().await
        }
        .await;
        sent.map_err(|e| ftp_error(Error::Io(e)))?;
        Ok(copied)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> ftp::Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        let chunks = Door::open_at(user, path.as_ref(), start_pos)
            .await
            .map_err(ftp_error)?;
        Ok(Box::new(tokio_util::io::StreamReader::new(chunks)))
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &User,
        input: R,
        path: P,
        start_pos: u64,
    ) -> ftp::Result<u64> {
        let path = path.as_ref().to_path_buf();
        let store = async {
            let (home, target) = Door::at(user, &path)?;
            let input = IdleStream::new(input, self.idle);
            upload::store(&home, &target, input, start_pos, user.left()).await
        };
        store.await.map_err(ftp_error)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> ftp::Result<()> {
        Door::remove(user, path.as_ref(), false)
            .await
            .map_err(ftp_error)
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> ftp::Result<()> {
        let path = path.as_ref().to_path_buf();
        let mkdir = async {
            let (home, path) = Door::at(user, &path)?;
            home.mkdir(&path, false).await
        };
        mkdir.await.map_err(ftp_error)
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        from: P,
        to: P,
    ) -> ftp::Result<()> {
        let (from, to) = (from.as_ref().to_path_buf(), to.as_ref().to_path_buf());
        let rename = async {
            let (home, from) = Door::at(user, &from)?;
            let to = wire(&to)?;
            home.rename(&from, &to).await
        };
        rename.await.map_err(ftp_error)
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> ftp::Result<()> {
        Door::remove(user, path.as_ref(), true)
            .await
            .map_err(ftp_error)
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> ftp::Result<()> {
        Door::cwd_checked(user, path.as_ref())
            .await
            .map_err(ftp_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftp_paths_are_jailed_in_the_home() {
        assert_eq!(wire(Path::new("/a/b")).unwrap().to_string(), "/a/b");
        assert_eq!(wire(Path::new("/a/../b")).unwrap().to_string(), "/b");
        for hostile in ["/../..", "/a/../../users.db", "/../x"] {
            let refused = wire(Path::new(hostile));
            assert!(
                matches!(refused, Err(Error::PermissionDenied(_))),
                "{hostile}: {refused:?}"
            );
        }
        assert!(wire(Path::new("/a/.x.sockit-part")).is_err());
    }

    #[test]
    fn a_quota_refusal_is_ftp_552() {
        let quota = crate::quota::QuotaLedger::new()
            .reserve("ann", Some(0), 1)
            .unwrap_err();
        let e = ftp_error(quota);
        assert_eq!(e.kind(), ErrorKind::ExceededStorageAllocationError);
        let e = ftp_error(Error::PermissionDenied("outside".into()));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }
}
