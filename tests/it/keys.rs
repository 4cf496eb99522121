//! Logins by key: `sockit key gen`, `sockit user key add|list|del`, `-i KEY` on the client,
//! and the challenge bound to one TLS connection.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sockit::client::Client;
use sockit::keys::{KeyPair, PublicKey, encode_base64, login_message};
use sockit::net::Endpoint;
use sockit::protocol::{ErrorCode, Request};
use sockit::users::{HashCost, Password, Users};

use crate::common::{ServerProcess, sockit_bin};

/// Runs `sockit ARGS` with no password in its environment and nothing on stdin.
fn sockit(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(sockit_bin())
        .args(args)
        .env_remove("SOCKIT_PASSWORD")
        .env_remove("SOCKIT_IDENTITY")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn add_users(data: &Path, names: &[&str]) {
    let users = Users::open_with(data, HashCost::Minimal).unwrap();
    for name in names {
        users.add(name, &Password::new("pw"), None).unwrap();
    }
}

#[test]
fn a_key_logs_in_without_a_password_and_only_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    add_users(&data, &["ann", "bob"]);
    std::fs::create_dir_all(data.join("homes/ann/docs")).unwrap();

    // The default place honours XDG_CONFIG_HOME.
    let config = dir.path().join("config");
    let xdg = [("XDG_CONFIG_HOME", config.to_str().unwrap().to_owned())];
    let made = sockit(&["key", "gen", "-C", "ann@laptop"], &xdg);
    assert!(made.status.success(), "{made:?}");
    let key = config.join("sockit/id_ed25519");
    let public = config.join("sockit/id_ed25519.pub");
    let fingerprint = stdout(&made).lines().last().unwrap().trim().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let line = std::fs::read_to_string(&public).unwrap();
    assert!(line.starts_with("sockit-ed25519 ") && line.trim_end().ends_with(" ann@laptop"));
    let again = sockit(&["key", "gen", key.to_str().unwrap()], &[]);
    assert!(!again.status.success(), "a key was overwritten");

    let pubfile = public.to_str().unwrap();
    let added = sockit(
        &["user", "key", "add", "ann", pubfile, "--data", data_arg],
        &[],
    );
    assert!(added.status.success(), "{added:?}");
    let listed = sockit(&["user", "key", "list", "ann", "--data", data_arg], &[]);
    assert!(stdout(&listed).contains(&fingerprint), "{listed:?}");
    assert!(stdout(&listed).contains("ann@laptop"), "{listed:?}");
    let twice = sockit(
        &["user", "key", "add", "bob", pubfile, "--data", data_arg],
        &[],
    );
    assert!(!twice.status.success(), "a key became two users'");

    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    let addr = server.addr("native");
    let env = server.client_env();
    let key_arg = key.to_str().unwrap();
    let ls = |user: &str| sockit(&["ls", "-s", &addr, "-u", user, "-i", key_arg], &env);
    let out = ls("ann");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("docs"), "{out:?}");
    // The key from the environment as well.
    let mut with_env = env.clone();
    with_env.push(("SOCKIT_IDENTITY", key_arg.to_owned()));
    let out = sockit(&["ls", "-s", &addr, "-u", "ann"], &with_env);
    assert!(out.status.success(), "{out:?}");

    let refused = ls("bob");
    assert!(!refused.status.success(), "ann's key logged in as bob");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("wrong user name or password"), "{said}");

    let deleted = sockit(
        &[
            "user",
            "key",
            "del",
            "ann",
            &fingerprint,
            "--data",
            data_arg,
        ],
        &[],
    );
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!ls("ann").status.success(), "a deleted key still logs in");
    let listed = sockit(&["user", "key", "list", "ann", "--data", data_arg], &[]);
    assert!(!stdout(&listed).contains(&fingerprint));
}

fn login_by_key(user: &str, key: &PublicKey, signature: Option<String>) -> Request {
    Request::Login {
        user: user.into(),
        password: None,
        key: Some(key.to_base64()),
        signature,
    }
}

fn code(result: sockit::Result<impl std::fmt::Debug>) -> ErrorCode {
    match result {
        Err(sockit::Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Asks for a challenge and signs it as a client of `binding`'s connection would.
async fn signed(c: &mut Client, identity: &KeyPair, binding: Option<&[u8; 32]>) -> String {
    let (fields, _) = c
        .call(&login_by_key("ann", &identity.public(), None), b"")
        .await
        .unwrap();
    let challenge = fields["challenge"].as_str().unwrap();
    let challenge = sockit::keys::decode_base64(challenge).unwrap();
    assert_eq!(challenge.len(), 32);
    encode_base64(&identity.sign(&login_message("ann", &challenge, binding)))
}

/// A data folder under `dir` with user `ann` (password `pw`) and one key of hers, made
/// with `sockit key gen`'s code: the folder, the public key and the key pair.
fn ann_with_a_key(dir: &Path) -> (std::path::PathBuf, PublicKey, KeyPair) {
    let data = dir.join("data");
    add_users(&data, &["ann"]);
    let path = dir.join("id");
    let public = KeyPair::generate_into(&path, "").unwrap();
    let identity = KeyPair::load(&path).unwrap();
    Users::open_with(&data, HashCost::Minimal)
        .unwrap()
        .add_key("ann", &public, "")
        .unwrap();
    (data, public, identity)
}

#[tokio::test]
async fn a_signature_counts_once_and_on_its_own_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let (data, public, identity) = ann_with_a_key(dir.path());
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        1,
    );
    let endpoint: Endpoint = server.addr("native").parse().unwrap();
    let fingerprint = server.fingerprint.clone().unwrap();

    let mut a = Client::connect_tls(&endpoint, &fingerprint).await.unwrap();
    let binding_a = a.connection().get_ref().tls_binding();
    assert!(
        binding_a.is_some(),
        "a TLS connection has an exporter value"
    );
    let signature_a = signed(&mut a, &identity, binding_a.as_ref()).await;

    // Replayed on another connection: its challenge and its TLS session differ.
    let mut b = Client::connect_tls(&endpoint, &fingerprint).await.unwrap();
    let binding_b = b.connection().get_ref().tls_binding();
    assert_ne!(binding_a, binding_b);
    let _ = signed(&mut b, &identity, binding_b.as_ref()).await;
    let replayed = b
        .call(
            &login_by_key("ann", &public, Some(signature_a.clone())),
            b"",
        )
        .await;
    assert_eq!(code(replayed), ErrorCode::AuthFailed);

    // On its own connection it logs in, once.
    let (fields, _) = a
        .call(
            &login_by_key("ann", &public, Some(signature_a.clone())),
            b"",
        )
        .await
        .unwrap();
    assert_eq!(fields["user"], "ann");
    assert!(a.ls("").await.is_ok());
    let reused = a
        .call(&login_by_key("ann", &public, Some(signature_a)), b"")
        .await;
    assert_eq!(code(reused), ErrorCode::AuthFailed);

    // A signature without the TLS binding does not verify over TLS.
    let mut c = Client::connect_tls(&endpoint, &fingerprint).await.unwrap();
    let unbound = signed(&mut c, &identity, None).await;
    let refused = c
        .call(&login_by_key("ann", &public, Some(unbound)), b"")
        .await;
    assert_eq!(code(refused), ErrorCode::AuthFailed);

    // Plaintext on loopback binds to nothing, and works; old password logins still do.
    let mut plain = Client::connect(&endpoint).await.unwrap();
    assert_eq!(plain.connection().get_ref().tls_binding(), None);
    plain.login_with_key("ann", &identity).await.unwrap();
    plain.login("ann", "pw").await.unwrap();
    // An unknown key gets no challenge: it is answered like a wrong password.
    let (stranger, _) = KeyPair::generate().unwrap();
    let asked = plain
        .call(&login_by_key("ann", &stranger.public(), None), b"")
        .await;
    assert_eq!(code(asked), ErrorCode::AuthFailed);
}

#[tokio::test]
async fn removing_a_key_ends_the_sessions_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (data, public, identity) = ann_with_a_key(dir.path());
    let admin = Users::open_with(&data, HashCost::Minimal).unwrap();
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        1,
    );
    let endpoint: Endpoint = server.addr("native").parse().unwrap();
    let fingerprint = server.fingerprint.clone().unwrap();
    let mut by_key = Client::connect_tls(&endpoint, &fingerprint).await.unwrap();
    by_key.login_with_key("ann", &identity).await.unwrap();
    let mut by_password = Client::connect_tls(&endpoint, &fingerprint).await.unwrap();
    by_password.login("ann", "pw").await.unwrap();
    assert!(by_key.ls("").await.is_ok());

    admin.remove_key("ann", &public.fingerprint()).unwrap();
    let ended = by_key.ls("").await;
    assert_eq!(code(ended), ErrorCode::AuthFailed);
    assert_eq!(code(by_key.ls("").await), ErrorCode::AuthRequired);
    // A session opened with the password is not the key's.
    assert!(by_password.ls("").await.is_ok());
}
