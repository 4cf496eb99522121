//! Jobs that detach from their command (`setsid`, `setsid -f`, a double fork, a process group
//! of their own): they end with it, leave nothing running in the home, and so cannot get past
//! the per-user limit.

use sockit::runner::{ExecLimits, Exit};

use super::{DETACHED, Fixture, detach_then_exit, marked, run, wait_count, wait_ended};

#[tokio::test]
async fn jobs_that_detach_end_with_their_command() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    let (mark, _left) = fx.mark("ann");
    // The command waits until each job has started (a fifo each) before it exits.
    let (_, err, exit) = run(&mut c, &detach_then_exit(&mark)).await.unwrap();
    assert_eq!(exit, Exit::Code(7), "{err}");
    // Nor does anything else of the command run on (the sandbox's own PID 1 included).
    wait_ended(&mark, &fx.home("ann")).await;
}

#[tokio::test]
async fn detached_jobs_are_seen_running_then_end_with_the_command() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    let (mark, _left) = fx.mark("ann");
    // The command stays until the test has seen its jobs from outside, then exits.
    let command = format!(
        "{}read x < go.fifo; exit 7",
        detach_then_exit(&mark).trim_end_matches("exit 7")
    );
    std::fs::create_dir_all(fx.home("ann")).unwrap();
    let go = fx.home("ann").join("go.fifo");
    let made = std::process::Command::new("mkfifo").arg(&go).status();
    assert!(made.unwrap().success());
    let release = async {
        wait_count("started", DETACHED, || marked(&mark)).await;
        // Opening the fifo for writing waits for the command's reader: off the runtime.
        let go = go.clone();
        tokio::task::spawn_blocking(move || std::fs::write(go, "\n"))
            .await
            .unwrap()
            .unwrap();
    };
    let (ran, ()) = tokio::join!(run(&mut c, &command), release);
    let (_, err, exit) = ran.unwrap();
    assert_eq!(exit, Exit::Code(7), "{err}");
    wait_ended(&mark, &fx.home("ann")).await;
}

#[tokio::test]
async fn detached_jobs_do_not_get_past_the_per_user_limit() {
    let limit = 2;
    let fx = Fixture::new(Some(ExecLimits {
        max_per_user: limit,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    let (mark, _left) = fx.mark("ann");
    // Each command frees its slot when it exits; its detached jobs must not run on without one.
    for _ in 0..limit + 1 {
        let (_, err, exit) = run(&mut c, &detach_then_exit(&mark)).await.unwrap();
        assert_eq!(exit, Exit::Code(7), "{err}");
    }
    wait_ended(&mark, &fx.home("ann")).await;
}
