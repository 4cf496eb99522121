//! `sockit key …`: login keys on the client's machine.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use sockit::keys::{KeyPair, default_identity, public_path};

/// The `key` actions.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Make a new Ed25519 key pair: FILE (the private key, mode 0600) and FILE.pub (the
    /// public line to hand to `sockit user key add`); prints the key's fingerprint.
    Gen {
        /// The private key file [default: $XDG_CONFIG_HOME/sockit/id_ed25519, else
        /// ~/.config/sockit/id_ed25519].
        file: Option<PathBuf>,
        /// The comment of the public line [default: USER@HOST].
        #[arg(short = 'C', long)]
        comment: Option<String>,
    },
}

/// Runs a `key` action.
///
/// # Errors
/// An existing file (never overwritten), or one that cannot be written.
pub fn key(action: KeyAction) -> Result<()> {
    match action {
        KeyAction::Gen { file, comment } => {
            let file = match file {
                Some(file) => file,
                None => default_identity()?,
            };
            let comment = comment.unwrap_or_else(default_comment);
            let public = KeyPair::generate_into(&file, &comment)
                .with_context(|| format!("writing the key {}", file.display()))?;
            out!("private key: {}", file.display());
            out!("public key:  {}", public_path(&file).display());
            out!("{}", public.fingerprint());
        }
    }
    Ok(())
}

/// `USER@HOST`, as far as the environment tells.
fn default_comment() -> String {
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    match (user.as_str(), host.trim()) {
        ("", _) | (_, "") => user,
        (user, host) => format!("{user}@{host}"),
    }
}
