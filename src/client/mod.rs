//! `Client`: the native protocol from the calling side: connect, send a request, read the
//! typed reply. Used by the `sockit` subcommands, the demo and the tests.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::connection::Connection;
use crate::net::{Endpoint, Stream, connect};
use crate::protocol::{Limits, MAX_INLINE_BODY, Reply};
use crate::{Error, Result};

/// A connection to a sockit server.
#[derive(Debug)]
pub struct Client {
    conn: Connection<Stream>,
}

impl Client {
    /// Connects to `endpoint`.
    ///
    /// # Errors
    /// Resolution and connect errors, naming the address.
    pub async fn connect(endpoint: &Endpoint) -> Result<Client> {
        let stream = connect(endpoint).await?;
        Ok(Client {
            conn: Connection::new(stream, Limits::default()),
        })
    }

    /// Sends `body` with the `echo` op and returns what came back.
    ///
    /// # Errors
    /// I/O errors, and [`Error::Remote`] when the server refuses.
    pub async fn echo(&mut self, body: &[u8]) -> Result<Bytes> {
        let (_, reply) = self.call(&json!({"op": "echo"}), body).await?;
        Ok(reply)
    }

    /// Sends one request and reads its reply: the reply's fields and its body (read whole,
    /// up to 16 MiB).
    ///
    /// # Errors
    /// I/O errors, [`Error::Remote`] for an error reply, [`Error::BadReply`] for a frame that
    /// is not a reply.
    pub async fn call(
        &mut self,
        header: &(impl Serialize + ?Sized),
        body: &[u8],
    ) -> Result<(Map<String, Value>, Bytes)> {
        self.conn.write_frame(header, body).await?;
        self.read_reply().await
    }

    /// Reads the next reply (for callers that pipelined several requests).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn read_reply(&mut self) -> Result<(Map<String, Value>, Bytes)> {
        let head = self.conn.read_head().await?.ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before replying",
            ))
        })?;
        let fields = Reply::from_head(&head);
        let body = self.conn.read_body(MAX_INLINE_BODY).await?;
        Ok((fields?, body))
    }

    /// The framed connection, for requests this type has no method for.
    pub fn connection(&mut self) -> &mut Connection<Stream> {
        &mut self.conn
    }
}
