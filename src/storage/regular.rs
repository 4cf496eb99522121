//! Only regular files are read or written. Opening one never waits: without `O_NONBLOCK`, an
//! open of a FIFO blocks until its other end comes, pinning a thread of the blocking pool for
//! as long (and 512 such threads would stop every login). Anything else is refused by type.

use std::fs::File;
use std::io;

use cap_std::fs::Metadata;

use super::WirePath;
use crate::{Error, Result};

/// Open flags for file contents: without them, opening a FIFO waits for its other end, as
/// long as that takes, on a thread of the blocking pool; and a terminal could become ours.
pub(super) const NO_WAIT: i32 =
    (rustix::fs::OFlags::NONBLOCK.bits() | rustix::fs::OFlags::NOCTTY.bits()) as i32;

/// Refuses anything but a regular file: only those are read or written.
pub(super) fn regular_file(path: &WirePath, meta: &Metadata) -> Result<()> {
    if meta.is_dir() {
        return Err(Error::BadRequest(format!("{path} is a folder")));
    }
    if !meta.is_file() {
        return Err(Error::BadRequest(format!(
            "{path} is not a regular file (a pipe, socket or device): only files are read or written"
        )));
    }
    Ok(())
}

/// Clears the [`NO_WAIT`] flag of a file opened with it, once it is known to be a regular
/// file (where it changes nothing on Linux, but the file goes on as an ordinary one).
pub(super) fn blocking_io(file: &File) -> io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    fcntl_setfl(file, flags.difference(OFlags::NONBLOCK))?;
    Ok(())
}
