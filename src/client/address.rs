//! Remote addresses a person types: `sockit://[USER@]HOST[:PORT]/PATH` names the server, the
//! user and a path in their home at once (the contract's form, as `scp`'s `user@host:path`).
//!
//! Pure parsing and printing: no lookups, no defaults but the port. Which of an address's
//! parts beat `-s`/`-u` is the command line's business.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::net::Endpoint;

/// The scheme, as it starts every address (matched without regard to case).
pub const SCHEME: &str = "sockit://";

/// The port of an address that names none (the server's default listen port).
pub const DEFAULT_PORT: u16 = 9900;

/// A parsed `sockit://[USER@]HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAddress {
    /// The user, percent-decoded; `None` when the address names none.
    pub user: Option<String>,
    /// The host: a name, an IPv4 address, or an IPv6 address (without its brackets).
    pub host: String,
    /// The port ([`DEFAULT_PORT`] when the address names none).
    pub port: u16,
    /// The path in the user's home, percent-decoded; it starts with `/` (`/` alone: the home).
    pub path: String,
}

impl RemoteAddress {
    /// Whether `text` is written as an address (starts with `sockit://`), as opposed to a
    /// plain path in the home.
    pub fn is_address(text: &str) -> bool {
        text.get(..SCHEME.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
    }

    /// The server as the client connects to it: `HOST:PORT`, or `[V6]:PORT`.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Tcp(host_port(&self.host, self.port))
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl FromStr for RemoteAddress {
    type Err = String;

    /// Parses an address. Error messages never repeat the user part, which may hold a
    /// password that is being refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !RemoteAddress::is_address(text) {
            return Err("an address starts with sockit://".into());
        }
        let rest = &text[SCHEME.len()..];
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (user, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let user = match user {
            // Checked first: nothing below may echo a password.
            Some(u) if u.contains(':') => {
                return Err(
                    "sockit://USER:PASSWORD@… is refused: a password on a command \
                            line is seen by other users (ps) and kept in shell history; give \
                            it in SOCKIT_PASSWORD or at the prompt, or log in with a key (-i)"
                        .into(),
                );
            }
            Some("") => return Err(format!("{SCHEME}@{host}: the user before @ is empty")),
            Some(u) => Some(decode(u, "the user")?),
            None => None,
        };
        if let Some(c) = path.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(format!(
                "an address takes no `{c}` part; in a name, write `?` as %3F and `#` as %23"
            ));
        }
        let (host, port) = split_host(host)?;
        let path = decode(path, "the path")?;
        Ok(RemoteAddress {
            user,
            host,
            port,
            path,
        })
    }
}

/// `HOST[:PORT]` or `[V6][:PORT]` into the host and the port. Messages name the host at
/// most: a password with a `/` in it would have ended the authority early, as a "port".
fn split_host(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("an IPv6 host's `[` has no `]`")?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`[{inside}]` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("after `[{inside}]` comes `:PORT` or the path"))?,
            ),
        };
        (inside, port)
    } else {
        match text.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err("an IPv6 host goes in brackets, as sockit://[::1]/".into());
            }
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("the address names no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("`{host}` is not a host name"));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{host}: the port is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decodes `text` (what: for the message): UTF-8 only, no NUL.
fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("in {what}, `%` starts no percent escape (write a `%` as %25)")
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(format!("{what} holds a NUL byte"));
    }
    String::from_utf8(out).map_err(|_| format!("{what} is not UTF-8 once decoded"))
}

/// Percent-encodes every byte of `text` but the URL's unreserved ones (and `keep`).
fn encode(text: &str, keep: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

impl fmt::Display for RemoteAddress {
    /// The address as a person would type it: the port left out when it is the default, the
    /// user and path percent-encoded where they must be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        if let Some(user) = &self.user {
            encode(user, b"", f)?;
            f.write_str("@")?;
        }
        match (self.host.contains(':'), self.port) {
            (true, DEFAULT_PORT) => write!(f, "[{}]", self.host)?,
            (false, DEFAULT_PORT) => f.write_str(&self.host)?,
            _ => f.write_str(&host_port(&self.host, self.port))?,
        }
        if !self.path.starts_with('/') {
            f.write_str("/")?;
        }
        encode(&self.path, b"/", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> RemoteAddress {
        text.parse().unwrap()
    }

    fn error(text: &str) -> String {
        text.parse::<RemoteAddress>().unwrap_err()
    }

    #[test]
    fn names_user_host_port_and_path() {
        let a = parse("sockit://alice@files.lan/docs/a.pdf");
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!((a.host.as_str(), a.port), ("files.lan", DEFAULT_PORT));
        assert_eq!(a.path, "/docs/a.pdf");
        assert_eq!(a.endpoint(), Endpoint::Tcp("files.lan:9900".into()));

        let a = parse("SOCKIT://10.0.0.7:4000");
        assert_eq!(
            (a.user.as_deref(), a.port, a.path.as_str()),
            (None, 4000, "/")
        );
        assert_eq!(a.endpoint().to_string(), "10.0.0.7:4000");
        assert_eq!(parse("sockit://h:/x").port, DEFAULT_PORT);
        assert_eq!(parse("sockit://h/").path, "/");
    }

    #[test]
    fn ipv6_hosts_go_in_brackets() {
        let a = parse("sockit://bob@[::1]:9901/x");
        assert_eq!((a.host.as_str(), a.port), ("::1", 9901));
        assert_eq!(a.endpoint(), Endpoint::Tcp("[::1]:9901".into()));
        assert_eq!(
            parse("sockit://[fe80::2]").endpoint().to_string(),
            "[fe80::2]:9900"
        );
        assert!(error("sockit://::1/x").contains("brackets"));
        assert!(error("sockit://[::1/x").contains("no `]`"));
        assert!(error("sockit://[nope]/x").contains("not an IPv6"));
        assert!(error("sockit://[::1]9/x").contains(":PORT"));
    }

    #[test]
    fn paths_and_users_are_percent_decoded() {
        let a = parse("sockit://j%C3%B6rg%40home@h/my%20docs/100%25.txt");
        assert_eq!(a.user.as_deref(), Some("jörg@home"));
        assert_eq!(a.path, "/my docs/100%.txt");
        assert!(error("sockit://h/50%").contains("%25"));
        assert!(error("sockit://h/a%zz").contains("percent escape"));
        assert!(error("sockit://h/a%00b").contains("NUL"));
        assert!(error("sockit://h/%FF").contains("UTF-8"));
    }

    #[test]
    fn a_password_is_refused_and_never_repeated() {
        let e = error("sockit://alice:hunter2@h/x");
        assert!(e.contains("password"), "{e}");
        assert!(e.contains("SOCKIT_PASSWORD"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // Even when the password would end the authority early or hold an @.
        for text in [
            "sockit://a:p@w@h/x",
            "sockit://a:p?q@h/x",
            "sockit://a:p#q@h/x",
        ] {
            let e = error(text);
            assert!(
                e.contains("password") && !e.contains("p@w") && !e.contains("p?q"),
                "{e}"
            );
        }
        // A `/` ends the host part: what was meant as a password reads as a port, unshown.
        for text in ["sockit://a:p/w@h/x", "sockit://a:p/w#@h"] {
            let e = error(text);
            assert!(!e.contains("p/w") && !e.contains(":p"), "{e}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(!RemoteAddress::is_address("docs/a.pdf"));
        assert!(!RemoteAddress::is_address("sockit:/x"));
        assert!(error("docs").contains("sockit://"));
        assert!(error("sockit://").contains("no host"));
        assert!(error("sockit:///x").contains("no host"));
        assert!(error("sockit://@h/x").contains("empty"));
        assert!(error("sockit://h:0/x").contains("port is not"));
        assert!(error("sockit://h:99999/x").contains("port is not"));
        assert!(error("sockit://h/a?b").contains("%3F"));
        assert!(error("sockit://h/a#b").contains("%23"));
        assert!(error("sockit://a b/x").contains("not a host name"));
    }

    #[test]
    fn prints_as_typed() {
        for text in [
            "sockit://alice@files.lan/docs/a.pdf",
            "sockit://[::1]:9901/",
            "sockit://h/my%20docs/x",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,20}",
            any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
            any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        ]
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_address(
            user in proptest::option::of("[^\0]{1,12}"),
            host in host(),
            port in 1u16..,
            path in "/[^\0]{0,40}",
        ) {
            let address = RemoteAddress { user, host, port, path };
            let text = address.to_string();
            prop_assert_eq!(text.parse::<RemoteAddress>(), Ok(address));
        }
    }
}
