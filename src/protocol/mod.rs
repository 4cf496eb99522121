//! The wire format: the seeds' "终极版" framing, as pure functions over byte buffers.
//!
//! Nothing in here touches a socket; [`crate::connection`] (async) and [`crate::blocking`]
//! (std::io) drive these parsers. A frame is:
//!
//! ```text
//! +------------------+-------------------------------+------------------------------+
//! | header length: 4 | header: `len` bytes of UTF-8  | body: header["total_size"]   |
//! | bytes, i32 LE    | JSON, exactly one object      | bytes (any content, may be 0)|
//! +------------------+-------------------------------+------------------------------+
//!   struct.pack('i', len)   {"op":"echo","total_size":5}   hello
//! ```
//!
//! Readers accept the body size under any of the seeds' names (`total_size`, `file_size`,
//! `filesize`, `data_size`); writers always write `total_size`.

pub mod frame;
pub mod header;
pub mod ops;
pub mod request;
pub mod wire_path;

pub use frame::{Head, Limits, encode_head, encode_ok_head};
pub use header::{ErrorBody, ErrorCode, Reply};
pub use request::{DigestKind, Kept, Password, Request};
pub use wire_path::WirePath;

/// Suffix of partial upload files (`.<name>.sockit-part`); such names are hidden from
/// listings and refused in wire paths.
pub const PART_SUFFIX: &str = ".sockit-part";

/// Bytes in the fixed length prefix.
pub const PREFIX_LEN: usize = 4;

/// Default cap on the JSON header's length (64 KiB); a longer header is a protocol error.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;

/// Default cap on a body that is read whole into memory (16 MiB).
pub const MAX_INLINE_BODY: u64 = 16 * 1024 * 1024;

/// Default cap on any body, including streamed ones (1 TiB).
pub const MAX_BODY: u64 = 1 << 40;

/// Largest file a `write` frame carries whole; larger ones go by `put`, which streams and
/// resumes.
pub const MAX_WRITE: u64 = 1024 * 1024;

/// The JSON keys a reader accepts as the body size, in the order they are looked up.
pub const SIZE_KEYS: [&str; 4] = ["total_size", "file_size", "filesize", "data_size"];
