//! The known-hosts file: the certificate fingerprint of each server a user has trusted, one
//! `HOST:PORT SHA256:…` line each, as OpenSSH keeps host keys.
//!
//! Where: `$SOCKIT_KNOWN_HOSTS`, else `$XDG_CONFIG_HOME/sockit/known_hosts`, else
//! `~/.config/sockit/known_hosts`. Lines that are empty or start with `#` are kept as they
//! are; the file is only ever appended to.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What the file says about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// No line for it.
    Unknown,
    /// Its fingerprint, and the line (1-based) that holds it.
    Trusted {
        /// `SHA256:…`.
        fingerprint: String,
        /// Where, for the message that says which line to remove.
        line: usize,
    },
}

/// A known-hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The user's file: `$SOCKIT_KNOWN_HOSTS`, else under `$XDG_CONFIG_HOME`, else under
    /// `~/.config`.
    ///
    /// # Errors
    /// When none of those is set.
    pub fn default_location() -> Result<KnownHosts> {
        if let Some(path) = std::env::var_os("SOCKIT_KNOWN_HOSTS") {
            return Ok(KnownHosts::at(path));
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))
            .ok_or_else(|| {
                Error::BadRequest(
                    "no place for the known-hosts file: set SOCKIT_KNOWN_HOSTS or HOME".into(),
                )
            })?;
        Ok(KnownHosts::at(config.join("sockit").join("known_hosts")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file says about `host` (`HOST:PORT`, as the user wrote it).
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn lookup(&self, host: &str) -> Result<Known> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Known::Unknown),
            Err(e) => return Err(self.error(e)),
        };
        for (index, line) in text.lines().enumerate() {
            let mut fields = line.split_whitespace();
            if let (Some(name), Some(fingerprint)) = (fields.next(), fields.next())
                && !name.starts_with('#')
                && name == host
            {
                return Ok(Known::Trusted {
                    fingerprint: fingerprint.to_owned(),
                    line: index + 1,
                });
            }
        }
        Ok(Known::Unknown)
    }

    /// Adds `host` with `fingerprint` (creating the file and its folder, owner-only).
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn add(&self, host: &str, fingerprint: &str) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        writeln!(file, "{host} {fingerprint}").map_err(|e| self.error(e))
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::Fs {
            path: self.path.display().to_string(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_added_and_found_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = KnownHosts::at(dir.path().join("sub/known_hosts"));
        assert_eq!(file.lookup("a:1").unwrap(), Known::Unknown);
        file.add("a:1", "SHA256:one").unwrap();
        file.add("b:2", "SHA256:two").unwrap();
        assert_eq!(
            file.lookup("b:2").unwrap(),
            Known::Trusted {
                fingerprint: "SHA256:two".into(),
                line: 2
            }
        );
        assert_eq!(file.lookup("a:2").unwrap(), Known::Unknown);
    }
}
