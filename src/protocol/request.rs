//! Requests of sockit's own protocol, tagged by `op`: what the client sends and the server
//! reads, one type for both.
//!
//! The body size lives in [`super::Head::body_len`], so none of these types carries
//! `total_size` itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Head;

/// A request header, tagged by its `"op"` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `{"op":"echo","total_size":n}` + n bytes: answered with the same n bytes (contract).
    Echo,
    /// Log in as `user`; every file op needs it.
    Login {
        /// The user name.
        user: String,
        /// The password (never logged: its `Debug` prints `***`); absent in a login by key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Password>,
        /// A login by key: the public key (base64 of its 32 raw bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// A login by key, second step: the signature (base64) of the login message over
        /// the challenge the first step returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// List a folder (or show one file): reply body is a JSON array of entries. With
    /// `page`, the listing comes as several replies of up to `page` entries each, every one
    /// but the last marked `more` (a folder of any size, in flat memory on both sides).
    Ls {
        /// Path in the user's home; empty or `/` is the home itself.
        #[serde(default)]
        path: String,
        /// Entries per reply; `None` sends the whole listing in one reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page: Option<u32>,
    },
    /// Show one entry.
    Stat {
        /// Path in the user's home.
        path: String,
    },
    /// Create a folder.
    Mkdir {
        /// Path in the user's home.
        path: String,
        /// Create missing parents too (and accept an existing folder).
        #[serde(default)]
        parents: bool,
    },
    /// Remove a file, or a folder with `recursive`.
    Rm {
        /// Path in the user's home.
        path: String,
        /// Remove a folder and everything in it.
        #[serde(default)]
        recursive: bool,
    },
    /// Rename or move.
    Mv {
        /// Existing path.
        from: String,
        /// New path.
        to: String,
    },
    /// How much of the quota the home uses now (`login` tells it once, at the start).
    Df,
    /// Start an upload of `size` bytes; the server answers with the offset to send from.
    Put {
        /// Destination path in the user's home.
        path: String,
        /// Size of the whole file.
        size: u64,
        /// Continue a partial upload instead of starting over.
        #[serde(default)]
        resume: bool,
        /// What the stored file keeps of the sender's: permission bits and modification
        /// time, applied before it becomes visible.
        #[serde(flatten)]
        keep: Kept,
    },
    /// A whole small file in one frame (the body, at most [`super::MAX_WRITE`] bytes), with
    /// its BLAKE3: pipelined by `put -r`, answered like `done`, made durable in groups.
    Write {
        /// Destination path in the user's home.
        path: String,
        /// BLAKE3 of the body, hex: the file is stored only if it matches.
        blake3: String,
        /// Permission bits and modification time to keep.
        #[serde(flatten)]
        keep: Kept,
    },
    /// The bytes of an upload, after `put`'s go-ahead.
    Data {
        /// The digest the client will send in `done` for the server to check (md5 unless
        /// it says `"blake3"`).
        #[serde(default)]
        digest: DigestKind,
    },
    /// The end of an upload: the whole file's digest, checked before it becomes visible.
    Done {
        /// md5 of the whole file, hex: required after a `data` frame that announced md5 (the
        /// seeds' digest, and the default); recorded as the client's otherwise.
        #[serde(default)]
        md5: Option<String>,
        /// BLAKE3 of the whole file, hex: required after `"digest":"blake3"`.
        #[serde(default)]
        blake3: Option<String>,
    },
    /// Download a file from `offset` on; a trailer frame carries the whole file's digests.
    Get {
        /// Path in the user's home.
        path: String,
        /// Where to start (the length of the client's partial file).
        #[serde(default)]
        offset: u64,
        /// The digest the client checks: with `"blake3"`, the trailer carries md5 only when
        /// the server knows it without hashing; otherwise it always carries md5.
        #[serde(default)]
        digest: DigestKind,
    },
    /// Run a command in the user's home (`serve --allow-exec` only); its output streams
    /// back as frames while it runs (see `service::exec`).
    Exec {
        /// The command line, run by `sh -c`.
        command: String,
        /// Whether the client sends stdin frames; otherwise the command reads `/dev/null`.
        #[serde(default)]
        stdin: bool,
    },
    /// Input of a running `exec` (the body), or its end (`eof`).
    Stdin {
        /// No more input after this frame.
        #[serde(default)]
        eof: bool,
    },
    /// Any op this server does not know; answered with [`super::ErrorCode::UnknownOp`].
    #[serde(other)]
    Unknown,
}

/// What an upload keeps of the sender's file besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kept {
    /// Permission bits (`0o644`; only the low 9 bits count: never set-id or sticky).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Modification time, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
}

/// The digest a transfer is checked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestKind {
    /// md5: the seeds' digest, and what a peer that names none gets (~650 MB/s a core).
    #[default]
    Md5,
    /// BLAKE3: between sockit peers; several times faster than md5, and a stronger hash.
    Blake3,
}

/// A password in memory. Its `Debug` prints `***`, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password typed by a person or sent by a client.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself; for hashing and sending only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Password {
    fn from(password: String) -> Password {
        Password(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Password {
        Password(password.to_owned())
    }
}

impl Request {
    /// Reads the typed request out of a parsed head.
    ///
    /// # Errors
    /// A [`crate::Error::BadRequest`] naming the problem: no `op`, or fields of the wrong type.
    /// An op this build does not know is not an error here: it is [`Request::Unknown`].
    pub fn from_head(head: &Head) -> crate::Result<Request> {
        match head.header.get("op") {
            // An op without fields is its name: no pass over the map (serde's tagged enums
            // buffer every field first, which showed in the echo profile).
            Some(Value::String(op)) if op == "echo" => return Ok(Request::Echo),
            Some(Value::String(op)) if op == "df" => return Ok(Request::Df),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(crate::Error::BadRequest(format!(
                    "`op` must be a string, got {other}"
                )));
            }
            None => return Err(crate::Error::BadRequest("header has no `op`".into())),
        }
        // Straight from the borrowed map: no copy of the header per request.
        Request::deserialize(&head.header).map_err(|e| crate::Error::BadRequest(e.to_string()))
    }
}
