//! The digests of a transfer: md5 on a thread of its own, BLAKE3 inline, and the extended
//! attribute that remembers a stored file's digests so downloads need not hash it again.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use md5::{Digest, Md5};

use super::{DEPTH, TRANSFER_CHUNK};
use crate::{Error, Result};

/// An md5 computed on a thread of its own from chunks handed to it (shared, not copied).
struct Hasher {
    tx: std::sync::mpsc::SyncSender<Bytes>,
    thread: std::thread::JoinHandle<Md5>,
}

impl Hasher {
    /// Starts hashing after the state `md5` (a prefix may already be in it).
    fn spawn(mut md5: Md5) -> Result<Hasher> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(2 * DEPTH);
        let thread = std::thread::Builder::new()
            .name("sockit-md5".into())
            .spawn(move || {
                for chunk in rx {
                    md5.update(&chunk);
                }
                md5
            })?;
        Ok(Hasher { tx, thread })
    }

    /// Hands one chunk over; blocks while the hasher is [`DEPTH`] chunks behind.
    fn update(&self, chunk: Bytes) {
        // A send fails only when the thread is gone, and `finish` reports that.
        let _ = self.tx.send(chunk);
    }

    /// Waits for the hash of everything handed over, as lowercase hex.
    fn finish(self) -> Result<String> {
        drop(self.tx);
        let md5 = self
            .thread
            .join()
            .map_err(|_| Error::Io(std::io::Error::other("the md5 thread failed")))?;
        Ok(hex::encode(md5.finalize()))
    }
}

/// Which digests a transfer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digests {
    /// md5 only: the seeds' digest, what a peer that names no other checks.
    Md5,
    /// BLAKE3 only: between sockit peers.
    Blake3,
    /// Both.
    Both,
}

/// Digests of a transfer's bytes, lowercase hex; `None` for one that was not computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    /// md5: the seeds' digest, what a peer that names no other checks.
    pub(crate) md5: Option<String>,
    /// BLAKE3 (between sockit peers: about 6x cheaper than md5 per byte).
    pub(crate) blake3: Option<String>,
}

/// The digests of one stream: md5 on a thread of its own (at ~650 MB/s it would otherwise
/// hold back the disk or socket thread), BLAKE3 inline (several GB/s).
pub(super) struct Summer {
    md5: Option<Hasher>,
    blake3: Option<blake3::Hasher>,
}

impl Summer {
    /// Starts the digests `which` over the first `prefix` bytes of `file`, leaving its
    /// position at `prefix`.
    pub(super) fn start(file: &mut File, prefix: u64, which: Digests) -> Result<Summer> {
        let mut md5 = (which != Digests::Blake3).then(Md5::new);
        let mut b3 = (which != Digests::Md5).then(blake3::Hasher::new);
        file.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; if prefix > 0 { TRANSFER_CHUNK } else { 0 }];
        let mut left = prefix;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the partial file has {} bytes, not the {prefix} to resume from",
                        prefix - left
                    ),
                )));
            }
            if let Some(h) = md5.as_mut() {
                h.update(&buf[..n]);
            }
            if let Some(h) = b3.as_mut() {
                h.update(&buf[..n]);
            }
            left -= n as u64;
        }
        Ok(Summer {
            md5: md5.map(Hasher::spawn).transpose()?,
            blake3: b3,
        })
    }

    pub(super) fn update(&mut self, chunk: &Bytes) {
        if let Some(h) = &self.md5 {
            h.update(chunk.clone());
        }
        if let Some(h) = self.blake3.as_mut() {
            h.update(chunk);
        }
    }

    pub(super) fn finish(self) -> Result<Sums> {
        Ok(Sums {
            md5: self.md5.map(Hasher::finish).transpose()?,
            blake3: self.blake3.map(|h| h.finalize().to_hex().to_string()),
        })
    }
}

/// The extended attribute that remembers a stored file's digests.
const SUMS_XATTR: &str = "user.sockit.sums";

/// Records the digests in `sums` of `file`'s whole content in an extended attribute,
/// stamped with its size and modification time, so a later download can send the file
/// without hashing it. Best effort: a file system without user xattrs just gets no cache.
pub(crate) fn remember_sums(file: &File, sums: &Sums) {
    let Some((len, mtime)) = stamp(file) else {
        return;
    };
    let field = |d: &Option<String>| d.clone().unwrap_or_else(|| "-".into());
    let value = format!(
        "v1 {len} {mtime} {} {}",
        field(&sums.md5),
        field(&sums.blake3)
    );
    let _ = rustix::fs::fsetxattr(
        file,
        SUMS_XATTR,
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    );
}

/// The digests [`remember_sums`] recorded for `file` (`-` for one it did not know), if its
/// size and modification time are still the ones they were recorded with (a file changed
/// behind the server's back is hashed again).
pub(crate) fn remembered_sums(file: &File) -> Option<Sums> {
    let (len, mtime) = stamp(file)?;
    let mut buf = [0u8; 256];
    let n = rustix::fs::fgetxattr(file, SUMS_XATTR, &mut buf).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    let mut fields = text.split(' ');
    let fresh = fields.next() == Some("v1")
        && fields.next()?.parse::<u64>().ok()? == len
        && fields.next()?.parse::<u128>().ok()? == mtime;
    // A digest field is its hex, or `-` for one not known.
    let digest = |s: &str, n: usize| match s {
        "-" => Some(None),
        _ if s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) => Some(Some(s.to_owned())),
        _ => None,
    };
    let (md5, blake3) = (digest(fields.next()?, 32)?, digest(fields.next()?, 64)?);
    (fresh && fields.next().is_none()).then_some(Sums { md5, blake3 })
}

/// Size and modification time (ns since the epoch) of `file`.
fn stamp(file: &File) -> Option<(u64, u128)> {
    let meta = file.metadata().ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_sums_are_dropped_once_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"hello").unwrap();
        let file = File::open(&path).unwrap();
        let sums = Sums {
            md5: Some("5d41402abc4b2a76b9719d911017c592".into()),
            blake3: Some("a".repeat(64)),
        };
        remember_sums(&file, &sums);
        let Some(remembered) = remembered_sums(&file) else {
            return; // this file system keeps no user xattrs: nothing is cached, nothing to test
        };
        assert_eq!(remembered, sums);
        // A digest that was never computed is remembered as unknown, not as empty.
        let blake3_only = Sums { md5: None, ..sums };
        remember_sums(&file, &blake3_only);
        assert_eq!(remembered_sums(&file), Some(blake3_only));
        std::fs::write(&path, b"hello, changed").unwrap();
        assert_eq!(remembered_sums(&File::open(&path).unwrap()), None);
    }
}
