//! A machine without the sandbox, pretended with `SOCKIT_EXEC_PRETEND_MISSING` (the helper
//! then fails or skips that part as it would on such a kernel): `serve --allow-exec` refuses
//! to start and says what is missing; `--exec-unconfined` starts it with what is left, and
//! that really is less; on a machine with the sandbox the flag changes nothing.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};

use sockit::client::Client;
use sockit::runner::{Exit, PRETEND_MISSING};
use tempfile::TempDir;

use super::{add_users, run};
use crate::common::sockit_bin;

/// A `sockit serve` child, killed on drop.
struct Server {
    child: Child,
    addr: String,
    data: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sockit serve ARGS` with [`PRETEND_MISSING`] set to `missing` (unless empty): the
/// server once it listens, or its exit status and stderr when it refuses to start.
fn serve(missing: &str, extra: &[&str]) -> Result<Server, (ExitStatus, String)> {
    let data = tempfile::tempdir().unwrap();
    add_users(data.path());
    for user in ["ann", "bob"] {
        std::fs::create_dir_all(data.path().join("homes").join(user)).unwrap();
    }
    std::fs::write(data.path().join("homes/bob/secret.txt"), "bob's secret\n").unwrap();
    let mut command = Command::new(sockit_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !missing.is_empty() {
        command.env(PRETEND_MISSING, missing);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The listener line, or the end of stdout when the server exits instead.
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("sockit: native protocol on ")
        .and_then(|rest| rest.split_whitespace().next());
    match addr {
        Some(addr) => Ok(Server {
            addr: addr.to_string(),
            child,
            data,
        }),
        None => {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            Err((child.wait().unwrap(), err))
        }
    }
}

async fn login_ann(server: &Server) -> Client {
    let mut c = Client::connect(&server.addr.parse().unwrap())
        .await
        .unwrap();
    c.login("ann", "pw-ann").await.unwrap();
    c
}

#[test]
fn exec_is_refused_where_part_of_the_sandbox_is_missing_and_says_which() {
    for missing in ["landlock", "namespaces", "helper"] {
        let refused = serve(missing, &["--allow-exec"]);
        let Err((status, err)) = refused else {
            panic!("started exec without {missing}");
        };
        assert!(!status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("sockit: exec needs its sandbox"), "{err}");
        assert!(err.contains(&format!("({missing}: ")), "{err}");
        assert!(err.contains("--exec-unconfined"), "{err}");
        // Without exec, nothing needs the sandbox.
        assert!(serve(missing, &[]).is_ok(), "{missing}");
    }
}

#[tokio::test]
async fn exec_unconfined_runs_commands_with_only_what_the_machine_has() {
    // No Landlock: the files are open (this is what the flag accepts), the namespaces are
    // still there.
    let server = serve("landlock", &["--allow-exec", "--exec-unconfined"]).unwrap();
    let mut ann = login_ann(&server).await;
    let (out, err, exit) = run(&mut ann, "cat ../bob/secret.txt; echo $PPID")
        .await
        .unwrap();
    assert_eq!(
        (out.as_str(), exit),
        ("bob's secret\n0\n", Exit::Code(0)),
        "{err}"
    );
    // No namespaces: Landlock still keeps bob's home closed; the shell is the helper's child.
    let server = serve("namespaces", &["--allow-exec", "--exec-unconfined"]).unwrap();
    let mut ann = login_ann(&server).await;
    let (out, err, _) = run(&mut ann, "cat ../bob/secret.txt").await.unwrap();
    assert!(
        out.is_empty() && err.contains("Permission denied"),
        "{out}{err}"
    );
    // No helper at all: a plain `sh -c`, the server's own child.
    let server = serve("helper", &["--allow-exec", "--exec-unconfined"]).unwrap();
    let mut ann = login_ann(&server).await;
    let (out, _, _) = run(&mut ann, "cat ../bob/secret.txt; echo $PPID")
        .await
        .unwrap();
    assert_eq!(out, format!("bob's secret\n{}\n", server.child.id()));
    assert!(server.data.path().exists());
}

#[tokio::test]
async fn exec_unconfined_changes_nothing_where_the_sandbox_is_complete() {
    let server = serve("", &["--allow-exec", "--exec-unconfined"]).unwrap();
    let mut ann = login_ann(&server).await;
    let (out, err, exit) = run(&mut ann, "cat ../bob/secret.txt").await.unwrap();
    assert_ne!(exit, Exit::Code(0));
    assert!(
        out.is_empty() && err.contains("Permission denied"),
        "{out}{err}"
    );
}
