//! Whole folders: `put -r` / `get -r` through the library and the binary, the `write` op's
//! group commit on the wire, interrupted folder transfers, and a file that changes while it
//! is sent.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sockit::filecopy::{Progress, Quiet};
use sockit::protocol::ErrorCode;

use crate::common::{ServerProcess, sockit_bin, sockit_with_input};
use crate::files::Fixture;

/// A tree with small and large files, an empty folder, an executable, a symlink out and a
/// FIFO: (its top, the regular files below it).
fn sample_tree(top: &Path, small: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    std::fs::create_dir_all(top.join("docs/deep/er")).unwrap();
    std::fs::create_dir_all(top.join("empty")).unwrap();
    for i in 0..small {
        let path = top.join(format!("docs/note-{i:04}.txt"));
        std::fs::write(&path, format!("note {i}\n").repeat(i % 7 + 1)).unwrap();
        files.push(path);
    }
    let big = top.join("docs/deep/er/big.bin");
    std::fs::write(
        &big,
        (0..3_000_000u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    files.push(big);
    let tool = top.join("docs/tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o750)).unwrap();
    files.push(tool);
    std::os::unix::fs::symlink("/etc/passwd", top.join("docs/passwd")).unwrap();
    nix::unistd::mkfifo(&top.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    files
}

/// Asserts that every file of `files` (below `from`) is under `to` with the same bytes,
/// permission bits and modification time.
fn assert_copied(from: &Path, to: &Path, files: &[PathBuf]) {
    for file in files {
        let copy = to.join(file.strip_prefix(from).unwrap());
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(file).unwrap(),
            "{copy:?}"
        );
        let (a, b) = (file.metadata().unwrap(), copy.metadata().unwrap());
        assert_eq!(a.mtime(), b.mtime(), "{copy:?}");
        assert_eq!(a.mode() & 0o777, b.mode() & 0o777, "{copy:?}");
    }
}

#[tokio::test]
async fn a_folder_goes_up_and_down_whole_and_a_rerun_moves_only_what_changed() {
    let fx = Fixture::new().await;
    let src = fx.dir.path().join("src");
    let files = sample_tree(&src, 150);
    let mut c = fx.client("bob").await;

    let up = c.put_tree(&src, "backup", &mut Quiet).await.unwrap();
    assert_eq!(
        (up.transferred, up.unchanged),
        (files.len() as u64, 0),
        "{up:?}"
    );
    assert!(up.failed.is_empty(), "{up:?}");
    let mut skipped: Vec<&str> = up.skipped.iter().map(|(p, _)| p.as_str()).collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        ["docs/passwd", "pipe"],
        "the symlink and the FIFO are reported"
    );
    let home = fx.home("bob").join("backup");
    assert_copied(&src, &home, &files);
    assert!(home.join("empty").is_dir(), "empty folders are kept");
    assert!(
        !home.join("docs/passwd").exists(),
        "a symlink is not followed out"
    );

    // Nothing changed: nothing moves. One changed, one new: those two move.
    let again = c.put_tree(&src, "backup", &mut Quiet).await.unwrap();
    assert_eq!(
        (again.transferred, again.unchanged),
        (0, files.len() as u64)
    );
    std::fs::write(&files[3], "rewritten, and longer than before\n").unwrap();
    std::fs::write(src.join("docs/new.txt"), "new\n").unwrap();
    let third = c.put_tree(&src, "backup", &mut Quiet).await.unwrap();
    assert_eq!(
        (third.transferred, third.unchanged),
        (2, files.len() as u64 - 1)
    );
    assert_eq!(std::fs::read(home.join("docs/new.txt")).unwrap(), b"new\n");

    // And down again, into a fresh folder, then a rerun that finds it all there.
    let back = fx.dir.path().join("back");
    let down = c.get_tree("backup", &back, &mut Quiet).await.unwrap();
    assert_eq!(down.transferred, files.len() as u64 + 1, "{down:?}");
    assert_copied(&src, &back, &files);
    assert!(back.join("empty").is_dir());
    let down_again = c.get_tree("backup", &back, &mut Quiet).await.unwrap();
    assert_eq!(
        (down_again.transferred, down_again.unchanged),
        (0, files.len() as u64 + 1)
    );
    // Same size, another time: the digests decide. Two touched files are not sent; one
    // rewritten with as many other bytes is.
    let touch = |path: &Path, secs: u64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    touch(&files[0], 1_000_000_000);
    touch(&files[1], 1_000_000_000);
    let same_size = std::fs::read(&files[2])
        .unwrap()
        .iter()
        .map(|b| b ^ 0x5a)
        .collect::<Vec<_>>();
    std::fs::write(&files[2], &same_size).unwrap();
    touch(&files[2], 1_000_000_000);
    let fourth = c.put_tree(&src, "backup", &mut Quiet).await.unwrap();
    assert_eq!(
        (fourth.transferred, fourth.unchanged, fourth.compared),
        (1, files.len() as u64, 2),
        "{fourth:?}"
    );
    for file in &files[..3] {
        let there = home.join(file.strip_prefix(&src).unwrap());
        assert_eq!(std::fs::read(there).unwrap(), std::fs::read(file).unwrap());
    }

    // Down too: a touched copy gets the server's time back without a transfer (and the file
    // rewritten above comes down).
    let copy = back.join(files[0].strip_prefix(&src).unwrap());
    touch(&copy, 1_100_000_000);
    let down_doubt = c.get_tree("backup", &back, &mut Quiet).await.unwrap();
    assert_eq!(
        (down_doubt.transferred, down_doubt.compared),
        (1, 1),
        "{down_doubt:?}"
    );
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().mtime();
    assert_eq!(
        mtime(&copy),
        mtime(&home.join(files[0].strip_prefix(&src).unwrap()))
    );
    let leftovers = walk_names(&back).into_iter().chain(walk_names(&home));
    assert!(leftovers.filter(|n| n.ends_with(".sockit-part")).count() == 0);
}

#[tokio::test]
async fn a_folder_download_stopped_by_a_local_error_leaves_the_connection_in_step() {
    // A `get -r` asks for the next group of files before it stores the current one. When a
    // file cannot be stored here, the replies already asked for are read and dropped, so the
    // next request on the connection (a shell's next command) gets its own answer.
    // More files than one group, so that the next group is asked for when the first fails.
    let count = sockit::client::tree::WINDOW + 50;
    let last = count - 1;
    let fx = Fixture::new().await;
    let src = fx.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..count {
        std::fs::write(src.join(format!("f{i:03}")), format!("file {i}\n")).unwrap();
    }
    let mut c = fx.client("bob").await;
    c.put_tree(&src, "many", &mut Quiet).await.unwrap();
    // A folder where one file's partial copy would go, early in the first group.
    let back = fx.dir.path().join("back");
    let blocker = sockit::client::local_partial(&back.join("f010"));
    std::fs::create_dir_all(&blocker).unwrap();
    let err = c.get_tree("many", &back, &mut Quiet).await.unwrap_err();
    assert!(err.to_string().contains("f010"), "{err}");
    let entry = c.stat(&format!("many/f{last:03}")).await.unwrap();
    assert_eq!(entry.size, format!("file {last}\n").len() as u64);
    assert_eq!(c.ls("many").await.unwrap().len(), count);
    // With the obstacle gone, a rerun brings everything.
    std::fs::remove_dir(&blocker).unwrap();
    let down = c.get_tree("many", &back, &mut Quiet).await.unwrap();
    assert!(down.failed.is_empty(), "{down:?}");
    assert_eq!(down.transferred + down.unchanged, count as u64, "{down:?}");
    for i in [0, 10, last] {
        let name = format!("f{i:03}");
        assert_eq!(
            std::fs::read(back.join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap()
        );
    }
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_names(&entry.path()));
        }
    }
    out
}

#[tokio::test]
async fn pipelined_writes_are_answered_in_order_each_on_its_own_merits() {
    let fx = Fixture::new().await;
    let mut c = fx.client("alice").await;
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let conn = c.connection();
    let write = |path: &str, digest: String| json!({"op": "write", "path": path, "blake3": digest});
    conn.queue(&write("a.txt", hash(b"aaa")), b"aaa").unwrap();
    conn.queue(&write("b.txt", hash(b"not these")), b"bbb")
        .unwrap();
    conn.queue(&write("../escape.txt", hash(b"x")), b"x")
        .unwrap();
    // Over alice's 1 MB quota.
    let big = vec![7u8; 1_000_000];
    conn.queue(&write("big.bin", hash(&big)), &big).unwrap();
    conn.queue(&write("c.txt", hash(b"ccc")), b"ccc").unwrap();
    conn.queue(&json!({"op": "ls", "path": ""}), b"").unwrap();
    conn.flush().await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(match c.read_reply().await {
            Ok((fields, _)) => {
                assert!(fields["blake3"].is_string(), "{fields:?}");
                None
            }
            Err(sockit::Error::Remote { code, .. }) => Some(code),
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(
        codes,
        [
            None,
            Some(ErrorCode::DigestMismatch),
            Some(ErrorCode::PermissionDenied),
            Some(ErrorCode::QuotaExceeded),
            None
        ]
    );
    let (_, listing) = c.read_reply().await.unwrap();
    let names: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&listing)
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["a.txt", "c.txt"],
        "only the verified ones, and no partial file"
    );
    assert_eq!(
        std::fs::read(fx.home("alice").join("c.txt")).unwrap(),
        b"ccc"
    );
    assert!(!fx.data().join("homes/escape.txt").exists());
}

#[tokio::test]
async fn pipelined_gets_answer_each_file_as_it_is_when_its_turn_comes() {
    // The server reads the small files of buffered gets ahead, in one go: a change made by a
    // request between two gets must still show in the later one.
    let fx = Fixture::new().await;
    let mut c = fx.client("alice").await;
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let write =
        |path: &str, body: &[u8]| json!({"op": "write", "path": path, "blake3": hash(body)});
    let get = |path: &str| json!({"op": "get", "path": path, "digest": "blake3"});
    let conn = c.connection();
    conn.queue(&write("a.txt", b"one"), b"one").unwrap();
    conn.queue(&write("b.txt", b"bee"), b"bee").unwrap();
    conn.queue(&get("a.txt"), b"").unwrap();
    conn.queue(&get("b.txt"), b"").unwrap();
    conn.queue(&write("b.txt", b"two!"), b"two!").unwrap();
    conn.queue(&get("b.txt"), b"").unwrap();
    conn.queue(&get("a.txt"), b"").unwrap();
    conn.queue(&get("missing.txt"), b"").unwrap();
    conn.flush().await.unwrap();
    for _ in 0..2 {
        c.read_reply().await.unwrap();
    }
    let mut got = Vec::new();
    for expected in [&b"one"[..], b"bee", b"", b"two!", b"one"] {
        if expected.is_empty() {
            c.read_reply().await.unwrap(); // the second write of b.txt
            continue;
        }
        let (_, body) = c.read_reply().await.unwrap();
        let (trailer, _) = c.read_reply().await.unwrap();
        assert_eq!(trailer["blake3"].as_str().unwrap(), hash(&body));
        got.push(body.to_vec());
        assert_eq!(got.last().unwrap(), expected);
    }
    match c.read_reply().await {
        Err(sockit::Error::Remote { code, .. }) => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("a get of a missing file: {other:?}"),
    }
}

/// Rewrites the file being sent when the transfer is half way.
struct RewriteMidway {
    path: PathBuf,
    seen: u64,
    total: u64,
    done: bool,
}

impl Progress for RewriteMidway {
    fn start(&mut self, total: u64, _done: u64) {
        self.total = total;
    }
    fn advance(&mut self, n: u64) {
        self.seen += n;
        if !self.done && self.seen >= self.total / 2 {
            self.done = true;
            // In place, never shorter (a truncating rewrite would be a different failure):
            // its first byte flipped and one byte added at the end.
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .unwrap();
            let len = file.metadata().unwrap().len();
            file.write_all_at(&[0xAA], 0).unwrap();
            file.write_all_at(&[1], len).unwrap();
        }
    }
}

#[tokio::test]
async fn a_file_that_changes_while_it_is_sent_is_reported_and_not_stored() {
    let fx = Fixture::new().await;
    let path = fx.local("moving.bin", &vec![5u8; 8 << 20]);
    let mut c = fx.client("bob").await;
    let mut rewrite = RewriteMidway {
        path: path.clone(),
        seen: 0,
        total: 0,
        done: false,
    };
    let err = c
        .put(&path, "moving.bin", false, &mut rewrite)
        .await
        .unwrap_err();
    assert!(rewrite.done);
    assert!(
        err.to_string().contains("changed while it was being sent"),
        "{err}"
    );
    assert!(
        !fx.home("bob").join("moving.bin").exists(),
        "no torn copy is stored"
    );
    // The connection goes on, and the file as it is now goes up.
    c.put(&path, "moving.bin", false, &mut Quiet).await.unwrap();
    assert_eq!(
        std::fs::read(fx.home("bob").join("moving.bin")).unwrap(),
        std::fs::read(&path).unwrap()
    );
}

/// `sockit ARGS` against `server` as ann, with `dir` as its folder.
fn sockit_as_ann(server: &ServerProcess, dir: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(sockit_bin())
        .args(args)
        .args(["-s", &server.addr("native"), "-u", "ann"])
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", "pw-ann")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Files under `dir` whose name is final (not a partial file), recursively.
fn final_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(final_files(&path));
        } else if !entry
            .file_name()
            .to_string_lossy()
            .ends_with(".sockit-part")
        {
            out.push(path);
        }
    }
    out
}

/// A temporary folder with a data folder in it that has user `ann` (password `pw-ann`).
fn ann_data() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["user", "add", "ann", "--password-stdin", "--data"];
    let added = sockit_with_input(&[&args[..], &[data.to_str().unwrap()]].concat(), "pw-ann\n");
    assert!(added.status.success(), "{added:?}");
    (dir, data)
}

fn report_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_killed_folder_upload_is_finished_by_a_rerun_and_never_shows_a_partial_file() {
    let (dir, data) = ann_data();
    let data_arg = data.to_str().unwrap();
    let src = dir.path().join("photos");
    let files = sample_tree(&src, 1500);
    let home = data.join("homes/ann/photos");
    for victim in ["client", "server"] {
        let _ = std::fs::remove_dir_all(&home);
        let mut server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
        let mut client = sockit_as_ann(&server, dir.path(), &["put", "-r", "photos"]);
        // Kill one side once some files are stored, well before all are.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while final_files(&home).len() < 100 {
            assert!(std::time::Instant::now() < deadline, "no progress");
            assert!(
                client.try_wait().unwrap().is_none(),
                "finished before the kill"
            );
            std::thread::sleep(std::time::Duration::from_millis(2)); // a poll, not a wait for time
        }
        match victim {
            "client" => client.kill().unwrap(),
            _ => server.child.kill().unwrap(),
        }
        let _ = client.wait();
        drop(server); // stopped, by its PID, if it still runs
        // Whatever is visible under its own name is whole and right.
        let stored = final_files(&home);
        assert!(
            stored.len() < files.len(),
            "{victim}: the kill came too late"
        );
        for copy in &stored {
            let original = src.join(copy.strip_prefix(&home).unwrap());
            assert_eq!(
                std::fs::read(copy).unwrap(),
                std::fs::read(&original).unwrap()
            );
        }
        // The rerun sends only the rest.
        let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
        let rerun = sockit_as_ann(&server, dir.path(), &["put", "-r", "photos"]);
        let out = rerun.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let line = report_line(&out);
        let unchanged = format!("{} unchanged", stored.len());
        assert!(
            line.contains(&unchanged),
            "{victim}: {line} (expected {unchanged})"
        );
        assert_copied(&src, &home, &files);
    }
}

#[test]
fn put_r_and_get_r_from_the_command_line_report_what_they_did() {
    let (dir, data) = ann_data();
    let data_arg = data.to_str().unwrap();
    let src = dir.path().join("site");
    let files = sample_tree(&src, 20);
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--data", data_arg], 1);
    let up = sockit_as_ann(&server, dir.path(), &["put", "-r", "site", "www"])
        .wait_with_output()
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    let line = report_line(&up);
    assert!(
        line.contains(&format!("sent {} files", files.len())),
        "{line}"
    );
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(err.contains("skipped docs/passwd: a symlink"), "{err}");
    let down = sockit_as_ann(&server, dir.path(), &["get", "-r", "www", "copy"])
        .wait_with_output()
        .unwrap();
    assert!(down.status.success(), "{down:?}");
    assert_copied(&src, &dir.path().join("copy"), &files);
    let again = sockit_as_ann(&server, dir.path(), &["get", "-r", "www", "copy"])
        .wait_with_output()
        .unwrap();
    assert!(
        report_line(&again).contains(&format!("{} unchanged", files.len())),
        "{again:?}"
    );
    // A remote folder that is not there is one clear error.
    let missing = sockit_as_ann(&server, dir.path(), &["get", "-r", "nowhere"])
        .wait_with_output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nowhere"),
        "{missing:?}"
    );
}

/// The most resident memory process `pid` ever had, in bytes (Linux /proc).
fn peak_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_folder_of_100000_entries_is_listed_whole_and_in_order_in_flat_memory_on_both_sides() {
    use std::io::{BufRead, Write};

    const ENTRIES: usize = 100_000;
    // What listing it may add to either side's peak; the listing as one JSON body cost the
    // client 22 MB more (measured by this test); by pages, 0.4 MB here and 2 MB on the server.
    const FLAT: u64 = 8 << 20;
    let (dir, data) = ann_data();
    let big = data.join("homes/ann/big");
    std::fs::create_dir_all(&big).unwrap();
    // Made in reverse, so that directory order is not already name order.
    for i in (0..ENTRIES).rev() {
        std::fs::File::create(big.join(format!("f{i:06}"))).unwrap();
    }
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        1,
    );
    let mut shell = std::process::Command::new(sockit_bin())
        .args(["shell", "-s", &server.addr("native"), "-u", "ann"])
        .envs(server.client_env())
        .env("SOCKIT_PASSWORD", "pw-ann")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut to_shell = shell.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(shell.stdout.take().unwrap()).lines();
    // Logged in and settled: the peaks so far are the baselines.
    writeln!(to_shell, "pwd").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "/");
    let (client_before, server_before) = (peak_of(shell.id()), server.rss_peak());

    writeln!(to_shell, "ls big").unwrap();
    let mut listed = Vec::with_capacity(ENTRIES);
    let mut client_during = 0;
    while listed.len() < ENTRIES {
        listed.push(lines.next().unwrap().unwrap());
        if listed.len() == ENTRIES * 9 / 10 {
            // The shell cannot have finished: what is left does not fit the pipe.
            client_during = peak_of(shell.id());
        }
    }
    drop(to_shell);
    assert_eq!(
        lines.next().map(Result::unwrap),
        None,
        "more than {ENTRIES} lines"
    );
    assert!(shell.wait().unwrap().success());

    let expected: Vec<String> = (0..ENTRIES).map(|i| format!("f{i:06}")).collect();
    assert!(listed == expected, "not every entry, once, in name order");
    let client_grew = client_during.saturating_sub(client_before);
    let server_grew = server.rss_peak().saturating_sub(server_before);
    assert!(client_grew < FLAT, "the client grew by {client_grew} bytes");
    assert!(server_grew < FLAT, "the server grew by {server_grew} bytes");
}

/// A Unix socket buffers what its sender wrote up to the sender's send buffer (about
/// 208 KiB by default) and never grows it, unlike loopback TCP. A window of `write`s that
/// are all refused, each refusal naming a path of about 1,000 bytes, is answered with more
/// than that, and the requests behind them are more than that too: a client that reads
/// replies only once its window is written waits on the server to read, while the server
/// waits on it to read, until the idle timeout ends the connection.
#[test]
fn a_window_of_refused_writes_whose_replies_outgrow_the_socket_buffers_is_answered_whole() {
    let (dir, data) = ann_data();
    // 600 files of 2 KiB in the deep folder; on the server, a folder already holds each
    // file's name, so every `write` is refused.
    let deep = deep_folder();
    let src = dir.path().join("long");
    std::fs::create_dir_all(src.join(&deep)).unwrap();
    let taken = data.join("homes/ann/long").join(&deep);
    for i in 0..600 {
        let name = format!("file-{i:04}");
        std::fs::write(src.join(&deep).join(&name), format!("{i:04}").repeat(512)).unwrap();
        std::fs::create_dir_all(taken.join(&name)).unwrap();
    }
    let out = over_unix_socket(dir.path(), &data, &["put", "-r", "long"]);
    // Every refusal reported, and the report of the whole run: the connection lasted.
    let err = String::from_utf8_lossy(&out.stderr);
    let refused = err
        .lines()
        .filter(|l| l.starts_with("sockit: failed "))
        .count();
    assert_eq!(refused, 600, "{err}");
    let line = report_line(&out);
    assert!(line.contains("sent 0 files"), "{line}\n{err}");
    assert!(line.contains("600 failed"), "{line}\n{err}");
}

/// The other way: two windows of `get`s naming paths of about 1,000 bytes are more than a
/// Unix socket holds, and so are the files that answer the first window. A client that
/// waits to have written all its requests before it reads would wait on a server that
/// waits on it to read.
#[test]
fn a_window_of_gets_larger_than_the_socket_buffers_is_answered_whole() {
    let (dir, data) = ann_data();
    let deep = deep_folder();
    let home = data.join("homes/ann/long");
    std::fs::create_dir_all(home.join(&deep)).unwrap();
    for i in 0..600 {
        let body = format!("{i:04}").repeat(512);
        std::fs::write(home.join(&deep).join(format!("file-{i:04}")), body).unwrap();
    }
    let out = over_unix_socket(dir.path(), &data, &["get", "-r", "long", "copy"]);
    assert!(out.status.success(), "{out:?}");
    let copy = dir.path().join("copy").join(&deep);
    for i in 0..600 {
        let name = format!("file-{i:04}");
        assert_eq!(
            std::fs::read(copy.join(&name)).unwrap(),
            std::fs::read(home.join(&deep).join(&name)).unwrap()
        );
    }
}

/// Four folders, one in the other, of 240-byte names: a path of about 1,000 bytes.
fn deep_folder() -> PathBuf {
    ["a", "b", "c", "d"].iter().map(|c| c.repeat(240)).collect()
}

/// Runs `sockit ARGS` as ann in `dir` against a server of `data` on a Unix socket (whose
/// buffers do not grow), with an idle timeout that soon ends a stalled connection: its
/// output. The server is stopped after.
fn over_unix_socket(dir: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let listen = format!("unix:{}", dir.join("native.sock").display());
    let data = data.to_str().unwrap();
    let server = ServerProcess::start(
        &["--listen", &listen, "--data", data, "--idle-timeout", "10"],
        1,
    );
    let out = std::process::Command::new(sockit_bin())
        .args(args)
        .args(["-s", &listen, "-u", "ann"])
        .env("SOCKIT_PASSWORD", "pw-ann")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    drop(server);
    out
}
