//! Jobs that detach from their command (`setsid`, `setsid -f`, a double fork): they end with
//! it, leave nothing running in the home, and so cannot get past the per-user limit.

use std::path::Path;
use std::time::{Duration, Instant};

use sockit::runner::{ExecLimits, Exit};

use super::{
    DETACH_THEN_EXIT, Fixture, HANG_GUARD, Leftovers, gone, isolated, pids, run, wait_gone,
};

#[tokio::test]
async fn jobs_that_detach_end_with_their_command() {
    if !isolated("jobs_that_detach_end_with_their_command") {
        return;
    }
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    let (_, err, exit) = run(&mut c, DETACH_THEN_EXIT).await.unwrap();
    assert_eq!(exit, Exit::Code(7), "{err}");
    let pids = pids(&fx.home("ann"));
    let _left = Leftovers(pids.clone());
    assert_eq!(pids.len(), 3, "{pids:?}");
    wait_gone(&pids).await;
    // Nor does anything else of the command run on (the sandbox's own PID 1 included).
    let home = std::fs::canonicalize(fx.home("ann")).unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let running = running_in(&home);
        if running.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running in the home: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The processes (not zombies) whose current folder is `dir`.
fn running_in(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir) && !gone(pid) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn detached_jobs_do_not_get_past_the_per_user_limit() {
    if !isolated("detached_jobs_do_not_get_past_the_per_user_limit") {
        return;
    }
    let limit = 2;
    let fx = Fixture::new(Some(ExecLimits {
        max_per_user: limit,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    // Each command frees its slot when it exits; its detached jobs must not run on without one.
    let mut jobs = Vec::new();
    for _ in 0..limit + 1 {
        let (_, err, exit) = run(&mut c, DETACH_THEN_EXIT).await.unwrap();
        assert_eq!(exit, Exit::Code(7), "{err}");
        jobs.extend(pids(&fx.home("ann")));
    }
    let _left = Leftovers(jobs.clone());
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let running = jobs.iter().filter(|p| !gone(**p)).count();
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ann's ended commands left {running} detached jobs running (her limit is {limit} commands)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
