//! The FTP door (`serve --ftp`) as FTP users meet it: lftp mirrors up and down (and again
//! after being killed mid-transfer), curl over FTP and FTPS, the quota and a wrong password
//! as the client sees them, and hostile paths over a raw control connection, each checked on
//! disk. Needs `lftp` and `curl` (scripts/test.sh installs them); a missing one fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ServerProcess, noise_from, sockit_with_input};
use crate::netns::Namespace;

/// The passive ports the tests' servers offer.
const PASSIVE: (u16, u16) = (41000, 41999);

/// A data folder with users, a server with the FTP door on it, and a scratch folder.
struct Door {
    dir: tempfile::TempDir,
    /// Runs until the test ends (killed on drop).
    _server: ServerProcess,
    port: String,
}

impl Door {
    /// Users `(name, password, quota)`, then `sockit serve --ftp` with `extra` flags.
    fn start(users: &[(&str, &str, Option<&str>)], extra: &[&str]) -> Door {
        Door::start_on("127.0.0.1:0", users, extra)
    }

    /// As [`Door::start`], both listeners on `addr`.
    fn start_on(addr: &str, users: &[(&str, &str, Option<&str>)], extra: &[&str]) -> Door {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        for (name, password, quota) in users {
            let mut args = vec!["user", "add", name, "--password-stdin", "--data", data];
            if let Some(quota) = quota {
                args.extend(["--quota", quota]);
            }
            let out = sockit_with_input(&args, &format!("{password}\n"));
            assert!(out.status.success(), "{out:?}");
        }
        let passive = format!("{}-{}", PASSIVE.0, PASSIVE.1);
        let mut args = vec![
            "--listen",
            addr,
            "--data",
            data,
            "--ftp",
            addr,
            "--ftp-passive-ports",
            &passive,
        ];
        args.extend_from_slice(extra);
        let log = dir.path().join("server.log");
        let server = ServerProcess::start_logging_to(&args, 2, &log);
        let port = server.addr("ftp").rsplit_once(':').unwrap().1.to_owned();
        Door {
            dir,
            _server: server,
            port,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A path in `user`'s home on the server's disk.
    fn home(&self, user: &str, rel: &str) -> PathBuf {
        self.path("data/homes").join(user).join(rel)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// `lftp` logged in as `user`, plain FTP, running `script` in the scratch folder.
    fn lftp(&self, user: &str, script: &str) -> Command {
        let mut lftp = client("lftp");
        lftp.args(["-d", "-u", user, "-p", &self.port, "-e"])
            .arg(format!(
                "set ftp:ssl-allow no; set net:max-retries 2; set net:timeout 20; \
                 set xfer:clobber yes; {script}; quit"
            ))
            .arg("127.0.0.1")
            .current_dir(self.dir.path());
        lftp
    }

    /// Runs lftp's `script` as ann, slowed down, and kills it (by PID) once `growing` holds
    /// some bytes: surely in the middle of the transfer.
    fn lftp_killed_midway(&self, script: &str, growing: &Path) {
        let mut slow = self
            .lftp("ann,pw", &format!("set net:limit-rate 200000; {script}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(60, "part of the transfer", || {
            std::fs::metadata(growing).is_ok_and(|m| m.len() > 0)
        });
        slow.kill().unwrap();
        slow.wait().unwrap();
    }

    fn url(&self, user: &str, path: &str) -> String {
        format!("ftp://{user}@127.0.0.1:{}/{path}", self.port)
    }

    /// curl with `args`, in the scratch folder.
    fn curl(&self, args: &[&str]) -> Output {
        client("curl")
            .args(["-sS", "-v", "--max-time", "60"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// A raw control connection, logged in as `user` with `password`.
    fn control(&self, user: &str, password: &str) -> Control {
        let mut control = Control::connect(&format!("127.0.0.1:{}", self.port));
        assert_eq!(control.send(&format!("USER {user}")).0, 331);
        assert_eq!(control.send(&format!("PASS {password}")).0, 230);
        control
    }
}

/// `program`, or a failure that says how to get it.
fn client(program: &str) -> Command {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok(),
        "`{program}` is not installed: scripts/test.sh installs it (Debian package {program})"
    );
    Command::new(program)
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Random-looking bytes of `len`, different per `seed`.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    noise_from(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, len)
}

/// Every file under `root`, relative path -> bytes; folders as empty markers.
fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, None));
                stack.push(path);
            } else {
                out.push((rel, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// Polls `done` until it holds, failing after `secs` with `what`.
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw FTP control connection: one command, one reply.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    fn connect(addr: &str) -> Control {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut control = Control {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(control.reply().0, 220);
        control
    }

    /// Reads one reply (all lines of a multi-line one): its code and text.
    fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "the server closed the control connection after {all:?}"
            );
            all.push_str(&line);
            let bytes = line.as_bytes();
            if bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ' {
                return (line[..3].parse().unwrap(), all);
            }
        }
    }

    fn send(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// Reads until the server closes the connection, which must come before this client's
    /// own 30 s read timeout.
    fn wait_for_close(&mut self) {
        let mut rest = Vec::new();
        if let Err(e) = self.reader.read_to_end(&mut rest) {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server kept the connection: {e}"
            );
        }
    }

    /// Opens a passive data connection (EPSV) on a port of the configured range.
    fn passive(&mut self) -> TcpStream {
        let (code, text) = self.send("EPSV");
        assert_eq!(code, 229, "{text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        assert!((PASSIVE.0..=PASSIVE.1).contains(&port), "{port}");
        let data = TcpStream::connect(("127.0.0.1", port)).unwrap();
        data.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        data
    }

    /// `STOR`s `body` as `path`: the final reply.
    fn store(&mut self, path: &str, body: &[u8]) -> (u16, String) {
        let mut data = self.passive();
        let (code, text) = self.send(&format!("STOR {path}"));
        if code != 150 {
            return (code, text);
        }
        // A refused path may close the data connection before all is written.
        drop(data.write_all(body));
        drop(data);
        self.reply()
    }

    /// `RETR`s `path`: the final reply, and the bytes received.
    fn retrieve(&mut self, path: &str) -> ((u16, String), Vec<u8>) {
        let mut data = self.passive();
        let (code, text) = self.send(&format!("RETR {path}"));
        if code != 150 {
            return ((code, text), Vec::new());
        }
        let mut got = Vec::new();
        drop(data.read_to_end(&mut got));
        (self.reply(), got)
    }
}

#[test]
fn lftp_mirrors_a_tree_up_and_down_byte_for_byte() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let local = door.path("tree");
    std::fs::create_dir_all(local.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(local.join("empty")).unwrap();
    std::fs::write(local.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(local.join("zero"), b"").unwrap();
    std::fs::write(local.join("sub/big.bin"), bytes(1_500_000, 1)).unwrap();
    std::fs::write(local.join("sub/deeper/c.bin"), bytes(70_000, 2)).unwrap();

    let up = door.lftp("ann,pw", "mirror -R tree up").output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(tree(&door.home("ann", "up")), tree(&local));
    // Passive mode: the only one the door offers.
    assert!(
        String::from_utf8_lossy(&up.stderr).contains("EPSV")
            || String::from_utf8_lossy(&up.stderr).contains("PASV"),
        "{}",
        text(&up)
    );

    let down = door.lftp("ann,pw", "mirror up down").output().unwrap();
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(tree(&door.path("down")), tree(&local));
}

#[test]
fn an_lftp_upload_killed_midway_is_never_visible_and_mirror_continue_completes() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let local = door.path("tree");
    std::fs::create_dir_all(&local).unwrap();
    let content = bytes(3_000_000, 3);
    std::fs::write(local.join("big.bin"), &content).unwrap();
    let (target, partial) = (
        door.home("ann", "up/big.bin"),
        door.home("ann", "up/.big.bin.sockit-part"),
    );

    door.lftp_killed_midway("mirror -R tree up", &partial);
    // Until the server has given the upload up, nothing may appear under the final name.
    wait_for(60, "the server to keep the cut upload", || {
        assert!(!target.exists(), "a cut upload became visible");
        door.log().contains("kept for a restart")
    });
    assert!(!target.exists());
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < content.len() as u64, "{kept}");

    let rerun = door
        .lftp("ann,pw", "mirror -R --continue tree up")
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert!(!partial.exists());
}

#[test]
fn an_lftp_download_killed_midway_resumes_with_rest() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let content = bytes(3_000_000, 4);
    std::fs::create_dir_all(door.home("ann", "pub")).unwrap();
    std::fs::write(door.home("ann", "pub/big.bin"), &content).unwrap();
    let local = door.path("down/big.bin");

    door.lftp_killed_midway("mirror pub down", &local);
    let had = std::fs::metadata(&local).unwrap().len();
    assert!(had < content.len() as u64);

    let rerun = door
        .lftp("ann,pw", "mirror --continue pub down")
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(std::fs::read(&local).unwrap(), content);
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(
        log.contains("REST "),
        "no REST in the resumed download:\n{log}"
    );
}

#[test]
fn curl_uploads_and_downloads_over_plain_ftp_in_passive_mode() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let content = bytes(300_000, 5);
    std::fs::write(door.path("up.bin"), &content).unwrap();

    let up = door.curl(&[
        "-T",
        "up.bin",
        &door.url("ann:pw", "docs/up.bin"),
        "--ftp-create-dirs",
    ]);
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(
        std::fs::read(door.home("ann", "docs/up.bin")).unwrap(),
        content
    );
    let log = String::from_utf8_lossy(&up.stderr);
    assert!(log.contains("EPSV") || log.contains("PASV"), "{log}");

    let down = door.curl(&["-o", "down.bin", &door.url("ann:pw", "docs/up.bin")]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(std::fs::read(door.path("down.bin")).unwrap(), content);
}

#[test]
fn curl_ssl_reqd_speaks_ftps_checked_against_the_servers_certificate() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let content = bytes(200_000, 6);
    std::fs::write(door.path("secret.bin"), &content).unwrap();
    let cert = door.path("data/tls/cert.pem");
    let cert = cert.to_str().unwrap();
    // The certificate names `localhost`: curl checks it, and reaches 127.0.0.1 by that name.
    let resolve = format!("localhost:{}:127.0.0.1", door.port);
    let url = |path: &str| format!("ftp://ann:pw@localhost:{}/{path}", door.port);
    let tls = ["--ssl-reqd", "--cacert", cert, "--resolve", &resolve];

    let up = door.curl(&[&tls[..], &["-T", "secret.bin", &url("secret.bin")]].concat());
    assert!(up.status.success(), "{}", text(&up));
    let log = String::from_utf8_lossy(&up.stderr);
    assert!(log.contains("AUTH TLS"), "{log}");
    assert!(log.contains("SSL certificate verify ok"), "{log}");
    assert!(log.contains("PROT P"), "{log}");
    assert_eq!(
        std::fs::read(door.home("ann", "secret.bin")).unwrap(),
        content
    );

    let down = door.curl(&[&tls[..], &["-o", "back.bin", &url("secret.bin")]].concat());
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(std::fs::read(door.path("back.bin")).unwrap(), content);

    // Another certificate than the server's is refused by the client.
    let other = door.path("other.pem");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&other, made.cert.pem()).unwrap();
    let refused = door.curl(
        &[
            &[
                "--ssl-reqd",
                "--cacert",
                other.to_str().unwrap(),
                "--resolve",
                &resolve,
            ],
            &["-o", "x.bin", &url("secret.bin")][..],
        ]
        .concat(),
    );
    assert!(!refused.status.success(), "{}", text(&refused));
}

#[test]
fn a_quota_refusal_reaches_the_client_as_552_and_leaves_nothing() {
    let door = Door::start(&[("quinn", "pw", Some("100KB"))], &[]);
    std::fs::write(door.path("big.bin"), bytes(1_000_000, 7)).unwrap();
    let up = door.curl(&["-T", "big.bin", &door.url("quinn:pw", "big.bin")]);
    assert!(!up.status.success(), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stderr).contains("552"),
        "{}",
        text(&up)
    );
    assert!(!door.home("quinn", "big.bin").exists());
    assert!(!door.home("quinn", ".big.bin.sockit-part").exists());

    // What fits still goes in.
    std::fs::write(door.path("small.bin"), bytes(10_000, 8)).unwrap();
    let small = door.curl(&["-T", "small.bin", &door.url("quinn:pw", "small.bin")]);
    assert!(small.status.success(), "{}", text(&small));
    // And it counts: what fitted before it no longer does.
    std::fs::write(door.path("more.bin"), bytes(90_000, 13)).unwrap();
    let more = door.curl(&["-T", "more.bin", &door.url("quinn:pw", "more.bin")]);
    assert!(
        String::from_utf8_lossy(&more.stderr).contains("552"),
        "{}",
        text(&more)
    );
    assert!(!door.home("quinn", "more.bin").exists());
}

#[test]
fn a_wrong_password_is_refused() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    std::fs::create_dir_all(door.home("ann", "")).unwrap();
    std::fs::write(door.home("ann", "f.txt"), b"x").unwrap();
    let out = door.curl(&["-o", "f.txt", &door.url("ann:wrong", "f.txt")]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("530"),
        "{}",
        text(&out)
    );
    assert!(!door.path("f.txt").exists());
    let nobody = door.curl(&["-o", "f.txt", &door.url("nobody:pw", "f.txt")]);
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("530"),
        "{}",
        text(&nobody)
    );
}

/// A second user, whose home the hostile cases aim at, and the user store beside them.
fn hostile_door() -> Door {
    let door = Door::start(&[("ann", "pw", None), ("bob", "pw2", None)], &[]);
    // Bob's home exists once he has logged in.
    door.control("bob", "pw2");
    std::fs::write(door.home("bob", "private.txt"), b"bob's").unwrap();
    door
}

/// Every file of the data folder outside `user`'s home, with its bytes.
fn outside(door: &Door, user: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let mut all = tree(&door.path("data"));
    let home = format!("homes/{user}");
    all.retain(|(path, _)| !path.starts_with(&home) && !path.starts_with("users.db"));
    all
}

#[test]
fn cwd_above_the_home_is_refused() {
    let door = hostile_door();
    let mut ftp = door.control("ann", "pw");
    for path in ["../..", "..", "../bob", "/../../", "a/../../.."] {
        let (code, text) = ftp.send(&format!("CWD {path}"));
        assert_eq!(code, 550, "CWD {path}: {text}");
    }
    let (code, text) = ftp.send("PWD");
    assert_eq!(code, 257);
    assert!(text.contains("\"/\""), "{text}");
    // CDUP at the root stays at the root.
    ftp.send("CDUP");
    let ((code, _), listing) = ftp.retrieve("private.txt");
    assert_eq!(code, 550);
    assert!(listing.is_empty());
}

#[test]
fn retr_of_the_user_store_and_other_homes_is_refused() {
    let door = hostile_door();
    let mut ftp = door.control("ann", "pw");
    for path in [
        "../../users.db",
        "../bob/private.txt",
        "/../../users.db",
        "../../tls/key.pem",
    ] {
        let ((code, text), got) = ftp.retrieve(path);
        assert_eq!(code, 550, "RETR {path}: {text}");
        assert!(got.is_empty(), "RETR {path} sent bytes");
    }
}

#[test]
fn absolute_paths_name_places_in_the_home() {
    let door = hostile_door();
    let mut ftp = door.control("ann", "pw");
    let ((code, _), got) = ftp.retrieve("/etc/passwd");
    assert_eq!(code, 550);
    assert!(got.is_empty());
    let name = format!("sockit-ftp-abs-{}.txt", std::process::id());
    let (code, text) = ftp.store(&format!("/{name}"), b"in the home");
    assert_eq!(code, 226, "{text}");
    assert_eq!(
        std::fs::read(door.home("ann", &name)).unwrap(),
        b"in the home"
    );
    assert!(!Path::new("/").join(&name).exists());
}

#[test]
fn stor_above_the_home_is_refused_and_touches_nothing_outside() {
    let door = hostile_door();
    let before = outside(&door, "ann");
    let mut ftp = door.control("ann", "pw");
    for path in ["../x", "../../x", "../bob/private.txt", "/../../users.db"] {
        let (code, text) = ftp.store(path, b"overwritten?");
        assert!(matches!(code, 550 | 553), "STOR {path}: {text}");
    }
    for command in ["MKD ../evil", "DELE ../bob/private.txt", "RMD ../bob"] {
        let (code, text) = ftp.send(command);
        assert!(code >= 500, "{command}: {text}");
    }
    // RNFR may only remember the name; the rename itself is refused.
    if ftp.send("RNFR ../bob/private.txt").0 == 350 {
        let (code, text) = ftp.send("RNTO stolen.txt");
        assert!(code >= 500, "RNTO: {text}");
    }
    assert!(!door.home("ann", "stolen.txt").exists());
    assert_eq!(outside(&door, "ann"), before);
    assert_eq!(
        std::fs::read(door.home("bob", "private.txt")).unwrap(),
        b"bob's"
    );
}

#[test]
fn size_mdtm_mlst_mlsd_rest_and_site_md5_answer_as_clients_expect() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let content = bytes(100_000, 9);
    let mut ftp = door.control("ann", "pw");
    assert_eq!(ftp.send("TYPE I").0, 200);
    assert_eq!(ftp.store("f.bin", &content).0, 226);

    let (code, text) = ftp.send("SIZE f.bin");
    assert_eq!((code, text.trim()), (213, "213 100000"));
    let (code, text) = ftp.send("MDTM f.bin");
    assert_eq!(code, 213);
    assert_eq!(text.trim().len(), "213 YYYYMMDDHHMMSS".len(), "{text}");
    let (code, text) = ftp.send("MLST f.bin");
    assert_eq!(code, 250, "{text}");
    assert!(text.to_ascii_lowercase().contains("size=100000"), "{text}");
    let mut data = ftp.passive();
    assert_eq!(ftp.send("MLSD").0, 150);
    let mut listing = String::new();
    data.read_to_string(&mut listing).unwrap();
    assert_eq!(ftp.reply().0, 226);
    assert!(listing.contains("f.bin"), "{listing}");

    // REST before RETR: the file from that byte on.
    assert_eq!(ftp.send("REST 60000").0, 350);
    let ((code, _), tail) = ftp.retrieve("f.bin");
    assert_eq!(code, 226);
    assert_eq!(tail, &content[60_000..]);

    // REST before STOR: the stored file's first bytes, then the new ones.
    assert_eq!(ftp.send("REST 50000").0, 350);
    assert_eq!(ftp.store("f.bin", &content[50_000..]).0, 226);
    assert_eq!(std::fs::read(door.home("ann", "f.bin")).unwrap(), content);
    // Past the end of what is stored: refused, the file unchanged.
    assert_eq!(ftp.send("REST 200000").0, 350);
    assert!(ftp.store("f.bin", b"xyz").0 >= 500);
    assert_eq!(std::fs::read(door.home("ann", "f.bin")).unwrap(), content);

    // The server-side hash libunftp offers (SITE MD5, in FEAT).
    let (_, feat) = ftp.send("FEAT");
    assert!(feat.contains("SITE MD5"), "{feat}");
    let (code, text) = ftp.send("SITE MD5 f.bin");
    assert_eq!(code, 213, "{text}");
    let md5 = md5_of(&content);
    assert!(text.contains(&md5), "{text} vs {md5}");
}

fn md5_of(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

#[test]
fn an_address_over_its_connection_cap_is_told_421() {
    let door = Door::start(&[("ann", "pw", None)], &["--max-connections-per-ip", "2"]);
    let addr = format!("127.0.0.1:{}", door.port);
    let _one = Control::connect(&addr);
    let _two = Control::connect(&addr);
    let mut three = BufReader::new(TcpStream::connect(&addr).unwrap());
    let mut line = String::new();
    three.read_line(&mut line).unwrap();
    assert!(line.starts_with("421"), "{line:?}");
}

#[test]
fn a_silent_session_is_closed_after_the_idle_timeout() {
    let door = Door::start(&[("ann", "pw", None)], &["--idle-timeout", "1"]);
    let mut control = door.control("ann", "pw");
    // Nothing sent: the server ends it (a 421 first, or just the close).
    control.wait_for_close();
}

#[test]
fn from_another_network_a_plaintext_login_is_refused_before_the_password_and_ftps_works() {
    let door = Door::start_on("0.0.0.0:0", &[("ann", "pw-never-in-clear", None)], &[]);
    let content = bytes(100_000, 10);
    std::fs::create_dir_all(door.home("ann", "")).unwrap();
    std::fs::write(door.home("ann", "f.bin"), &content).unwrap();
    let ns = Namespace::create_for(1);
    let remote = format!("{}:{}", ns.host_ip, door.port);

    let plain = ns
        .command("curl")
        .args(["-sS", "-v", "--max-time", "30", "-o"])
        .arg(door.path("plain.bin"))
        .arg(format!("ftp://ann:pw-never-in-clear@{remote}/f.bin"))
        .output()
        .unwrap();
    assert!(!plain.status.success(), "{}", text(&plain));
    let log = String::from_utf8_lossy(&plain.stderr);
    assert!(
        log.contains("< 534"),
        "USER answered other than 534:\n{log}"
    );
    assert!(
        !log.contains("PASS"),
        "the password was sent in clear:\n{log}"
    );
    assert!(!door.path("plain.bin").exists());

    // The same client with FTPS, checking the server's certificate, gets the file.
    let cert = door.path("data/tls/cert.pem");
    let secure = ns
        .command("curl")
        .args(["-sS", "-v", "--max-time", "30", "--ssl-reqd", "--cacert"])
        .arg(&cert)
        .arg("--resolve")
        .arg(format!("localhost:{}:{}", door.port, ns.host_ip))
        .arg("-o")
        .arg(door.path("secure.bin"))
        .arg(format!(
            "ftp://ann:pw-never-in-clear@localhost:{}/f.bin",
            door.port
        ))
        .output()
        .unwrap();
    assert!(secure.status.success(), "{}", text(&secure));
    assert_eq!(std::fs::read(door.path("secure.bin")).unwrap(), content);
}

#[test]
fn lftp_over_ftps_checks_the_certificate_and_mirrors() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let local = door.path("tree");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/b.bin"), bytes(400_000, 11)).unwrap();
    std::fs::write(local.join("a.txt"), b"over TLS\n").unwrap();
    let cert = door.path("data/tls/cert.pem");
    let tls = format!(
        "set ftp:ssl-allow yes; set ftp:ssl-force yes; set ftp:ssl-protect-data yes; \
         set ssl:verify-certificate yes; set ssl:ca-file {}; set dns:order inet",
        cert.display()
    );
    let mut up = client("lftp");
    up.args(["-d", "-u", "ann,pw", "-p", &door.port, "-e"])
        .arg(format!(
            "{tls}; set net:max-retries 2; mirror -R tree up; quit"
        ))
        .arg("localhost")
        .current_dir(door.dir.path());
    let up = up.output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let log = String::from_utf8_lossy(&up.stderr);
    assert!(log.contains("AUTH TLS") && log.contains("PROT P"), "{log}");
    assert_eq!(tree(&door.home("ann", "up")), tree(&local));
}

#[test]
fn a_session_ends_when_its_user_is_removed() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let mut ftp = door.control("ann", "pw");
    assert_eq!(ftp.store("f.txt", b"x").0, 226);
    assert_eq!(ftp.send("SIZE f.txt").0, 213);
    let data = door.path("data");
    let del = sockit_with_input(
        &["user", "del", "ann", "--data", data.to_str().unwrap()],
        "",
    );
    assert!(del.status.success(), "{del:?}");
    let (code, text) = ftp.send("SIZE f.txt");
    assert_eq!(code, 550, "{text}");
    let (code, text) = ftp.store("g.txt", b"after");
    assert!(code >= 500, "{text}");
    assert!(!door.home("ann", "g.txt").exists());
}

#[test]
fn repeated_wrong_passwords_cool_the_address_down_as_on_the_native_port() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let addr = format!("127.0.0.1:{}", door.port);
    let attempt = |password: &str| {
        let mut ftp = Control::connect(&addr);
        assert_eq!(ftp.send("USER ann").0, 331);
        ftp.send(&format!("PASS {password}")).0
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong"), 530);
    }
    // Cooling down: even the right password is refused now.
    assert_eq!(attempt("pw"), 530);
}

#[test]
fn rest_and_stor_resume_an_upload_cut_earlier() {
    let door = Door::start(&[("ann", "pw", None)], &[]);
    let content = bytes(600_000, 12);
    let half = 250_000;
    let mut ftp = door.control("ann", "pw");
    let mut data = ftp.passive();
    assert_eq!(ftp.send("STOR f.bin").0, 150);
    data.write_all(&content[..half]).unwrap();
    // The client dies: both its connections end at once.
    drop(ftp);
    drop(data);
    wait_for(60, "the server to keep the cut upload", || {
        assert!(
            !door.home("ann", "f.bin").exists(),
            "a cut upload became visible"
        );
        door.log().contains("kept for a restart")
    });
    let partial = door.home("ann", ".f.bin.sockit-part");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), half as u64);

    let mut ftp = door.control("ann", "pw");
    assert_eq!(ftp.send(&format!("REST {half}")).0, 350);
    let (code, text) = ftp.store("f.bin", &content[half..]);
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(door.home("ann", "f.bin")).unwrap(), content);
    assert!(!partial.exists());
}

#[test]
fn a_connection_that_does_not_log_in_is_closed_after_the_head_timeout() {
    let door = Door::start(&[("ann", "pw", None)], &["--head-timeout", "1"]);
    let mut control = Control::connect(&format!("127.0.0.1:{}", door.port));
    // A command line that never ends: the server closes the connection all the same.
    control.writer.write_all(&[b'A'; 10_000]).unwrap();
    control.wait_for_close();
}

#[test]
fn an_endless_command_line_costs_one_connection() {
    let door = Door::start(&[("ann", "pw", None)], &["--max-header", "4KiB"]);
    // Under the bound, a long line is a command like any other.
    let mut control = door.control("ann", "pw");
    let long = format!("{}/", "d".repeat(60)).repeat(50);
    let (code, text) = control.send(&format!("CWD {long}"));
    assert_eq!(code, 550, "{text}");
    // Past it, the server answers 500 and closes, instead of holding every byte of the line.
    let mut hostile = Control::connect(&format!("127.0.0.1:{}", door.port));
    let line = vec![b'A'; 1 << 20];
    // The server may close before all of it is written.
    drop(hostile.writer.write_all(&line));
    let mut answer = String::new();
    drop(hostile.reader.read_line(&mut answer));
    assert!(answer.starts_with("500 "), "{answer:?}");
    hostile.wait_for_close();
    // Everyone else is still served, the first session included.
    assert_eq!(control.send("PWD").0, 257);
    let mut other = door.control("ann", "pw");
    assert_eq!(other.send("NOOP").0, 200);
}

#[test]
fn epsv_without_prot_p_is_refused_where_tls_is_required() {
    let door = Door::start_on("0.0.0.0:0", &[("ann", "pw", None)], &[]);
    std::fs::create_dir_all(door.home("ann", "")).unwrap();
    std::fs::write(door.home("ann", "f.bin"), bytes(50_000, 11)).unwrap();
    let ns = Namespace::create_for(1);
    // TLS for the login only (`--ftp-ssl-control`: AUTH TLS, then PROT C): the file would cross
    // in clear, by EPSV (curl's first choice) or PASV (its fallback). Both must be refused.
    let cert = door.path("data/tls/cert.pem");
    let out = ns
        .command("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "30",
            "--ftp-ssl-control",
            "--cacert",
        ])
        .arg(&cert)
        .arg("--resolve")
        .arg(format!("localhost:{}:{}", door.port, ns.host_ip))
        .arg("-o")
        .arg(door.path("clear.bin"))
        .arg(format!("ftp://ann:pw@localhost:{}/f.bin", door.port))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("> EPSV"), "curl did not try EPSV:\n{log}");
    let after_epsv = &log[log.find("> EPSV").unwrap()..];
    assert!(
        after_epsv.contains("< 534"),
        "EPSV was not refused for want of TLS:\n{log}"
    );
    assert!(!after_epsv.contains("< 150"), "a transfer began:\n{log}");
    assert!(!door.path("clear.bin").exists());
}
