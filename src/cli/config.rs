//! The client's configuration file: defaults for the flags a person would otherwise type on
//! every command (`-s`, `-u`, `-i`, `--trust`, `--plaintext`).
//!
//! Where: `$SOCKIT_CONFIG` (a file that must exist), else `$XDG_CONFIG_HOME/sockit/config.toml`,
//! else `~/.config/sockit/config.toml`; a missing default file is an empty one. Unknown keys
//! are errors. How the file ranks against flags, variables and addresses: [`super::precedence`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};

use sockit::net::Endpoint;

use crate::cli::trust::Trust;

/// The variable that names the file instead of the default place.
pub const CONFIG_VAR: &str = "SOCKIT_CONFIG";

/// The settings of a configuration file, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The server: `HOST:PORT` or `unix:PATH`, as `-s` takes it.
    #[serde(deserialize_with = "endpoint")]
    pub server: Option<Endpoint>,
    /// The user, as `-u`.
    pub user: Option<String>,
    /// The private key to log in with, as `-i`: `~/` is the home folder, and a relative
    /// path is taken from the file's folder.
    pub identity: Option<PathBuf>,
    /// A server not known yet: `ask`, `accept-new` or `strict`, as `--trust`.
    pub trust: Option<Trust>,
    /// Speak plaintext, as `--plaintext`.
    pub plaintext: Option<bool>,
}

impl ClientConfig {
    /// The file `$SOCKIT_CONFIG` names, or the one in the default place (empty settings when
    /// that does not exist).
    ///
    /// # Errors
    /// A named file that cannot be read; a file that is not valid TOML, has an unknown key or
    /// a value of the wrong kind (the message names the file and the line).
    pub fn load() -> Result<ClientConfig> {
        if let Some(path) = std::env::var_os(CONFIG_VAR) {
            return ClientConfig::from_file(Path::new(&path))
                .with_context(|| format!("the configuration file in ${CONFIG_VAR}"));
        }
        let Some(path) = default_path() else {
            return Ok(ClientConfig::default());
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            _ => ClientConfig::from_file(&path),
        }
    }

    /// Reads the file at `path`.
    ///
    /// # Errors
    /// As [`ClientConfig::load`].
    pub fn from_file(path: &Path) -> Result<ClientConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = ClientConfig::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Some(identity) = config.identity.take() {
            config.identity = Some(expand(&identity, path.parent().unwrap_or(Path::new("."))));
        }
        Ok(config)
    }

    /// Parses the text of a file, naming the line of a mistake.
    ///
    /// # Errors
    /// As [`ClientConfig::load`], without the file name.
    pub fn from_toml(text: &str) -> Result<ClientConfig> {
        match toml::from_str(text) {
            Ok(config) => Ok(config),
            Err(e) => {
                let line = e.span().map(|s| {
                    let before = text.get(..s.start).unwrap_or(text);
                    before.matches('\n').count() + 1
                });
                match line {
                    Some(line) => bail!("line {line}: {}", e.message().trim()),
                    None => bail!("{}", e.message().trim()),
                }
            }
        }
    }
}

/// `$XDG_CONFIG_HOME/sockit/config.toml`, else `~/.config/sockit/config.toml`.
fn default_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("sockit").join("config.toml"))
}

/// `~/x` in the home folder; a relative path from `base` (the file's folder).
fn expand(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return Path::new(&home).join(rest);
    }
    base.join(path)
}

/// `server = "HOST:PORT"` as an [`Endpoint`].
fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Endpoint>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads() {
        let config = ClientConfig::from_toml(
            "server = \"files.lan:9900\"\nuser = \"alice\"\nidentity = \"id\"\n\
             trust = \"accept-new\"\nplaintext = false\n",
        )
        .unwrap();
        assert_eq!(
            config,
            ClientConfig {
                server: Some(Endpoint::Tcp("files.lan:9900".into())),
                user: Some("alice".into()),
                identity: Some("id".into()),
                trust: Some(Trust::AcceptNew),
                plaintext: Some(false),
            }
        );
        assert_eq!(
            ClientConfig::from_toml("").unwrap(),
            ClientConfig::default()
        );
    }

    #[test]
    fn mistakes_name_the_key_and_the_line() {
        let e = ClientConfig::from_toml("user = \"a\"\nsever = \"h:1\"\n").unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("line 2:") && e.contains("`sever`"), "{e}");
        let e = ClientConfig::from_toml("trust = \"maybe\"").unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = ClientConfig::from_toml("server = \"no-port\"").unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
        assert!(ClientConfig::from_toml("user = ").is_err());
    }

    #[test]
    fn identity_paths_are_taken_from_the_file_or_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "identity = \"keys/id\"\n").unwrap();
        let config = ClientConfig::from_file(&file).unwrap();
        assert_eq!(config.identity, Some(dir.path().join("keys/id")));
        assert_eq!(
            expand(Path::new("/abs/id"), dir.path()),
            Path::new("/abs/id")
        );
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                expand(Path::new("~/.config/sockit/id"), dir.path()),
                Path::new(&home).join(".config/sockit/id")
            );
        }
    }
}
