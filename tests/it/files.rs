//! The file service over real sockets, a real SQLite file and real folders: logins, the home
//! jail, quotas, verified and resumable transfers, concurrency.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use sockit::Error;
use sockit::client::{Client, local_partial};
use sockit::filecopy::Quiet;
use sockit::protocol::ErrorCode;
use sockit::server::ServerConfig;
use sockit::service::Native;
use sockit::service::session::FileService;
use sockit::users::{HashCost, Password, Users};
use tempfile::TempDir;

use crate::common::{TestServer, spawn_tcp};

/// A server with users `alice` (quota 1 MB), `bob` (unlimited) and `user0..9`, password `pw-NAME`.
pub struct Fixture {
    pub dir: TempDir,
    pub server: TestServer,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let users = Users::open_with(&data, HashCost::Minimal).unwrap();
        users
            .add("alice", &Password::new("pw-alice"), Some(1_000_000))
            .unwrap();
        users.add("bob", &Password::new("pw-bob"), None).unwrap();
        for i in 0..10 {
            let name = format!("user{i}");
            users
                .add(&name, &Password::new(format!("pw-{name}")), None)
                .unwrap();
        }
        let native = Native::with_files(Arc::new(FileService::with_users(users)));
        let server = spawn_tcp(native, ServerConfig::default()).await;
        Fixture { dir, server }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn home(&self, user: &str) -> PathBuf {
        self.data().join("homes").join(user)
    }

    pub async fn client(&self, user: &str) -> Client {
        let mut c = Client::connect(&self.server.endpoint).await.unwrap();
        c.login(user, &format!("pw-{user}")).await.unwrap();
        c
    }

    pub fn local(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// The code of an error reply; panics on anything else.
pub(crate) fn code(result: Result<impl std::fmt::Debug, Error>) -> ErrorCode {
    match result {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// `len` bytes of a pattern that differs by `seed`.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn login_is_required_and_checked() {
    let fx = Fixture::new().await;
    let mut c = Client::connect(&fx.server.endpoint).await.unwrap();
    assert_eq!(code(c.ls("/").await), ErrorCode::AuthRequired);
    assert_eq!(code(c.login("alice", "wrong").await), ErrorCode::AuthFailed);
    assert_eq!(
        code(c.login("nobody", "pw-nobody").await),
        ErrorCode::AuthFailed
    );
    assert_eq!(code(c.login("../bob", "x").await), ErrorCode::AuthFailed);
    let welcome = c.login("alice", "pw-alice").await.unwrap();
    assert_eq!(welcome.quota, Some(1_000_000));
    assert!(c.ls("/").await.unwrap().is_empty());
    // echo needs no login, and still works on a logged-in connection.
    assert_eq!(&c.echo(b"x").await.unwrap()[..], b"x");
}

#[tokio::test]
async fn upload_download_round_trip_is_verified() {
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let bytes = pattern(3 << 20, 7);
    let local = fx.local("up.bin", &bytes);
    c.mkdir("docs/deep", true).await.unwrap();
    let put = c
        .put(&local, "docs/deep/file.bin", false, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(put.size, bytes.len() as u64);
    assert_eq!(
        std::fs::read(fx.home("bob").join("docs/deep/file.bin")).unwrap(),
        bytes
    );

    let entries = c.ls("docs/deep").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "file.bin");
    assert_eq!(entries[0].size, bytes.len() as u64);

    let down = fx.dir.path().join("down.bin");
    let got = c
        .get("/docs/deep/file.bin", &down, false, &mut Quiet)
        .await
        .unwrap();
    // Between sockit peers both ends check BLAKE3, and nobody spends time on md5.
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(put.digest(), ("BLAKE3", blake3.as_str()));
    assert_eq!(got.digest(), ("BLAKE3", blake3.as_str()));
    assert_eq!(std::fs::read(&down).unwrap(), bytes);

    c.mv("docs/deep/file.bin", "moved.bin").await.unwrap();
    assert_eq!(c.stat("moved.bin").await.unwrap().size, bytes.len() as u64);
    assert!(
        c.rm("docs", false).await.is_err(),
        "a folder needs recursive"
    );
    assert!(fx.home("bob").join("docs").is_dir());
    c.rm("docs", true).await.unwrap();
    c.rm("moved.bin", false).await.unwrap();
    assert!(c.ls("/").await.unwrap().is_empty());
}

#[tokio::test]
async fn paths_never_leave_the_home() {
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    std::fs::write(fx.home("alice").join("secret.txt"), b"alice's").unwrap();
    std::os::unix::fs::symlink("/etc", fx.home("bob").join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../alice", fx.home("bob").join("alice-link")).unwrap();
    let out = fx.dir.path().join("stolen");
    for path in [
        "../alice/secret.txt",
        "../../users.db",
        "/../alice/secret.txt",
        "etc-link/passwd",
        "alice-link/secret.txt",
    ] {
        let got = c.get(path, &out, false, &mut Quiet).await;
        assert!(matches!(got, Err(Error::Remote { .. })), "{path}: {got:?}");
        assert!(!out.exists(), "{path}");
    }
    // `/etc/passwd` means the home's own etc/passwd, which does not exist.
    assert_eq!(
        code(c.get("/etc/passwd", &out, false, &mut Quiet).await),
        ErrorCode::NotFound
    );
    let local = fx.local("x", b"payload");
    for path in ["../alice/x", "etc-link/x", "alice-link/x"] {
        assert!(
            c.put(&local, path, false, &mut Quiet).await.is_err(),
            "{path}"
        );
    }
    assert!(!fx.home("alice").join("x").exists());
    assert!(c.ls("alice-link").await.is_err());
    assert!(c.mv("/etc-link", "../alice/stolen-link").await.is_err());
    assert_eq!(
        std::fs::read(fx.home("alice").join("secret.txt")).unwrap(),
        b"alice's"
    );
    // After all that, the connection still works.
    assert_eq!(&c.echo(b"ok").await.unwrap()[..], b"ok");
}

#[tokio::test]
async fn quota_refuses_before_the_bytes_and_concurrent_uploads_cannot_overshoot() {
    let fx = Fixture::new().await;
    let mut c = fx.client("alice").await;
    let small = fx.local("small", &pattern(400_000, 1));
    let big = fx.local("big", &pattern(1_200_000, 2));
    match c.put(&big, "big", false, &mut Quiet).await {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::QuotaExceeded);
            assert!(message.contains("quota"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!fx.home("alice").join("big").exists());
    c.put(&small, "a", false, &mut Quiet).await.unwrap();
    c.put(&small, "b", false, &mut Quiet).await.unwrap();
    // Overwriting counts only the difference.
    c.put(&small, "a", false, &mut Quiet).await.unwrap();
    assert_eq!(
        code(c.put(&small, "c", false, &mut Quiet).await),
        ErrorCode::QuotaExceeded
    );

    c.rm("b", false).await.unwrap();
    // Two uploads that each fit, but not together: one wins, one is refused.
    let mut c2 = fx.client("alice").await;
    let (mut q1, mut q2) = (Quiet, Quiet);
    let (r1, r2) = tokio::join!(
        c.put(&small, "p1", false, &mut q1),
        c2.put(&small, "p2", false, &mut q2)
    );
    let ok = [r1.is_ok(), r2.is_ok()];
    assert_eq!(ok.iter().filter(|x| **x).count(), 1, "{r1:?} {r2:?}");
    let used: u64 = c.ls("/").await.unwrap().iter().map(|e| e.size).sum();
    assert!(used <= 1_000_000, "{used}");
}

/// Sends a put and half its data, then drops the connection, as a killed client would.
async fn interrupted_upload(fx: &Fixture, user: &str, remote: &str, bytes: &[u8]) {
    use bytes::BytesMut;
    let mut c = fx.client(user).await;
    let (fields, _) = c
        .call(
            &json!({"op": "put", "path": remote, "size": bytes.len()}),
            b"",
        )
        .await
        .unwrap();
    assert_eq!(fields["offset"], 0);
    let conn = c.connection();
    let mut wire = BytesMut::new();
    sockit::protocol::encode_head(&json!({"op": "data"}), bytes.len() as u64, &mut wire).unwrap();
    conn.queue_raw(&wire);
    conn.queue_raw(&bytes[..bytes.len() / 2]);
    conn.flush().await.unwrap();
    // Wait until the server has written those bytes, then vanish.
    let part = part_of(&fx.home(user), remote);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < (bytes.len() / 2) as u64 {
        tokio::task::yield_now().await;
    }
}

/// Starts an upload of `bytes` to `path` frame by frame, as a peer other than sockit's
/// client would: `put`, then the `data` frame `data` with the bytes. The caller sends `done`.
pub(crate) async fn raw_upload(c: &mut Client, path: &str, bytes: &[u8], data: serde_json::Value) {
    let put = json!({"op": "put", "path": path, "size": bytes.len()});
    let (fields, _) = c.call(&put, b"").await.unwrap();
    assert_eq!(fields["offset"], 0);
    c.connection()
        .queue_head(&data, bytes.len() as u64)
        .unwrap();
    c.connection().queue_raw(bytes);
}

/// md5 of `bytes`, lowercase hex: what a peer that knows only the seeds' digest checks.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

pub(crate) fn part_of(home: &Path, name: &str) -> PathBuf {
    home.join(format!(".{name}.sockit-part"))
}

#[tokio::test]
async fn an_interrupted_upload_resumes_and_is_never_visible_half_done() {
    let fx = Fixture::new().await;
    let bytes = pattern(2 << 20, 9);
    interrupted_upload(&fx, "bob", "resume.bin", &bytes).await;
    assert!(
        !fx.home("bob").join("resume.bin").exists(),
        "no partial under the final name"
    );
    assert!(
        c_ls_names(&fx, "bob").await.is_empty(),
        "partials are hidden"
    );

    let local = fx.local("resume.bin", &bytes);
    let mut c = fx.client("bob").await;
    // The server may not have seen the first client go yet: until then the name is busy.
    let put = loop {
        match c.put(&local, "resume.bin", true, &mut Quiet).await {
            Err(Error::Remote {
                code: ErrorCode::Busy,
                ..
            }) => tokio::task::yield_now().await,
            other => break other.unwrap(),
        }
    };
    assert!(
        put.resumed_from >= (1 << 20),
        "resumed from {}",
        put.resumed_from
    );
    assert_eq!(
        std::fs::read(fx.home("bob").join("resume.bin")).unwrap(),
        bytes
    );
    assert!(!part_of(&fx.home("bob"), "resume.bin").exists());
}

async fn c_ls_names(fx: &Fixture, user: &str) -> Vec<String> {
    let mut c = fx.client(user).await;
    c.ls("/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[tokio::test]
async fn an_interrupted_download_resumes_and_a_corrupt_partial_is_caught() {
    let fx = Fixture::new().await;
    let bytes = pattern(1 << 20, 5);
    std::fs::write(fx.home("bob").join("d.bin"), &bytes).unwrap();
    let mut c = fx.client("bob").await;
    let local = fx.dir.path().join("d.bin");
    // Half of it arrived before the connection died.
    std::fs::write(local_partial(&local), &bytes[..bytes.len() / 2]).unwrap();
    let got = c.get("d.bin", &local, true, &mut Quiet).await.unwrap();
    assert_eq!(got.resumed_from, (bytes.len() / 2) as u64);
    assert_eq!(std::fs::read(&local).unwrap(), bytes);
    assert!(!local_partial(&local).exists());

    // A partial whose bytes are wrong: the md5 of the whole file catches it.
    std::fs::remove_file(&local).unwrap();
    let mut bad = bytes[..1000].to_vec();
    bad[10] ^= 0xff;
    std::fs::write(local_partial(&local), &bad).unwrap();
    assert!(matches!(
        c.get("d.bin", &local, true, &mut Quiet).await,
        Err(Error::DigestMismatch(_))
    ));
    assert!(!local.exists() && !local_partial(&local).exists());
}

#[tokio::test]
async fn twenty_clients_of_ten_users_transfer_at_once() {
    let fx = Arc::new(Fixture::new().await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let fx = fx.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("user{}", i % 10);
            let bytes = pattern(300_000 + i * 1000, i as u8);
            let local = fx.local(&format!("l{i}"), &bytes);
            let mut c = fx.client(&user).await;
            let remote = format!("f{i}");
            c.put(&local, &remote, false, &mut Quiet).await.unwrap();
            let back = fx.dir.path().join(format!("b{i}"));
            c.get(&remote, &back, false, &mut Quiet).await.unwrap();
            assert_eq!(std::fs::read(&back).unwrap(), bytes);
            assert_eq!(std::fs::read(fx.home(&user).join(&remote)).unwrap(), bytes);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
