//! TLS on the native port, against a real `sockit serve`: the certificate made on first
//! start, its fingerprint on the listener line and from `sockit fingerprint`, a pinned client
//! that transfers files over TLS, and the refusals a pinned client must make.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use sockit::client::Client;
use sockit::filecopy::Quiet;
use sockit::net::Endpoint;
use sockit::tls::Identity;

use crate::common::{ServerProcess, sockit_bin};

use crate::common::sockit_with_input as sockit;

#[tokio::test]
async fn the_native_port_speaks_tls_with_the_certificate_it_prints() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let added = sockit(
        &["user", "add", "ann", "--password-stdin", "--data", data_arg],
        "pw-ann\n",
    );
    assert!(added.status.success(), "{added:?}");
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    let printed = server.fingerprint.clone().expect("a TLS fingerprint");
    let key_mode = std::fs::metadata(data.join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "the key is its owner's only");
    let shown = sockit(&["fingerprint", "--data", data_arg], "");
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), printed);

    let endpoint: Endpoint = server.addr("native").parse().unwrap();
    let mut c = Client::connect_tls(&endpoint, &printed).await.unwrap();
    assert_eq!(&c.echo(b"over TLS").await.unwrap()[..], b"over TLS");
    c.login("ann", "pw-ann").await.unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
    let local = dir.path().join("up.bin");
    std::fs::write(&local, &bytes).unwrap();
    c.put(&local, "up.bin", false, &mut Quiet).await.unwrap();
    let back = dir.path().join("back.bin");
    c.get("up.bin", &back, false, &mut Quiet).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    // Loopback peers may still speak plaintext on the same port.
    let mut plain = Client::connect(&endpoint).await.unwrap();
    assert_eq!(&plain.echo(b"plain").await.unwrap()[..], b"plain");

    // The same certificate after a restart: the fingerprint users keep stays true.
    drop(server);
    let again = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    assert_eq!(again.fingerprint.as_deref(), Some(printed.as_str()));
}

#[tokio::test]
async fn another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        1,
    );
    let other = Identity::load_or_create(&dir.path().join("other")).unwrap();
    let endpoint: Endpoint = server.addr("native").parse().unwrap();
    let refused = Client::connect_tls(&endpoint, &other.fingerprint()).await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("not the expected"), "{message}");
}

/// A server that shows `identity`'s certificate but signs with another key.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn the_pinned_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = Identity::load_or_create(&dir.path().join("real")).unwrap();
    // Another key: the impostor has the certificate (it is public) but not its key.
    let stolen_cert = real.chain.clone();
    let wrong_key = rcgen::KeyPair::generate().unwrap();
    let wrong_key = rustls::pki_types::PrivateKeyDer::try_from(wrong_key.serialize_der()).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&wrong_key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(stolen_cert, signer);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(Arc::new(certified))));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The client aborts the handshake; the error is expected here.
        acceptor.accept(tcp).await.is_ok()
    });
    let endpoint: Endpoint = addr.to_string().parse().unwrap();
    let refused = Client::connect_tls(&endpoint, &real.fingerprint()).await;
    let message = refused.unwrap_err().to_string();
    // The certificate matched the pin; the handshake's signature is what failed.
    assert!(!message.contains("not the expected"), "{message}");
    assert!(
        message.to_lowercase().contains("signature"),
        "refused for its signature: {message}"
    );
    assert!(
        !impostor.await.unwrap(),
        "the impostor's handshake did not complete"
    );
}

/// `sockit echo TEXT -s ADDR EXTRA…` with its own known-hosts file and no terminal.
fn echo(addr: &str, known: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(sockit_bin())
        .args(["echo", "hi", "-s", addr])
        .args(extra)
        .env("SOCKIT_KNOWN_HOSTS", known)
        .env_remove("SOCKIT_TRUST")
        .env_remove("SOCKIT_FINGERPRINT")
        .env_remove("SOCKIT_PLAINTEXT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_client_trusts_on_first_use_and_refuses_a_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let known = dir.path().join("known_hosts");
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    let addr = server.addr("native");
    let first = server.fingerprint.clone().unwrap();

    // No terminal: strict. An unknown server is refused, with its fingerprint to check.
    let out = echo(&addr, &known, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not a known server") && err.contains(&first),
        "{err}"
    );
    assert!(!known.exists(), "nothing remembered");

    // accept-new remembers it; from then on strict knows it.
    assert!(
        echo(&addr, &known, &["--trust", "accept-new"])
            .status
            .success()
    );
    let line = std::fs::read_to_string(&known).unwrap();
    assert_eq!(line.trim(), format!("{addr} {first}"));
    assert!(echo(&addr, &known, &[]).status.success());
    assert!(
        echo(&addr, &known, &["--fingerprint", &first])
            .status
            .success()
    );
    assert!(echo(&addr, &known, &["--plaintext"]).status.success());

    // A new certificate on the same address is refused in every mode.
    drop(server);
    std::fs::remove_dir_all(data.join("tls")).unwrap();
    let again = ServerProcess::start(&["--listen", &addr, "--data", data_arg], 1);
    assert_ne!(again.fingerprint.as_deref(), Some(first.as_str()));
    for mode in [&[][..], &["--trust", "accept-new"], &["--trust", "ask"]] {
        let out = echo(&addr, &known, mode);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode:?}");
        assert!(err.contains("HAS CHANGED"), "{mode:?}: {err}");
        assert!(
            err.contains("line 1") && err.contains(known.to_str().unwrap()),
            "names the line to remove: {err}"
        );
    }
    let wrong = echo(&addr, &known, &["--fingerprint", &first]);
    assert!(!wrong.status.success());
}

#[tokio::test(start_paused = true)]
async fn a_plaintext_client_may_send_its_first_byte_late() {
    use sockit::server::ServerConfig;
    use sockit::service::Native;
    use sockit::service::transport::Transport;
    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(dir.path()).unwrap();
    let native = Native::new().with_transport(Transport::new(&identity, false).unwrap());
    let config = ServerConfig {
        head_timeout: std::time::Duration::from_secs(1),
        idle_timeout: 10 * MINUTE,
        ..ServerConfig::default()
    };
    let server = crate::common::spawn_tcp(native, config).await;
    // Connected, then silent past the head timeout (a person typing a password, say). Time
    // is paused: it moves on only when every task, the server's included, waits.
    let mut c = Client::connect(&server.endpoint).await.unwrap();
    tokio::time::sleep(5 * MINUTE).await;
    assert_eq!(&c.echo(b"late").await.unwrap()[..], b"late");
}

/// `sockit serve` on 127.0.0.1:0 with its data under `dir`, and `extra` flags.
fn serve(dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let data = dir.join("data");
    let mut args = vec!["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1)
}

#[test]
fn a_garbage_or_stalled_handshake_costs_one_connection() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--head-timeout", "1"]);
    let addr = server.addr("native");
    // A record that starts like TLS and then is garbage, a truncated ClientHello, and one
    // that stalls after its first bytes: each ends with the close, nothing served.
    let hello_start: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00];
    for bytes in [
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00][..],
        hello_start,
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        // A guard against a hung test, not a synchronisation: the server closes first.
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(bytes).unwrap();
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            read.is_ok() || rest.is_empty(),
            "the server closed the connection: {read:?}"
        );
        assert!(
            !rest.windows(4).any(|w| w == b"\"ok\""),
            "no frame is served"
        );
    }
    // The server is fine: a pinned TLS client and a plaintext one are served.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let endpoint: Endpoint = addr.parse().unwrap();
        let fp = server.fingerprint.clone().unwrap();
        let mut c = Client::connect_tls(&endpoint, &fp).await.unwrap();
        assert_eq!(&c.echo(b"ok").await.unwrap()[..], b"ok");
    });
    assert!(server.rss() < 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_handshakes_at_once_keep_the_server_small() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--max-connections",
        "3000",
        "--max-connections-per-ip",
        "1500",
        // 1,000 at once from one address: past the default connection rate's burst.
        "--connection-rate",
        "0",
    ];
    let server = serve(dir.path(), &args);
    let endpoint: Endpoint = server.addr("native").parse().unwrap();
    let fingerprint = server.fingerprint.clone().unwrap();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let (endpoint, fingerprint) = (endpoint.clone(), fingerprint.clone());
            tokio::spawn(async move {
                let mut c = Client::connect_tls(&endpoint, &fingerprint).await?;
                c.echo(b"hi").await?;
                Ok::<_, sockit::Error>(c)
            })
        })
        .collect();
    let mut held = Vec::new();
    for client in clients {
        held.push(client.await.unwrap().unwrap());
    }
    // All 1,000 are open at once, each past its handshake and one request (about 31 MiB
    // peak when this was written).
    let peak = server.rss_peak();
    assert!(peak < 128 << 20, "server peak RSS {} MiB", peak >> 20);
    drop(held);
}
