//! `Root`: one user's home as a root-confined folder handle, and the file operations of the
//! file service on it (list, stat, mkdir, remove, rename, read, upload via `PartialFile`).
//!
//! Wire paths are normalised by pure rules ([`WirePath`]); every open then goes through a
//! cap-std [`Dir`], so a symlink out of the home is refused by the OS-level sandbox, not by
//! string checks. Only regular files are read or written (`regular`); trees are walked
//! through handles, never path strings, one plain name down at a time without following
//! symlinks (`walk`). Errors name the wire path, never the server's own path. No async, no
//! sockets: the service calls these from `spawn_blocking`.

pub(crate) mod backend;
mod errors;
mod listing;
mod partial;
mod regular;
pub mod s3;
#[cfg(test)]
mod tests;
mod usage;
pub(crate) mod walk;
pub(crate) mod writers;

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata, OpenOptions, OpenOptionsExt};

use crate::protocol::PART_SUFFIX;
pub use crate::protocol::ops::{Entry, EntryKind};
pub(crate) use crate::protocol::wire_path::{MAX_DEPTH, MAX_PATH_LEN, WirePath};
pub(crate) use crate::quota::Usage;
pub(crate) use errors::fs_error;
pub(crate) use listing::Listing;
#[cfg(test)]
pub(crate) use partial::part_name;
pub(crate) use partial::{PartProbe, PartialFile};
use regular::{NO_WAIT, blocking_io, regular_file};

use crate::{Error, Result};

/// An [`Entry`] from what the file system says.
trait FromMetadata {
    fn from_metadata(name: String, meta: &Metadata) -> Entry;
}

impl FromMetadata for Entry {
    fn from_metadata(name: String, meta: &Metadata) -> Entry {
        let kind = if meta.is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        let modified = meta
            .modified()
            .map(|t| match t.into_std().duration_since(UNIX_EPOCH) {
                Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
            })
            .unwrap_or(0);
        Entry {
            name,
            kind,
            size: meta.len(),
            modified,
            mode: Some(cap_std::fs::PermissionsExt::mode(&meta.permissions()) & 0o777),
        }
    }
}

/// A user's home folder; nothing outside it can be reached through this handle.
#[derive(Debug)]
pub(crate) struct Root {
    dir: Dir,
}

impl Root {
    /// Opens the home folder at `home` (a server-side path, trusted).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the folder is missing; other file system errors.
    pub(crate) fn open(home: &Path) -> Result<Root> {
        let dir = Dir::open_ambient_dir(home, ambient_authority())
            .map_err(|e| fs_error(&WirePath::root(), e))?;
        Ok(Root { dir })
    }

    /// Makes everything written to the file system that holds this home durable (`syncfs`):
    /// one call for a group of uploads instead of an `fsync` each.
    ///
    /// # Errors
    /// The file system's write-back errors.
    pub(crate) fn sync(&self) -> Result<()> {
        let err = |e| fs_error(&WirePath::root(), e);
        // syncfs needs a descriptor opened for reading (the handle may be a path-only one).
        let here = self.dir.open(".").map_err(err)?;
        rustix::fs::syncfs(&here).map_err(|e| err(e.into()))
    }

    /// Lists a folder, sorted by name, without our partial files; a file lists as itself.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::PermissionDenied`] (a symlink out of the home), and
    /// other file system errors, each naming `path`.
    #[cfg(test)]
    fn list(&self, path: &WirePath) -> Result<Vec<Entry>> {
        Ok(self.open_list(path)?.next_page(usize::MAX)?.0)
    }

    /// Starts listing `path` a page at a time (see [`Listing`]).
    ///
    /// # Errors
    /// As [`Root::list`].
    fn open_list(&self, path: &WirePath) -> Result<Listing> {
        let err = |e| fs_error(path, e);
        let rel = path.to_relative();
        if !self.dir.metadata(&rel).map_err(err)?.is_dir() {
            return Ok(Listing::one(self.stat(path)?));
        }
        Listing::folder(self.dir.open_dir(&rel).map_err(err)?, path)
    }

    /// Describes one path, following symlinks that stay inside the home.
    ///
    /// # Errors
    /// As [`Root::list`].
    fn stat(&self, path: &WirePath) -> Result<Entry> {
        let meta = self
            .dir
            .metadata(path.to_relative())
            .map_err(|e| fs_error(path, e))?;
        Ok(Entry::from_metadata(
            path.name().unwrap_or("/").to_owned(),
            &meta,
        ))
    }

    /// Creates a folder; with `parents`, also the missing folders above it, and an existing
    /// folder is fine (like `mkdir -p`).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] without `parents`; [`Error::NotFound`] for a missing parent
    /// without `parents`; other file system errors.
    fn mkdir(&self, path: &WirePath, parents: bool) -> Result<()> {
        let rel = path.to_relative();
        let done = if parents {
            self.dir.create_dir_all(rel)
        } else if path.is_root() {
            Err(io::ErrorKind::AlreadyExists.into())
        } else {
            self.dir.create_dir(rel)
        };
        done.map_err(|e| fs_error(path, e))
    }

    /// How many of `path`'s folders, counted from its end, do not exist: what a `mkdir -p`
    /// of it would create.
    ///
    /// # Errors
    /// File system errors other than "not found".
    fn missing(&self, path: &WirePath) -> Result<u64> {
        let mut missing = 0;
        let mut at = path.clone();
        while !at.is_root() {
            match self.dir.symlink_metadata(at.to_relative()) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing += 1,
                Err(e) => return Err(fs_error(&at, e)),
            }
            at = at.parent().unwrap_or_default();
        }
        Ok(missing)
    }

    /// Removes a file or symlink; a folder only with `recursive` (everything in it goes,
    /// symlinks removed, never followed). The home itself is never removed.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for the home; [`Error::BadRequest`] for a folder without
    /// `recursive`; [`Error::NotFound`] and other file system errors.
    fn remove(&self, path: &WirePath, recursive: bool) -> Result<()> {
        if path.is_root() {
            return Err(Error::PermissionDenied(
                "your home folder itself cannot be removed".into(),
            ));
        }
        let err = |e| fs_error(path, e);
        let rel = path.to_relative();
        let meta = self.dir.symlink_metadata(&rel).map_err(err)?;
        if !meta.is_dir() {
            return self.dir.remove_file(&rel).map_err(err);
        }
        if !recursive {
            return Err(Error::BadRequest(format!("{path} is a folder, use -r")));
        }
        // Through handles, a few at a time: the tree may be deeper than any path can say.
        let (parent, name) = self.parent_of(path)?;
        let folder = walk::open_dir_nofollow(&parent, name.as_ref()).map_err(err)?;
        walk::remove_below(&folder).map_err(err)?;
        drop(folder);
        parent.remove_dir(name).map_err(err)
    }

    /// Removes everything in the home (the home folder itself stays), through handles.
    ///
    /// # Errors
    /// File system errors other than entries vanishing meanwhile.
    pub(crate) fn remove_all(&self) -> Result<()> {
        walk::remove_below(&self.dir).map_err(|e| fs_error(&WirePath::root(), e))
    }

    /// The open folder holding `path`, and `path`'s name in it.
    fn parent_of<'p>(&self, path: &'p WirePath) -> Result<(Dir, &'p str)> {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return Err(Error::PermissionDenied(
                "not on your home folder itself".into(),
            ));
        };
        let dir = self
            .dir
            .open_dir(parent.to_relative())
            .map_err(|e| fs_error(&parent, e))?;
        Ok((dir, name))
    }

    /// Renames or moves `from` to `to`, both inside the home. An existing file at `to` is
    /// replaced; an existing folder never is.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for the home; [`Error::AlreadyExists`] when `to` is a
    /// folder; [`Error::BadRequest`] for a folder moved into itself, or one that would put
    /// something past [`MAX_PATH_LEN`] or [`MAX_DEPTH`] at `to`; file system errors.
    fn rename(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(Error::PermissionDenied(
                "your home folder itself cannot be moved or replaced".into(),
            ));
        }
        if from == to {
            return self.stat(from).map(drop);
        }
        if to.starts_with(from) {
            return Err(Error::BadRequest(format!(
                "cannot move {from} into itself ({to})"
            )));
        }
        let (from_rel, to_rel) = (from.to_relative(), to.to_relative());
        let moved = self
            .dir
            .symlink_metadata(&from_rel)
            .map_err(|e| fs_error(from, e))?;
        match self.dir.symlink_metadata(&to_rel) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::AlreadyExists(format!(
                    "{to} is a folder; it is not replaced"
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_error(to, e)),
        }
        if moved.is_dir() {
            self.check_room(from, to)?;
        }
        self.dir
            .rename(&from_rel, &self.dir, &to_rel)
            .map_err(|e| fs_error(to, e))
    }

    /// Refuses to move the folder `from` to `to` when something in it would end up past the
    /// path limits there. The walk stops at the first entry too deep, so it costs at most
    /// what the limits allow in depth (breadth is another matter, as for [`Root::usage`]).
    fn check_room(&self, from: &WirePath, to: &WirePath) -> Result<()> {
        // An entry `a/b` below the folder lands at `to/a/b`.
        let depth = MAX_DEPTH.saturating_sub(to.depth());
        let len = MAX_PATH_LEN.saturating_sub(to.display_len() + 1);
        let (parent, name) = self.parent_of(from)?;
        let err = |e| fs_error(from, e);
        let folder = walk::open_dir_nofollow(&parent, name.as_ref()).map_err(err)?;
        if walk::fits_within(&folder, depth, len).map_err(err)? {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "moving {from} to {to} would nest what it holds too deep: paths may have at most \
             {MAX_PATH_LEN} bytes and {MAX_DEPTH} levels"
        )))
    }

    /// Opens a file for download; returns it with its length. Only regular files: a FIFO,
    /// socket or device is refused, and opening one never waits.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a folder or anything else but a regular file;
    /// [`Error::NotFound`], [`Error::PermissionDenied`] and other file system errors.
    pub(crate) fn open_read(&self, path: &WirePath) -> Result<(File, u64)> {
        let err = |e| fs_error(path, e);
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(NO_WAIT);
        let file = self
            .dir
            .open_with(path.to_relative(), &options)
            .map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        regular_file(path, &meta)?;
        let file = file.into_std();
        blocking_io(&file).map_err(err)?;
        Ok((file, meta.len()))
    }

    /// Starts or resumes the upload of `path`: the partial file next to it, locked for this
    /// writer until the returned value is dropped, committed or discarded.
    ///
    /// # Errors
    /// [`Error::Busy`] when another upload of the same file is in progress;
    /// [`Error::AlreadyExists`] when `path` is a folder; [`Error::NotFound`] for a missing
    /// parent folder; [`Error::PermissionDenied`] for the home itself or a path out of it.
    fn partial(&self, path: &WirePath) -> Result<PartialFile> {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return Err(Error::PermissionDenied(
                "cannot upload onto your home folder itself".into(),
            ));
        };
        let dir = self
            .dir
            .open_dir(parent.to_relative())
            .map_err(|e| fs_error(&parent, e))?;
        if dir.symlink_metadata(name).is_ok_and(|m| m.is_dir()) {
            return Err(Error::AlreadyExists(format!("{path} is a folder")));
        }
        PartialFile::new(dir, path.clone(), name)
    }
}
