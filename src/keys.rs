//! Login keys: Ed25519 key pairs (the private key a PKCS#8 PEM file, mode 0600; the public
//! key one line `sockit-ed25519 BASE64 COMMENT`), their fingerprints, and the message a
//! login by key signs. Signing and checking use `ring`.
//!
//! The signed message binds the login to one connection: the server's single-use challenge,
//! and on TLS the connection's exporter value (RFC 8446 §7.5), so a signature seen on one
//! connection is worthless on any other.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The first word of a public-key line.
pub const KEY_TYPE: &str = "sockit-ed25519";

/// The TLS exporter label of the login binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-sockit-login";

/// What a signed login message starts with.
const LOGIN_CONTEXT: &[u8] = b"sockit login v1\0";

/// An Ed25519 public key (the raw 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as the wire and the `.pub` file write it: standard base64 of the raw bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads the wire form (standard base64, padded or not).
    ///
    /// # Errors
    /// [`Error::BadRequest`] when it is not base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<PublicKey> {
        let bytes = decode_base64(text)
            .ok_or_else(|| Error::BadRequest("a public key must be base64".into()))?;
        let raw = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| Error::BadRequest("an Ed25519 public key is 32 bytes long".into()))?;
        Ok(PublicKey(raw))
    }

    /// `SHA256:` and the unpadded base64 of the SHA-256 of the raw key.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(self.0)))
    }

    /// The `.pub` file's line: `sockit-ed25519 BASE64 COMMENT`.
    pub fn to_line(&self, comment: &str) -> String {
        format!("{KEY_TYPE} {} {comment}", self.to_base64())
            .trim_end()
            .to_owned()
    }

    /// Reads a `.pub` line; returns the key and its comment (possibly empty).
    ///
    /// # Errors
    /// [`Error::BadRequest`] for another key type or a malformed key.
    pub fn parse_line(line: &str) -> Result<(PublicKey, String)> {
        let mut words = line.trim().splitn(3, char::is_whitespace);
        if words.next() != Some(KEY_TYPE) {
            return Err(Error::BadRequest(format!(
                "not a sockit public key (a line `{KEY_TYPE} BASE64 COMMENT`)"
            )));
        }
        let key = PublicKey::from_base64(words.next().unwrap_or(""))?;
        Ok((key, words.next().unwrap_or("").trim().to_owned()))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// An Ed25519 key pair read from its PKCS#8 PEM file.
pub struct KeyPair(Ed25519KeyPair);

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.public().fingerprint())
    }
}

impl KeyPair {
    /// Makes a new key pair; returns it with its PKCS#8 PEM text.
    ///
    /// # Errors
    /// [`Error::Internal`] when the system's random source fails.
    pub fn generate() -> Result<(KeyPair, String)> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Internal("generating an Ed25519 key failed".into()))?;
        let pem = to_pem(pkcs8.as_ref());
        Ok((KeyPair::from_pkcs8(pkcs8.as_ref())?, pem))
    }

    /// Reads a PKCS#8 PEM private key file.
    ///
    /// # Errors
    /// When the file cannot be read or holds no Ed25519 PKCS#8 key.
    pub fn load(path: &Path) -> Result<KeyPair> {
        let text = std::fs::read(path).map_err(|e| Error::Fs {
            path: path.display().to_string(),
            source: e,
        })?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&text).map_err(|e| {
            Error::BadRequest(format!("{}: no PKCS#8 private key: {e}", path.display()))
        })?;
        KeyPair::from_pkcs8(der.secret_pkcs8_der())
    }

    fn from_pkcs8(der: &[u8]) -> Result<KeyPair> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(KeyPair)
            .map_err(|e| Error::BadRequest(format!("not an Ed25519 private key: {e}")))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(raw)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }

    /// Writes a new key pair to `path` (mode 0600, never over an existing file) and its
    /// public line to `path.pub`; returns the public key.
    ///
    /// # Errors
    /// When either file exists or cannot be written.
    pub fn generate_into(path: &Path, comment: &str) -> Result<PublicKey> {
        let public_path = public_path(path);
        for p in [path, public_path.as_path()] {
            if p.exists() {
                return Err(Error::AlreadyExists(format!(
                    "{} exists; not overwriting it",
                    p.display()
                )));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let (pair, pem) = KeyPair::generate()?;
        let line = format!("{}\n", pair.public().to_line(comment));
        write_new(path, 0o600, pem.as_bytes())?;
        write_new(&public_path, 0o644, line.as_bytes())?;
        Ok(pair.public())
    }
}

/// `FILE.pub` beside a private key file.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The default private key file: `$XDG_CONFIG_HOME/sockit/id_ed25519`, else
/// `~/.config/sockit/id_ed25519`.
///
/// # Errors
/// When neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn default_identity() -> Result<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))
        .ok_or_else(|| Error::BadRequest("no place for the key: set HOME or give a FILE".into()))?;
    Ok(config.join("sockit").join("id_ed25519"))
}

/// The message a login by key signs: `"sockit login v1\0" || user || "\0" || challenge ||
/// binding` (binding: the TLS exporter value, or nothing on plaintext).
pub fn login_message(user: &str, challenge: &[u8], binding: Option<&[u8; 32]>) -> Vec<u8> {
    let mut message = LOGIN_CONTEXT.to_vec();
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(challenge);
    if let Some(binding) = binding {
        message.extend_from_slice(binding);
    }
    message
}

/// 32 random bytes for a login challenge.
///
/// # Errors
/// [`Error::Internal`] when the system's random source fails.
pub fn challenge() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("the random source failed".into()))?;
    Ok(bytes)
}

/// Standard base64, padded or not; `None` when it is not base64.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

/// Standard (padded) base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn to_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Writes a new file (never over an existing one) with `mode`.
fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| Error::Fs {
            path: path.display().to_string(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let public = KeyPair::generate_into(&path, "me@here").unwrap();
        let pair = KeyPair::load(&path).unwrap();
        assert_eq!(pair.public(), public);
        let line = std::fs::read_to_string(public_path(&path)).unwrap();
        let (read, comment) = PublicKey::parse_line(&line).unwrap();
        assert_eq!((read, comment.as_str()), (public, "me@here"));
        let message = login_message("ann", &[7; 32], Some(&[1; 32]));
        let signature = pair.sign(&message);
        assert!(public.verifies(&message, &signature));
        assert!(!public.verifies(&login_message("ann", &[7; 32], None), &signature));
        assert!(public.fingerprint().starts_with("SHA256:"));
        assert!(!public.fingerprint().ends_with('='));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            KeyPair::generate_into(&path, "").is_err(),
            "overwrote a key"
        );
    }

    #[test]
    fn bad_public_lines_are_refused() {
        for bad in [
            "",
            "ssh-ed25519 AAAA",
            "sockit-ed25519 !!",
            "sockit-ed25519 AAAA",
        ] {
            assert!(PublicKey::parse_line(bad).is_err(), "{bad}");
        }
    }
}
