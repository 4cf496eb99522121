//! Resource limits and the network switch, with real commands: a fork bomb stops at the
//! process limit, a memory hog at the memory limit, a file hog at the open-file limit, a
//! spinning loop at the CPU limit, and none of it hurts the server or another user's
//! command; with the network off no socket gets anywhere, with it on the same one does.

use std::time::Duration;

use sockit::protocol::ErrorCode;
use sockit::runner::{ExecLimits, Exit, SandboxOptions};

use super::{Fixture, code, marked, run, running_in, wait_count, wait_ended};

#[tokio::test]
async fn the_process_limit_counts_one_command_s_processes() {
    let processes = 8;
    let fx = Fixture::new(Some(ExecLimits {
        processes,
        ..ExecLimits::default()
    }))
    .await;
    let (mut ann, mut bob) = (fx.client("ann").await, fx.client("bob").await);
    let (mark, _left) = fx.mark("ann");
    // Twenty `sleep MARK`s, started until the kernel says no, then the starter becomes one
    // too: seven of them and the starter fit, eight processes, the limit.
    let command = format!(
        "exec python3 -c \"
import os, subprocess, sys
n = 0
try:
    for _ in range(20):
        subprocess.Popen(['sleep', '{mark}'])
        n += 1
except OSError as e:
    print(n, 'started:', e.strerror, file=sys.stderr, flush=True)
os.execvp('sleep', ['sleep', '{mark}'])
\""
    );
    let ann_runs = async {
        let (_, err, exit) = run(&mut ann, &command).await.unwrap();
        (err, exit)
    };
    let others = async {
        wait_count("ann's sleeps", processes as usize, || marked(&mark)).await;
        // Meanwhile bob runs commands as usual: the count is ann's command's own.
        let (out, _, exit) = run(&mut bob, "sh -c 'echo $(echo bob)' & wait")
            .await
            .unwrap();
        assert_eq!((out.as_str(), exit), ("bob\n", Exit::Code(0)));
        super::kill("-TERM", &marked(&mark));
    };
    let ((err, exit), ()) = tokio::join!(ann_runs, others);
    assert_eq!(err, "7 started: Resource temporarily unavailable\n");
    assert_eq!(exit, Exit::Signal(15), "{err}");
    wait_ended(&mark, &fx.home("ann")).await;
}

/// Every process forks as fast as it can, for ever; a failed fork is tried again.
const FORK_BOMB: &str = "python3 -c '
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)
'";

#[tokio::test]
async fn a_fork_bomb_hits_the_limit_and_hurts_nobody_else() {
    let limit = 16;
    let fx = Fixture::new(Some(ExecLimits {
        processes: limit,
        timeout: Duration::from_secs(5),
        ..ExecLimits::default()
    }))
    .await;
    let (mut ann, mut bob) = (fx.client("ann").await, fx.client("bob").await);
    let (_, _left) = fx.mark("ann");
    let bomb = async { code(run(&mut ann, FORK_BOMB).await) };
    // Its processes, the sandbox's helper and PID 1 all run in ann's home.
    let in_ann_s_home = || running_in(&fx.home("ann")).len();
    let others = async {
        // The bomb fills its limit, and stays there ...
        wait_count("the bomb", limit as usize + 2, || {
            running_in(&fx.home("ann"))
        })
        .await;
        // ... while bob's commands and the server go on.
        for _ in 0..3 {
            let (out, _, exit) = run(&mut bob, "echo $((6*7))").await.unwrap();
            assert_eq!((out.as_str(), exit), ("42\n", Exit::Code(0)));
            assert!(in_ann_s_home() <= limit as usize + 2, "{}", in_ann_s_home());
        }
        assert_eq!(&bob.echo(b"up").await.unwrap()[..], b"up");
    };
    let (bomb, ()) = tokio::join!(bomb, others);
    assert_eq!(bomb, ErrorCode::Timeout);
    wait_count("left of the bomb", 0, || running_in(&fx.home("ann"))).await;
}

#[tokio::test]
async fn memory_open_files_and_cpu_time_have_limits() {
    let fx = Fixture::new(Some(ExecLimits {
        memory: 256 << 20,
        open_files: 32,
        // Room for the memory hogs below to fail by memory first on a loaded machine, where
        // faulting in 256 MB can take most of a second of CPU.
        cpu_secs: 3,
        ..ExecLimits::default()
    }))
    .await;
    let mut ann = fx.client("ann").await;
    // A gigabyte in one piece, in Python: refused by the kernel, reported by Python.
    let (_, err, exit) = run(&mut ann, "python3 -c 'b = bytearray(1 << 30)'")
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(1), "{err}");
    assert!(err.contains("MemoryError"), "{err}");
    // ... and a hog that grows step by step is stopped as well; 100 MB fit.
    let hog = "python3 -c 'b = []\nwhile True: b.append(bytearray(16 << 20))'";
    let (_, err, exit) = run(&mut ann, hog).await.unwrap();
    assert_eq!(exit, Exit::Code(1), "{err}");
    assert!(err.contains("MemoryError"), "{err}");
    let fits = "python3 -c 'print(len(bytearray(100 << 20)))'";
    assert_eq!(run(&mut ann, fits).await.unwrap().0, "104857600\n");
    // Open files.
    let files = "ulimit -n; python3 -c 'f = [open(\"/dev/null\") for _ in range(100)]'";
    let (out, err, exit) = run(&mut ann, files).await.unwrap();
    assert_eq!((out.as_str(), exit), ("32\n", Exit::Code(1)), "{err}");
    assert!(err.contains("Too many open files"), "{err}");
    // CPU: a loop that never sleeps gets SIGXCPU after its three seconds.
    let (_, err, exit) = run(&mut ann, "while :; do :; done").await.unwrap();
    assert_eq!(exit, Exit::Signal(24), "{err}");
    // The server was not touched by any of it.
    assert_eq!(run(&mut ann, "echo fine").await.unwrap().0, "fine\n");
}

/// A command that tries TCP to `addr` with curl and with Python, and UDP with Python.
fn connect_all(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    format!(
        "curl -sS -m 10 -o /dev/null http://{addr}/ 2>&1; echo curl=$?
python3 - <<'EOF' 2>&1
import socket
for name, make in [('tcp', lambda: socket.create_connection(('{host}', {port}), timeout=10)),
                   ('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{host}', {port})))]:
    try:
        make()
        print(name, 'ok')
    except OSError as e:
        print(name, 'failed:', e.strerror)
EOF"
    )
}

#[tokio::test]
async fn with_the_network_off_no_socket_gets_out() {
    let fx = Fixture::new(Some(ExecLimits::default())).await;
    let addr = crate::common::addr(&fx.server.endpoint);
    let mut ann = fx.client("ann").await;
    let (out, err, _) = run(&mut ann, &connect_all(&addr)).await.unwrap();
    // curl's exit 7: could not connect (its message names the reason).
    assert!(out.contains("curl=7"), "{out}{err}");
    assert!(out.contains("tcp failed:"), "{out}{err}");
    assert!(
        out.contains("udp failed: Network is unreachable"),
        "{out}{err}"
    );
    assert!(!out.contains(" ok"), "{out}{err}");
    // Only a loopback that is down: no interface to leave by.
    let out = run(&mut ann, "cat /proc/net/dev").await.unwrap().0;
    let interfaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{out}");
}

#[tokio::test]
async fn with_the_network_on_the_same_sockets_connect() {
    let options = SandboxOptions {
        network: true,
        ..SandboxOptions::default()
    };
    let fx = Fixture::with_sandbox(Some(ExecLimits::default()), options).await;
    let addr = crate::common::addr(&fx.server.endpoint);
    let mut ann = fx.client("ann").await;
    let (out, err, _) = run(&mut ann, &connect_all(&addr)).await.unwrap();
    // curl reached the server (which does not speak HTTP, so curl reports that instead).
    assert!(!out.contains("curl=7"), "{out}{err}");
    assert!(
        out.contains("tcp ok") && out.contains("udp ok"),
        "{out}{err}"
    );
}
