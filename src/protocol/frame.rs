//! Frame heads: check whether one is buffered, parse it, encode one. Pure, no I/O.
//!
//! A reader calls [`Head::check`] on its buffer until it stops answering
//! [`FrameError::Incomplete`], then [`Head::parse`] on the same bytes. Both checks on the
//! length prefix happen before anything is allocated, so a peer that announces a 2 GiB header
//! costs four bytes of buffer, not two gigabytes.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{MAX_BODY, MAX_HEADER_LEN, PREFIX_LEN, SIZE_KEYS};

/// The limits a reader enforces on every frame; each has a default and a command-line flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted JSON header, in bytes (`--max-header`).
    pub max_header_len: u32,
    /// Largest accepted body, in bytes (`--max-body`); streamed bodies count too.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_len: MAX_HEADER_LEN,
            max_body: MAX_BODY,
        }
    }
}

/// A broken rule of the wire format, or [`FrameError::Incomplete`] when more bytes are needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a whole head buffered yet: read more and check again. Never sent to a peer.
    #[error("incomplete frame: more bytes needed")]
    Incomplete,
    /// The length prefix is zero or negative (Python's `struct.pack('i')` is signed).
    #[error("header length {0} is not a positive number")]
    NonPositiveLength(i32),
    /// The length prefix is over [`Limits::max_header_len`].
    #[error("header length {len} is over the limit of {max} bytes")]
    HeaderTooLong {
        /// The announced length.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The header bytes are not UTF-8 JSON.
    #[error("header is not valid JSON: {0}")]
    Json(String),
    /// The header is valid JSON but not one object (an array, a string, ...).
    #[error("header is JSON but not an object")]
    NotAnObject,
    /// The body size is present but not a non-negative integer.
    #[error("body size `{key}` must be a non-negative integer, got {value}")]
    BadSize {
        /// Which of the size keys held it.
        key: &'static str,
        /// The offending value, as JSON.
        value: String,
    },
    /// The body size is over [`Limits::max_body`].
    #[error("body size {size} is over the limit of {max} bytes")]
    BodyTooLarge {
        /// The announced size.
        size: u64,
        /// The limit in force.
        max: u64,
    },
    /// An outgoing header did not serialise to one JSON object, or is too long to frame.
    #[error("cannot encode header: {0}")]
    Encode(String),
}

/// A parsed frame head: the JSON header object and the size of the body that follows it.
#[derive(Clone, PartialEq)]
pub struct Head {
    /// The header object, as sent (the size key included).
    pub header: Map<String, Value>,
    /// How many body bytes follow the header on the stream.
    pub body_len: u64,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("op", &self.header.get("op"))
            .field("keys", &self.header.len())
            .field("body_len", &self.body_len)
            .finish()
    }
}

impl Head {
    /// Checks whether `buf` starts with a whole head, and returns its length in bytes
    /// (prefix plus header).
    ///
    /// # Errors
    /// [`FrameError::Incomplete`] when more bytes are needed; a length error when the prefix
    /// is zero, negative or over `limits.max_header_len` (checked before the header arrives).
    pub fn check(buf: &[u8], limits: &Limits) -> Result<usize, FrameError> {
        let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
            return Err(FrameError::Incomplete);
        };
        let len = i32::from_le_bytes(*prefix);
        if len <= 0 {
            return Err(FrameError::NonPositiveLength(len));
        }
        let len = len.unsigned_abs();
        if len > limits.max_header_len {
            return Err(FrameError::HeaderTooLong {
                len,
                max: limits.max_header_len,
            });
        }
        // Cannot overflow: len <= u32::MAX / 2 and PREFIX_LEN is 4.
        let total = PREFIX_LEN + len as usize;
        if buf.len() < total {
            return Err(FrameError::Incomplete);
        }
        Ok(total)
    }

    /// Parses the head at the start of `buf`, returning it and the bytes it took.
    ///
    /// # Errors
    /// Everything [`Head::check`] reports, plus bad JSON, a non-object header, and a body size
    /// that is not a non-negative integer or is over `limits.max_body`. A missing size means
    /// an empty body.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<(Head, usize), FrameError> {
        let total = Head::check(buf, limits)?;
        let json = &buf[PREFIX_LEN..total];
        // Read straight into a map (not a `Value` first, which classifies every key); a
        // header that is valid JSON but not an object is told apart by its first byte.
        let header: Map<String, Value> = serde_json::from_slice(json).map_err(|e| {
            match json.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | None => FrameError::Json(e.to_string()),
                Some(_) if serde_json::from_slice::<Value>(json).is_ok() => FrameError::NotAnObject,
                Some(_) => FrameError::Json(e.to_string()),
            }
        })?;
        let body_len = body_len(&header, limits)?;
        Ok((Head { header, body_len }, total))
    }
}

/// Reads the body size from the first size key present; a missing one means 0.
fn body_len(header: &Map<String, Value>, limits: &Limits) -> Result<u64, FrameError> {
    let Some((key, value)) = SIZE_KEYS
        .iter()
        .find_map(|key| header.get(*key).map(|v| (*key, v)))
    else {
        return Ok(0);
    };
    let size = value.as_u64().ok_or_else(|| FrameError::BadSize {
        key,
        value: value.to_string(),
    })?;
    if size > limits.max_body {
        return Err(FrameError::BodyTooLarge {
            size,
            max: limits.max_body,
        });
    }
    Ok(size)
}

/// The header as written: the caller's fields plus `total_size`.
#[derive(Serialize)]
struct Envelope<'a, H: ?Sized> {
    #[serde(flatten)]
    inner: &'a H,
    total_size: u64,
}

/// Appends the head of a frame (prefix and JSON header) to `dst`; the caller appends or
/// streams `body_len` body bytes after it.
///
/// `header` must serialise to a JSON object without its own `total_size`: this function
/// writes that key, so every frame sockit sends carries the contract's spelling.
///
/// # Errors
/// [`FrameError::Encode`] when `header` is not an object or its JSON is over `i32::MAX` bytes.
pub fn encode_head<H: Serialize + ?Sized>(
    header: &H,
    body_len: u64,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_i32_le(0);
    let envelope = Envelope {
        inner: header,
        total_size: body_len,
    };
    if let Err(e) = serde_json::to_writer(dst.writer(), &envelope) {
        dst.truncate(start);
        return Err(FrameError::Encode(e.to_string()));
    }
    let json_len = dst.len() - start - PREFIX_LEN;
    let Ok(len) = i32::try_from(json_len) else {
        dst.truncate(start);
        return Err(FrameError::Encode(format!("header of {json_len} bytes")));
    };
    dst[start..start + PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Appends the head of the bare success reply, `{"ok":true,"total_size":n}`, to `dst`: the
/// bytes [`encode_head`] writes for `Reply::ok(Empty {})`, without going through serde. Echo,
/// the op under the heaviest load, answers with it.
pub fn encode_ok_head(body_len: u64, dst: &mut BytesMut) {
    const OPEN: &[u8] = br#"{"ok":true,"total_size":"#;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(body_len).as_bytes();
    let json_len = OPEN.len() + digits.len() + 1;
    // At most 45 bytes: the cast cannot truncate.
    dst.reserve(PREFIX_LEN + json_len);
    dst.put_i32_le(json_len as i32);
    dst.put_slice(OPEN);
    dst.put_slice(digits);
    dst.put_u8(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(header: &str) -> Vec<u8> {
        let mut v = (header.len() as i32).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v
    }

    fn parse(buf: &[u8]) -> Result<(Head, usize), FrameError> {
        Head::parse(buf, &Limits::default())
    }

    #[test]
    fn the_bare_ok_head_is_what_serde_writes_for_it() {
        use crate::protocol::Reply;
        use crate::protocol::header::Empty;
        for n in [0, 1, 64, 999, 1 << 20, u64::MAX] {
            let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
            encode_ok_head(n, &mut fast);
            encode_head(&Reply::ok(Empty {}), n, &mut slow).unwrap();
            assert_eq!(fast, slow, "body of {n} bytes");
        }
    }

    #[test]
    fn encodes_python_struct_pack_i_layout() {
        let mut dst = BytesMut::new();
        encode_head(&json!({"op": "echo"}), 5, &mut dst).unwrap();
        let header = br#"{"op":"echo","total_size":5}"#;
        // struct.pack('i', 28) == b'\x1c\x00\x00\x00'
        assert_eq!(&dst[..4], &[28, 0, 0, 0]);
        assert_eq!(&dst[4..], header);
    }

    #[test]
    fn round_trips_header_and_size() {
        let mut dst = BytesMut::new();
        encode_head(&json!({"op": "put", "path": "a/b"}), 1 << 33, &mut dst).unwrap();
        let (head, used) = parse(&dst).unwrap();
        assert_eq!(used, dst.len());
        assert_eq!(head.body_len, 1 << 33);
        assert_eq!(head.header["path"], "a/b");
    }

    #[test]
    fn reads_every_seed_size_alias() {
        for key in SIZE_KEYS {
            let buf = raw(&format!(r#"{{"{key}": 42, "filename": "a.txt"}}"#));
            assert_eq!(parse(&buf).unwrap().0.body_len, 42, "{key}");
        }
    }

    #[test]
    fn missing_size_means_empty_body() {
        assert_eq!(parse(&raw(r#"{"op":"ls"}"#)).unwrap().0.body_len, 0);
    }

    #[test]
    fn incomplete_until_the_whole_head_is_there() {
        let buf = raw(r#"{"total_size":3}"#);
        for cut in 0..buf.len() {
            assert_eq!(
                parse(&buf[..cut]),
                Err(FrameError::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(parse(&buf).is_ok());
    }

    #[test]
    fn rejects_zero_negative_and_oversized_lengths_before_the_header_arrives() {
        let limits = Limits::default();
        assert_eq!(
            Head::check(&0i32.to_le_bytes(), &limits),
            Err(FrameError::NonPositiveLength(0))
        );
        assert_eq!(
            Head::check(&(-1i32).to_le_bytes(), &limits),
            Err(FrameError::NonPositiveLength(-1))
        );
        // 2 GiB - 1: only four bytes are buffered, and the answer is already final.
        assert_eq!(
            Head::check(&i32::MAX.to_le_bytes(), &limits),
            Err(FrameError::HeaderTooLong {
                len: i32::MAX as u32,
                max: MAX_HEADER_LEN
            })
        );
        // Exactly at the limit is fine (incomplete, not an error).
        assert_eq!(
            Head::check(&(MAX_HEADER_LEN as i32).to_le_bytes(), &limits),
            Err(FrameError::Incomplete)
        );
    }

    #[test]
    fn rejects_bad_json_and_non_objects() {
        assert!(matches!(parse(&raw("{nope")), Err(FrameError::Json(_))));
        assert!(matches!(parse(&raw("[1,2]")), Err(FrameError::NotAnObject)));
        assert!(matches!(parse(&raw("\"s\"")), Err(FrameError::NotAnObject)));
        let mut bad_utf8 = 3i32.to_le_bytes().to_vec();
        bad_utf8.extend_from_slice(&[b'"', 0xff, b'"']);
        assert!(matches!(parse(&bad_utf8), Err(FrameError::Json(_))));
    }

    #[test]
    fn rejects_sizes_that_are_not_non_negative_integers() {
        for bad in ["-1", "\"10\"", "1.5", "null", "[]"] {
            let buf = raw(&format!(r#"{{"total_size": {bad}}}"#));
            assert!(
                matches!(parse(&buf), Err(FrameError::BadSize { .. })),
                "{bad}"
            );
        }
        let huge = raw(r#"{"total_size": 1000000000000000000}"#);
        assert!(matches!(parse(&huge), Err(FrameError::BodyTooLarge { .. })));
    }

    #[test]
    fn respects_custom_limits() {
        let limits = Limits {
            max_header_len: 8,
            max_body: 10,
        };
        let buf = raw(r#"{"total_size": 11}"#);
        assert!(matches!(
            Head::parse(&buf, &limits),
            Err(FrameError::HeaderTooLong { len: 18, max: 8 })
        ));
        let limits = Limits {
            max_header_len: 64,
            max_body: 10,
        };
        assert!(matches!(
            Head::parse(&buf, &limits),
            Err(FrameError::BodyTooLarge { size: 11, max: 10 })
        ));
    }

    #[test]
    fn encode_refuses_non_objects() {
        let mut dst = BytesMut::from(&b"keep"[..]);
        assert!(encode_head(&json!([1]), 0, &mut dst).is_err());
        assert_eq!(
            &dst[..],
            b"keep",
            "a failed encode leaves the buffer as it was"
        );
    }
}
