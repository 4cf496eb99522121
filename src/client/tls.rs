//! The client's side of TLS on the native port: a server is trusted by its certificate's
//! fingerprint (pinned), as SSH trusts a host key, not by a certificate authority.
//!
//! Pinning replaces only the question "is this the right certificate?". The handshake's
//! signature is still checked against the pinned certificate's key, so a server that shows
//! the right certificate without holding its key is refused (many trust-on-first-use
//! verifiers skip that check and so verify nothing).

use std::sync::Arc;

use base64::Engine as _;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::net::Stream;
use crate::tls::fingerprint;
use crate::{Error, Result};

/// What the verifier does with the certificate the server shows.
#[derive(Debug)]
enum Check {
    /// Accept exactly the one with this fingerprint.
    Pinned(String),
    /// Accept any, and note its fingerprint for the caller to judge before it sends a byte.
    Record(std::sync::Mutex<Option<String>>),
}

/// Checks the certificate as [`Check`] says, and in every case the handshake's signature
/// with that certificate's key.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        match &self.check {
            Check::Pinned(pinned) if *pinned != seen => Err(rustls::Error::General(format!(
                "the server's certificate is {seen}, not the expected {pinned}"
            ))),
            Check::Pinned(_) => Ok(ServerCertVerified::assertion()),
            Check::Record(slot) => {
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen);
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A fingerprint as people write it: `SHA256:` and base64 (with or without padding), or
/// `SHA256:` and 64 hex digits; returned in the form [`fingerprint`] makes.
///
/// # Errors
/// [`Error::BadRequest`] for anything else.
pub fn normalise(written: &str) -> Result<String> {
    let bad = || Error::BadRequest(format!("`{written}` is not a SHA256:… fingerprint"));
    let value = written.strip_prefix("SHA256:").ok_or_else(bad)?;
    let digest = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(value).map_err(|_| bad())?
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| bad())?
    };
    if digest.len() != 32 {
        return Err(bad());
    }
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// Speaks TLS 1.3 over `stream` (a TCP connection to the native port), trusting the server
/// only with the certificate `pinned` (see [`normalise`]).
///
/// # Errors
/// A malformed fingerprint; a handshake that fails, including a certificate other than the
/// pinned one or a signature its key did not make.
pub async fn connect(stream: Stream, pinned: &str) -> Result<Stream> {
    let verifier = Verifier {
        check: Check::Pinned(normalise(pinned)?),
        provider: crate::tls::provider(),
    };
    handshake(stream, Arc::new(verifier)).await
}

/// Speaks TLS 1.3 over `stream` with whatever certificate the server shows (its handshake
/// signature checked): returns the stream and that certificate's fingerprint, for the
/// caller to trust or refuse before it sends a byte.
///
/// # Errors
/// A handshake that fails.
pub async fn connect_any(stream: Stream) -> Result<(Stream, String)> {
    let verifier = Arc::new(Verifier {
        check: Check::Record(std::sync::Mutex::default()),
        provider: crate::tls::provider(),
    });
    let stream = handshake(stream, verifier.clone()).await?;
    let seen = match &verifier.check {
        Check::Record(slot) => slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        Check::Pinned(_) => None,
    };
    let seen = seen.ok_or_else(|| Error::BadReply("the server showed no certificate".into()))?;
    Ok((stream, seen))
}

async fn handshake(stream: Stream, verifier: Arc<Verifier>) -> Result<Stream> {
    let Stream::Tcp(tcp) = stream else {
        return Err(Error::BadRequest(
            "TLS is spoken over TCP only; a Unix socket is guarded by its permissions".into(),
        ));
    };
    let tls = TlsConnector::from(client_config(verifier)?)
        .connect(server_name()?, tcp)
        .await?;
    Ok(Stream::TlsClient(Box::new(tls)))
}

/// The rustls settings of the client: TLS 1.3 only, [`crate::tls::provider`]'s suites,
/// the server's certificate judged by `verifier`.
fn client_config(verifier: Arc<Verifier>) -> Result<Arc<rustls::ClientConfig>> {
    let config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Internal(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the client asks for. It is not checked (the fingerprint is); it only has to be
/// well formed.
fn server_name() -> Result<ServerName<'static>> {
    ServerName::try_from("sockit").map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_in_hex_or_base64() {
        let b64 = fingerprint(b"a certificate");
        assert_eq!(normalise(&b64).unwrap(), b64);
        let digest = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&b64["SHA256:".len()..])
            .unwrap();
        let hex = format!("SHA256:{}", hex::encode(&digest));
        assert_eq!(normalise(&hex).unwrap(), b64);
        assert_eq!(normalise(&format!("{b64}=")).unwrap(), b64);
        for bad in ["", "SHA256:", "MD5:abcd", "SHA256:abc", &b64[..20]] {
            assert!(normalise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_and_server_agree_on_the_suite_this_cpu_runs_fastest() {
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::tls::Identity::load_or_create(dir.path()).unwrap();
        let verifier = Verifier {
            check: Check::Pinned(identity.fingerprint()),
            provider: crate::tls::provider(),
        };
        let mut client = rustls::ClientConnection::new(
            client_config(Arc::new(verifier)).unwrap(),
            server_name().unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(identity.server_config().unwrap()).unwrap();
        // The handshake, in memory: each side's output is the other's input.
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            wire.clear();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        let agreed = client.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(
            Some(agreed),
            server.negotiated_cipher_suite().map(|s| s.suite())
        );
        let expected = if crate::tls::aes_in_hardware() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(agreed, expected);
    }
}
