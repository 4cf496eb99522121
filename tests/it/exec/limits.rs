//! A command held back by its reader, and the per-user limit.

use super::*;

#[tokio::test]
async fn a_reader_that_stops_holds_the_command_back() {
    let fx = Fixture::new(Some(ExecLimits {
        max_output: 1 << 30,
        ..ExecLimits::default()
    }))
    .await;
    let mut c = fx.client("ann").await;
    let command = "echo $$ > sh.pid; exec head -c 500000000 /dev/zero";
    let conn = c.connection();
    conn.write_frame(&json!({"op": "exec", "command": command}), b"")
        .await
        .unwrap();
    let head = conn.read_head().await.unwrap().unwrap();
    Reply::from_head(&head).unwrap();
    // Read nothing more: the command must end up blocked writing to its full pipe, having
    // written about what the pipe and the sockets hold, not its 500 MB.
    let pid_file = fx.home("ann").join("sh.pid");
    let deadline = Instant::now() + HANG_GUARD;
    let pid = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", text.trim()));
        if text.ends_with('\n') && wchan.is_ok_and(|w| w.contains("pipe_write")) {
            break text.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the command never blocked on its pipe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let written: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    eprintln!(
        "a stalled reader held the command at {} KiB written",
        written >> 10
    );
    assert!(written < 64 << 20, "the command wrote {written} bytes");
    drop(c);
    wait_gone(&[pid.parse().unwrap()]).await;
}

#[tokio::test]
async fn server_shutdown_kills_running_commands_and_says_so() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    started(&mut c, pids_then_wait()).await;
    let pids = pids(&fx.home("ann"));
    let _left = Leftovers(pids.clone());
    fx.server.shutdown.trigger();
    let head = c.connection().read_head().await.unwrap().unwrap();
    match Reply::from_head(&head) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("shutting down"), "{message}");
        }
        other => panic!("expected the command's end, got {other:?}"),
    }
    wait_gone(&pids).await;
}

#[tokio::test]
async fn commands_per_user_are_limited() {
    let fx = Fixture::new(Some(ExecLimits {
        max_per_user: 1,
        ..ExecLimits::default()
    }))
    .await;
    let mut first = fx.client("ann").await;
    started(&mut first, "echo ready; sleep 600").await;
    let mut second = fx.client("ann").await;
    assert_eq!(code(run(&mut second, "true").await), ErrorCode::Busy);
    let mut bob = fx.client("bob").await;
    assert_eq!(run(&mut bob, "echo bob").await.unwrap().0, "bob\n");
    drop(first);
    // The slot comes back once the server has seen the disconnect.
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match run(&mut second, "echo again").await {
            Ok((out, _, _)) => break assert_eq!(out, "again\n"),
            Err(e) => assert_eq!(code::<()>(Err(e)), ErrorCode::Busy),
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
