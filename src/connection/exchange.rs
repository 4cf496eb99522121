//! [`Connection::exchange`]: a request written while its reply is read, for callers whose
//! request body may be larger than the socket buffers.

use bytes::Buf;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Connection, eof};
use crate::protocol::Head;
use crate::protocol::frame::FrameError;
use crate::{Error, Result};

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Sends one whole frame and reads one whole reply frame at the same time, the reply's
    /// body into memory (up to `max` bytes).
    ///
    /// Writing a large body before reading can deadlock against a peer that streams its reply
    /// while it reads (the echo op does): both sides' socket buffers fill and each waits for
    /// the other. Here the reply is read while the request is still being written.
    ///
    /// # Errors
    /// As [`Self::read_head`] and [`Self::read_body`]; an error reply that arrives while the
    /// request is still being written wins over the write failing.
    pub async fn exchange(
        &mut self,
        header: &(impl Serialize + ?Sized),
        body: &[u8],
        max: u64,
    ) -> Result<(Head, bytes::Bytes)> {
        self.discard_body().await?;
        self.queue_head(header, body.len() as u64)?;
        let Connection {
            stream,
            rbuf,
            wbuf,
            limits,
            ..
        } = self;
        let (mut rd, mut wr) = tokio::io::split(&mut *stream);
        let write = async {
            wr.write_all(wbuf).await?;
            wr.write_all(body).await?;
            wr.flush().await?;
            Ok::<(), Error>(())
        };
        let read = async {
            let head = loop {
                match Head::parse(rbuf, limits) {
                    Ok((head, used)) => {
                        rbuf.advance(used);
                        break head;
                    }
                    Err(FrameError::Incomplete) => {}
                    Err(e) => return Err(e.into()),
                }
                if rd.read_buf(rbuf).await? == 0 {
                    return Err(eof("the peer closed the connection before its reply"));
                }
            };
            if head.body_len > max {
                return Err(Error::TooLarge(format!(
                    "reply body of {} bytes is over the in-memory limit of {max}",
                    head.body_len
                )));
            }
            let len = head.body_len as usize;
            while rbuf.len() < len {
                rbuf.reserve(len - rbuf.len());
                if rd.read_buf(rbuf).await? == 0 {
                    return Err(eof("the peer closed the connection inside its reply"));
                }
            }
            Ok((head, rbuf.split_to(len).freeze()))
        };
        let (written, reply) = tokio::join!(write, read);
        wbuf.clear();
        match (written, reply) {
            (_, Ok(reply)) => Ok(reply),
            (Ok(()), Err(e)) | (Err(_), Err(e)) => Err(e),
        }
    }
}
