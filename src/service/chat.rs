//! The UDP chat room behind `--udp-chat`: the seeds' "QQ chat" (001 §五 应用一, 004), grown
//! from one operator typing replies into a room where many clients talk at once.
//!
//! Datagrams are UTF-8 text lines. A client sends:
//!
//! | datagram        | meaning                                                         |
//! |-----------------|-----------------------------------------------------------------|
//! | `JOIN name`     | enter the room (or rename); the others see `SYS name joined`   |
//! | `MSG text`      | to every other member, as `MSG name text`                      |
//! | `@name text`    | to that member only, as `DM from text`                         |
//! | `WHO`           | list the members                                               |
//! | `PING`          | keep-alive: members silent for the expiry time (60 s) are dropped |
//! | `LEAVE`         | leave; the others see `SYS name left`                          |
//! | anything else   | a message from the sender (its name, or `ip:port` if not joined) |
//!
//! **Every datagram gets exactly one reply**, `OK text` or `ERR text`, of at most 1024 bytes,
//! so a seed client's blocking `recvfrom(1024)` never hangs or truncates. Messages (`MSG`,
//! `DM`, `SYS`) go only to members, never to seed clients, whose next `recvfrom` would take
//! them for the reply. Text over the limit (1024 bytes) is refused, not cut.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::info;

use crate::Result;
use crate::server::UdpService;

/// Largest reply datagram: the seed client reads one `recvfrom(1024)`.
const MAX_REPLY: usize = 1024;

/// Limits of the room; each is a `sockit serve` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Members at once (`--chat-max-members`); a `JOIN` beyond gets an error.
    pub max_members: usize,
    /// A member silent this long is dropped (`--chat-expiry`); clients ping more often.
    pub expiry: Duration,
    /// Largest datagram accepted, in bytes (`--chat-max-message`).
    pub max_message: usize,
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
            max_members: 256,
            expiry: Duration::from_secs(60),
            max_message: 1024,
        }
    }
}

/// The chat room service.
#[derive(Debug, Default)]
pub struct Chat {
    limits: ChatLimits,
    room: Mutex<Room>,
}

impl Chat {
    /// An empty room with `limits`.
    pub fn new(limits: ChatLimits) -> Chat {
        Chat {
            limits,
            room: Mutex::default(),
        }
    }
}

impl UdpService for Chat {
    async fn handle(&self, data: &[u8], peer: SocketAddr, socket: &UdpSocket) -> Result<()> {
        let out = {
            // A panic elsewhere cannot leave the room half-updated: each step is one insert
            // or remove. So a poisoned lock is still a usable room.
            let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
            room.handle(data, peer, Instant::now(), &self.limits)
        };
        for (to, text) in out {
            // One unreachable member must not cost the others their message.
            if let Err(e) = socket.send_to(text.as_bytes(), to).await {
                tracing::debug!(%to, error = %e, "chat send failed");
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    seen: Instant,
}

/// The members, by address (ordered, so fan-out and `WHO` are deterministic). Pure state:
/// [`Room::handle`] returns the datagrams to send.
#[derive(Debug, Default)]
struct Room {
    members: BTreeMap<SocketAddr, Member>,
}

type Outgoing = Vec<(SocketAddr, String)>;

impl Room {
    /// Answers one datagram: broadcasts first, the sender's one reply last.
    fn handle(
        &mut self,
        data: &[u8],
        peer: SocketAddr,
        now: Instant,
        limits: &ChatLimits,
    ) -> Outgoing {
        let mut out = self.expire(now, limits.expiry);
        let reply = if data.len() > limits.max_message {
            Err(format!(
                "message of {} bytes is over the {}-byte limit; nothing was sent",
                data.len(),
                limits.max_message
            ))
        } else {
            match std::str::from_utf8(data) {
                Ok(text) => self.command(
                    text.trim_end_matches(['\r', '\n']),
                    peer,
                    now,
                    limits,
                    &mut out,
                ),
                Err(_) => Err("the datagram is not UTF-8 text".into()),
            }
        };
        let reply = match reply {
            Ok(text) => format!("OK {text}"),
            Err(text) => format!("ERR {text}"),
        };
        out.push((peer, fit(reply)));
        out
    }

    fn command(
        &mut self,
        text: &str,
        peer: SocketAddr,
        now: Instant,
        limits: &ChatLimits,
        out: &mut Outgoing,
    ) -> Result<String, String> {
        if let Some(member) = self.members.get_mut(&peer) {
            member.seen = now;
        }
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "JOIN" => self.join(rest.trim(), peer, now, limits, out),
            "LEAVE" => match self.members.remove(&peer) {
                Some(m) => {
                    info!(name = %m.name, members = self.members.len(), "chat: left");
                    self.announce(&format!("SYS {} left", m.name), out);
                    Ok("bye".into())
                }
                None => Err("you are not in the room".into()),
            },
            "PING" => Ok("pong".into()),
            "WHO" => {
                let mut names: Vec<&str> = self.members.values().map(|m| m.name.as_str()).collect();
                names.sort_unstable();
                Ok(format!("{} members: {}", names.len(), names.join(", ")))
            }
            "MSG" => self.broadcast(peer, rest, out),
            _ if word.starts_with('@') && word.len() > 1 => {
                self.direct(peer, &word[1..], rest, out)
            }
            _ => self.broadcast(peer, text, out),
        }
    }

    fn join(
        &mut self,
        name: &str,
        peer: SocketAddr,
        now: Instant,
        limits: &ChatLimits,
        out: &mut Outgoing,
    ) -> Result<String, String> {
        check_name(name)?;
        if self
            .members
            .iter()
            .any(|(a, m)| m.name == name && *a != peer)
        {
            return Err(format!("the name {name} is taken"));
        }
        let old = self.members.get(&peer).map(|m| m.name.clone());
        if old.is_none() && self.members.len() >= limits.max_members {
            return Err(format!("the room is full ({} members)", limits.max_members));
        }
        self.members.insert(
            peer,
            Member {
                name: name.to_string(),
                seen: now,
            },
        );
        let notice = match old {
            Some(old) if old == name => return Ok(format!("you are {name}")),
            Some(old) => format!("SYS {old} is now {name}"),
            None => format!("SYS {name} joined"),
        };
        info!(%name, %peer, members = self.members.len(), "chat: joined");
        self.announce_except(peer, &notice, out);
        Ok(format!("joined as {name}, {} members", self.members.len()))
    }

    fn broadcast(
        &mut self,
        peer: SocketAddr,
        text: &str,
        out: &mut Outgoing,
    ) -> Result<String, String> {
        if text.trim().is_empty() {
            return Err("empty message".into());
        }
        let from = self.sender_name(peer);
        let before = out.len();
        self.announce_except(peer, &format!("MSG {from} {text}"), out);
        info!(%from, delivered = out.len() - before, "chat: message");
        Ok(format!("delivered to {} members", out.len() - before))
    }

    fn direct(
        &mut self,
        peer: SocketAddr,
        to: &str,
        text: &str,
        out: &mut Outgoing,
    ) -> Result<String, String> {
        if text.trim().is_empty() {
            return Err("empty message".into());
        }
        let from = self.sender_name(peer);
        let Some((addr, _)) = self.members.iter().find(|(_, m)| m.name == to) else {
            return Err(format!("no member named {to}"));
        };
        out.push((*addr, format!("DM {from} {text}")));
        Ok(format!("delivered to {to}"))
    }

    /// Drops members silent for `expiry`, telling the rest.
    fn expire(&mut self, now: Instant, expiry: Duration) -> Outgoing {
        let gone: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.seen) >= expiry)
            .map(|(a, _)| *a)
            .collect();
        let mut out = Vec::new();
        for addr in gone {
            if let Some(m) = self.members.remove(&addr) {
                info!(name = %m.name, members = self.members.len(), "chat: expired");
                self.announce(
                    &format!("SYS {} left (silent for {}s)", m.name, expiry.as_secs()),
                    &mut out,
                );
            }
        }
        out
    }

    fn sender_name(&self, peer: SocketAddr) -> String {
        self.members
            .get(&peer)
            .map_or_else(|| peer.to_string(), |m| m.name.clone())
    }

    fn announce(&self, text: &str, out: &mut Outgoing) {
        out.extend(self.members.keys().map(|a| (*a, text.to_string())));
    }

    fn announce_except(&self, peer: SocketAddr, text: &str, out: &mut Outgoing) {
        out.extend(
            self.members
                .keys()
                .filter(|a| **a != peer)
                .map(|a| (*a, text.to_string())),
        );
    }
}

/// A member name: 1 to 32 characters, no spaces, control characters, `@` or `:` (raw senders
/// are called `ip:port`, which no member may pretend to be).
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= 32
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable name (1-32 characters; no spaces, `@` or `:`)"
        ))
    }
}

/// Cuts `text` to at most [`MAX_REPLY`] bytes, at a character boundary.
fn fit(mut text: String) -> String {
    if text.len() > MAX_REPLY {
        let mut end = MAX_REPLY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests;
