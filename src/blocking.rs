//! The same framing over blocking `std::io` streams, for seed-style synchronous programs.
//!
//! It shares the pure parser with [`crate::connection`]; only the I/O differs. Bodies stream
//! here too: [`Connection::body`] is a `Read` that ends at the body's last byte.

use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use serde::Serialize;

use crate::connection::CHUNK;
use crate::protocol::frame::FrameError;
use crate::protocol::{Head, Limits, encode_head};
use crate::{Error, Result};

/// A framed, buffered, blocking connection (for example over `std::net::TcpStream`).
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    limits: Limits,
    unread_body: u64,
}

impl<S: Read + Write> Connection<S> {
    /// Wraps a connected stream, enforcing `limits` on every frame read.
    pub fn new(stream: S, limits: Limits) -> Self {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(CHUNK),
            limits,
            unread_body: 0,
        }
    }

    /// Reads the next head, skipping what the previous body left unread; `None` on a clean EOF.
    ///
    /// # Errors
    /// As [`crate::connection::Connection::read_head`].
    pub fn read_head(&mut self) -> Result<Option<Head>> {
        self.discard_body()?;
        loop {
            match Head::parse(&self.rbuf, &self.limits) {
                Ok((head, used)) => {
                    self.rbuf.advance(used);
                    self.unread_body = head.body_len;
                    return Ok(Some(head));
                }
                Err(FrameError::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            if self.fill()? == 0 {
                if self.rbuf.is_empty() {
                    return Ok(None);
                }
                return Err(eof());
            }
        }
    }

    /// The unread body of the last head, as a reader that ends at its last byte.
    pub fn body(&mut self) -> Body<'_, S> {
        Body { conn: self }
    }

    /// Reads the whole body of the last head into memory, refusing one over `max` bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over `max`; I/O errors, `UnexpectedEof` when the stream ends early.
    pub fn read_body(&mut self, max: u64) -> Result<Vec<u8>> {
        if self.unread_body > max {
            return Err(Error::TooLarge(format!(
                "body of {} bytes is over the in-memory limit of {max}",
                self.unread_body
            )));
        }
        let mut out = Vec::with_capacity(self.unread_body as usize);
        self.body().read_to_end(&mut out)?;
        Ok(out)
    }

    /// Skips the unread body of the last head.
    ///
    /// # Errors
    /// I/O errors, `UnexpectedEof` when the stream ends early.
    pub fn discard_body(&mut self) -> Result<()> {
        io::copy(&mut self.body(), &mut io::sink())?;
        Ok(())
    }

    /// Writes a whole frame with one `write_all` and flushes.
    ///
    /// # Errors
    /// [`Error::Protocol`] when `header` is not an object; I/O errors.
    pub fn write_frame(&mut self, header: &(impl Serialize + ?Sized), body: &[u8]) -> Result<()> {
        let mut buf = BytesMut::with_capacity(256 + body.len());
        encode_head(header, body.len() as u64, &mut buf)?;
        buf.extend_from_slice(body);
        self.stream.write_all(&buf)?;
        self.stream.flush()?;
        Ok(())
    }

    fn fill(&mut self) -> io::Result<usize> {
        let start = self.rbuf.len();
        self.rbuf.resize(start + CHUNK, 0);
        let n = self.stream.read(&mut self.rbuf[start..]);
        self.rbuf.truncate(start + *n.as_ref().unwrap_or(&0));
        n
    }
}

/// The body of the last head, as a [`Read`] that ends where the body ends.
#[derive(Debug)]
pub struct Body<'a, S> {
    conn: &'a mut Connection<S>,
}

impl<S: Read> Read for Body<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let conn = &mut *self.conn;
        let want = usize::try_from(conn.unread_body)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = if conn.rbuf.is_empty() {
            conn.stream.read(&mut buf[..want])?
        } else {
            let n = want.min(conn.rbuf.len());
            buf[..n].copy_from_slice(&conn.rbuf[..n]);
            conn.rbuf.advance(n);
            n
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a frame body",
            ));
        }
        conn.unread_body -= n as u64;
        Ok(n)
    }
}

fn eof() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection inside a frame header",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Cursor;

    /// A Read + Write over an in-memory input; writes are collected.
    struct Pipe {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte per read: the harshest split a peer can cause.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }
    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_then_reads_back_frames_byte_by_byte() {
        let mut writer = Connection::new(
            Pipe {
                input: Cursor::new(vec![]),
                output: vec![],
            },
            Limits::default(),
        );
        writer
            .write_frame(&json!({"op": "echo"}), b"hello")
            .unwrap();
        writer.write_frame(&json!({"op": "echo"}), b"").unwrap();
        let wire = writer.stream.output;
        let mut reader = Connection::new(
            Pipe {
                input: Cursor::new(wire),
                output: vec![],
            },
            Limits::default(),
        );
        let head = reader.read_head().unwrap().unwrap();
        assert_eq!(head.body_len, 5);
        assert_eq!(reader.read_body(5).unwrap(), b"hello");
        assert_eq!(reader.read_head().unwrap().unwrap().body_len, 0);
        assert!(reader.read_head().unwrap().is_none());
    }
}
