//! Reply headers of sockit's own protocol: `{"ok": true, ...}` or `{"ok": false, "error":
//! {"code", "message"}}`, and the error codes. Requests are in [`super::request`], the
//! fields of each op's reply in [`super::ops`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Head;

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
    /// The server's storage is full (its disk, not the user's quota).
    StorageFull,
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
    /// The peer spoke plaintext from off loopback to a port that serves it TLS only
    /// (`serve --allow-plaintext` serves it plaintext); the server closes the connection.
    TlsRequired,
    /// A back end the server needs (the object store, the user database) is down or
    /// refusing; the request can be tried again later.
    Unavailable,
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
    /// Reads a reply out of a parsed head: the op's own fields (the body size, which
    /// belongs to the frame, is left out; it is [`Head::body_len`]).
    ///
    /// # Errors
    /// [`crate::Error::Remote`] for an `ok: false` reply; [`crate::Error::BadReply`] when the
    /// header is not a reply at all.
    pub fn from_head(head: &Head) -> crate::Result<Map<String, Value>> {
        let reply: Reply =
            Reply::deserialize(&head.header).map_err(|e| crate::Error::BadReply(e.to_string()))?;
        if reply.ok {
            let mut fields = reply.data;
            for key in super::SIZE_KEYS {
                fields.remove(key);
            }
            return Ok(fields);
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
    use crate::protocol::{Limits, Request, encode_head};
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
    fn ops_read_by_name_agree_with_the_full_reading() {
        // `echo` and `df` skip serde's pass over the map: the result must be the same,
        // whatever else the header holds.
        for v in [
            json!({"op":"echo","total_size":5,"note":"x"}),
            json!({"op":"df","path":"ignored"}),
        ] {
            let h = head(v);
            let full = Request::deserialize(&h.header).unwrap();
            assert_eq!(Request::from_head(&h).unwrap(), full);
        }
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
