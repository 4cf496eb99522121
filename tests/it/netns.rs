//! The native port as a user on another machine meets it: `sockit serve --listen 0.0.0.0`
//! on this host, the client in its own network namespace behind a veth pair (so the server
//! sees a real non-loopback peer), and a packet capture of everything between them.
//!
//! Needs root, `ip` (iproute2) and `tcpdump`, which `.ci/run` installs; without them the test
//! fails and says what is missing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::common::{ServerProcess, output_with_input, sockit_bin, sockit_with_input};

/// A network namespace joined to this host by a veth pair, removed on drop.
pub(crate) struct Namespace {
    name: String,
    /// The host's end, and its address as the namespace reaches it.
    host_link: String,
    pub(crate) host_ip: String,
}

impl Namespace {
    fn create() -> Namespace {
        Namespace::create_for(0)
    }

    /// A namespace of this test process's own, told apart from the others it makes at the
    /// same time (the native port's, the HTTP door's and the FTP door's tests) by a counter;
    /// `tag` only names the caller.
    pub(crate) fn create_for(tag: u32) -> Namespace {
        let _ = tag;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
        let id = std::process::id();
        let name = format!("sockit-it-{id}-{n}");
        let (host_link, inner_link) = (
            format!("skh{}{n}", id % 100_000),
            format!("skn{}{n}", id % 100_000),
        );
        // A /30 of 10.200.0.0/12 picked by the PID and `n`, so that parallel runs do not meet.
        let net = 0x0AC8_0000u32 + (n << 18) + ((id % 0x1_0000) << 2);
        let ip = |host: u32| std::net::Ipv4Addr::from(net + host).to_string();
        let ns = Namespace {
            name: name.clone(),
            host_link: host_link.clone(),
            host_ip: ip(1),
        };
        let steps: [&[&str]; 7] = [
            &["netns", "add", &name],
            &[
                "link",
                "add",
                &host_link,
                "type",
                "veth",
                "peer",
                "name",
                &inner_link,
            ],
            &["link", "set", &inner_link, "netns", &name],
            &["addr", "add", &format!("{}/30", ip(1)), "dev", &host_link],
            &["link", "set", &host_link, "up"],
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/30", ip(2)),
                "dev",
                &inner_link,
            ],
            &["-n", &name, "link", "set", &inner_link, "up"],
        ];
        for step in steps {
            let out = Command::new("ip").args(step).output().unwrap_or_else(|e| {
                panic!("this test needs iproute2's `ip` (apt-get install iproute2): {e}")
            });
            assert!(
                out.status.success(),
                "`ip {}` failed (this test needs root): {}",
                step.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// `program` to be run inside the namespace.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// `sockit ARGS` run inside the namespace with `env`, `stdin` on its standard input.
    fn sockit<A: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[A],
        env: &[(&str, String)],
        stdin: &str,
    ) -> Output {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, sockit_bin()])
            .args(args)
            .env_remove("SOCKIT_PLAINTEXT")
            .env_remove("SOCKIT_FINGERPRINT")
            .envs(env.iter().map(|(k, v)| (k, v)));
        output_with_input(&mut command, stdin)
    }
}

impl Namespace {
    /// `curl ARGS` run inside the namespace: its output.
    fn curl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "curl"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("this test needs curl and iproute2: {e}"))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

/// tcpdump writing every packet of `port` on `link` to `file`, stopped (and flushed) by
/// [`Capture::finish`].
struct Capture {
    child: Child,
}

impl Capture {
    fn start(link: &str, port: u16, file: &Path) -> Capture {
        let mut child = Command::new("tcpdump")
            .args(["-i", link, "-U", "-s", "0", "-w"])
            .arg(file)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs tcpdump (apt-get install tcpdump): {e}"));
        // Capturing starts when it says so.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "tcpdump stopped before capturing"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Capture { child }
    }

    /// Stops the capture once it holds `last` (the last thing sent), and returns the bytes
    /// it wrote.
    fn finish(mut self, file: &Path, last: &[u8]) -> Vec<u8> {
        // tcpdump writes each packet as it reads it (-U); wait until the last one is in.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read(file).is_ok_and(|b| contains(&b, last)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the capture never saw {:?}",
                String::from_utf8_lossy(last)
            );
            std::thread::sleep(std::time::Duration::from_millis(5)); // a poll, not a wait for time
        }
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(self.child.wait().unwrap().success());
        std::fs::read(file).unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn from_another_network_the_client_asks_first_and_nothing_crosses_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let password = "correct-horse-battery-staple";
    let added = sockit_with_input(
        &["user", "add", "ann", "--password-stdin", "--data", data_arg],
        &format!("{password}\n"),
    );
    assert!(added.status.success(), "{added:?}");
    let ns = Namespace::create();
    let server = ServerProcess::start(&["--listen", "0.0.0.0:0", "--data", data_arg], 1);
    let port: u16 = server
        .addr("native")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let fingerprint = server.fingerprint.clone().unwrap();
    let remote = format!("{}:{port}", ns.host_ip);
    let pcap = dir.path().join("wire.pcap");
    let capture = Capture::start(&ns.host_link, port, &pcap);

    let secret: Vec<u8> = b"THE-FILE-BYTES-NOBODY-MAY-READ "
        .iter()
        .copied()
        .cycle()
        .take(200_000)
        .collect();
    let local = dir.path().join("secret.txt");
    std::fs::write(&local, &secret).unwrap();
    let env = [
        ("SOCKIT_PASSWORD", password.to_string()),
        (
            "SOCKIT_KNOWN_HOSTS",
            dir.path().join("known_hosts").display().to_string(),
        ),
    ];
    let with = |args: &[&str]| -> Vec<String> {
        // The subcommand, then the server and user, then the rest.
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.splice(
            1..1,
            ["-s".into(), remote.clone(), "-u".into(), "ann".into()],
        );
        all
    };

    // The first contact asks, showing the fingerprint the operator printed; "no" sends nothing.
    let declined = ns.sockit(&with(&["ls", "--trust", "ask"]), &env, "no\n");
    let err = String::from_utf8_lossy(&declined.stderr);
    assert!(!declined.status.success(), "{declined:?}");
    assert!(
        err.contains("is not known yet") && err.contains(&fingerprint),
        "{err}"
    );
    // "yes" trusts and remembers it; then the listing comes back.
    let first = ns.sockit(&with(&["ls", "--trust", "ask"]), &env, "yes\n");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{first:?}");
    assert!(
        err.contains("is not known yet") && err.contains("added"),
        "{err}"
    );
    // Known now: a script (strict, no terminal) goes through without a question.
    let put = ns.sockit(
        &with(&["put", local.to_str().unwrap(), "secret.txt"]),
        &env,
        "",
    );
    assert!(put.status.success(), "{put:?}");
    let back = dir.path().join("back.txt");
    let get = ns.sockit(
        &with(&["get", "secret.txt", back.to_str().unwrap()]),
        &env,
        "",
    );
    assert!(get.status.success(), "{get:?}");
    assert_eq!(std::fs::read(&back).unwrap(), secret);
    let ls = ns.sockit(&with(&["ls"]), &env, "");
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("secret.txt"),
        "{ls:?}"
    );

    // Plaintext from this address is refused with one error frame: nothing is served.
    let plain = ns.sockit(&["echo", "hi", "--plaintext", "-s", &remote], &[], "");
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success(), "{plain:?}");
    assert!(err.contains("tls_required"), "{err}");

    let wire = capture.finish(&pcap, b"tls_required");
    // The capture saw the traffic: the refusal above crossed in clear, and far more bytes
    // than the file did.
    assert!(
        contains(&wire, b"tls_required"),
        "the capture saw nothing: {} bytes",
        wire.len()
    );
    assert!(
        wire.len() > 2 * secret.len(),
        "{} bytes captured",
        wire.len()
    );
    // Neither the password nor any stretch of the file is readable on the wire.
    assert!(
        !contains(&wire, password.as_bytes()),
        "the password crossed in clear"
    );
    assert!(
        !contains(&wire, b"NOBODY-MAY-READ"),
        "the file's bytes crossed in clear"
    );
    assert!(
        !contains(&wire, b"secret.txt"),
        "the file name crossed in clear"
    );
}

#[test]
fn from_another_network_the_http_door_speaks_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let added = sockit_with_input(
        &["user", "add", "ann", "--password-stdin", "--data", data_arg],
        "ann-pw\n",
    );
    assert!(added.status.success(), "{added:?}");
    let ns = Namespace::create();
    let server = ServerProcess::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
            "--data",
            data_arg,
        ],
        2,
    );
    let port = server.addr("http").rsplit(':').next().unwrap().to_string();
    let at = |scheme: &str| format!("{scheme}://{}:{port}/dav/", ns.host_ip);
    let code = |out: &Output| String::from_utf8_lossy(&out.stdout).to_string();
    // Plaintext from off loopback: one 403 that says why, and no login is tried.
    let plain = ns.curl(&[
        "-s",
        "-u",
        "ann:ann-pw",
        "-w",
        "\n%{http_code}",
        &at("http"),
    ]);
    let text = code(&plain);
    assert!(text.ends_with("\n403"), "{text}");
    assert!(text.contains("HTTPS"), "{text}");
    // The same over TLS is served (the certificate is self-signed for localhost: -k).
    let tls = ns.curl(&[
        "-sk",
        "-u",
        "ann:ann-pw",
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &at("https"),
    ]);
    assert_eq!(code(&tls), "207");
}
