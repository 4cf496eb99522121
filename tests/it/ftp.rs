//! The file server as a person runs it: `sockit user`, `serve`, `put`/`get`/`ls`, a scripted
//! `shell`, and a server killed in the middle of an upload.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use sockit::client::Client;

use crate::common::{ServerProcess, output_with_input, sockit_bin};

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str, dir: &Path) -> Output {
    let mut command = Command::new(sockit_bin());
    command
        .args(args)
        .envs(env.iter().copied())
        .env_remove("SOCKIT_USER")
        // Trust on first use, remembered in this test's own known-hosts file.
        .env("SOCKIT_TRUST", "accept-new")
        .env("SOCKIT_KNOWN_HOSTS", dir.join("known_hosts"))
        .current_dir(dir);
    output_with_input(&mut command, stdin)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn add_user(dir: &Path, name: &str, password: &str, extra: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin", "--data", "data"];
    args.extend_from_slice(extra);
    let out = run(&args, &[], &format!("{password}\n"), dir);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "carol", "pw", &["--quota", "10MB"]);
    let dup = run(
        &["user", "add", "carol", "--password-stdin", "--data", "data"],
        &[],
        "x\n",
        dir.path(),
    );
    assert!(!dup.status.success());
    let list = run(&["user", "list", "--data", "data"], &[], "", dir.path());
    assert!(text(&list).contains("carol"), "{list:?}");
    let db = std::fs::read(dir.path().join("data/users.db")).unwrap();
    assert!(
        String::from_utf8_lossy(&db).contains("$argon2id$"),
        "stored as an argon2id hash"
    );
    let del = run(
        &["user", "del", "carol", "--data", "data"],
        &[],
        "",
        dir.path(),
    );
    assert!(del.status.success());
    assert!(
        !text(&run(
            &["user", "list", "--data", "data"],
            &[],
            "",
            dir.path()
        ))
        .contains("carol")
    );
}

#[test]
fn put_get_ls_and_a_scripted_shell_session() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "dave", "s3cret", &[]);
    let server = ServerProcess::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().join("data").to_str().unwrap(),
        ],
        1,
    );
    let addr = server.addr("native");
    let env = [("SOCKIT_PASSWORD", "s3cret")];
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.path().join("up.bin"), &payload).unwrap();

    let put = run(
        &["put", "up.bin", "-s", &addr, "-u", "dave"],
        &env,
        "",
        dir.path(),
    );
    assert!(put.status.success(), "{put:?}");
    assert!(
        text(&put).contains("stored up.bin: 2000000 bytes"),
        "{}",
        text(&put)
    );
    let ls = run(&["ls", "-s", &addr, "-u", "dave"], &env, "", dir.path());
    assert!(text(&ls).contains("up.bin"), "{}", text(&ls));
    let get = run(
        &["get", "up.bin", "down.bin", "-s", &addr, "-u", "dave"],
        &env,
        "",
        dir.path(),
    );
    assert!(get.status.success(), "{get:?}");
    assert_eq!(std::fs::read(dir.path().join("down.bin")).unwrap(), payload);

    let bad = run(
        &["ls", "-s", &addr, "-u", "dave"],
        &[("SOCKIT_PASSWORD", "nope")],
        "",
        dir.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("auth_failed"));

    let script = "\
# a scripted session
mkdir docs
cd docs
put up.bin copy.bin
ls
pwd
get copy.bin back.bin
cd ..
rm docs
mkdir never-made
";
    let shell = run(
        &["shell", "-s", &addr, "-u", "dave"],
        &env,
        script,
        dir.path(),
    );
    let out = text(&shell);
    assert!(
        !shell.status.success(),
        "rm of a folder without -r fails the script"
    );
    assert!(
        out.contains("stored /docs/copy.bin: 2000000 bytes"),
        "{out}"
    );
    assert!(out.contains("/docs\n"), "{out}");
    assert!(
        String::from_utf8_lossy(&shell.stderr).contains("line 9"),
        "{shell:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("back.bin")).unwrap(), payload);
    let home = dir.path().join("data/homes/dave");
    assert!(home.join("docs/copy.bin").exists());
    assert!(
        !home.join("never-made").exists(),
        "the script stopped at the failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "erin", "pw-erin", &[]);
    let data = dir.path().join("data");
    let args = ["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()];
    let server = ServerProcess::start(&args, 1);
    let addr = server.addr("native");
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let local = dir.path().join("big.bin");
    std::fs::write(&local, &payload).unwrap();

    let endpoint = addr.parse().unwrap();
    let mut client = Client::connect(&endpoint).await.unwrap();
    client.login("erin", "pw-erin").await.unwrap();
    client
        .call(
            &json!({"op": "put", "path": "big.bin", "size": payload.len()}),
            b"",
        )
        .await
        .unwrap();
    let conn = client.connection();
    conn.queue_head(&json!({"op": "data"}), payload.len() as u64)
        .unwrap();
    conn.queue_raw(&payload[..1_500_000]);
    conn.flush().await.unwrap();
    let part = data.join("homes/erin/.big.bin.sockit-part");
    // The server writes whole chunks; wait until a megabyte of them is on disk.
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 1_000_000 {
        tokio::task::yield_now().await;
    }
    drop(server); // SIGKILL, mid-upload
    drop(client);

    // Restart on the same port at once (SO_REUSEADDR), then resume from the command line.
    let again = ServerProcess::start(&["--listen", &addr, "--data", data.to_str().unwrap()], 1);
    assert_eq!(again.addr("native"), addr);
    let put = run(
        &["put", "--resume", "big.bin", "-s", &addr, "-u", "erin"],
        &[("SOCKIT_PASSWORD", "pw-erin")],
        "",
        dir.path(),
    );
    assert!(put.status.success(), "{put:?}");
    assert!(text(&put).contains(", resumed at "), "{}", text(&put));
    assert_eq!(
        std::fs::read(data.join("homes/erin/big.bin")).unwrap(),
        payload
    );
    assert!(!part.exists());
}
