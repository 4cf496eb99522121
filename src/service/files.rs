//! File ops of a logged-in user: `ls`, `stat`, `mkdir`, `rm`, `mv`, `df`.
//!
//! Every path is resolved inside the user's home by [`crate::storage`] (pure normalisation,
//! then a root-confined folder handle). The file system work runs on the blocking pool.
//! Replies: `ls` sends its entries as a JSON array in the body (a listing can outgrow the
//! 64 KiB header limit), in one reply or, asked for by pages, in several, each written as
//! soon as it is made; the others answer in the header.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::Result;
use crate::connection::Connection;
use crate::home::Home;
use crate::protocol::Reply;
use crate::protocol::header::Empty;
use crate::protocol::ops::{Listing, Stat};
use crate::storage::WirePath;

/// The most entries one reply of a listing by pages holds (about 1 MiB of JSON).
const MAX_PAGE: u32 = 10_000;

/// A file op on the user's home.
#[derive(Debug)]
pub(crate) enum FileOp {
    /// List `path`, in one reply or by pages of this many entries.
    Ls(String, Option<u32>),
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
        FileOp::Ls(path, page) => {
            let path = resolve(&path)?;
            let mut listing = home.open_list(&path).await?;
            let limit = page.map_or(usize::MAX, |n| n.clamp(1, MAX_PAGE) as usize);
            loop {
                let (entries, more) = home.next_page(&mut listing, limit).await?;
                let body = serde_json::to_vec(&entries).map_err(std::io::Error::other)?;
                let count = entries.len();
                conn.queue(&Reply::ok(Listing { count, more }), &body)?;
                if !more {
                    return Ok(());
                }
                // Each page leaves before the next is made: memory stays one page deep.
                conn.flush().await?;
            }
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
