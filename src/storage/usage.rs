//! What a home or a tree in it holds: bytes and entries, for quotas. The walk goes by
//! handles ([`super::walk`]), so any depth can be measured with a few descriptors.

use cap_std::fs::Metadata;

use super::{Root, Usage, WirePath, fs_error, partial, walk};
use crate::{Error, Result};

impl Root {
    /// What the whole home holds (see [`Root::measure`]), uploads in progress included.
    ///
    /// # Errors
    /// As [`Root::measure`], but never [`Error::Busy`].
    pub(crate) fn usage(&self) -> Result<Usage> {
        self.measure(&WirePath::root(), false)
    }

    /// What `path` holds: the bytes of its regular files (partial uploads included) and
    /// its entries, itself included (the home itself is not an entry). Symlinks are not
    /// followed: each counts as one entry. The walk goes by handles (see [`walk`]), never
    /// by path strings, which a deep tree would take past `PATH_MAX`.
    ///
    /// # Errors
    /// With `refuse_busy`, [`Error::Busy`] when an upload is writing inside `path` (its bytes
    /// are being counted by the upload itself); file system errors other than entries
    /// vanishing during the walk.
    pub(crate) fn measure(&self, path: &WirePath, refuse_busy: bool) -> Result<Usage> {
        let err = |e| fs_error(path, e);
        let meta = self.dir.symlink_metadata(path.to_relative()).map_err(err)?;
        let mut usage = Usage {
            bytes: if meta.is_file() { meta.len() } else { 0 },
            entries: u64::from(!path.is_root()),
        };
        if !meta.is_dir() {
            return Ok(usage);
        }
        let busy = |meta: &Metadata| refuse_busy && partial::has_writer_in(meta);
        let mut found_busy = busy(&meta);
        if !found_busy {
            let top = self.dir.open_dir(path.to_relative()).map_err(err)?;
            walk::walk(&top, |found| {
                usage.entries += 1;
                if found.meta.is_file() {
                    usage.bytes = usage.bytes.saturating_add(found.meta.len());
                } else if found.meta.is_dir() && busy(found.meta) {
                    found_busy = true;
                    return Ok(walk::Step::Stop);
                }
                Ok(walk::Step::Descend)
            })
            .map_err(err)?;
        }
        if found_busy {
            return Err(Error::Busy(format!(
                "busy: an upload is in progress inside {path}"
            )));
        }
        Ok(usage)
    }
}
