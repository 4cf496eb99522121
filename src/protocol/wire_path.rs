//! `WirePath`: a path from the network, normalised by pure string rules, no file system.
//!
//! It only guarantees that the path has no `..`, no root or prefix and no NUL once resolved;
//! symlinks are the sandbox's job (`storage::Root` opens everything through cap-std).

use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

use super::PART_SUFFIX;

/// Longest accepted path, in bytes (Linux's `PATH_MAX`): both the path as sent and its
/// normalised form (`/a/b`), so a path relative to the home always fits in one system call.
pub const MAX_PATH_LEN: usize = 4096;

/// Most folders a path may go down (`/a/b` is 2): deep trees cost walks time and memory, and
/// tools that hold a handle per level (`std::fs::remove_dir_all`, say) a descriptor each.
pub const MAX_DEPTH: usize = 256;

/// Longest accepted name of one file or folder, in bytes: the file system's 255 less what
/// an upload's partial file adds (`.NAME.sockit-part`), so every name can be uploaded.
pub const MAX_NAME_LEN: usize = 255 - 1 - PART_SUFFIX.len();

/// A normalised path inside a user's home, as the user sees it: `/` is the home itself.
///
/// Built only by [`WirePath::root`] and [`WirePath::resolve`], so every value is already
/// checked: plain names, none of them `.`, `..` or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WirePath {
    parts: Vec<String>,
}

impl WirePath {
    /// The home folder itself (`/`).
    pub fn root() -> WirePath {
        WirePath::default()
    }

    /// Resolves `wire`, a `/`-separated path from the network, against `self` as the current
    /// folder. A leading `/` starts from the home root; `.` and empty components are dropped;
    /// `..` goes up one folder.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when `..` would climb above the home root;
    /// [`Error::BadRequest`] for a NUL byte, a path over [`MAX_PATH_LEN`] or [`MAX_DEPTH`], a
    /// name over [`MAX_NAME_LEN`], or a name ending in `.sockit-part` (reserved for uploads
    /// in progress).
    pub fn resolve(&self, wire: &str) -> Result<WirePath> {
        if wire.contains('\0') {
            return Err(Error::BadRequest(
                "a path must not contain a NUL byte".into(),
            ));
        }
        if wire.len() > MAX_PATH_LEN {
            return Err(Error::BadRequest(format!(
                "path of {} bytes is over the limit of {MAX_PATH_LEN}",
                wire.len()
            )));
        }
        let mut parts = if wire.starts_with('/') {
            Vec::new()
        } else {
            self.parts.clone()
        };
        for part in wire.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(Error::PermissionDenied(format!(
                            "`{wire}` is outside your home"
                        )));
                    }
                }
                name => {
                    check_name(name)?;
                    parts.push(name.to_owned());
                }
            }
        }
        WirePath { parts }.checked()
    }

    /// `self`, if its normalised form is within [`MAX_PATH_LEN`] and [`MAX_DEPTH`].
    fn checked(self) -> Result<WirePath> {
        if self.depth() > MAX_DEPTH {
            return Err(Error::BadRequest(format!(
                "{} levels of folders are over the limit of {MAX_DEPTH}",
                self.depth()
            )));
        }
        if self.display_len() > MAX_PATH_LEN {
            return Err(Error::BadRequest(format!(
                "path of {} bytes is over the limit of {MAX_PATH_LEN}",
                self.display_len()
            )));
        }
        Ok(self)
    }

    /// How many names the path has: 0 for the home, 2 for `/a/b`.
    pub fn depth(&self) -> usize {
        self.parts.len()
    }

    /// Bytes of the path as displayed (`/a/b`): what [`MAX_PATH_LEN`] limits.
    pub fn display_len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| 1 + part.len())
            .sum::<usize>()
            .max(1)
    }

    /// The names, from the home down.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(String::as_str)
    }

    /// Whether this is the home root.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last name, or `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The folder holding this path, or `None` for the root.
    pub fn parent(&self) -> Option<WirePath> {
        let (_, rest) = self.parts.split_last()?;
        Some(WirePath {
            parts: rest.to_vec(),
        })
    }

    /// This path with `name` appended; `name` must be a single checked name.
    ///
    /// # Errors
    /// As [`WirePath::resolve`], for a name that is not one plain component.
    pub fn join(&self, name: &str) -> Result<WirePath> {
        if matches!(name, "" | "." | "..") || name.contains(['/', '\0']) {
            return Err(Error::BadRequest(format!("`{name}` is not a plain name")));
        }
        check_name(name)?;
        let mut joined = self.clone();
        joined.parts.push(name.to_owned());
        joined.checked()
    }

    /// Whether `other` is this path or a folder above it.
    pub fn starts_with(&self, other: &WirePath) -> bool {
        self.parts.starts_with(&other.parts)
    }

    /// The path relative to the home, for cap-std: `.` for the root, `a/b` otherwise.
    pub fn to_relative(&self) -> PathBuf {
        if self.parts.is_empty() {
            return PathBuf::from(".");
        }
        self.parts.iter().collect()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::BadRequest(format!(
            "name of {} bytes is over the limit of {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.ends_with(PART_SUFFIX) {
        return Err(Error::BadRequest(format!(
            "names ending in `{PART_SUFFIX}` are reserved for uploads in progress"
        )));
    }
    Ok(())
}

impl fmt::Display for WirePath {
    /// The user's view: `/` for the home, `/a/b` below it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for part in &self.parts {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cwd: &str, wire: &str) -> Result<String> {
        let cwd = WirePath::root().resolve(cwd)?;
        cwd.resolve(wire).map(|p| p.to_string())
    }

    #[test]
    fn relative_paths_resolve_against_the_current_folder() {
        assert_eq!(at("/docs", "a/b.txt").unwrap(), "/docs/a/b.txt");
        assert_eq!(at("/docs", "./a//b/.").unwrap(), "/docs/a/b");
        assert_eq!(at("/docs", "..").unwrap(), "/");
        assert_eq!(at("/docs/x", "../y").unwrap(), "/docs/y");
        assert_eq!(at("/", "").unwrap(), "/");
    }

    #[test]
    fn a_leading_slash_means_the_home_root() {
        assert_eq!(at("/docs", "/etc/passwd").unwrap(), "/etc/passwd");
        let p = WirePath::root().resolve("/etc/passwd").unwrap();
        assert_eq!(p.to_relative(), PathBuf::from("etc/passwd"));
        assert_eq!(WirePath::root().to_relative(), PathBuf::from("."));
    }

    #[test]
    fn climbing_above_the_home_is_refused() {
        for wire in ["..", "../x", "a/../../x", "/..", "./../x"] {
            let err = at("/", wire).unwrap_err();
            assert!(matches!(err, Error::PermissionDenied(_)), "{wire}: {err}");
            assert!(err.to_string().contains("outside your home"), "{err}");
        }
        assert!(at("/a", "../../x").is_err());
    }

    #[test]
    fn nul_long_and_reserved_names_are_refused() {
        for wire in ["a\0b", ".x.sockit-part", "d/.y.sockit-part/z"] {
            assert!(
                matches!(at("/", wire), Err(Error::BadRequest(_))),
                "{wire:?}"
            );
        }
        assert!(at("/", &"n".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(at("/", &"a/".repeat(MAX_PATH_LEN)).is_err());
        assert!(at("/", &"n".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn every_name_leaves_room_for_its_partial_file() {
        let longest = "n".repeat(MAX_NAME_LEN);
        assert_eq!(crate::storage::part_name(&longest).len(), 255);
        let err = at("/", &format!("{longest}n")).unwrap_err();
        assert!(err.to_string().contains("over the limit of 242"), "{err}");
        assert!(WirePath::root().join(&format!("{longest}n")).is_err());
    }

    #[test]
    fn the_normalised_path_is_held_to_the_length_and_depth_limits() {
        let limit = |n: usize| "/x".repeat(n);
        assert_eq!(at("/", &limit(MAX_DEPTH)).unwrap().len(), 2 * MAX_DEPTH);
        let err = at("/", &limit(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("over the limit of 256"), "{err}");
        // Relative to a current folder, the sent path is short but the result is not.
        let name = "n".repeat(200);
        let cwd = WirePath::root()
            .resolve(&format!("/{name}").repeat(20))
            .unwrap();
        assert_eq!(cwd.display_len(), 4020);
        assert!(cwd.resolve(&"m".repeat(75)).is_ok());
        let err = cwd.resolve(&"m".repeat(76)).unwrap_err();
        assert!(err.to_string().contains("4097 bytes"), "{err}");
        assert!(cwd.join(&"m".repeat(76)).is_err());
        assert_eq!(WirePath::root().display_len(), 1);
        assert_eq!(WirePath::root().depth(), 0);
    }

    #[test]
    fn parent_name_and_join() {
        let p = WirePath::root().resolve("a/b").unwrap();
        assert_eq!(p.name(), Some("b"));
        assert_eq!(p.parent().unwrap().to_string(), "/a");
        assert_eq!(WirePath::root().parent(), None);
        assert_eq!(p.join("c").unwrap().to_string(), "/a/b/c");
        for bad in ["", ".", "..", "c/d"] {
            assert!(p.join(bad).is_err(), "{bad}");
        }
    }
}
