//! The fields of each op's reply, one type for the server that answers and the client that
//! reads (mini-redis keeps a command's parse and encode in one file for the same reason).
//!
//! Each is the `T` of a [`super::Reply<T>`]; the table of ops is in `docs/PROTOCOL.md`.

use serde::{Deserialize, Serialize};

/// What a folder entry is. Symlinks are reported as such, not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (only ever followed inside the home).
    Symlink,
    /// A device, socket or pipe.
    Other,
}

/// One file or folder, as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The name within its folder (`/` for the home itself); non-UTF-8 bytes are replaced.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (of the link itself for a symlink).
    pub size: u64,
    /// Last modification, in seconds since the Unix epoch.
    pub modified: i64,
    /// Permission bits (`0o644` is 420), where the storage has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `login`: who is logged in, and their quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The user now logged in.
    pub user: String,
    /// Their quota in bytes; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// What their home costs against the quota now: bytes plus
    /// [`crate::quota::ENTRY_COST`] per entry.
    pub used: u64,
}

/// `df`: the user's quota and what their home costs against it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// The quota in bytes; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// What the home costs: bytes plus [`crate::quota::ENTRY_COST`] per entry.
    pub used: u64,
}

impl Space {
    /// What is left under the quota; `None` when unlimited.
    pub fn free(&self) -> Option<u64> {
        self.quota.map(|q| q.saturating_sub(self.used))
    }
}

/// `login` by key, first step: what the client must sign (base64 of 32 random bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The challenge, single-use and valid on this connection only.
    pub challenge: String,
}

/// `ls`: how many entries the body's JSON array holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Entries in the body.
    pub count: usize,
    /// A listing asked for by pages: another reply of the same listing follows this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// `stat`: the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// The entry.
    pub entry: Entry,
}

/// `put`'s go-ahead: send the bytes from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReady {
    /// Bytes the server already has (0 unless resuming).
    pub offset: u64,
}

/// The end of a transfer: what is stored, and the digest it was checked by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Size of the whole file.
    pub size: u64,
    /// md5 of the whole file, lowercase hex, when it was checked by it (or known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// BLAKE3 of the whole file, lowercase hex, when it was checked by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Bytes that were already there and not sent again (a resume).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed_from: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Verified {
    /// The digest the transfer was checked by, named: `("BLAKE3", hex)` between sockit
    /// peers, `("md5", hex)` otherwise.
    pub fn digest(&self) -> (&'static str, &str) {
        match (&self.blake3, &self.md5) {
            (Some(b3), _) => ("BLAKE3", b3),
            (None, md5) => ("md5", md5.as_deref().unwrap_or_default()),
        }
    }
}

/// `get`'s first reply: the file's size and where the body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReady {
    /// Size of the whole file.
    pub size: u64,
    /// Offset of the first body byte.
    pub offset: u64,
    /// The trailer will carry the BLAKE3 too (so a client may hash that instead of md5).
    #[serde(default)]
    pub blake3: bool,
}

/// `get`'s trailer: the whole file's digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// md5 of the whole file, lowercase hex: always for a client that checks md5; for one
    /// that checks BLAKE3, only when the server knew it without hashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// BLAKE3 of the whole file, lowercase hex (sockit clients check this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// `exec`'s first reply: the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Always true.
    pub started: bool,
}

/// Which output pipe of a command a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// An `exec` output frame's header; the bytes are its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The pipe they came from.
    pub stream: OutputStream,
}

/// How a command's shell ended: `{"exit": CODE}` or `{"signal": N}`, `exec`'s last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    #[serde(rename = "exit")]
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_frames_read_as_the_wire_spells_them() {
        let exit: Exit = serde_json::from_str(r#"{"exit": 3}"#).unwrap();
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(
            serde_json::to_string(&Exit::Signal(9)).unwrap(),
            r#"{"signal":9}"#
        );
        let out = Output {
            stream: OutputStream::Stderr,
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"stream":"stderr"}"#
        );
    }

    #[test]
    fn absent_digests_are_left_out_and_read_back_as_none() {
        let v = Verified {
            size: 3,
            md5: None,
            blake3: Some("ab".into()),
            resumed_from: 0,
        };
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, r#"{"size":3,"blake3":"ab"}"#);
        assert_eq!(serde_json::from_str::<Verified>(&text).unwrap(), v);
    }
}
