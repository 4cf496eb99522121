//! The library's one error type, named by what the peer is told.
//!
//! [`Error::code`] maps each variant to the wire, and [`Error::closes_connection`] is the single
//! place that decides between "reply and go on" and "reply and close".

use crate::protocol::ErrorCode;
use crate::protocol::frame::FrameError;

/// Everything that can go wrong in sockit, on either side of a connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer broke the wire format; the stream cannot be trusted after this.
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// A well-framed request with missing or mistyped fields.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An op the server does not implement.
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    /// A value over a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Something took longer than its limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server answered with an error reply.
    #[error("{message} [{code}]")]
    Remote {
        /// The reply's error code.
        code: ErrorCode,
        /// The reply's message.
        message: String,
    },
    /// The peer's reply was well framed but not a reply of this protocol.
    #[error("unexpected reply: {0}")]
    BadReply(String),
    /// A socket or file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// No such file, folder or user; the message names it as the peer sees it.
    #[error("{0}")]
    NotFound(String),
    /// A file, folder or user of that name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Outside the user's home, or not allowed there.
    #[error("{0}")]
    PermissionDenied(String),
    /// The upload does not fit in the user's quota.
    #[error(transparent)]
    QuotaExceeded(#[from] crate::quota::QuotaError),
    /// An upload's size or md5 did not match; the partial file was removed.
    #[error("{0}")]
    DigestMismatch(String),
    /// Someone else holds the resource (another upload of the same file, say).
    #[error("{0}")]
    Busy(String),
    /// The server's storage is full (no space left, or the server account's disk quota).
    #[error("{0}")]
    StorageFull(String),
    /// Wrong user name or password, or this address is cooling down after failures.
    #[error("{0}")]
    AuthFailed(String),
    /// The op needs a logged-in user.
    #[error("log in first")]
    AuthRequired,
    /// A file operation failed on the server's side; `path` is the wire path, never the
    /// server's own.
    #[error("{path}: {source}")]
    Fs {
        /// The path as the peer named it.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The user database failed.
    #[error("user database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The peer's address already holds as many connections as one address may.
    #[error("{0}")]
    TooManyConnections(String),
    /// A plaintext peer off loopback, on a port that serves it TLS only.
    #[error("{0}")]
    TlsRequired(String),
    /// A back end the server needs (the object store, the user database) is down or
    /// refusing; the message names it, never a password.
    #[error("{0}")]
    Unavailable(String),
    /// Remote commands are off on this server.
    #[error("remote commands are off on this server (it runs without --allow-exec)")]
    ExecDisabled,
    /// Something else failed on the server's side; the message says what.
    #[error("internal error: {0}")]
    Internal(String),
    /// A server setting refused, or a settings file or data folder that cannot be used. Raised
    /// before anything listens, so never sent to a peer.
    #[error("{message}")]
    Config {
        /// Which setting, file or folder, and what is wrong with it.
        message: String,
        /// The failure underneath (reading the file, creating the folder), if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error code a peer is told for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Protocol(FrameError::BodyTooLarge { .. } | FrameError::HeaderTooLong { .. }) => {
                ErrorCode::TooLarge
            }
            Error::Protocol(_) => ErrorCode::Protocol,
            Error::BadRequest(_) | Error::BadReply(_) => ErrorCode::BadRequest,
            Error::UnknownOp(_) => ErrorCode::UnknownOp,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::Remote { code, .. } => *code,
            Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ErrorCode::Timeout,
            Error::Io(_)
            | Error::Fs { .. }
            | Error::Database(_)
            | Error::Internal(_)
            | Error::Config { .. } => ErrorCode::Internal,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::DigestMismatch(_) => ErrorCode::DigestMismatch,
            Error::Busy(_) => ErrorCode::Busy,
            Error::StorageFull(_) => ErrorCode::StorageFull,
            Error::AuthFailed(_) => ErrorCode::AuthFailed,
            Error::AuthRequired => ErrorCode::AuthRequired,
            Error::ExecDisabled => ErrorCode::ExecDisabled,
            Error::TooManyConnections(_) => ErrorCode::TooManyConnections,
            Error::TlsRequired(_) => ErrorCode::TlsRequired,
            Error::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// Whether the connection must close after this error is reported: true when the stream
    /// is out of sync (a broken frame) or the transport itself failed.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Error::Protocol(_)
                | Error::Io(_)
                | Error::Timeout(_)
                | Error::TooManyConnections(_)
                | Error::TlsRequired(_)
        )
    }

    /// Whether this error means the peer went away cleanly or abruptly (reset, broken pipe,
    /// EOF inside a frame): nothing to report, nobody to report it to.
    pub fn is_disconnect(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(self, Error::Io(e) if matches!(
            e.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        ))
    }
}
