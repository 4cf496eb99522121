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
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    if let Some(pinned) = fingerprint {
        let stream = tls::connect(stream, pinned)
            .await
            .with_context(|| format!("TLS to {host}"))?;
        return Ok(Client::from_stream(stream));
    }
    let (stream, seen) = tls::connect_any(stream)
        .await
        .with_context(|| format!("TLS to {host} (a server without TLS? try --plaintext)"))?;
    let known = KnownHosts::default_location()?;
    match known.lookup(host)? {
        Known::Trusted { fingerprint, .. } if fingerprint == seen => {}
        Known::Trusted { fingerprint, line } => bail!(
            "\n@@@ THE CERTIFICATE OF {host} HAS CHANGED @@@\n\
             It was {fingerprint}; it is now {seen}.\n\
             Someone may be between you and the server, or the server has a new certificate.\n\
             If you know the change is right (ask its operator: `sockit fingerprint` on the \
             server), remove line {line} of {} and connect again.\nrefused",
            known.path().display()
        ),
        Known::Unknown => {
            let mode = trust.unwrap_or(if std::io::stdin().is_terminal() {
                Trust::Ask
            } else {
                Trust::Strict
            });
            let trusted = match mode {
                Trust::AcceptNew => true,
                Trust::Ask => ask(host, &seen)?,
                Trust::Strict => false,
            };
            if !trusted {
                bail!(
                    "{host} is not a known server; its certificate is {seen}. Check that with \
                     the server's operator (`sockit fingerprint` on the server), then connect \
                     with --fingerprint {seen} or --trust accept-new"
                );
            }
            known.add(host, &seen)?;
            eprintln!(
                "sockit: added {host} ({seen}) to {}",
                known.path().display()
            );
        }
    }
    Ok(Client::from_stream(stream))
}

/// Asks on the terminal whether to trust `host`'s certificate `seen`.
fn ask(host: &str, seen: &str) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "The server {host} is not known yet. Its certificate's fingerprint is\n  {seen}\n\
         Compare it with what the server's operator gives you (`sockit fingerprint`).\n\
         Trust it and remember it? (yes/no) "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "y"))
}
