//! A folder listed a page at a time, in name order, with memory that stays flat however
//! many entries it has.
//!
//! Opening a listing reads the folder's names once, into one buffer (the name's bytes plus
//! eight bytes each: a million entries of ten-byte names cost about 18 MB, where a million
//! [`Entry`] values and their JSON would cost several times that), and sorts them; each page
//! then looks at its own entries only. An entry removed between the two steps is left out.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use cap_std::fs::Dir;

use super::{Entry, FromMetadata, WirePath, fs_error, partial};
use crate::{Error, Result};

/// A listing under way; [`Listing::next_page`] until it says there is no more.
#[derive(Debug)]
pub(crate) struct Listing {
    state: State,
}

#[derive(Debug)]
enum State {
    /// A file lists as itself, once.
    One(Option<Entry>),
    /// A folder's names, sorted, and the page to come.
    Folder {
        /// The folder, to look at each entry by its name.
        dir: Dir,
        /// The wire path, for errors.
        path: WirePath,
        names: Names,
        /// The next name to look at.
        next: usize,
    },
}

/// Names packed in one buffer, with their spans in name order.
#[derive(Debug, Default)]
struct Names {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl Names {
    fn get(&self, i: usize) -> &[u8] {
        let (start, len) = self.spans[i];
        &self.bytes[start as usize..(start + len) as usize]
    }
}

impl Listing {
    /// A listing that has nothing (more) to give.
    pub(crate) fn done() -> Listing {
        Listing {
            state: State::One(None),
        }
    }

    /// A file's listing: the file itself.
    pub(crate) fn one(entry: Entry) -> Listing {
        Listing {
            state: State::One(Some(entry)),
        }
    }

    /// Reads the names in `dir` (the folder at `path`), leaving out our partial files.
    ///
    /// # Errors
    /// File system errors reading the folder, naming `path`; [`Error::TooLarge`] for a
    /// folder whose names pass 4 GiB.
    pub(crate) fn folder(dir: Dir, path: &WirePath) -> Result<Listing> {
        let err = |e| fs_error(path, e);
        let mut names = Names::default();
        for entry in dir.entries().map_err(err)? {
            let name = entry.map_err(err)?.file_name();
            let bytes = name.as_bytes();
            if partial::is_part_name(&name.to_string_lossy()) {
                continue;
            }
            let (Ok(start), Ok(len)) =
                (u32::try_from(names.bytes.len()), u32::try_from(bytes.len()))
            else {
                return Err(Error::TooLarge(format!("{path}: too many names to list")));
            };
            names.bytes.extend_from_slice(bytes);
            names.spans.push((start, len));
        }
        let Names { bytes, spans } = &mut names;
        spans.sort_unstable_by(|a, b| {
            let name = |(start, len): (u32, u32)| &bytes[start as usize..(start + len) as usize];
            name(*a).cmp(name(*b))
        });
        names.bytes.shrink_to_fit();
        Ok(Listing {
            state: State::Folder {
                dir,
                path: path.clone(),
                names,
                next: 0,
            },
        })
    }

    /// The next (up to) `limit` entries, and whether more come after them.
    ///
    /// # Errors
    /// File system errors looking at an entry (other than its being gone), naming the folder.
    pub(crate) fn next_page(&mut self, limit: usize) -> Result<(Vec<Entry>, bool)> {
        let limit = limit.max(1);
        match &mut self.state {
            State::One(entry) => Ok((entry.take().into_iter().collect(), false)),
            State::Folder {
                dir,
                path,
                names,
                next,
            } => {
                let end = next.saturating_add(limit).min(names.spans.len());
                let mut page = Vec::with_capacity(end - *next);
                for i in *next..end {
                    let name = OsStr::from_bytes(names.get(i));
                    match dir.symlink_metadata(name) {
                        Ok(meta) => {
                            let shown = name.to_string_lossy().into_owned();
                            page.push(Entry::from_metadata(shown, &meta));
                        }
                        // Removed between reading the folder and looking at the entry.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(fs_error(path, e)),
                    }
                }
                *next = end;
                Ok((page, end < names.spans.len()))
            }
        }
    }
}
