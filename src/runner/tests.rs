//! The runner with real shells: streams, exits, signals, environment, cap, deadline.

use super::*;

fn spec(command: &str) -> Spec<'_> {
    Spec {
        command,
        user: None,
        stdin: false,
    }
}

#[tokio::test]
async fn runner_separates_streams_and_reports_the_exit() {
    let r = run_buffered(
        &spec("echo out; echo err >&2; exit 3"),
        &ExecLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.end, End::Exit(Exit::Code(3)));
}

#[tokio::test]
async fn runner_reports_a_signal() {
    let r = run_buffered(&spec("kill -TERM $$"), &ExecLimits::default())
        .await
        .unwrap();
    assert_eq!(r.end, End::Exit(Exit::Signal(15)));
    assert_eq!(Exit::Signal(15).status_code(), 143);
}

#[tokio::test]
async fn runner_environment_is_minimal_and_in_the_home() {
    let home = tempfile::tempdir().unwrap();
    let spec = Spec {
        command: "pwd; env | sort",
        user: Some(("ann", home.path())),
        stdin: false,
    };
    let r = run_buffered(&spec, &ExecLimits::default()).await.unwrap();
    let text = String::from_utf8(r.stdout).unwrap();
    let mut lines = text.lines();
    let pwd = lines.next().unwrap();
    assert_eq!(
        std::fs::canonicalize(pwd).unwrap(),
        std::fs::canonicalize(home.path()).unwrap()
    );
    let vars: Vec<&str> = lines.map(|l| l.split('=').next().unwrap()).collect();
    for var in &vars {
        assert!(
            [
                "HOME", "LANG", "LOGNAME", "PATH", "PWD", "SHLVL", "USER", "_"
            ]
            .contains(var),
            "unexpected variable {var} in {text}"
        );
    }
    assert!(text.contains("USER=ann\n") && text.contains(&format!("PATH={PATH}\n")));
}

#[tokio::test]
async fn runner_cuts_output_at_the_cap_and_kills() {
    let limits = ExecLimits {
        max_output: 1000,
        ..ExecLimits::default()
    };
    let r = run_buffered(&spec("yes"), &limits).await.unwrap();
    assert_eq!(r.stdout.len() + r.stderr.len(), 1000);
    assert_eq!(r.end, End::OutputLimit);
}

#[tokio::test]
async fn runner_timeout_kills_background_jobs_too() {
    let limits = ExecLimits {
        timeout: Duration::from_millis(300),
        ..ExecLimits::default()
    };
    // The background sleep holds stdout open: only killing the group ends it.
    let r = run_buffered(&spec("sleep 60 & echo started; wait"), &limits)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"started\n");
    assert_eq!(r.end, End::Timeout);
}

#[tokio::test]
async fn runner_kills_background_jobs_when_the_shell_exits() {
    // Without the group kill at exit this would wait for the sleep (it holds stdout).
    let limits = ExecLimits {
        timeout: Duration::from_secs(60),
        ..ExecLimits::default()
    };
    let r = run_buffered(&spec("sleep 50 & echo bye"), &limits)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"bye\n");
    assert_eq!(r.end, End::Exit(Exit::Code(0)));
}

#[tokio::test]
async fn runner_kills_detached_jobs_when_the_shell_exits() {
    if sandbox() == Sandbox::ProcessGroup {
        eprintln!("skipped: no user and PID namespaces on this machine");
        return;
    }
    // The sleep leaves the process group (a session of its own) and holds stdout open: only
    // the end of the command's PID namespace ends the output. Left alive, it would hold the
    // run for a minute (past the deadline, whose group kill misses it too).
    let limits = ExecLimits {
        timeout: Duration::from_secs(60),
        ..ExecLimits::default()
    };
    // The fifo: the shell exits only once the sleep has left the group.
    let home = tempfile::tempdir().unwrap();
    let detach = Spec {
        command: "mkfifo f; setsid -f sh -c 'echo > f; exec sleep 60'; read x < f; echo bye",
        user: Some(("ann", home.path())),
        stdin: false,
    };
    let run = run_buffered(&detach, &limits);
    let r = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the detached sleep outlived its command")
        .unwrap();
    assert_eq!(r.stdout, b"bye\n");
    assert_eq!(r.end, End::Exit(Exit::Code(0)));
}
