//! How the client trusts a server: TLS to every TCP server (unless `--plaintext`), the
//! certificate checked against `--fingerprint` or the known-hosts file, as OpenSSH's
//! `StrictHostKeyChecking` checks host keys. A changed certificate is refused in every mode.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use sockit::client::Client;
use sockit::client::known_hosts::{Known, KnownHosts};
use sockit::client::tls;
use sockit::net::Endpoint;

/// What to do with a server whose certificate is not in the known-hosts file yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Show its fingerprint and ask (on a terminal).
    Ask,
    /// Trust it and remember it.
    AcceptNew,
    /// Refuse it.
    Strict,
}

/// Connects to `server` as `plaintext`, `trust` and `fingerprint` say (see the module doc);
/// nothing is sent before the server is trusted.
///
/// # Errors
/// Connect and handshake failures; a certificate that is not trusted, with what to do.
pub async fn connect(
    server: &Endpoint,
    plaintext: bool,
    trust: Option<Trust>,
    fingerprint: Option<&str>,
) -> Result<Client> {
    let stream = sockit::net::connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let Endpoint::Tcp(host) = server else {
        return Ok(Client::from_stream(stream)); // a Unix socket: its permissions guard it
    };
    if plaintext {
        return Ok(Client::from_stream(stream));
    }
    let (client, _) = secure(stream, host, trust, fingerprint).await?;
    Ok(client)
}

/// The fingerprint of the certificate `server` (TCP) shows, once it is trusted as `trust`
/// and `fingerprint` say: for a caller that opens many connections and pins it on each.
///
/// # Errors
/// As [`connect`].
pub async fn pin(
    server: &Endpoint,
    trust: Option<Trust>,
    fingerprint: Option<&str>,
) -> Result<String> {
    let stream = sockit::net::connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let Endpoint::Tcp(host) = server else {
        bail!("{server}: TLS is spoken over TCP only");
    };
    let (_, seen) = secure(stream, host, trust, fingerprint).await?;
    Ok(seen)
}

/// TLS over `stream` to `host`, its certificate trusted as the module doc says: the client
/// and the fingerprint trusted.
async fn secure(
    stream: sockit::net::Stream,
    host: &str,
    trust: Option<Trust>,
    fingerprint: Option<&str>,
) -> Result<(Client, String)> {
    if let Some(pinned) = fingerprint {
        let stream = tls::connect(stream, pinned)
            .await
            .with_context(|| format!("TLS to {host}"))?;
        return Ok((Client::from_stream(stream), tls::normalise(pinned)?));
    }
    let (stream, seen) = tls::connect_any(stream)
        .await
        .with_context(|| format!("TLS to {host} (a server without TLS? try --plaintext)"))?;
    let known = KnownHosts::default_location()?;
    let mode = trust.unwrap_or(if std::io::stdin().is_terminal() {
        Trust::Ask
    } else {
        Trust::Strict
    });
    if check(&known, host, &seen, mode, &mut ask)? {
        eprintln!(
            "sockit: added {host} ({seen}) to {}",
            known.path().display()
        );
    }
    Ok((Client::from_stream(stream), seen))
}

/// Decides whether `host`, showing the certificate `seen`, is trusted: known with that
/// certificate, or new and accepted as `mode` says (`ask` puts the question to a person).
/// Returns whether it was added to `known`.
///
/// # Errors
/// A changed certificate (in every mode, with the file and line to remove), an unknown one
/// not accepted, and known-hosts file errors.
pub fn check(
    known: &KnownHosts,
    host: &str,
    seen: &str,
    mode: Trust,
    ask: &mut dyn FnMut(&str, &str) -> Result<bool>,
) -> Result<bool> {
    match known.lookup(host)? {
        Known::Trusted { fingerprint, .. } if fingerprint == seen => Ok(false),
        Known::Trusted { fingerprint, line } => bail!(
            "\n@@@ THE CERTIFICATE OF {host} HAS CHANGED @@@\n\
             It was {fingerprint}; it is now {seen}.\n\
             Someone may be between you and the server, or the server has a new certificate.\n\
             If you know the change is right (ask its operator: `sockit fingerprint` on the \
             server), remove line {line} of {} and connect again.\nrefused",
            known.path().display()
        ),
        Known::Unknown => {
            let trusted = match mode {
                Trust::AcceptNew => true,
                Trust::Ask => ask(host, seen)?,
                Trust::Strict => false,
            };
            if !trusted {
                bail!(
                    "{host} is not a known server; its certificate is {seen}. Check that with \
                     the server's operator (`sockit fingerprint` on the server), then connect \
                     with --fingerprint {seen} or --trust accept-new"
                );
            }
            known.add(host, seen)?;
            Ok(true)
        }
    }
}

/// The question put to a person about `host`'s certificate `seen`, before the answer.
pub fn question(host: &str, seen: &str) -> String {
    format!(
        "The server {host} is not known yet. Its certificate's fingerprint is\n  {seen}\n\
         Compare it with what the server's operator gives you (`sockit fingerprint`).\n\
         Trust it and remember it? (yes/no) "
    )
}

/// Asks on the terminal whether to trust `host`'s certificate `seen`.
fn ask(host: &str, seen: &str) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "{}", question(host, seen))?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "y"))
}
