//! The calling side of `exec` (see `service::exec` for the frames): send the command, write
//! its stdout and stderr frames to two sinks as they come, forward input, return the exit.
//!
//! With input, reading the server's frames never waits behind writing input frames (they
//! run side by side on the two halves of the connection): otherwise a command that writes
//! while it reads could fill both directions and stall forever.

use bytes::BytesMut;
use encoding_rs::{Decoder, Encoding};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use super::{Client, typed};
use crate::connection::{CHUNK, Connection};
use crate::net::Stream;
use crate::protocol::ops::{self, Exit, OutputStream, Started};
use crate::protocol::{Reply, Request};
use crate::{Error, Result};

/// Where a command's output goes, and how it is shown.
#[derive(Debug)]
pub struct Sinks<'a, O, E> {
    /// Receives the command's stdout.
    pub stdout: &'a mut O,
    /// Receives the command's stderr.
    pub stderr: &'a mut E,
    /// Decode the output from this encoding into UTF-8 (`None`: pass the bytes through).
    pub encoding: Option<&'static Encoding>,
}

impl Client {
    /// Runs `command` on the server (in the user's home; needs a login and a server with
    /// `--allow-exec`) with no input, writing its output to `sinks` as it arrives.
    ///
    /// # Errors
    /// [`Error::Remote`] when the server refuses (`exec_disabled`, `auth_required`, `busy`)
    /// or stops the command (`timeout`, `too_large`); I/O errors of the connection or sinks.
    pub async fn exec<O, E>(&mut self, command: &str, sinks: Sinks<'_, O, E>) -> Result<Exit>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        self.start_exec(command, false).await?;
        let mut output = Output::new(sinks);
        let exit = output.copy(&mut self.conn).await;
        output.finish().await?;
        exit
    }

    /// As [`Client::exec`], with `input` sent to the command's stdin (its end is the
    /// command's end of input).
    ///
    /// # Errors
    /// As [`Client::exec`], and read errors of `input`.
    pub async fn exec_with_input<I, O, E>(
        &mut self,
        command: &str,
        mut input: I,
        sinks: Sinks<'_, O, E>,
    ) -> Result<Exit>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        self.start_exec(command, true).await?;
        let limits = *self.conn.limits();
        // The connection is split for the run and put back together after it; meanwhile the
        // client holds an unconnected stand-in.
        let stand_in = Connection::new(Stream::Unix(tokio::net::UnixStream::pair()?.0), limits);
        let (stream, unread) = std::mem::replace(&mut self.conn, stand_in).into_parts();
        let (read, write) = tokio::io::split(stream);
        let mut reader = Connection::new(Half::Read(read, unread), limits);
        let mut writer = Connection::new(Half::Write(write), limits);
        let stop = CancellationToken::new();
        let mut output = Output::new(sinks);
        let (exit, sent) = {
            let reading = async {
                let exit = output.copy(&mut reader).await;
                stop.cancel();
                exit
            };
            let writing = send_input(&mut input, &mut writer, &stop);
            tokio::pin!(reading, writing);
            tokio::select! {
                exit = &mut reading => match exit {
                    // The connection is lost, or our own output failed (a closed stdout): the
                    // input side may wait on a server that reads nothing more, so give it up.
                    Err(e) if !matches!(e, Error::Remote { .. }) => (Err(e), Ok(())),
                    exit => (exit, writing.await),
                },
                sent = &mut writing => (reading.await, sent),
            }
        };
        let (Half::Read(read, rest), _) = reader.into_parts() else {
            return Err(Error::Internal("exec: the read half went missing".into()));
        };
        let (Half::Write(write), _) = writer.into_parts() else {
            return Err(Error::Internal("exec: the write half went missing".into()));
        };
        self.conn = Connection::new(read.unsplit(write), limits);
        output.finish().await?;
        let exit = exit?;
        sent?;
        if !rest.is_empty() {
            return Err(Error::BadReply(
                "the server sent more after the exec's last frame".into(),
            ));
        }
        Ok(exit)
    }

    /// Sends the `exec` request and reads its go-ahead.
    async fn start_exec(&mut self, command: &str, stdin: bool) -> Result<()> {
        let request = Request::Exec {
            command: command.to_owned(),
            stdin,
        };
        let (fields, _) = self.call(&request, b"").await?;
        match typed::<Started>(fields) {
            Ok(Started { started: true }) => Ok(()),
            _ => Err(Error::BadReply("expected the exec's go-ahead".into())),
        }
    }
}

/// Sends `input` as stdin frames until it ends or `stop` (the command ended), then the
/// `eof` frame, which the server waits for in any case.
async fn send_input<I, S>(
    input: &mut I,
    conn: &mut Connection<S>,
    stop: &CancellationToken,
) -> Result<()>
where
    I: AsyncRead + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut failed = None;
    loop {
        // Only the local read races the stop: a frame, once begun, is always finished.
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            n = input.read(&mut buf) => n,
        };
        match n {
            Ok(0) => break,
            Ok(n) => {
                conn.write_frame(&Request::Stdin { eof: false }, &buf[..n])
                    .await?
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    conn.write_frame(&Request::Stdin { eof: true }, b"").await?;
    match failed {
        Some(e) => Err(Error::Io(e)),
        None => Ok(()),
    }
}

/// A sink of [`Sinks`] failed (say a closed stdout, `sockit exec … | head`); it comes as
/// [`Error::Io`] of the sink's error kind, with this inside (`io::Error::get_ref`).
#[derive(Debug, thiserror::Error)]
#[error("writing the command's {stream}: {source}")]
pub struct SinkError {
    /// `"stdout"` or `"stderr"`.
    stream: &'static str,
    /// What the sink said.
    source: std::io::Error,
}

impl SinkError {
    fn wrap(source: std::io::Error, stderr: bool) -> Error {
        let stream = if stderr { "stderr" } else { "stdout" };
        let kind = source.kind();
        Error::Io(std::io::Error::new(kind, SinkError { stream, source }))
    }

    /// Whether `e` is a local sink that was closed (a broken pipe), not a network failure.
    pub fn is_closed_pipe(e: &Error) -> bool {
        matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe
            && io.get_ref().is_some_and(|inner| inner.is::<SinkError>()))
    }
}

/// The output side of a run: frames in, bytes (or decoded text) out.
struct Output<'a, O, E> {
    sinks: Sinks<'a, O, E>,
    decoders: Option<(Decoder, Decoder)>,
}

impl<'a, O: AsyncWrite + Unpin, E: AsyncWrite + Unpin> Output<'a, O, E> {
    fn new(sinks: Sinks<'a, O, E>) -> Self {
        let decoders = sinks
            .encoding
            .filter(|e| *e != encoding_rs::UTF_8)
            .map(|e| (e.new_decoder(), e.new_decoder()));
        Output { sinks, decoders }
    }

    /// Copies output frames to the sinks until the last frame, and returns how the command
    /// ended.
    async fn copy<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
    ) -> Result<Exit> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let head = conn.read_head().await?.ok_or_else(closed)?;
            let fields = Reply::from_head(&head)?;
            let stderr = if head.body_len > 0 || fields.contains_key("stream") {
                let output: ops::Output = typed(fields)?;
                output.stream == OutputStream::Stderr
            } else {
                return typed::<Exit>(fields);
            };
            let mut body = conn.body();
            loop {
                let n = body.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                self.write(stderr, &buf[..n], false).await?;
            }
            self.flush(stderr).await?;
        }
    }

    /// Writes `bytes` of one stream, decoded when asked.
    async fn write(&mut self, stderr: bool, bytes: &[u8], last: bool) -> Result<()> {
        let text;
        let out = match &mut self.decoders {
            Some((out, err)) => {
                text = decode(if stderr { err } else { out }, bytes, last);
                text.as_bytes()
            }
            None => bytes,
        };
        let written = if stderr {
            self.sinks.stderr.write_all(out).await
        } else {
            self.sinks.stdout.write_all(out).await
        };
        written.map_err(|e| SinkError::wrap(e, stderr))
    }

    async fn flush(&mut self, stderr: bool) -> Result<()> {
        let flushed = if stderr {
            self.sinks.stderr.flush().await
        } else {
            self.sinks.stdout.flush().await
        };
        flushed.map_err(|e| SinkError::wrap(e, stderr))
    }

    /// Ends the decoders (a sequence cut at the end shows as U+FFFD) and flushes.
    async fn finish(&mut self) -> Result<()> {
        if self.decoders.is_some() {
            self.write(false, b"", true).await?;
            self.write(true, b"", true).await?;
        }
        self.flush(false).await?;
        self.flush(true).await
    }
}

/// Decodes the next piece of a stream; a character split between pieces waits in `decoder`.
fn decode(decoder: &mut Decoder, bytes: &[u8], last: bool) -> String {
    let room = decoder
        .max_utf8_buffer_length(bytes.len())
        .unwrap_or(bytes.len().saturating_mul(3).saturating_add(16));
    let mut text = String::with_capacity(room);
    // With that much room the decoder takes every byte in one call.
    let _ = decoder.decode_to_string(bytes, &mut text, last);
    text
}

/// One half of a split connection, usable where a whole stream is expected (the other
/// direction fails). The read half first yields bytes the client had already buffered.
#[derive(Debug)]
enum Half {
    Read(ReadHalf<Stream>, BytesMut),
    Write(WriteHalf<Stream>),
}

impl AsyncRead for Half {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Half::Read(_, unread) if !unread.is_empty() => {
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread.split_to(n));
                std::task::Poll::Ready(Ok(()))
            }
            Half::Read(read, _) => std::pin::Pin::new(read).poll_read(cx, buf),
            Half::Write(_) => std::task::Poll::Ready(Err(wrong_half())),
        }
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Half::Write(write) => std::pin::Pin::new(write).poll_write(cx, buf),
            Half::Read(..) => std::task::Poll::Ready(Err(wrong_half())),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Half::Write(write) => std::pin::Pin::new(write).poll_flush(cx),
            Half::Read(..) => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Half::Write(write) => std::pin::Pin::new(write).poll_shutdown(cx),
            Half::Read(..) => std::task::Poll::Ready(Ok(())),
        }
    }
}

fn wrong_half() -> std::io::Error {
    std::io::Error::other("exec: this half of the connection only goes the other way")
}

fn closed() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection during exec",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_split_between_chunks_decodes_whole() {
        let (bytes, _, _) = encoding_rs::GBK.encode("你好，世界");
        let mut decoder = encoding_rs::GBK.new_decoder();
        let mut text = String::new();
        for piece in bytes.chunks(3) {
            text += &decode(&mut decoder, piece, false);
        }
        text += &decode(&mut decoder, b"", true);
        assert_eq!(text, "你好，世界");
    }
}
