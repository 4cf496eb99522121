//! The member's side of the chat room: a socket connected to the room, and the datagrams it
//! receives, parsed.

use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::{Error, Result};

/// How often a client should `PING` to stay in the room (it is dropped after
/// [`crate::service::chat::ChatLimits`]' expiry of silence).
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// A datagram a chat client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The reply to the client's own last datagram: `Ok(text)` or `Err(text)`.
    Reply(Result<String, String>),
    /// A message: from whom, the text, and whether it was sent to this client only.
    Message {
        /// The sender's name (or `ip:port`).
        from: String,
        /// The text.
        text: String,
        /// Sent with `@name`, to this client only.
        direct: bool,
    },
    /// A room announcement (joined, left).
    Notice(String),
}

impl Incoming {
    /// Reads a datagram from the server.
    fn parse(datagram: &[u8]) -> Incoming {
        let text = String::from_utf8_lossy(datagram);
        let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let message = |direct| {
            let (from, text) = rest.split_once(' ').unwrap_or((rest, ""));
            Incoming::Message {
                from: from.into(),
                text: text.into(),
                direct,
            }
        };
        match word {
            "OK" => Incoming::Reply(Ok(rest.into())),
            "ERR" => Incoming::Reply(Err(rest.into())),
            "MSG" => message(false),
            "DM" => message(true),
            "SYS" => Incoming::Notice(rest.into()),
            _ => Incoming::Notice(text.into_owned()),
        }
    }
}

/// A chat member's side: a UDP socket connected to the room.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
}

impl Client {
    /// Opens a socket to the room at `server` (without joining it yet).
    ///
    /// # Errors
    /// Resolution and socket errors.
    pub async fn connect(server: &str) -> Result<Client> {
        Ok(Client {
            socket: crate::client::udp::connect(server).await?,
        })
    }

    /// Sends one raw protocol datagram (`JOIN x`, `MSG text`, `@name text`, `PING`, `LEAVE`).
    ///
    /// # Errors
    /// Socket errors.
    pub async fn send(&self, datagram: &str) -> Result<()> {
        self.socket.send(datagram.as_bytes()).await?;
        Ok(())
    }

    /// Sends a line a person typed: `@name text` goes to one member, anything else to all.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn say(&self, line: &str) -> Result<()> {
        if line.starts_with('@') {
            self.send(line).await
        } else {
            self.send(&format!("MSG {line}")).await
        }
    }

    /// Waits for the next datagram from the room.
    ///
    /// # Cancel safety
    /// Cancel-safe, as `recv`.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn recv(&self) -> Result<Incoming> {
        let mut buf = vec![0u8; crate::server::udp::MAX_DATAGRAM];
        let n = self.socket.recv(&mut buf).await?;
        Ok(Incoming::parse(&buf[..n]))
    }

    /// Waits up to `wait` for the reply to the last datagram, collecting the messages that
    /// arrive before it into `others`.
    ///
    /// # Errors
    /// [`Error::Remote`] for an `ERR` reply, `TimedOut` when none came, socket errors.
    pub async fn reply(&self, wait: Duration, others: &mut Vec<Incoming>) -> Result<String> {
        let deadline = Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.recv())
                .await
                .map_err(|_| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the chat server did not answer",
                    ))
                })??;
            match next {
                Incoming::Reply(Ok(text)) => return Ok(text),
                Incoming::Reply(Err(message)) => {
                    return Err(Error::Remote {
                        code: crate::protocol::ErrorCode::BadRequest,
                        message,
                    });
                }
                other => others.push(other),
            }
        }
    }
}
