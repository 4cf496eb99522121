//! What the kernel says about sockets, read from /proc (Linux): TCP socket states
//! (/proc/net/tcp), the TcpExt counters (/proc/net/netstat) and sysctls. Read only.
//!
//! The counters and the socket table belong to the network namespace, not to this process:
//! other programs move them too, so the lab reports them as context, never as proof.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

/// `st` of a TIME_WAIT socket in /proc/net/tcp.
pub const TIME_WAIT: u8 = 0x06;

/// The name of a TCP state number as /proc/net/tcp writes it (include/net/tcp_states.h).
pub fn state_name(state: u8) -> &'static str {
    match state {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// One line of /proc/net/tcp: a socket's two ends and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    /// The local address.
    pub local: SocketAddrV4,
    /// The remote address (0.0.0.0:0 for a listener).
    pub remote: SocketAddrV4,
    /// The state number (`st`); see [`state_name`].
    pub state: u8,
}

/// Every IPv4 TCP socket of this network namespace, TIME_WAIT ones included.
///
/// # Errors
/// /proc/net/tcp cannot be read (not Linux, or no /proc).
pub fn tcp_sockets() -> io::Result<Vec<TcpEntry>> {
    Ok(parse_tcp(&std::fs::read_to_string("/proc/net/tcp")?))
}

/// The state of the socket whose local port is `local` and remote port `remote`, if the
/// kernel lists one (all lab sockets are on 127.0.0.1, so ports name them).
///
/// # Errors
/// As [`tcp_sockets`].
pub fn tcp_state(local: u16, remote: u16) -> io::Result<Option<u8>> {
    Ok(tcp_sockets()?
        .into_iter()
        .find(|e| e.local.port() == local && e.remote.port() == remote)
        .map(|e| e.state))
}

/// How many sockets with local port `port` are in `state`.
///
/// # Errors
/// As [`tcp_sockets`].
pub fn count_local(port: u16, state: u8) -> io::Result<usize> {
    Ok(tcp_sockets()?
        .iter()
        .filter(|e| e.local.port() == port && e.state == state)
        .count())
}

fn parse_tcp(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = parse_addr(fields.next()?)?;
            let remote = parse_addr(fields.next()?)?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(TcpEntry {
                local,
                remote,
                state,
            })
        })
        .collect()
}

/// `0100007F:1F90`: the address as the kernel's u32 in native byte order, the port in hex.
fn parse_addr(field: &str) -> Option<SocketAddrV4> {
    let (ip, port) = field.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

/// The TcpExt counters of /proc/net/netstat (`ListenOverflows`, `DelayedACKs`, ...).
///
/// # Errors
/// /proc/net/netstat cannot be read.
pub fn tcp_ext() -> io::Result<HashMap<String, u64>> {
    Ok(parse_netstat(
        &std::fs::read_to_string("/proc/net/netstat")?,
        "TcpExt:",
    ))
}

/// The file pairs a line of names with a line of values under the same prefix.
fn parse_netstat(text: &str, prefix: &str) -> HashMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return HashMap::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

/// How much the counter `name` grew between two readings of [`tcp_ext`] (`None` where a
/// reading lacks it).
pub fn growth(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    name: &str,
) -> Option<u64> {
    Some(after.get(name)?.saturating_sub(*before.get(name)?))
}

/// A sysctl's value, such as `net/ipv4/tcp_syncookies`, trimmed; `None` where the kernel has
/// no such file (`tcp_tw_recycle` was removed in Linux 4.12).
pub fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000\n   \
             1: 0100007F:A4AB 0100007F:1F90 06 00000000:00000000 03:00000532\n";
        let entries = parse_tcp(text);
        assert_eq!(entries.len(), 2);
        if cfg!(target_endian = "little") {
            assert_eq!(entries[0].local, "127.0.0.1:8080".parse().unwrap());
        }
        assert_eq!(entries[0].state, 0x0A);
        assert_eq!(entries[1].remote.port(), 8080);
        assert_eq!(state_name(entries[1].state), "TIME_WAIT");
    }

    #[test]
    fn pairs_netstat_names_with_values() {
        let text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let counters = parse_netstat(text, "TcpExt:");
        assert_eq!(counters["ListenOverflows"], 17);
        assert_eq!(counters["SyncookiesSent"], 3);
        let mut later = counters.clone();
        later.insert("ListenOverflows".into(), 20);
        assert_eq!(growth(&counters, &later, "ListenOverflows"), Some(3));
        assert_eq!(growth(&counters, &later, "Missing"), None);
    }
}
