//! The file system sandbox against a real `sockit serve --allow-exec`: ann's command reads and
//! writes her home, reads the system's programs, and is refused by the kernel everywhere else
//! (bob's home, `users.db`, the TLS key, the data folder, `/etc/shadow`, `/tmp`), however it
//! names the place (`..`, symlinks and hard links in her home, `/proc/PID/root`,
//! `/proc/self/cwd`); it inherits no file of the server's, sees none of its processes and can
//! signal none; the seed listener's commands get the same sandbox. Each refusal is checked
//! by its message and by the target staying as it was.

use std::path::Path;

use sockit::client::Client;
use sockit::runner::Exit;
use tempfile::TempDir;

use super::cli::serve;
use super::{mark, marked, run};
use crate::common::ServerProcess;

/// A real server with exec, ann logged in, and bob's home holding `secret.txt`.
async fn setup() -> (ServerProcess, TempDir, Client) {
    let (server, data) = serve(&["--allow-exec"]);
    let endpoint = server.addr("native").parse().unwrap();
    let mut ann = Client::connect(&endpoint).await.unwrap();
    ann.login("ann", "pw-ann").await.unwrap();
    for user in ["ann", "bob"] {
        std::fs::create_dir_all(data.path().join("homes").join(user)).unwrap();
    }
    std::fs::write(data.path().join("homes/bob/secret.txt"), "bob's secret\n").unwrap();
    (server, data, ann)
}

/// Runs `command` as ann and asserts that the kernel refused it: a non-zero exit and
/// "Permission denied" (or `expected`) on stderr, nothing on stdout.
async fn refused(ann: &mut Client, command: &str, expected: &str) {
    let (out, err, exit) = run(ann, command).await.unwrap();
    assert_ne!(exit, Exit::Code(0), "`{command}` ran: {out}{err}");
    assert!(err.contains(expected), "`{command}`: {err}");
    assert!(out.is_empty(), "`{command}` printed {out}");
}

/// Runs `command` as ann and returns its stdout, asserting that it succeeded.
async fn allowed(ann: &mut Client, command: &str) -> String {
    let (out, err, exit) = run(ann, command).await.unwrap();
    assert_eq!(exit, Exit::Code(0), "`{command}`: {err}");
    out
}

/// Size and contents of a file, to show that a refused command left it as it was.
fn snapshot(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

const DENIED: &str = "Permission denied";

#[tokio::test]
async fn a_command_reads_and_writes_its_home_and_no_other() {
    let (_server, data, mut ann) = setup().await;
    let d = data.path().display();
    // Her home: create, read, list, rename, delete; and a private temp folder.
    let out = allowed(
        &mut ann,
        "echo mine > mine.txt && mkdir -p a/b && mv mine.txt a/b/ && cat a/b/mine.txt && \
         ls a/b && rm -r a && echo t > $TMPDIR/t && cat $TMPDIR/t",
    )
    .await;
    assert_eq!(out, "mine\nmine.txt\nt\n");
    // Bob's home, by relative and absolute names: no read, list, write, create or delete.
    let secret = data.path().join("homes/bob/secret.txt");
    let before = snapshot(&secret);
    for command in [
        "cat ../bob/secret.txt".to_string(),
        format!("cat {d}/homes/bob/secret.txt"),
        "ls ../bob".into(),
        "echo stolen > ../bob/secret.txt".into(),
        "echo more >> ../bob/secret.txt".into(),
        "truncate -s 0 ../bob/secret.txt".into(),
        "touch ../bob/new.txt".into(),
        "mkdir ../bob/dir".into(),
        "rm -f ../bob/secret.txt".into(),
        "mv ../bob/secret.txt .".into(),
    ] {
        refused(&mut ann, &command, DENIED).await;
    }
    assert_eq!(snapshot(&secret), before);
    let bob: Vec<_> = std::fs::read_dir(data.path().join("homes/bob"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(bob, ["secret.txt"]);
    // A hard link into her home would be a second name for his file: refused too.
    let (_, err, exit) = run(&mut ann, "ln ../bob/secret.txt stolen.txt")
        .await
        .unwrap();
    assert_ne!(exit, Exit::Code(0));
    assert!(
        err.contains(DENIED) || err.contains("Invalid cross-device link"),
        "{err}"
    );
    assert!(!data.path().join("homes/ann/stolen.txt").exists());
}

#[tokio::test]
async fn the_server_s_own_files_and_the_rest_of_the_machine_are_refused() {
    let (_server, data, mut ann) = setup().await;
    let d = data.path().display();
    let db = data.path().join("users.db");
    let key = data.path().join("tls/key.pem");
    let (db_before, key_before) = (snapshot(&db), snapshot(&key));
    for command in [
        format!("cat {d}/users.db"),
        "cat ../../users.db".into(),
        format!(": > {d}/users.db"),
        format!("truncate -s 0 {d}/users.db"),
        format!("rm -f {d}/users.db"),
        format!("cat {d}/tls/key.pem"),
        format!("cp {d}/tls/key.pem ."),
        format!("ls {d}"),
        format!("ls {d}/tls"),
        format!("touch {d}/planted"),
        "ls ..".into(),
        "cat /etc/shadow".into(),
        "ls /etc".into(),
        "ls /root".into(),
        "ls /".into(),
        "touch /tmp/sockit-escape".into(),
        "touch /usr/sockit-escape".into(),
        "echo x >> /etc/passwd".into(),
        "ls /dev/shm".into(),
    ] {
        refused(&mut ann, &command, DENIED).await;
    }
    // Nor the disks underneath, which hold all of it.
    for disk in ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/loop0"] {
        if Path::new(disk).exists() {
            refused(&mut ann, &format!("head -c 16 {disk}"), DENIED).await;
        }
    }
    assert_eq!((snapshot(&db), snapshot(&key)), (db_before, key_before));
    assert!(!Path::new("/tmp/sockit-escape").exists() && !Path::new("/usr/sockit-escape").exists());
    // What programs need stays readable, and runs.
    let out = allowed(
        &mut ann,
        "grep -c ^root: /etc/passwd && ls -l /usr/bin/env >/dev/null && python3 -c 'print(6*7)'",
    )
    .await;
    assert_eq!(out, "1\n42\n");
}

#[tokio::test]
async fn dotdot_symlinks_and_proc_lead_nowhere_new() {
    let (server, data, mut ann) = setup().await;
    let d = data.path().display();
    let pid = server.child.id();
    let out = allowed(
        &mut ann,
        &format!(
            "ln -s ../bob bob && ln -s {d}/users.db db && ln -s / root && ln -s {d}/tls tls && \
             echo planted"
        ),
    )
    .await;
    assert_eq!(out, "planted\n");
    for command in [
        "cat bob/secret.txt".to_string(),
        "ls bob/".into(),
        "echo x > bob/secret.txt".into(),
        "cat db".into(),
        "cat tls/key.pem".into(),
        "ls root/".into(),
        "cat root/etc/shadow".into(),
        "cat ./../bob/secret.txt".into(),
        "cat /proc/self/cwd/../bob/secret.txt".into(),
        "cat /proc/self/root/etc/shadow".into(),
        format!("cat /proc/self/root{d}/users.db"),
        "ls /proc/1/root/".into(),
        "ls -l /proc/1/cwd/".into(),
        "cat /proc/1/environ".into(),
    ] {
        refused(&mut ann, &command, DENIED).await;
    }
    assert_eq!(
        std::fs::read_to_string(data.path().join("homes/bob/secret.txt")).unwrap(),
        "bob's secret\n"
    );
    // The server's processes are not in the command's /proc at all, nor its to signal.
    for command in [
        format!("cat /proc/{pid}/root{d}/users.db"),
        format!("ls /proc/{pid}/cwd/"),
    ] {
        refused(&mut ann, &command, "No such file or directory").await;
    }
    refused(&mut ann, &format!("kill -9 {pid}"), "No such process").await;
    let out = allowed(&mut ann, "echo $PPID; ls /proc | grep -c '^[0-9]'").await;
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("0"),
        "the shell's parent is outside: {out}"
    );
    let processes: usize = lines.next().unwrap().parse().unwrap();
    assert!(processes < 10, "{processes} processes visible: {out}");
}

#[tokio::test]
async fn a_command_inherits_no_file_of_the_server() {
    let (_server, _data, mut ann) = setup().await;
    // Landlock checks opens, not descriptors already open: a server file left open across
    // exec (users.db, the TLS key, a socket) would be a way around it. Only stdio, and the
    // folder `ls` itself opened.
    let out = allowed(&mut ann, "ls /proc/self/fd/").await;
    assert_eq!(out, "0\n1\n2\n3\n");
}

#[tokio::test]
async fn no_signal_reaches_the_server_or_another_user_s_command() {
    let (mut server, _data, mut ann) = setup().await;
    let endpoint = server.addr("native").parse().unwrap();
    let mut bob = Client::connect(&endpoint).await.unwrap();
    bob.login("bob", "pw-bob").await.unwrap();
    let mark = mark();
    let bobs = format!("sleep {mark}; echo bob survived");
    // Bob's command runs while ann's signals everything she can (`kill -1`: every process
    // the sender may signal).
    let ann_kills = async {
        super::wait_count("bob's sleep", 1, || marked(&mark)).await;
        let ran = run(&mut ann, "kill -9 -1; echo ann done").await;
        assert_eq!(ran.unwrap().0, "ann done\n");
        // Bob's sleep is still there; end it so that his command finishes.
        assert_eq!(marked(&mark).len(), 1);
        super::kill("-TERM", &marked(&mark));
    };
    let (bob_ran, ()) = tokio::join!(run(&mut bob, &bobs), ann_kills);
    assert_eq!(bob_ran.unwrap().0, "bob survived\n");
    assert!(server.is_running());
    assert_eq!(&ann.echo(b"still here").await.unwrap()[..], b"still here");
}

#[tokio::test]
async fn seed_exec_commands_run_in_the_same_sandbox_in_a_scratch_folder() {
    let (server, data) = serve(&["--allow-exec", "--seed-exec", "127.0.0.1:0"]);
    std::fs::create_dir_all(data.path().join("homes/bob")).unwrap();
    std::fs::write(data.path().join("homes/bob/secret.txt"), "bob's secret\n").unwrap();
    let endpoint = server.addr("seed-exec").parse().unwrap();
    let ask = |command: String| {
        let endpoint = &endpoint;
        async move {
            let mut out = Vec::new();
            sockit::seed::command::request(endpoint, &command, &mut out)
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let d = data.path().display();
    let out = ask("pwd; echo hi > f; cat f".into()).await;
    assert!(
        out.contains("/sockit-seed-") && out.ends_with("\nhi\n"),
        "{out}"
    );
    for command in [
        format!("cat {d}/users.db"),
        format!("cat {d}/homes/bob/secret.txt"),
        format!("cat {d}/tls/key.pem"),
        "cat /etc/shadow".into(),
    ] {
        let out = ask(command.clone()).await;
        assert!(out.contains(DENIED), "`{command}`: {out}");
    }
}

#[tokio::test]
async fn the_machine_s_unix_sockets_under_run_are_out_of_reach() {
    let (_server, _data, mut ann) = setup().await;
    // A service's socket where services keep theirs (the Docker daemon's, D-Bus): Landlock
    // does not check `connect` to a socket file, so the sandbox hides /run instead.
    let path = std::path::PathBuf::from(format!("/run/sockit-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let connect = format!(
        "python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{}')\"",
        path.display()
    );
    refused(&mut ann, &connect, "FileNotFoundError").await;
    refused(
        &mut ann,
        &format!("ls -l {}", path.display()),
        "No such file",
    )
    .await;
    drop(listener);
    std::fs::remove_file(&path).unwrap();
}
