//! `Client`: the native protocol from the calling side: connect, send a request, read the
//! typed reply. Used by the `sockit` subcommands, the demo and the tests.

pub mod address;
pub mod bench;
pub mod chat;
pub mod command;
pub mod completion;
pub mod known_hosts;
pub mod shell;
pub mod tls;
pub mod tree;
pub mod udp;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::connection::Connection;
use crate::filecopy::{Digests, Progress, receive_body, send_file};
use crate::net::{Endpoint, Stream, connect};
use crate::protocol::ops::{GetReady, Listing, PutReady, Stat, Trailer};
use crate::protocol::{DigestKind, Limits, MAX_INLINE_BODY, Password, Reply, Request};
use crate::storage::Entry;
use crate::{Error, Result};

/// What an upload keeps of the local file `meta` describes: its permission bits and its
/// modification time (whole seconds).
pub fn kept_of(meta: &std::fs::Metadata) -> crate::protocol::Kept {
    use std::os::unix::fs::MetadataExt;
    crate::protocol::Kept {
        mode: Some(meta.mode() & 0o777),
        modified: Some(meta.mtime()),
    }
}

/// Checks that the file at `local` is as `before` describes it (size, modification time,
/// inode): a file rewritten meanwhile is not.
///
/// # Errors
/// A message saying what changed, or why the file could not be looked at again.
pub fn unchanged_since(
    local: &Path,
    before: &std::fs::Metadata,
) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::metadata(local).map_err(|e| e.to_string())?;
    let same = now.len() == before.len()
        && now.mtime() == before.mtime()
        && now.mtime_nsec() == before.mtime_nsec()
        && now.ino() == before.ino();
    if same {
        Ok(())
    } else {
        Err(format!(
            "{} changed while it was being sent",
            local.display()
        ))
    }
}

/// A connection to a sockit server.
#[derive(Debug)]
pub struct Client {
    conn: Connection<Stream>,
}

impl Client {
    /// Connects to `endpoint`.
    ///
    /// # Errors
    /// Resolution and connect errors, naming the address.
    pub async fn connect(endpoint: &Endpoint) -> Result<Client> {
        let stream = connect(endpoint).await?;
        Ok(Client {
            conn: Connection::new(stream, Limits::default()),
        })
    }

    /// A client on an already connected stream (a TLS one, say).
    pub fn from_stream(stream: Stream) -> Client {
        Client {
            conn: Connection::new(stream, Limits::default()),
        }
    }

    /// Connects to `endpoint` (TCP) and speaks TLS, trusting only the certificate whose
    /// fingerprint is `pinned` (`SHA256:…`, as the server's listener line and
    /// `sockit fingerprint` show it).
    ///
    /// # Errors
    /// Connect errors; a handshake that fails (another certificate, or one shown by a
    /// server without its key).
    pub async fn connect_tls(endpoint: &Endpoint, pinned: &str) -> Result<Client> {
        let stream = tls::connect(connect(endpoint).await?, pinned).await?;
        Ok(Client::from_stream(stream))
    }

    /// Sends `body` with the `echo` op and returns what came back.
    ///
    /// # Errors
    /// I/O errors, and [`Error::Remote`] when the server refuses.
    pub async fn echo(&mut self, body: &[u8]) -> Result<Bytes> {
        let (_, reply) = self.call(&Request::Echo, body).await?;
        Ok(reply)
    }

    /// Sends one request and reads its reply: the reply's fields and its body (read whole,
    /// up to 16 MiB).
    ///
    /// # Errors
    /// I/O errors, [`Error::Remote`] for an error reply, [`Error::BadReply`] for a frame that
    /// is not a reply.
    pub async fn call(
        &mut self,
        header: &(impl Serialize + ?Sized),
        body: &[u8],
    ) -> Result<(Map<String, Value>, Bytes)> {
        // Written and read at once: a body larger than the socket buffers must not deadlock
        // against a server that streams its reply while it reads (as echo does).
        let (head, body) = self.conn.exchange(header, body, MAX_INLINE_BODY).await?;
        Ok((Reply::from_head(&head)?, body))
    }

    /// Reads the next reply (for callers that pipelined several requests).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn read_reply(&mut self) -> Result<(Map<String, Value>, Bytes)> {
        let head = self.conn.read_head().await?.ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before replying",
            ))
        })?;
        let fields = Reply::from_head(&head);
        let body = self.conn.read_body(MAX_INLINE_BODY).await?;
        Ok((fields?, body))
    }

    /// The framed connection, for requests this type has no method for.
    pub fn connection(&mut self) -> &mut Connection<Stream> {
        &mut self.conn
    }
}

pub use crate::protocol::ops::{Space, Verified, Welcome};

/// The suffix of a client-side partial download, next to its final name.
const LOCAL_PART_SUFFIX: &str = crate::protocol::PART_SUFFIX;

/// The partial file a download of `local` writes to before it is verified.
pub fn local_partial(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    local.with_file_name(format!(".{name}{LOCAL_PART_SUFFIX}"))
}

impl Client {
    /// Logs in; every file op needs it.
    ///
    /// # Errors
    /// [`Error::Remote`] with `auth_failed` for a wrong name or password.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<Welcome> {
        let (fields, _) = self
            .call(
                &Request::Login {
                    user: user.to_owned(),
                    password: Some(Password::new(password)),
                    key: None,
                    signature: None,
                },
                b"",
            )
            .await?;
        typed(fields)
    }

    /// Logs in with a key: asks for a challenge, then signs it together with this
    /// connection's TLS exporter value (see [`crate::keys::login_message`]).
    ///
    /// # Errors
    /// [`Error::Remote`] with `auth_failed` when the key is not the user's or the signature
    /// does not verify.
    pub async fn login_with_key(
        &mut self,
        user: &str,
        identity: &crate::keys::KeyPair,
    ) -> Result<Welcome> {
        let key = identity.public().to_base64();
        let ask = |signature| Request::Login {
            user: user.to_owned(),
            password: None,
            key: Some(key.clone()),
            signature,
        };
        let (fields, _) = self.call(&ask(None), b"").await?;
        let challenge: crate::protocol::ops::Challenge = typed(fields)?;
        let challenge = crate::keys::decode_base64(&challenge.challenge)
            .ok_or_else(|| Error::BadReply("the challenge is not base64".into()))?;
        let binding = self.conn.get_ref().tls_binding();
        let message = crate::keys::login_message(user, &challenge, binding.as_ref());
        let signature = crate::keys::encode_base64(&identity.sign(&message));
        let (fields, _) = self.call(&ask(Some(signature)), b"").await?;
        typed(fields)
    }

    /// Lists a folder of the home (or shows one file).
    ///
    /// # Errors
    /// [`Error::Remote`] for a missing path or one outside the home.
    pub async fn ls(&mut self, path: &str) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        self.ls_pages(path, |page| {
            all.extend(page);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// Lists a folder a page at a time, in name order: `each` gets every page as it arrives,
    /// so a folder of any size is listed in flat memory. An error from `each` ends the
    /// listing (its other pages are read and dropped, keeping the connection usable).
    ///
    /// # Errors
    /// As [`Client::ls`], or the first error of `each`.
    pub async fn ls_pages(
        &mut self,
        path: &str,
        mut each: impl FnMut(Vec<Entry>) -> Result<()>,
    ) -> Result<()> {
        let request = Request::Ls {
            path: path.into(),
            page: Some(LS_PAGE),
        };
        let (mut fields, mut body) = self.call(&request, b"").await?;
        let mut failed = None;
        loop {
            let listing = typed::<Listing>(fields)?;
            if failed.is_none() {
                let page =
                    serde_json::from_slice(&body).map_err(|e| Error::BadReply(e.to_string()));
                failed = page.and_then(&mut each).err();
            }
            if !listing.more {
                return failed.map_or(Ok(()), Err);
            }
            (fields, body) = self.read_reply().await?;
        }
    }

    /// The BLAKE3 (hex) of the remote file `remote`, hashed by the server, if the file is
    /// `size` bytes long (`None` when it is not): a `get` from the file's end, so no bytes
    /// move, only the trailer's digest.
    ///
    /// # Errors
    /// [`Error::Remote`] for a missing file or one outside the home; connection errors.
    pub async fn remote_blake3(&mut self, remote: &str, size: u64) -> Result<Option<String>> {
        let request = Request::Get {
            path: remote.into(),
            offset: size,
            digest: DigestKind::Blake3,
        };
        self.conn.write_frame(&request, b"").await?;
        let head = self.conn.read_head().await?.ok_or_else(closed)?;
        let ready: GetReady = typed(Reply::from_head(&head)?)?;
        // A file that grew sends what it has past `size`: read and dropped.
        tokio::io::copy(&mut self.conn.body(), &mut tokio::io::sink()).await?;
        let head = self.conn.read_head().await?.ok_or_else(closed)?;
        let trailer: Trailer = typed(Reply::from_head(&head)?)?;
        Ok(trailer.blake3.filter(|_| ready.size == size))
    }

    /// Describes one path.
    ///
    /// # Errors
    /// [`Error::Remote`] for a missing path or one outside the home.
    pub async fn stat(&mut self, path: &str) -> Result<Entry> {
        let (fields, _) = self.call(&Request::Stat { path: path.into() }, b"").await?;
        Ok(typed::<Stat>(fields)?.entry)
    }

    /// Creates a folder (with `parents`, missing parents too).
    ///
    /// # Errors
    /// [`Error::Remote`] when it exists or cannot be created.
    pub async fn mkdir(&mut self, path: &str, parents: bool) -> Result<()> {
        self.call(
            &Request::Mkdir {
                path: path.into(),
                parents,
            },
            b"",
        )
        .await
        .map(drop)
    }

    /// Removes a file (or, with `recursive`, a folder and its contents).
    ///
    /// # Errors
    /// [`Error::Remote`] for a missing path, or a folder without `recursive`.
    pub async fn rm(&mut self, path: &str, recursive: bool) -> Result<()> {
        self.call(
            &Request::Rm {
                path: path.into(),
                recursive,
            },
            b"",
        )
        .await
        .map(drop)
    }

    /// Renames or moves `from` to `to`.
    ///
    /// # Errors
    /// [`Error::Remote`] for a missing source or a refused target.
    pub async fn mv(&mut self, from: &str, to: &str) -> Result<()> {
        let request = Request::Mv {
            from: from.into(),
            to: to.into(),
        };
        self.call(&request, b"").await.map(drop)
    }

    /// The quota, and what the home uses against it now.
    ///
    /// # Errors
    /// [`Error::Remote`]: `unknown_op` from a server older than the op.
    pub async fn df(&mut self) -> Result<Space> {
        let (fields, _) = self.call(&Request::Df, b"").await?;
        typed(fields)
    }

    /// Uploads `local` to `remote`; with `resume`, continues the server's partial file.
    /// The server checks size and BLAKE3 before the file appears under its name.
    ///
    /// # Errors
    /// Local I/O errors; [`Error::Remote`] for a refused upload (quota, busy, permissions)
    /// or a digest mismatch.
    pub async fn put(
        &mut self,
        local: &Path,
        remote: &str,
        resume: bool,
        progress: &mut dyn Progress,
    ) -> Result<Verified> {
        let file = std::fs::File::open(local).map_err(|e| local_error(local, e))?;
        let before = file.metadata().map_err(|e| local_error(local, e))?;
        let size = before.len();
        let (fields, _) = self
            .call(
                &Request::Put {
                    path: remote.into(),
                    size,
                    resume,
                    keep: kept_of(&before),
                },
                b"",
            )
            .await?;
        let offset = typed::<PutReady>(fields)?.offset;
        if offset > size {
            return Err(Error::BadReply(format!(
                "the server resumes at byte {offset} of a {size}-byte file"
            )));
        }
        progress.start(size, offset);
        // BLAKE3, not the seeds' md5: several times cheaper on both ends, and stronger.
        self.conn.queue_head(
            &Request::Data {
                digest: DigestKind::Blake3,
            },
            size - offset,
        )?;
        let blake3 = Some(Digests::Blake3);
        let sums = send_file(
            &mut self.conn,
            file,
            offset,
            size - offset,
            blake3,
            progress,
        )
        .await?;
        progress.finish();
        // A file that changed while it was read may have been sent torn: its digest then
        // describes no version of it. The server is told a digest that cannot match, so it
        // throws the bytes away rather than store them.
        let changed = unchanged_since(local, &before).is_err();
        let done = Request::Done {
            md5: None,
            blake3: if changed {
                Some("0".repeat(64))
            } else {
                sums.blake3
            },
        };
        if changed {
            // The server answers `digest_mismatch` and throws the bytes away.
            self.call(&done, b"").await.err();
            return Err(Error::DigestMismatch(format!(
                "{}: it changed while it was being sent; nothing was stored (send it again)",
                local.display()
            )));
        }
        let (fields, _) = self.call(&done, b"").await?;
        let mut verified: Verified = typed(fields)?;
        verified.resumed_from = offset;
        Ok(verified)
    }

    /// Downloads `remote` to `local` through a partial file next to it, renamed into place
    /// only when the whole file's digest matches the server's (BLAKE3, or md5 from a server
    /// that knows no BLAKE3); with `resume`, continues that partial file.
    ///
    /// # Errors
    /// Local I/O errors; [`Error::Remote`] for a missing file; [`Error::DigestMismatch`] when
    /// the bytes do not match (the partial file is removed).
    pub async fn get(
        &mut self,
        remote: &str,
        local: &Path,
        resume: bool,
        progress: &mut dyn Progress,
    ) -> Result<Verified> {
        let part = local_partial(local);
        let have = match std::fs::metadata(&part) {
            Ok(meta) if resume => meta.len(),
            _ => 0,
        };
        self.conn
            .write_frame(
                &Request::Get {
                    path: remote.into(),
                    offset: have,
                    digest: DigestKind::Blake3,
                },
                b"",
            )
            .await?;
        let head = self.conn.read_head().await?.ok_or_else(closed)?;
        let ready: GetReady = typed(Reply::from_head(&head)?)?;
        if ready.offset != have || ready.size < have {
            return Err(Error::BadReply(format!(
                "asked to resume at {have}, the server sends {} of {}",
                ready.offset, ready.size
            )));
        }
        // Only now, with the file known to exist, is the partial file created (or cut back
        // to what the resume counted on).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| local_error(&part, e))?;
        file.set_len(have).map_err(|e| local_error(&part, e))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(have))
            .map_err(|e| local_error(&part, e))?;
        progress.start(ready.size, have);
        // A server that sends BLAKE3 lets this side skip md5, the expensive digest.
        let (name, which) = if ready.blake3 {
            ("BLAKE3", Digests::Blake3)
        } else {
            ("md5", Digests::Md5)
        };
        let hash = Some((have, which));
        // Durable like an upload: straight to the disk where it can, synced before the name.
        let sums = receive_body(&mut self.conn, file, hash, true, progress).await?;
        progress.finish();
        let head = self.conn.read_head().await?.ok_or_else(closed)?;
        let trailer: Trailer = typed(Reply::from_head(&head)?)?;
        let (ours, theirs) = match which {
            Digests::Blake3 => (sums.blake3, &trailer.blake3),
            _ => (sums.md5, &trailer.md5),
        };
        let (Some(ours), Some(theirs)) = (ours, theirs) else {
            return Err(Error::BadReply(format!(
                "the server's trailer has no {name} for {remote}"
            )));
        };
        if !theirs.eq_ignore_ascii_case(&ours) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::DigestMismatch(format!(
                "{remote}: the received bytes have {name} {ours}, the server's file {theirs}; \
                 the partial download was removed"
            )));
        }
        durable(&part, local)?;
        Ok(Verified {
            size: ready.size,
            md5: trailer.md5.map(|m| m.to_ascii_lowercase()),
            blake3: trailer.blake3.map(|b| b.to_ascii_lowercase()),
            resumed_from: have,
        })
    }
}

/// Entries per reply of a listing by pages: about 100 KB of JSON each.
const LS_PAGE: u32 = 1_000;

/// Reads a reply's fields into the op's typed reply.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(fields: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(fields)).map_err(|e| Error::BadReply(e.to_string()))
}

/// Makes the verified download `part` durable and gives it its name `local`: the bytes
/// synced, then the rename, then the folder that holds the name.
fn durable(part: &Path, local: &Path) -> Result<()> {
    std::fs::File::open(part)
        .and_then(|f| f.sync_all())
        .map_err(|e| local_error(part, e))?;
    std::fs::rename(part, local).map_err(|e| local_error(local, e))?;
    let folder = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| local_error(folder, e))
}

fn closed() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of a transfer",
    ))
}

fn local_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}
