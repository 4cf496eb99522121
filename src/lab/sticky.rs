//! `sticky` (粘包): TCP is a byte stream without message boundaries. Small messages sent one
//! `send()` each come out of one `recv()` together; one large `send()` comes out in pieces. The
//! same messages over sockit's framing come back whole, one frame each.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;

use serde::Serialize;

use super::{Measured, Options, Outcome, join, loopback_pair, wait_queued};
use crate::blocking::Connection;
use crate::protocol::Limits;
use crate::{Error, Result};

/// Small messages, each sent with its own `send()`.
const SMALL: usize = 10;
/// The one large message (4 MiB).
const LARGE: usize = 4 << 20;
/// The seeds' receive buffer: `conn.recv(1024)`.
const SEED_BUF: usize = 1024;

/// What `sticky` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Small messages sent back to back, one `send()` each.
    pub messages: usize,
    /// Their bytes in total.
    pub message_bytes: usize,
    /// The small messages read with `recv(1024)` once all of them had arrived (checked with
    /// FIONREAD): the seeds' "receiver did not read in time".
    pub waited: Reads,
    /// The same, read by a reader already waiting in `recv(1024)` while they were sent:
    /// whether they merge here depends on timing.
    pub eager: Reads,
    /// One large `send()` read back.
    pub large: Pieces,
    /// The same small messages and large message over sockit's framing.
    pub framed: Framed,
}

/// How the small messages came out of `recv()`.
#[derive(Debug, Clone, Serialize)]
pub struct Reads {
    /// `recv()` calls it took to read every byte.
    pub recv_calls: usize,
    /// Calls that returned bytes of more than one message.
    pub merged_calls: usize,
    /// The most messages one call returned bytes of.
    pub most_in_one: usize,
}

/// How one large `send()` came out of `recv()`.
#[derive(Debug, Clone, Serialize)]
pub struct Pieces {
    /// Bytes sent.
    pub bytes: usize,
    /// `send()` calls the sender made (the kernel took them all in the first).
    pub send_calls: usize,
    /// The receive buffer, as large as the whole message.
    pub buffer: usize,
    /// `recv()` calls it took.
    pub pieces: usize,
    /// The smallest and largest piece, in bytes.
    pub smallest: usize,
    /// See `smallest`.
    pub largest: usize,
}

/// The same exchange over sockit's framing.
#[derive(Debug, Clone, Serialize)]
pub struct Framed {
    /// Small framed messages sent, one `write_frame` each, read after all had arrived.
    pub messages: usize,
    /// How many came back whole and equal to what was sent.
    pub intact: usize,
    /// `recv()` calls the framed reader made for them.
    pub recv_calls: usize,
    /// Whether the large message came back as one whole, equal frame.
    pub large_intact: bool,
    /// `recv()` calls the framed reader made for the large message.
    pub large_recv_calls: usize,
}

/// Runs `sticky`.
///
/// # Errors
/// A socket call failed, or bytes did not arrive within the lab's bound.
pub fn run(_options: &Options) -> Result<Report> {
    let messages: Vec<Vec<u8>> = (1..=SMALL)
        .map(|i| format!("message {i};").into_bytes())
        .collect();
    let lengths: Vec<usize> = messages.iter().map(Vec::len).collect();
    Ok(Report {
        messages: messages.len(),
        message_bytes: lengths.iter().sum(),
        waited: count_messages(&lengths, &small_waited(&messages)?),
        eager: count_messages(&lengths, &small_eager(&messages)?),
        large: large()?,
        framed: framed(&messages)?,
    })
}

/// Sends every message with its own `write()`, waits until all bytes are queued at the
/// receiver, then reads them as the seed does; returns the size of each read.
fn small_waited(messages: &[Vec<u8>]) -> io::Result<Vec<usize>> {
    let (mut client, server) = loopback_pair()?;
    for message in messages {
        client.write_all(message)?;
    }
    let total = messages.iter().map(Vec::len).sum();
    wait_queued(&server, total)?;
    read_sizes(&server, total, SEED_BUF)
}

/// Sends the messages while a reader is already blocked in `recv()`.
fn small_eager(messages: &[Vec<u8>]) -> io::Result<Vec<usize>> {
    let (mut client, server) = loopback_pair()?;
    let total = messages.iter().map(Vec::len).sum();
    thread::scope(|s| {
        let reader = s.spawn(|| read_sizes(&server, total, SEED_BUF));
        for message in messages {
            client.write_all(message)?;
        }
        join(reader)
    })
}

/// One `write_all` of [`LARGE`] bytes against a reader with a buffer of the same size.
fn large() -> io::Result<Pieces> {
    let (client, server) = loopback_pair()?;
    let data = pattern(LARGE);
    let (send_calls, sizes) = thread::scope(|s| {
        let sender = s.spawn(|| write_counting(&client, &data));
        let sizes = read_sizes(&server, LARGE, LARGE);
        Ok::<_, io::Error>((join(sender)?, sizes?))
    })?;
    Ok(Pieces {
        bytes: LARGE,
        send_calls,
        buffer: LARGE,
        pieces: sizes.len(),
        smallest: sizes.iter().copied().min().unwrap_or(0),
        largest: sizes.iter().copied().max().unwrap_or(0),
    })
}

/// The small messages, then the large one, as frames through [`Connection`].
fn framed(messages: &[Vec<u8>]) -> Result<Framed> {
    let (client, server) = loopback_pair()?;
    let (sent, calls) = (Cell::new(0), Cell::new(0));
    let mut writer = Connection::new(Counted::new(&client, &sent), Limits::default());
    for (seq, message) in messages.iter().enumerate() {
        writer.write_frame(&Note { seq }, message)?;
    }
    wait_queued(&server, sent.get())?;
    let mut reader = Connection::new(Counted::new(&server, &calls), Limits::default());
    let mut intact = 0;
    for (seq, message) in messages.iter().enumerate() {
        if read_note(&mut reader, LARGE)? == (seq, message.clone()) {
            intact += 1;
        }
    }
    let recv_calls = calls.replace(0);

    let data = pattern(LARGE);
    let large = thread::scope(|s| {
        let sender = s.spawn(|| {
            Connection::new(&client, Limits::default()).write_frame(&Note { seq: SMALL }, &data)
        });
        let large = read_note(&mut reader, LARGE);
        join(sender)?;
        large
    })?;
    Ok(Framed {
        messages: messages.len(),
        intact,
        recv_calls,
        large_intact: large == (SMALL, data),
        large_recv_calls: calls.get(),
    })
}

/// The header of a lab frame: which message this is.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Note {
    seq: usize,
}

/// Reads one frame: its `seq` and its body.
fn read_note<S: Read + Write>(conn: &mut Connection<S>, max: usize) -> Result<(usize, Vec<u8>)> {
    let head = conn
        .read_head()?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no frame"))?;
    let note: Note =
        serde_json::from_value(head.header.into()).map_err(|e| Error::BadReply(e.to_string()))?;
    let body = conn.read_body(max as u64)?;
    Ok((note.seq, body))
}

/// A stream that counts its `read()` calls, or the bytes written through it.
struct Counted<'a> {
    stream: &'a TcpStream,
    count: &'a Cell<usize>,
}

impl<'a> Counted<'a> {
    fn new(stream: &'a TcpStream, count: &'a Cell<usize>) -> Self {
        Counted { stream, count }
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.count.set(self.count.get() + 1);
        self.stream.read(buf)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.count.set(self.count.get() + n);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `total` bytes with a `buffer`-byte buffer; returns what each `recv()` returned.
fn read_sizes(mut stream: &TcpStream, total: usize, buffer: usize) -> io::Result<Vec<usize>> {
    let mut buf = vec![0; buffer];
    let (mut sizes, mut got) = (Vec::new(), 0);
    while got < total {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        sizes.push(n);
        got += n;
    }
    Ok(sizes)
}

/// Writes all of `data`; returns how many `write()` calls it took.
fn write_counting(mut stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
    let (mut calls, mut sent) = (0, 0);
    while sent < data.len() {
        sent += stream.write(&data[sent..])?;
        calls += 1;
    }
    Ok(calls)
}

/// Bytes that differ from position to position, so a misplaced piece would not compare equal.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Which messages each read returned bytes of, given the messages' lengths in stream order.
fn count_messages(lengths: &[usize], reads: &[usize]) -> Reads {
    let ends: Vec<usize> = lengths
        .iter()
        .scan(0, |end, len| {
            *end += len;
            Some(*end)
        })
        .collect();
    let mut start = 0;
    let per_read: Vec<usize> = reads
        .iter()
        .map(|n| {
            let end = start + n;
            // Messages overlapping [start, end): those ending after start and starting before end.
            let touched = ends
                .iter()
                .zip(lengths)
                .filter(|&(&m_end, &len)| m_end > start && m_end - len < end)
                .count();
            start = end;
            touched
        })
        .collect();
    Reads {
        recv_calls: reads.len(),
        merged_calls: per_read.iter().filter(|&&n| n > 1).count(),
        most_in_one: per_read.iter().copied().max().unwrap_or(0),
    }
}

pub(crate) fn outcome(options: &Options) -> Result<Outcome> {
    let r = run(options)?;
    let f = &r.framed;
    let shown = r.waited.merged_calls > 0 && r.large.pieces > 1;
    let mut happened = vec![
        format!(
            "read after all had arrived: {} messages came out of {} recv(1024) call(s), up to {} in one",
            r.messages, r.waited.recv_calls, r.waited.most_in_one
        ),
        format!(
            "read while they were sent: {} recv() call(s), {} of them held more than one message \
             (timing decides this one)",
            r.eager.recv_calls, r.eager.merged_calls
        ),
        format!(
            "one send() of {} MiB (the sender's write took it in {} call(s)) came out of {} \
             recv() calls of {}..{} bytes, though the buffer could hold it all",
            r.large.bytes >> 20,
            r.large.send_calls,
            r.large.pieces,
            r.large.smallest,
            r.large.largest
        ),
        format!(
            "over sockit's framing: {}/{} small messages intact ({} recv() call(s) underneath), \
             the {} MiB message {} ({} recv() calls underneath)",
            f.intact,
            f.messages,
            f.recv_calls,
            r.large.bytes >> 20,
            if f.large_intact { "intact" } else { "DAMAGED" },
            f.large_recv_calls
        ),
    ];
    if !shown {
        happened.push(
            "no merge or split seen: this kernel delivered each send() to its own recv() \
             this time; the stream still promised no boundaries"
                .into(),
        );
    }
    Ok(Outcome {
        name: "sticky",
        shown,
        did: format!(
            "sent {} small messages with one send() each, then one {} MiB send(), over raw TCP \
             on loopback; then the same over sockit's 4-byte length + JSON header framing",
            r.messages,
            r.large.bytes >> 20
        ),
        happened,
        seed: "TCP is a stream with no message boundaries (面向流, 无消息保护边界): the receiver \
               cannot tell where a message ends unless a header says how long it is (自定制报头)",
        measured: Measured::Sticky(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_messages_each_read_touched() {
        // Messages of 3, 3 and 4 bytes: 0..3, 3..6, 6..10.
        let lengths = [3, 3, 4];
        let one_each = count_messages(&lengths, &[3, 3, 4]);
        assert_eq!((one_each.merged_calls, one_each.most_in_one), (0, 1));
        let all_at_once = count_messages(&lengths, &[10]);
        assert_eq!((all_at_once.merged_calls, all_at_once.most_in_one), (1, 3));
        // 0..2 | 2..5 | 5..10: the second and third reads straddle a boundary.
        let split = count_messages(&lengths, &[2, 3, 5]);
        assert_eq!((split.recv_calls, split.merged_calls), (3, 2));
    }
}
