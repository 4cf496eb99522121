//! The seeds' upload, "FTP上传下载文件的代码（简单版）" (003): a frame whose header is
//! `{"filename": ..., "filesize": n, ...}` (any size alias), then n bytes of content.
//!
//! The file is saved as `DATA/uploads/<base name>`: only the last component of `filename`
//! survives (`/` and `\` both separate), so `../../x` lands as `x`. The body streams into a
//! hidden `.<name>.<random>.part` file beside it and is renamed into place only once all n
//! bytes arrived and, when the header has `md5`, the digest matches; otherwise the partial
//! file is removed. Success is silent, as in the seed; a refusal gets one error frame.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::info;

use crate::connection::{CHUNK, Connection};
use crate::net::{Endpoint, connect};
use crate::protocol::{Head, Limits, Reply, encode_head};
use crate::server::{Conn, TcpService};
use crate::{Error, Result};

/// Input a refused connection still drains so that its error frame is not lost to a reset.
const LINGER_BYTES: usize = 1 << 20;

/// The seed upload server (`--seed-upload`).
#[derive(Debug)]
pub(crate) struct Upload {
    dir: PathBuf,
}

impl Upload {
    /// An upload server saving into `data/uploads` (created if missing).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub(crate) fn new(data: &Path) -> std::io::Result<Upload> {
        let dir = data.join("uploads");
        std::fs::create_dir_all(&dir)?;
        Ok(Upload { dir })
    }

    /// Receives the body of `head` into its final file; returns the final path.
    async fn receive<S>(&self, head: &Head, conn: &mut Connection<S>) -> Result<PathBuf>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let raw = ["filename", "file_name"]
            .iter()
            .find_map(|k| head.header.get(*k))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadRequest("the header has no string `filename`".into()))?;
        let name = base_name(raw)?;
        let md5 = match head.header.get("md5") {
            None => None,
            Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "`md5` must be a string, got {other}"
                )));
            }
        };
        let partial = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".part")
            .tempfile_in(&self.dir)?;
        // The TempPath removes the partial file on every early return, cancellation included.
        let (file, partial) = partial.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Md5::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut body = conn.body();
        loop {
            // Ends at the announced size; an early EOF is an `UnexpectedEof` error.
            let n = body.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            file.write_all(&chunk[..n]).await?;
        }
        file.flush().await?;
        drop(file);
        if let Some(want) = md5 {
            let got = hex::encode(hasher.finalize());
            if got != want {
                return Err(Error::BadRequest(format!(
                    "md5 mismatch for {name}: the header says {want}, the content is {got}; nothing was kept"
                )));
            }
        }
        let dest = self.dir.join(name);
        partial.persist(&dest).map_err(|e| e.error)?;
        Ok(dest)
    }
}

impl TcpService for Upload {
    async fn handle(&self, conn: Conn) -> Result<()> {
        let peer = conn.peer;
        let mut framed = Connection::new(conn.stream, conn.config.limits);
        // The seed client sends one file and closes; more frames on one connection are fine.
        loop {
            let head = tokio::select! {
                biased;
                _ = conn.shutdown.cancelled() => return Ok(()),
                head = framed.read_head() => head,
            };
            let result = match head {
                Ok(None) => return Ok(()),
                Ok(Some(head)) => self.receive(&head, &mut framed).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(path) => info!(%peer, path = %path.display(), "seed upload saved"),
                Err(e) => {
                    if !e.is_disconnect() {
                        let _ = framed.queue(&Reply::error(e.code(), e.to_string()), b"");
                        let _ = framed.flush().await;
                        framed
                            .linger_close(LINGER_BYTES, std::time::Duration::from_secs(2))
                            .await;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// The last component of a wire file name, either separator; refuses empty, `.` and `..`.
///
/// # Errors
/// [`Error::BadRequest`] naming the refused name.
fn base_name(raw: &str) -> Result<&str> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
        return Err(Error::BadRequest(format!(
            "`{raw}` does not name a file (it has no usable base name)"
        )));
    }
    Ok(name)
}

/// The seed upload client: sends `local` as `{"filename", "filesize", "md5"}` + its content,
/// streamed in 64 KiB chunks, under the name `remote` (default: the local base name).
/// Returns the bytes sent.
///
/// The seed protocol has no acknowledgement: success is the server closing without a word.
/// A sockit server that refuses the file answers with one error frame, returned here as
/// [`Error::Remote`].
///
/// # Errors
/// File, connect and I/O errors; [`Error::Remote`] for a refusal.
pub async fn send(server: &Endpoint, local: &Path, remote: Option<&str>) -> Result<u64> {
    let name = match remote {
        Some(r) => r.to_string(),
        None => local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::BadRequest(format!("{} is not a file", local.display())))?,
    };
    let file = tokio::fs::File::open(local).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", local.display()),
        ))
    })?;
    let size = file.metadata().await?.len();
    // The seed order: the digest goes in the header, so the file is read twice.
    let digest = md5_of(BufReader::with_capacity(
        CHUNK,
        tokio::fs::File::open(local).await?,
    ))
    .await?;
    let header = json!({"filename": name, "filesize": size, "md5": digest});
    let mut head = bytes::BytesMut::new();
    encode_head(&header, size, &mut head)?;

    let mut stream = connect(server).await?;
    stream.write_all(&head).await?;
    let mut content = BufReader::with_capacity(CHUNK, file.take(size));
    let sent = tokio::io::copy_buf(&mut content, &mut stream).await?;
    if sent != size {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} shrank while it was sent", local.display()),
        )));
    }
    stream.shutdown().await?;
    // Wait for the server to close: a sockit server does so once the file is in place.
    let mut conn = Connection::new(stream, Limits::default());
    match conn.read_head().await? {
        None => Ok(sent),
        Some(head) => Reply::from_head(&head).map(|_| sent),
    }
}

/// The md5 of everything `reader` yields, as lowercase hex.
async fn md5_of(mut reader: impl tokio::io::AsyncBufRead + Unpin) -> Result<String> {
    use tokio::io::AsyncBufReadExt;
    let mut hasher = Md5::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(buf);
        let n = buf.len();
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_base_name() {
        assert_eq!(base_name("a.txt").unwrap(), "a.txt");
        assert_eq!(base_name("../../x").unwrap(), "x");
        assert_eq!(base_name("/etc/passwd").unwrap(), "passwd");
        assert_eq!(base_name(r"C:\Users\Aaron\config").unwrap(), "config");
        assert_eq!(base_name(r"..\..\evil").unwrap(), "evil");
        for bad in ["", ".", "..", "dir/", "a/..", r"a\.", "nul\0x"] {
            assert!(base_name(bad).is_err(), "{bad:?}");
        }
    }
}
