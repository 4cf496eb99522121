//! The seeds' "NTP" time server over UDP (001 §五 应用二): a datagram holds a strftime
//! format, the reply datagram holds the server's local time in it; an empty datagram means
//! `%Y-%m-%d %X`.
//!
//! Every datagram gets one reply. A format that is not UTF-8, too long, or not valid
//! strftime (`%Q`, a lone `%`) is answered with `error: <why>`, checked with chrono's
//! `StrftimeItems` before formatting, because chrono panics at display time otherwise.

use std::fmt::Write as _;
use std::net::SocketAddr;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local};
use tokio::net::UdpSocket;

use crate::Result;
use crate::server::UdpService;

/// The format of an empty request, as in the seed.
const DEFAULT_FORMAT: &str = "%Y-%m-%d %X";

/// Largest reply: the seed client reads one `recv(1024)`.
const MAX_REPLY: usize = 1024;

/// What every error reply starts with.
pub(crate) const ERROR_PREFIX: &str = "error: ";

/// The UDP time service (`--udp-time`).
#[derive(Debug, Clone)]
pub struct Time {
    /// Longest accepted format, in bytes (`--time-max-format`).
    pub(crate) max_format: usize,
}

impl Default for Time {
    fn default() -> Self {
        Time { max_format: 256 }
    }
}

impl UdpService for Time {
    async fn handle(&self, data: &[u8], peer: SocketAddr, socket: &UdpSocket) -> Result<()> {
        let reply = match render(data, Local::now(), self.max_format) {
            Ok(text) => text,
            Err(why) => format!("{ERROR_PREFIX}{why}"),
        };
        socket.send_to(reply.as_bytes(), peer).await?;
        Ok(())
    }
}

/// Formats `now` with the strftime format in `request` (empty: [`DEFAULT_FORMAT`]).
///
/// # Errors
/// Why the request cannot be answered, for the `error: ` reply.
fn render(request: &[u8], now: DateTime<Local>, max_format: usize) -> Result<String, String> {
    if request.len() > max_format {
        return Err(format!(
            "the format is {} bytes; the limit is {max_format}",
            request.len()
        ));
    }
    let format = std::str::from_utf8(request).map_err(|_| "the format is not UTF-8".to_string())?;
    let format = if format.is_empty() {
        DEFAULT_FORMAT
    } else {
        format
    };
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{format}` is not a valid strftime format"));
    }
    let mut out = String::new();
    write!(out, "{}", now.format_with_items(items.iter()))
        .map_err(|_| format!("`{format}` cannot be applied to this time"))?;
    if out.len() > MAX_REPLY {
        return Err(format!(
            "the reply would be {} bytes; the limit is {MAX_REPLY}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2024, 2, 29, 13, 5, 9)
            .single()
            .unwrap()
    }

    #[test]
    fn formats_like_python_strftime() {
        assert_eq!(render(b"", now(), 256).unwrap(), "2024-02-29 13:05:09");
        assert_eq!(render(b"%Y %m %d", now(), 256).unwrap(), "2024 02 29");
        assert_eq!(
            render("时间 %H:%M".as_bytes(), now(), 256).unwrap(),
            "时间 13:05"
        );
    }

    #[test]
    fn refuses_what_would_panic_or_overflow() {
        for bad in [&b"%Q"[..], b"%", b"abc %", b"\xff\xfe", &[b'x'; 60_000]] {
            assert!(
                render(bad, now(), 256).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Short format, long reply: 128 x %c is about 3 KB, over the seed's recv(1024).
        assert!(render("%c".repeat(128).as_bytes(), now(), 256).is_err());
    }
}
