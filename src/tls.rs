//! The server's TLS identity: its certificate and key (made on first start, self-signed, in
//! `DATA/tls/`, or given as files), the fingerprint people compare, and the rustls settings
//! of the native port (TLS 1.3 only).
//!
//! A TLS record starts with byte 0x16 (handshake) then 0x03: as a frame's little-endian
//! length prefix those bytes mean a header of at least 0x01_0316 bytes, over any header
//! limit sockit allows, so the first byte tells TLS from plaintext on one port.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The first byte of every TLS record that opens a connection (a handshake record).
pub const HANDSHAKE: u8 = 0x16;

/// A header limit under which a frame can never start with a TLS record: 0x16 0x03 0x0? ..
/// read as a little-endian length is at least this.
pub const MAX_HEADER_WITH_TLS: u32 = 0x01_0316 - 1;

/// A certificate, its key, and the certificate's fingerprint.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain, leaf first (DER).
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The identity in `DATA/tls/` (`cert.pem`, `key.pem`), made the first time: a
    /// self-signed certificate for `localhost` and a new key, the key file readable by its
    /// owner only.
    ///
    /// # Errors
    /// When the files cannot be read, written or parsed.
    pub fn load_or_create(data: &Path) -> Result<Identity> {
        let dir = data.join("tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !cert.exists() || !key.exists() {
            create(&dir, &cert, &key)?;
        }
        Identity::from_files(&cert, &key)
    }

    /// The identity in PEM files (a CA-issued pair, say).
    ///
    /// # Errors
    /// When a file cannot be read or holds no certificate or key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| config(format!("reading the certificate {}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(config(format!("{} holds no certificate", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| config(format!("reading the key {}: {e}", key.display())))?;
        Ok(Identity { chain, key })
    }

    /// `SHA256:` and the base64 of the SHA-256 of the leaf certificate (DER), as people
    /// compare it and `--fingerprint` takes it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// The rustls settings of the native port: TLS 1.3 only, this identity.
    ///
    /// # Errors
    /// When the key does not fit the certificate or is of a kind rustls cannot use.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| config(format!("TLS settings: {e}")))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| config(format!("the TLS certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }
}

/// rustls's ring provider with the TLS 1.3 cipher suites in the order this machine runs
/// fastest, as Go's TLS orders them: AES-128-GCM first when the CPU has AES and carry-less
/// multiply instructions (TLS 1.3's mandatory suite: four fewer AES rounds per block than
/// AES-256, with a key no search can reach), else ChaCha20-Poly1305 first (several times
/// faster than AES done in software). A rustls server follows the client's order, so the
/// client's hardware decides.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let cipher_suites = if aes_in_hardware() {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    };
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites,
        ..rustls::crypto::ring::default_provider()
    })
}

/// Whether this CPU runs AES-GCM in hardware.
pub(crate) fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of `cert` (DER).
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// Makes a self-signed certificate and its key in `dir`.
fn create(dir: &Path, cert: &Path, key: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| fs(dir, e))?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| config(format!("making a TLS certificate: {e}")))?;
    write_private(key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, made.cert.pem()).map_err(|e| fs(cert, e))
}

/// Writes a file only its owner can read (0600), replacing none.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fs(path, e))?;
    file.write_all(bytes).map_err(|e| fs(path, e))
}

fn fs(path: &Path, e: std::io::Error) -> Error {
    Error::Fs {
        path: PathBuf::from(path).display().to_string(),
        source: e,
    }
}

fn config(message: String) -> Error {
    Error::Config {
        message,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_with_a_private_key_and_a_stable_fingerprint() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(first.fingerprint().starts_with("SHA256:"));
        assert_eq!(first.fingerprint().len(), "SHA256:".len() + 43);
        first.server_config().unwrap();
    }

    #[test]
    fn a_tls_record_can_never_be_a_frame_under_the_limit() {
        // A ClientHello: 0x16, version 0x03 0x01, then the length's high byte.
        let prefix = i32::from_le_bytes([HANDSHAKE, 0x03, 0x01, 0x00]);
        assert!(prefix > MAX_HEADER_WITH_TLS as i32);
        const { assert!(crate::protocol::MAX_HEADER_LEN <= MAX_HEADER_WITH_TLS) };
    }
}
