//! The runner with real shells: streams, exits, signals, environment, cap, deadline; and the
//! sandbox's decisions. The sandbox itself needs the sockit binary as its helper, which unit
//! tests do not have: tests/it/exec/sandbox.rs runs commands in it through real servers.

use std::path::PathBuf;

use super::*;

/// A folder for commands to run in, kept for the whole test run.
fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn spec(command: &str) -> Spec<'_> {
    Spec {
        command,
        user: None,
        home: scratch(),
        stdin: false,
    }
}

async fn run_buffered(spec: &Spec<'_>, limits: &ExecLimits) -> io::Result<Buffered> {
    super::run_buffered(spec, limits, &Sandbox::none()).await
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
        command: "pwd; env | sort; echo tmp=$TMPDIR; ls -d $TMPDIR",
        user: Some("ann"),
        home: home.path(),
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
    let vars: Vec<&str> = lines
        .take_while(|l| !l.starts_with("tmp="))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    for var in &vars {
        assert!(
            [
                "HOME", "LANG", "LOGNAME", "PATH", "PWD", "SHLVL", "TMPDIR", "USER", "_"
            ]
            .contains(var),
            "unexpected variable {var} in {text}"
        );
    }
    assert!(text.contains("USER=ann\n") && text.contains(&format!("PATH={PATH}\n")));
    // A temp folder of the command's own, there while it runs, gone once it ended.
    let tmp = text.lines().find_map(|l| l.strip_prefix("tmp=")).unwrap();
    assert!(tmp.contains("sockit-exec-"), "{text}");
    assert!(text.ends_with(&format!("{tmp}\n")), "{text}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while Path::new(tmp).exists() {
        assert!(std::time::Instant::now() < deadline, "{tmp} stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

#[test]
fn exec_starts_with_the_whole_sandbox_or_only_when_told_to() {
    let missing = |helper_runs| {
        Err(Lack {
            helper_runs,
            why: "landlock: not supported".into(),
        })
    };
    assert_eq!(decide(&Ok(()), false), Ok(Confinement::Full));
    assert_eq!(decide(&Ok(()), true), Ok(Confinement::Full));
    let refused = decide(&missing(true), false).unwrap_err();
    assert!(refused.contains("(landlock: not supported)"), "{refused}");
    assert!(refused.contains("--exec-unconfined"), "{refused}");
    assert_eq!(decide(&missing(true), true), Ok(Confinement::Partial));
    assert!(decide(&missing(false), false).is_err());
    assert_eq!(decide(&missing(false), true), Ok(Confinement::None));
}

#[test]
fn server_files_under_a_path_every_command_reads_are_found() {
    assert_eq!(
        access::exposed_by(Path::new("/usr/share")),
        Some(PathBuf::from("/usr"))
    );
    assert!(access::exposed_by(Path::new("/etc/passwd")).is_some());
    let data = tempfile::tempdir().unwrap();
    assert_eq!(access::exposed_by(data.path()), None);
    // Landlock cannot take a file out of a folder it grants: /etc is granted file by file.
    assert_eq!(access::exposed_by(Path::new("/etc/shadow")), None);
    assert_eq!(access::exposed_by(Path::new("/etc/ssl/private")), None);
}

#[test]
fn helper_roles_are_found_by_their_first_argument() {
    let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    assert!(helper_main(&args(&["sockit", "serve"])).is_none());
    assert!(helper_main(&args(&["sockit"])).is_none());
    let bad = helper_main(&args(&["sockit", "__sandbox", "{", "true"]));
    assert!(
        matches!(&bad, Some(Err(e)) if e == "the plan is not valid JSON"),
        "{bad:?}"
    );
}
