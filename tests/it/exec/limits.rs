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
    let command = "exec head -c 500000000 /dev/zero";
    let conn = c.connection();
    conn.write_frame(&json!({"op": "exec", "command": command}), b"")
        .await
        .unwrap();
    let head = conn.read_head().await.unwrap().unwrap();
    Reply::from_head(&head).unwrap();
    // Read nothing more: the command must end up blocked writing to its full pipe, having
    // written about what the pipe and the sockets hold, not its 500 MB. (Found from outside:
    // the `head` running in ann's home.)
    let home = fx.home("ann");
    let deadline = Instant::now() + HANG_GUARD;
    let pid = loop {
        let head = running_in(&home).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"head\0"))
        });
        let wchan = head.map(|pid| std::fs::read_to_string(format!("/proc/{pid}/wchan")));
        if let (Some(pid), Some(Ok(wchan))) = (head, wchan)
            && wchan.contains("pipe_write")
        {
            break pid.to_string();
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
    wait_ended("no mark", &home).await;
}

#[tokio::test]
async fn server_shutdown_kills_running_commands_and_says_so() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let mut c = fx.client("ann").await;
    let (mark, _left) = fx.mark("ann");
    started(&mut c, &marks_then_wait(&mark)).await;
    wait_count("started", DETACHED + 1, || marked(&mark)).await;
    fx.server.shutdown.trigger();
    let head = c.connection().read_head().await.unwrap().unwrap();
    match Reply::from_head(&head) {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("shutting down"), "{message}");
        }
        other => panic!("expected the command's end, got {other:?}"),
    }
    wait_ended(&mark, &fx.home("ann")).await;
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
