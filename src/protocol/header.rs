//! Typed headers of sockit's own protocol: requests by `op`, replies by `ok`.
//!
//! Services receive a [`Request`], never raw JSON; the body size lives in
//! [`super::Head::body_len`], so none of these types carries `total_size` themselves.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Head;

/// A request header, tagged by its `"op"` field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `{"op":"echo","total_size":n}` + n bytes: answered with the same n bytes (contract).
    Echo,
    /// Log in as `user`; every file op needs it.
    Login {
        /// The user name.
        user: String,
        /// The password (never logged: its `Debug` prints `***`).
        password: Password,
    },
    /// List a folder (or show one file): reply body is a JSON array of entries.
    Ls {
        /// Path in the user's home; empty or `/` is the home itself.
        #[serde(default)]
        path: String,
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
    /// Start an upload of `size` bytes; the server answers with the offset to send from.
    Put {
        /// Destination path in the user's home.
        path: String,
        /// Size of the whole file.
        size: u64,
        /// Continue a partial upload instead of starting over.
        #[serde(default)]
        resume: bool,
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
    /// Any op this server does not know; answered with [`ErrorCode::UnknownOp`].
    #[serde(other)]
    Unknown,
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
#[derive(Clone, PartialEq, Eq, Deserialize)]
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

/// The machine-readable reason of an error reply (`"error": {"code": ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The bytes broke the wire format; the server closes the connection after this reply.
    Protocol,
    /// A well-framed request with missing or mistyped fields.
    BadRequest,
    /// An `op` this server does not implement.
    UnknownOp,
    /// A body or value over a configured limit.
    TooLarge,
    /// The operation took longer than its limit.
    Timeout,
    /// The server is at a configured capacity limit; try again later.
    Busy,
    /// Something failed on the server's side (disk, process); the message says what.
    Internal,
    /// No such file, folder or user.
    NotFound,
    /// A file, folder or user of that name already exists.
    AlreadyExists,
    /// The path is outside the user's home, or the operation is not allowed on it.
    PermissionDenied,
    /// The upload would take the user over their storage quota.
    QuotaExceeded,
    /// An upload's size or md5 does not match what the client announced; nothing was kept.
    DigestMismatch,
    /// Wrong user name or password, or too many failed logins from this address.
    AuthFailed,
    /// The op needs a logged-in user.
    AuthRequired,
    /// Remote commands are off on this server (`serve --allow-exec` turns them on).
    ExecDisabled,
    /// The client's address holds as many connections as one address may
    /// (`serve --max-connections-per-ip`); the server closes this one.
    TooManyConnections,
    /// A code this client does not know (from a newer server).
    #[serde(other)]
    Other,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The wire spelling, so that a person sees what a program would match on.
        let text = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(text.as_str().unwrap_or("other"))
    }
}

/// The `"error"` object of a failed reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// A reply header: `{"ok": true, ...fields}` or `{"ok": false, "error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply<T = Map<String, Value>> {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The op's own fields.
    #[serde(flatten)]
    pub data: T,
}

/// The fields of a reply that has none of its own.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Empty {}

impl<T> Reply<T> {
    /// A successful reply carrying `data`'s fields.
    pub fn ok(data: T) -> Self {
        Reply {
            ok: true,
            error: None,
            data,
        }
    }
}

impl Reply<Empty> {
    /// A failed reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply {
            ok: false,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
            data: Empty {},
        }
    }
}

impl Reply {
    /// Reads a reply out of a parsed head.
    ///
    /// # Errors
    /// [`crate::Error::Remote`] for an `ok: false` reply; [`crate::Error::BadReply`] when the
    /// header is not a reply at all.
    pub fn from_head(head: &Head) -> crate::Result<Map<String, Value>> {
        let reply: Reply =
            Reply::deserialize(&head.header).map_err(|e| crate::Error::BadReply(e.to_string()))?;
        if reply.ok {
            return Ok(reply.data);
        }
        let error = reply.error.unwrap_or(ErrorBody {
            code: ErrorCode::Other,
            message: "request failed (the server gave no reason)".into(),
        });
        Err(crate::Error::Remote {
            code: error.code,
            message: error.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Limits, encode_head};
    use bytes::BytesMut;
    use serde_json::json;

    fn head(v: Value) -> Head {
        let mut buf = BytesMut::new();
        encode_head(&v, 0, &mut buf).unwrap();
        Head::parse(&buf, &Limits::default()).unwrap().0
    }

    #[test]
    fn echo_and_unknown_ops() {
        assert_eq!(
            Request::from_head(&head(json!({"op":"echo"}))).unwrap(),
            Request::Echo
        );
        assert_eq!(
            Request::from_head(&head(json!({"op":"fly"}))).unwrap(),
            Request::Unknown
        );
    }

    #[test]
    fn missing_or_mistyped_op_is_a_bad_request() {
        for v in [json!({"filename": "a"}), json!({"op": 7})] {
            assert!(matches!(
                Request::from_head(&head(v)),
                Err(crate::Error::BadRequest(_))
            ));
        }
    }

    #[test]
    fn error_reply_round_trips_to_a_remote_error() {
        let mut buf = BytesMut::new();
        encode_head(
            &Reply::error(ErrorCode::UnknownOp, "no such op"),
            0,
            &mut buf,
        )
        .unwrap();
        let (h, _) = Head::parse(&buf, &Limits::default()).unwrap();
        assert_eq!(
            h.header["error"],
            json!({"code": "unknown_op", "message": "no such op"})
        );
        match Reply::from_head(&h) {
            Err(crate::Error::Remote { code, message }) => {
                assert_eq!(code, ErrorCode::UnknownOp);
                assert_eq!(message, "no such op");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
    }

    #[test]
    fn ok_reply_has_no_error_key() {
        let mut buf = BytesMut::new();
        encode_head(&Reply::ok(Empty {}), 3, &mut buf).unwrap();
        assert_eq!(&buf[4..], br#"{"ok":true,"total_size":3}"#);
    }
}
