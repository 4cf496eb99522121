//! `walk`: a depth-first walk of a folder tree through open handles, never path strings, with
//! a fixed handful of descriptors open at any depth. So a tree deeper than `PATH_MAX`, or than
//! the process may hold files open, can still be measured, counted and removed.
//!
//! It never follows a symlink (a link is an entry like any other) and never leaves its top
//! folder: it goes down by one plain name with `O_NOFOLLOW`, and takes a climb back up (`..`)
//! only when it lands on the very folder (device and inode) it came from.
//!
//! Usage, for one who walks a home (`Root::usage`, say):
//!
//! ```text
//! let mut total = 0u64;
//! walk(&home, |found| {
//!     if found.meta.is_file() {
//!         total = total.saturating_add(found.meta.len());
//!     }
//!     Ok(Step::Descend) // into folders; ignored for anything else
//! })?;
//! ```

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::{Dir, Metadata, MetadataExt};
use rustix::fs::{Mode, OFlags};

/// What the visitor wants after seeing an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Go on; a folder is walked into (once the rest of its own folder has been seen).
    Descend,
    /// Go on, without walking into this entry.
    Skip,
    /// End the walk now.
    Stop,
}

/// One entry met by [`walk`].
#[derive(Debug)]
pub(crate) struct Found<'a> {
    /// The open folder holding the entry; `name` is relative to it.
    dir: &'a Dir,
    /// The entry's name in `dir`.
    name: &'a OsStr,
    /// The entry itself: a symlink's own metadata, never its target's.
    pub(crate) meta: &'a Metadata,
    /// 1 for the top folder's own entries, 2 for theirs, and so on.
    depth: usize,
    /// Bytes of the entry's path below the top folder (`a/b/name`).
    len: usize,
}

/// What [`walk_with`] calls.
pub(crate) trait Visitor {
    /// Called once per entry, for every entry of a folder before anything below them.
    ///
    /// # Errors
    /// Any error ends the walk with it.
    fn visit(&mut self, found: &Found<'_>) -> io::Result<Step>;

    /// Called when the walk is done below `name`, a folder of `parent` it went into.
    ///
    /// # Errors
    /// Any error ends the walk with it.
    fn leave(&mut self, parent: &Dir, name: &OsStr) -> io::Result<()> {
        let _ = (parent, name);
        Ok(())
    }
}

/// A closure as a [`Visitor`] with nothing to do on leaving a folder.
struct Visit<F>(F);

impl<F: FnMut(&Found<'_>) -> io::Result<Step>> Visitor for Visit<F> {
    fn visit(&mut self, found: &Found<'_>) -> io::Result<Step> {
        (self.0)(found)
    }
}

/// Walks everything below `top` (not `top` itself), calling `visit` once per entry. Returns
/// whether the walk went to the end (`false`: `visit` said [`Step::Stop`]).
///
/// Entries that vanish while the walk runs are passed over.
///
/// # Errors
/// The first error of the file system or of `visit`.
pub(crate) fn walk(
    top: &Dir,
    visit: impl FnMut(&Found<'_>) -> io::Result<Step>,
) -> io::Result<bool> {
    walk_with(top, &mut Visit(visit))
}

/// One folder on the way down from the top: enough to find it again and to go on in it.
struct Level {
    /// Its name in its parent (empty for the top).
    name: OsString,
    /// Its device and inode: a climb back must land on this folder and no other.
    id: (u64, u64),
    /// Bytes of its path below the top (0 for the top).
    len: usize,
    /// Its folders still to walk into.
    todo: Vec<OsString>,
}

/// The folder the walk is in: the caller's top, or one it opened below.
enum Here<'a> {
    Top(&'a Dir),
    Below(Dir),
}

impl Here<'_> {
    fn dir(&self) -> &Dir {
        match self {
            Here::Top(dir) => dir,
            Here::Below(dir) => dir,
        }
    }
}

/// [`walk`] with a [`Visitor`] that also hears when a folder is done (to remove it, say).
///
/// At most three descriptors are open at once, whatever the depth: the folder the walk is
/// in, its listing, and the next folder down (or the one up). Memory grows with the depth
/// and with the subfolders still to visit on the way down, never with the files.
///
/// # Errors
/// As [`walk`]; also when a folder on the way down was moved or replaced during the walk.
pub(crate) fn walk_with(top: &Dir, visitor: &mut impl Visitor) -> io::Result<bool> {
    let Some(todo) = scan(top, 1, 0, visitor)? else {
        return Ok(false);
    };
    let mut levels = vec![Level {
        name: OsString::new(),
        id: id_of(top)?,
        len: 0,
        todo,
    }];
    let mut here = Here::Top(top);
    // State: `here` is the folder of `levels.last()`. Down: open its next folder to do and
    // list it. Up (nothing left to do): climb to the parent, tell the visitor, go on there.
    while let Some(level) = levels.last_mut() {
        if let Some(name) = level.todo.pop() {
            let child = match open_dir_nofollow(here.dir(), &name) {
                Ok(child) => child,
                // Gone, or no longer a folder, since it was listed.
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(e),
            };
            let len = below(level.len, &name);
            let id = id_of(&child)?;
            let Some(todo) = scan(&child, levels.len() + 1, len, visitor)? else {
                return Ok(false);
            };
            levels.push(Level {
                name,
                id,
                len,
                todo,
            });
            here = Here::Below(child);
            continue;
        }
        let Some(done) = levels.pop() else { break };
        if levels.is_empty() {
            break;
        }
        here = climb(top, here, &levels)?;
        visitor.leave(here.dir(), &done.name)?;
    }
    Ok(true)
}

/// Shows every entry of `dir` to the visitor; returns the folders to walk into, or `None`
/// when the visitor said stop.
fn scan(
    dir: &Dir,
    depth: usize,
    len: usize,
    visitor: &mut impl Visitor,
) -> io::Result<Option<Vec<OsString>>> {
    let mut todo = Vec::new();
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        let found = Found {
            dir,
            name: &name,
            meta: &meta,
            depth,
            len: below(len, &name),
        };
        match visitor.visit(&found)? {
            Step::Descend if meta.is_dir() => todo.push(name),
            Step::Descend | Step::Skip => {}
            Step::Stop => return Ok(None),
        }
    }
    Ok(Some(todo))
}

/// Back up one level from `here`, to the folder of `levels.last()`: through `..`, taken only
/// if it is that very folder; otherwise (moved meanwhile) found again from the top by name.
fn climb<'a>(top: &'a Dir, here: Here<'a>, levels: &[Level]) -> io::Result<Here<'a>> {
    let Some(parent) = levels.last() else {
        return Ok(Here::Top(top));
    };
    if levels.len() == 1 {
        return Ok(Here::Top(top));
    }
    if let Ok(up) = open_dir_at(here.dir(), OsStr::new(".."))
        && id_of(&up)? == parent.id
    {
        return Ok(Here::Below(up));
    }
    drop(here);
    let mut found = Here::Top(top);
    for level in &levels[1..] {
        let next = open_dir_nofollow(found.dir(), &level.name)?;
        if id_of(&next)? != level.id {
            return Err(io::Error::other(
                "a folder was moved or replaced while it was being walked",
            ));
        }
        found = Here::Below(next);
    }
    Ok(found)
}

/// Opens the folder `name` in `dir`: one plain name, and not a symlink, so the result is
/// inside `dir` whatever the name.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for `.`, `..`, an empty name or one with a `/`; the file
/// system's errors (`ELOOP` for a symlink, `ENOTDIR` for anything else but a folder).
pub(crate) fn open_dir_nofollow(dir: &Dir, name: &OsStr) -> io::Result<Dir> {
    let bytes = name.as_bytes();
    if matches!(bytes, b"" | b"." | b"..") || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain name",
        ));
    }
    open_dir_at(dir, name)
}

fn open_dir_at(dir: &Dir, name: &OsStr) -> io::Result<Dir> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}

fn id_of(dir: &Dir) -> io::Result<(u64, u64)> {
    let meta = dir.dir_metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// Bytes of the path of `name` in a folder whose path is `len` bytes long.
fn below(len: usize, name: &OsStr) -> usize {
    match len {
        0 => name.len(),
        len => len.saturating_add(1).saturating_add(name.len()),
    }
}

/// Whether an entry was removed, or swapped for a non-folder, since it was listed.
fn vanished(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == io::ErrorKind::NotFound
        || matches!(Errno::from_io_error(e), Some(Errno::LOOP | Errno::NOTDIR))
}

/// Removes everything below `top`, not `top` itself; symlinks are removed, never followed.
///
/// # Errors
/// The first error of the file system other than an entry vanishing meanwhile.
pub(crate) fn remove_below(top: &Dir) -> io::Result<()> {
    struct Remover;
    impl Visitor for Remover {
        fn visit(&mut self, found: &Found<'_>) -> io::Result<Step> {
            if found.meta.is_dir() {
                return Ok(Step::Descend);
            }
            missing_is_fine(found.dir.remove_file(found.name))?;
            Ok(Step::Skip)
        }

        fn leave(&mut self, parent: &Dir, name: &OsStr) -> io::Result<()> {
            missing_is_fine(parent.remove_dir(name))
        }
    }
    walk_with(top, &mut Remover).map(drop)
}

/// Whether the tree below `top` stays within `depth` levels and paths of `len` bytes (as
/// [`Found::depth`] and [`Found::len`] count them); stops at the first entry past either.
///
/// # Errors
/// The file system's.
pub(crate) fn fits_within(top: &Dir, depth: usize, len: usize) -> io::Result<bool> {
    walk(top, |found| {
        Ok(if found.depth > depth || found.len > len {
            Step::Stop
        } else {
            Step::Descend
        })
    })
}

fn missing_is_fine(done: io::Result<()>) -> io::Result<()> {
    match done {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `levels` folders named `d` in `dir`, made name by name.
    fn chain(dir: &Dir, levels: usize) {
        let mut here = dir.try_clone().unwrap();
        for _ in 0..levels {
            here.create_dir("d").unwrap();
            here = open_dir_nofollow(&here, OsStr::new("d")).unwrap();
        }
        here.write("leaf", b"xyz").unwrap();
    }

    fn open_files() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn a_walk_sees_every_entry_once_with_its_depth_and_path_length() {
        let tmp = tempfile::tempdir().unwrap();
        let top = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        top.create_dir_all("a/bb/c").unwrap();
        top.write("a/bb/f", b"12345").unwrap();
        top.write("g", b"1").unwrap();
        top.symlink("a", "link").unwrap();
        let mut seen = Vec::new();
        let mut bytes = 0;
        assert!(
            walk(&top, |f| {
                seen.push((f.name.to_string_lossy().into_owned(), f.depth, f.len));
                if f.meta.is_file() {
                    bytes += f.meta.len();
                }
                Ok(Step::Descend)
            })
            .unwrap()
        );
        seen.sort();
        let want = [
            ("a", 1, 1),
            ("bb", 2, 4),
            ("c", 3, 6),
            ("f", 3, 6),
            ("g", 1, 1),
        ];
        let mut want: Vec<_> = want
            .iter()
            .map(|(n, d, l)| (n.to_string(), *d, *l))
            .collect();
        want.push(("link".into(), 1, 4));
        want.sort();
        assert_eq!(seen, want, "the link is an entry, not followed");
        assert_eq!(bytes, 6);
        assert!(!fits_within(&top, 2, 100).unwrap());
        assert!(!fits_within(&top, 3, 5).unwrap());
        assert!(fits_within(&top, 3, 6).unwrap());
    }

    #[test]
    fn a_deep_tree_is_removed_with_a_few_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        let top = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        top.create_dir("t").unwrap();
        let t = open_dir_nofollow(&top, OsStr::new("t")).unwrap();
        chain(&t, 3000);
        t.create_dir_all("side/x").unwrap();
        top.write("outside", b"kept").unwrap();
        t.symlink("../outside", "side/x/out").unwrap();
        let before = open_files();
        let mut most = 0;
        let mut depth = 0;
        walk(&t, |found| {
            most = most.max(open_files());
            depth = depth.max(found.depth);
            Ok(Step::Descend)
        })
        .unwrap();
        assert_eq!(depth, 3001);
        // Other tests of this process open files meanwhile: allow for them, not for 3000.
        assert!(most < before + 1000, "{most} open, {before} before");
        remove_below(&t).unwrap();
        assert_eq!(t.entries().unwrap().count(), 0);
        assert_eq!(top.read("outside").unwrap(), b"kept");
        assert!(matches!(
            open_dir_nofollow(&top, OsStr::new("..")),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput
        ));
    }
}
