//! File ops of a logged-in user: `ls`, `stat`, `mkdir`, `rm`, `mv`, `df`.
//!
//! Every path is resolved inside the user's home by [`crate::storage`] (pure normalisation,
//! then a root-confined folder handle). The file system work runs on the blocking pool.
//! Replies: `ls` sends its entries as a JSON array in the body (a listing can outgrow the
//! 64 KiB header limit); the others answer in the header.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::Result;
use crate::connection::Connection;
use crate::home::Home;
use crate::protocol::Reply;
use crate::protocol::header::Empty;
use crate::protocol::ops::{Listing, Stat};
use crate::storage::WirePath;

/// A file op on the user's home.
#[derive(Debug)]
pub(crate) enum FileOp {
    /// List `path`.
    Ls(String),
    /// Describe `path`.
    Stat(String),
    /// Create a folder.
    Mkdir(String, bool),
    /// Remove a file or, recursively, a folder.
    Rm(String, bool),
    /// Rename `from` to `to`.
    Mv(String, String),
    /// The quota and what the home uses.
    Df,
}

/// Runs one file op and queues its reply.
///
/// # Errors
/// [`crate::Error::NotFound`], [`crate::Error::PermissionDenied`] (outside the home) and the
/// other storage errors; all leave the connection usable.
pub(crate) async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    home: Home,
    op: FileOp,
    conn: &mut Connection<S>,
) -> Result<()> {
    match op {
        FileOp::Ls(path) => {
            let path = resolve(&path)?;
            let entries = home.list(&path).await?;
            let body = serde_json::to_vec(&entries).map_err(std::io::Error::other)?;
            conn.queue(
                &Reply::ok(Listing {
                    count: entries.len(),
                }),
                &body,
            )
        }
        FileOp::Stat(path) => {
            let path = resolve(&path)?;
            let entry = home.stat(&path).await?;
            conn.queue(&Reply::ok(Stat { entry }), b"")
        }
        FileOp::Mkdir(path, parents) => {
            let path = resolve(&path)?;
            home.mkdir(&path, parents).await?;
            conn.queue(&Reply::ok(Empty {}), b"")
        }
        FileOp::Rm(path, recursive) => {
            let path = resolve(&path)?;
            home.remove(&path, recursive).await?;
            conn.queue(&Reply::ok(Empty {}), b"")
        }
        FileOp::Mv(from, to) => {
            let (from, to) = (resolve(&from)?, resolve(&to)?);
            home.rename(&from, &to).await?;
            conn.queue(&Reply::ok(Empty {}), b"")
        }
        FileOp::Df => conn.queue(&Reply::ok(home.space()), b""),
    }
}

/// Resolves a wire path against the home root (the server keeps no current folder: the
/// shell resolves `cd` on its side and sends full paths).
///
/// # Errors
/// [`crate::Error::PermissionDenied`] for a path that climbs out, a bad request for NUL bytes
/// and the like.
pub(crate) fn resolve(wire: &str) -> Result<WirePath> {
    WirePath::root().resolve(wire)
}
