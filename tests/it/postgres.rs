//! Users in PostgreSQL (`--users postgres://…`) against a real PostgreSQL server (see
//! `postgres_server`): `sockit user` and `sockit serve` on the same database, two servers as
//! one (also on an object store, with nothing shared on disk), an admin change reaching a
//! session on the other server, a quota that holds across servers, the database stopped
//! under load, and the URL's password kept out of every output and log.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sockit::Error;
use sockit::client::Client;
use sockit::filecopy::Quiet;
use sockit::net::Endpoint;
use sockit::protocol::ErrorCode;
use sockit::quota::ENTRY_COST;

use crate::common::{ServerProcess, output_with_input, sockit_bin};
use crate::postgres_server::{PASSWORD, PgServer, shared};
use crate::seaweed;

/// Runs `sockit ARGS` in `dir` with `stdin`; no client password or key from outside.
fn sockit(dir: &Path, args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let mut command = Command::new(sockit_bin());
    command
        .args(args)
        .env_remove("SOCKIT_PASSWORD")
        .env_remove("SOCKIT_IDENTITY")
        .env_remove("SOCKIT_USERS")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir);
    output_with_input(&mut command, stdin)
}

/// Everything a command printed.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `sockit user ARGS --users URL --data data`, which must succeed; what it printed.
fn admin(dir: &Path, url: &str, args: &[&str], stdin: &str) -> String {
    let mut all = vec!["user"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--users", url, "--data", "data"]);
    let out = sockit(dir, &all, &[], stdin);
    let text = said(&out);
    assert!(out.status.success(), "sockit {all:?}: {text}");
    assert!(
        !text.contains(PASSWORD),
        "the database password shown: {text}"
    );
    text
}

/// A `sockit serve` on `data` with its users in `url`, logging to `log`.
fn serve(dir: &Path, url: &str, log: &str) -> ServerProcess {
    serve_with(dir, url, log, &[])
}

/// [`serve`] with more flags.
fn serve_with(dir: &Path, url: &str, log: &str, extra: &[&str]) -> ServerProcess {
    let data = dir.join("data");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
        "--users",
        url,
    ];
    args.extend_from_slice(extra);
    ServerProcess::start_logging_to(&args, 1, &dir.join(log))
}

/// Asserts that no file in `dir` (logs, the data folder) holds the database password.
fn assert_no_password_in(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_password_in(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(PASSWORD),
                "the database password is in {}",
                path.display()
            );
        }
    }
}

async fn logged_in(addr: &str, user: &str, password: &str) -> Client {
    let endpoint: Endpoint = addr.parse().unwrap();
    let mut client = Client::connect(&endpoint).await.unwrap();
    client.login(user, password).await.unwrap();
    client
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> ErrorCode {
    match result {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn sockit_user_and_serve_keep_users_keys_quotas_and_limits_in_postgres() {
    let db = shared().database("cli_and_logins");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    admin(
        dir,
        &db,
        &["add", "ann", "--password-stdin", "--quota", "10MB"],
        "first\n",
    );
    let twice = sockit(
        dir,
        &[
            "user",
            "add",
            "Ann",
            "--password-stdin",
            "--users",
            &db,
            "--data",
            "data",
        ],
        &[],
        "x\n",
    );
    assert!(
        !twice.status.success(),
        "a name taken in another case was added"
    );
    assert!(said(&twice).contains("already exists"), "{}", said(&twice));
    admin(dir, &db, &["passwd", "ann", "--password-stdin"], "second\n");
    admin(dir, &db, &["quota", "ann", "20MB"], "");
    admin(dir, &db, &["limit", "ann", "--up", "5MB"], "");
    let list = admin(dir, &db, &["list"], "");
    assert!(list.contains("ann"), "{list}");
    assert!(
        list.contains("MiB") || list.contains("MB"),
        "quota listed: {list}"
    );
    assert!(
        !dir.join("data/users.db").exists(),
        "the users went to SQLite, not PostgreSQL"
    );

    let made = sockit(dir, &["key", "gen", "-C", "ann@pg", "id_ann"], &[], "");
    assert!(made.status.success(), "{}", said(&made));
    let fingerprint = String::from_utf8_lossy(&made.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    admin(dir, &db, &["key", "add", "ann", "id_ann.pub"], "");
    let keys = admin(dir, &db, &["key", "list", "ann"], "");
    assert!(
        keys.contains(&fingerprint) && keys.contains("ann@pg"),
        "{keys}"
    );

    let server = serve(dir, &db, "serve.log");
    let addr = server.addr("native");
    let mut env = server.client_env();
    let ls = |env: &[(&str, String)], extra: &[&str]| {
        let mut args = vec!["ls", "-s", addr.as_str(), "-u", "ann"];
        args.extend_from_slice(extra);
        sockit(dir, &args, env, "")
    };
    let by_key = ls(&env, &["-i", "id_ann"]);
    assert!(by_key.status.success(), "login by key: {}", said(&by_key));
    env.push(("SOCKIT_PASSWORD", "first".into()));
    assert!(
        !ls(&env, &[]).status.success(),
        "the old password still logs in"
    );
    env.pop();
    env.push(("SOCKIT_PASSWORD", "second".into()));
    let by_password = ls(&env, &[]);
    assert!(
        by_password.status.success(),
        "login by password: {}",
        said(&by_password)
    );

    admin(dir, &db, &["key", "del", "ann", &fingerprint], "");
    env.pop();
    assert!(
        !ls(&env, &["-i", "id_ann"]).status.success(),
        "a removed key still logs in"
    );
    admin(dir, &db, &["del", "ann"], "");
    env.push(("SOCKIT_PASSWORD", "second".into()));
    assert!(
        !ls(&env, &[]).status.success(),
        "a removed user still logs in"
    );
    assert_eq!(server.interrupt().code(), Some(0));
    assert_no_password_in(dir);
}

#[tokio::test]
async fn two_servers_on_one_database_serve_the_same_users_and_see_each_others_changes() {
    let db = shared().database("two_servers");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    admin(dir, &db, &["add", "bob", "--password-stdin"], "pw-1\n");
    let a = serve(dir, &db, "a.log");
    let b = serve(dir, &db, "b.log");
    let (addr_a, addr_b) = (a.addr("native"), b.addr("native"));

    // Added once, logs in on both; a folder made through one is seen through the other.
    let mut on_a = logged_in(&addr_a, "bob", "pw-1").await;
    let mut on_b = logged_in(&addr_b, "bob", "pw-1").await;
    on_a.mkdir("shared", false).await.unwrap();
    let seen = on_b.ls("/").await.unwrap();
    assert!(seen.iter().any(|e| e.name == "shared"), "{seen:?}");

    // A password change made through the database ends the sessions on both servers.
    admin(dir, &db, &["passwd", "bob", "--password-stdin"], "pw-2\n");
    assert_eq!(code(on_b.ls("/").await), ErrorCode::AuthFailed);
    assert_eq!(code(on_a.ls("/").await), ErrorCode::AuthFailed);
    let mut again = logged_in(&addr_b, "bob", "pw-2").await;
    again.ls("/").await.unwrap();

    // A user added while both run logs in on both.
    admin(dir, &db, &["add", "cat", "--password-stdin"], "pw-c\n");
    logged_in(&addr_a, "cat", "pw-c")
        .await
        .ls("/")
        .await
        .unwrap();
    logged_in(&addr_b, "cat", "pw-c")
        .await
        .ls("/")
        .await
        .unwrap();
    drop((a, b));
    assert_no_password_in(dir);
}

/// Polls what the load's clients saw until `enough`, or fails after a bound.
async fn wait_until(
    seen: &std::sync::Mutex<Vec<Seen>>,
    what: &str,
    enough: impl Fn(&[Seen]) -> bool,
) -> Vec<Seen> {
    let started = Instant::now();
    loop {
        let now = seen.lock().unwrap().clone();
        if enough(&now) {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {now:?}"
        );
        // The poll's interval.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the load's clients saw, per client.
#[derive(Debug, Default, Clone)]
struct Seen {
    ok: u64,
    unavailable: u64,
    /// Anything else: each one fails the test.
    other: Vec<String>,
}

#[tokio::test]
async fn postgres_stopped_under_load_is_unavailable_then_service_resumes() {
    // Its own PostgreSQL: stopping the shared one would fail the other tests.
    let pg = PgServer::start();
    let db = pg.database("restart");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    admin(
        dir,
        &db,
        &["add", "dan", "--password-stdin", "--quota", "1GiB"],
        "pw\n",
    );
    let server = serve(dir, &db, "serve.log");
    let addr = server.addr("native");
    let file = dir.join("small.bin");
    std::fs::write(&file, crate::common::noise_from(9, 50_000)).unwrap();

    // The load: clients asking without pause, listings and uploads (each request reads the
    // user store; an upload also reserves and settles quota), each answer within a bound.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![Seen::default(); 8]));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for i in 0..8 {
        let mut client = logged_in(&addr, "dan", "pw").await;
        let (seen, stop, file) = (seen.clone(), stop.clone(), file.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let name = format!("c{i}-{}", n % 4);
                let request = async {
                    if i % 2 == 0 {
                        client.ls("/").await.map(|_| ())
                    } else {
                        client
                            .put(&file, &name, false, &mut Quiet)
                            .await
                            .map(|_| ())
                    }
                };
                let answer = tokio::time::timeout(Duration::from_secs(30), request)
                    .await
                    .expect("a request hung");
                {
                    let mut seen = seen.lock().unwrap();
                    match answer {
                        Ok(()) => seen[i].ok += 1,
                        Err(Error::Remote {
                            code: ErrorCode::Unavailable,
                            message,
                        }) => {
                            assert!(!message.contains(PASSWORD), "{message}");
                            seen[i].unavailable += 1;
                        }
                        Err(e) => seen[i].other.push(e.to_string()),
                    }
                }
                // Not a tight loop while every answer is a refusal.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let before = wait_until(&seen, "no service", |all| all.iter().all(|s| s.ok >= 3)).await;

    pg.stop();
    let down = wait_until(&seen, "no `unavailable` while PostgreSQL was down", |all| {
        all.iter().all(|s| s.unavailable >= 3)
    })
    .await;
    // A new login is refused the same way, not as a wrong password; so is `sockit user`.
    let endpoint: Endpoint = addr.parse().unwrap();
    let mut fresh = Client::connect(&endpoint).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(30), fresh.login("dan", "pw"))
        .await
        .expect("a login hung while PostgreSQL was down");
    assert_eq!(code(refused), ErrorCode::Unavailable);
    let offline = sockit(
        dir,
        &["user", "list", "--users", &db, "--data", "data"],
        &[],
        "",
    );
    assert!(!offline.status.success());
    assert!(
        said(&offline).contains("cannot be reached"),
        "{}",
        said(&offline)
    );
    assert!(!said(&offline).contains(PASSWORD), "{}", said(&offline));

    pg.resume();
    // Service resumes by itself: the same sessions and new logins work again.
    let oks: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.ok).collect();
    let resumed = wait_until(&seen, "no service after PostgreSQL came back", |all| {
        all.iter().zip(&oks).all(|(s, ok)| s.ok >= ok + 3)
    })
    .await;
    stop.cancel();
    for task in load {
        task.await.unwrap();
    }
    logged_in(&addr, "dan", "pw").await.ls("/").await.unwrap();
    for s in seen.lock().unwrap().iter() {
        assert!(
            s.other.is_empty(),
            "answers other than `unavailable`: {:?}",
            s.other
        );
    }
    eprintln!("before: {before:?}\ndown: {down:?}\nresumed: {resumed:?}");
    assert_eq!(server.interrupt().code(), Some(0));
    assert_no_password_in(dir);
    let pg_log = pg.log();
    assert!(!pg_log.contains(PASSWORD), "{pg_log}");
}

#[test]
fn a_bad_database_password_or_host_is_reported_without_the_url_password() {
    let pg = shared();
    let good = pg.database("refusals");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wrong = good.replace(PASSWORD, "Wrong-Pw-1234");
    let out = sockit(
        dir,
        &["user", "list", "--users", &wrong, "--data", "data"],
        &[],
        "",
    );
    assert!(!out.status.success());
    assert!(!said(&out).contains("Wrong-Pw-1234"), "{}", said(&out));
    assert!(
        said(&out).contains("***"),
        "the URL shown redacted: {}",
        said(&out)
    );

    let serve = Command::new(sockit_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--users")
        .arg(&wrong)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!serve.status.success(), "served without its user database");
    assert!(!said(&serve).contains("Wrong-Pw-1234"), "{}", said(&serve));

    // The URL from the environment, as a service file would give it: same store.
    admin(dir, &good, &["add", "eve", "--password-stdin"], "pw\n");
    let listed = sockit(
        dir,
        &["user", "list", "--data", "data"],
        &[("SOCKIT_USERS", good.clone())],
        "",
    );
    assert!(said(&listed).contains("eve"), "{}", said(&listed));
}

#[tokio::test]
async fn a_quota_holds_across_two_servers_when_uploads_race_on_both() {
    let db = shared().database("quota_race");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Room for five of the files (each costs its bytes and one entry), not six.
    let size = 200_000u64;
    let cost = size + ENTRY_COST;
    let quota = 5 * cost + cost / 2;
    admin(
        dir,
        &db,
        &[
            "add",
            "fay",
            "--password-stdin",
            "--quota",
            &quota.to_string(),
        ],
        "pw\n",
    );
    let a = serve(dir, &db, "a.log");
    let b = serve(dir, &db, "b.log");
    let file = dir.join("upload.bin");
    std::fs::write(&file, crate::common::noise_from(7, size as usize)).unwrap();

    // Six uploads through each server at once: without a shared ledger each server would
    // grant five.
    let mut clients = Vec::new();
    for (i, addr) in [a.addr("native"), b.addr("native")]
        .iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        clients.push((i, logged_in(addr, "fay", "pw").await));
    }
    let uploads = clients.into_iter().map(|(i, mut client)| {
        let file = file.clone();
        tokio::spawn(async move {
            let put = client.put(&file, &format!("f{i}"), false, &mut Quiet).await;
            (client, put.map(|_| ()))
        })
    });
    let mut stored = 0;
    let mut clients = Vec::new();
    for upload in uploads {
        let (client, put) = upload.await.unwrap();
        match put {
            Ok(()) => stored += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)), ErrorCode::QuotaExceeded),
        }
        clients.push(client);
    }
    assert!(stored <= 5, "{stored} files stored: the quota was overshot");
    assert!(stored >= 1, "no upload fitted");
    let on_disk: u64 = std::fs::read_dir(dir.join("data/homes/fay"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len() + ENTRY_COST)
        .sum();
    assert!(
        on_disk <= quota,
        "{on_disk} bytes on disk over a quota of {quota}"
    );

    // Nothing stays reserved: both servers agree on what is used, and the room left is
    // usable (five files fit in all).
    let (used_a, used_b) = (
        clients[0].df().await.unwrap().used,
        clients[1].df().await.unwrap().used,
    );
    assert_eq!(used_a, used_b);
    assert_eq!(used_a, on_disk);
    for i in stored..5 {
        clients[i % 2]
            .put(&file, &format!("more{i}"), false, &mut Quiet)
            .await
            .unwrap();
    }
    assert_eq!(
        code(
            clients[1]
                .put(&file, "one-too-many", false, &mut Quiet)
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    // A removal through one server makes room for an upload through the other.
    let listed = clients[0].ls("/").await.unwrap();
    clients[0].rm(&listed[0].name, false).await.unwrap();
    clients[1]
        .put(&file, "after-rm", false, &mut Quiet)
        .await
        .unwrap();
    drop((a, b));
}

#[tokio::test]
async fn the_reservation_of_a_server_killed_mid_upload_is_reclaimed_by_the_others() {
    let db = shared().database("quota_crash");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (big, small) = (2_000_000u64, 100_000u64);
    // Room for the big upload or the small one, not both.
    let quota = big + small + 2 * ENTRY_COST - 1;
    admin(
        dir,
        &db,
        &[
            "add",
            "gus",
            "--password-stdin",
            "--quota",
            &quota.to_string(),
        ],
        "pw\n",
    );
    // Slow uploads, so that the server can be killed in the middle of one.
    admin(dir, &db, &["limit", "gus", "--up", "200KB"], "");
    let lease = ["--quota-lease", "5"];
    let mut a = serve_with(dir, &db, "a.log", &lease);
    let b = serve_with(dir, &db, "b.log", &lease);
    std::fs::write(
        dir.join("big.bin"),
        crate::common::noise_from(3, big as usize),
    )
    .unwrap();
    std::fs::write(
        dir.join("small.bin"),
        crate::common::noise_from(5, small as usize),
    )
    .unwrap();

    let mut env = a.client_env();
    env.push(("SOCKIT_PASSWORD", "pw".into()));
    let mut put = Command::new(sockit_bin())
        .args(["put", "big.bin", "-s", &a.addr("native"), "-u", "gus"])
        .env_remove("SOCKIT_IDENTITY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once bytes arrive: its reservation is in the database, its upload half done.
    let home = dir.join("data/homes/gus");
    let started = Instant::now();
    while !std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the upload did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let _ = put.wait();

    // Through the other server: refused while the dead server's hold counts, then stored
    // once it is reclaimed (a lease after the dead server's last heartbeat).
    let mut client = logged_in(&b.addr("native"), "gus", "pw").await;
    let small_file = dir.join("small.bin");
    assert_eq!(
        code(client.put(&small_file, "small", false, &mut Quiet).await),
        ErrorCode::QuotaExceeded,
        "the killed server's reservation was not counted"
    );
    let started = Instant::now();
    loop {
        match client.put(&small_file, "small", false, &mut Quiet).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(code::<()>(Err(e)), ErrorCode::QuotaExceeded);
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the killed server's reservation was never reclaimed"
                );
                // The poll's interval.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap();
    assert!(log.contains("reclaimed"), "{log}");
    drop(b);
}

#[test]
fn a_mistyped_users_url_is_refused_without_showing_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for url in [
        "postgres:/ann:Typo-Pw-5678@127.0.0.1/db",
        "mysql://ann:Typo-Pw-5678@127.0.0.1/db",
        "postgres://ann:Typo-Pw-5678@127.0.0.1:notaport/db",
    ] {
        let out = sockit(
            dir,
            &["user", "list", "--users", url, "--data", "data"],
            &[],
            "",
        );
        assert!(!out.status.success(), "{url} accepted");
        let text = said(&out);
        assert!(text.contains("PostgreSQL URL"), "{text}");
        assert!(!text.contains("Typo-Pw-5678"), "{text}");
    }
    let config = dir.join("sockit.toml");
    std::fs::write(&config, "users = \"mysql://ann:Typo-Pw-5678@host/db\"\n").unwrap();
    let out = Command::new(sockit_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!said(&out).contains("Typo-Pw-5678"), "{}", said(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_their_own_data_folders_share_an_object_store_and_postgres_as_one() {
    let db = shared().database("store_and_users");
    let store = seaweed::shared();
    let prefix = format!("pg-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Two machines, as far as sockit can tell: nothing shared on disk.
    let serve_on = |data: &str, log: &str| {
        let data = dir.join(data);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            data.display().to_string(),
            "--users".into(),
            db.clone(),
        ];
        args.extend(store.serve_args(&prefix));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = std::fs::File::create(dir.join(log)).unwrap();
        ServerProcess::start_with(&args, 1, Stdio::from(log), &seaweed::credentials())
    };
    admin(dir, &db, &["add", "hal", "--password-stdin"], "pw\n");
    admin(dir, &db, &["limit", "hal", "--up", "1MB"], "");
    let one = serve_on("data-one", "one.log");
    let two = serve_on("data-two", "two.log");
    let (addr_one, addr_two) = (one.addr("native"), two.addr("native"));

    // A file put through one is listed and fetched through the other.
    let payload = crate::common::noise_from(11, 300_000);
    std::fs::write(dir.join("a.bin"), &payload).unwrap();
    let mut on_one = logged_in(&addr_one, "hal", "pw").await;
    let mut on_two = logged_in(&addr_two, "hal", "pw").await;
    on_one
        .put(&dir.join("a.bin"), "a.bin", false, &mut Quiet)
        .await
        .unwrap();
    assert!(
        on_two
            .ls("/")
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "a.bin")
    );
    on_two
        .get("a.bin", &dir.join("b.bin"), false, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), payload);

    // One writer per file across the two, through the database's advisory locks: while an
    // upload (slowed by hal's limit) runs through one, the other refuses a second writer.
    let big = crate::common::noise_from(13, 20_000_000);
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let mut env = one.client_env();
    env.push(("SOCKIT_PASSWORD", "pw".into()));
    let mut slow = Command::new(sockit_bin())
        .args(["put", "big.bin", "-s", &addr_one, "-u", "hal"])
        .env_remove("SOCKIT_IDENTITY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let uploads = format!("{prefix}/uploads/");
    let started = Instant::now();
    while store.keys(&uploads).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the upload did not start"
        );
        // The poll's interval.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        code(
            on_two
                .put(&dir.join("big.bin"), "big.bin", false, &mut Quiet)
                .await
        ),
        ErrorCode::Busy
    );
    // The writer's server dies: the database lets go of its lock at once.
    drop(one);
    let _ = slow.kill();
    let _ = slow.wait();
    let started = Instant::now();
    loop {
        match on_two
            .put(&dir.join("a.bin"), "big.bin", false, &mut Quiet)
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(code::<()>(Err(e)), ErrorCode::Busy);
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the dead server's lock was never let go"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(two);
    assert_no_password_in(dir);
}

#[tokio::test]
async fn a_postgres_that_stops_answering_gives_unavailable_in_bounded_time_not_a_hang() {
    use nix::sys::signal::Signal;
    // Its own PostgreSQL, frozen with SIGSTOP: connections stay open, nothing answers (a
    // database host gone silent, the case a refused connection does not cover).
    let pg = PgServer::start();
    // connect_timeout=2 (in the URL): a call gives up after 4 s.
    let db = pg.database("frozen");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    admin(dir, &db, &["add", "ida", "--password-stdin"], "pw\n");
    let server = serve(dir, &db, "serve.log");
    let addr = server.addr("native");
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(logged_in(&addr, "ida", "pw").await);
    }

    pg.signal_all(Signal::SIGSTOP);
    let bound = Duration::from_secs(30);
    for session in &mut sessions {
        let answer = tokio::time::timeout(bound, session.ls("/"))
            .await
            .expect("a request hung on a silent database");
        assert_eq!(code(answer), ErrorCode::Unavailable);
    }
    pg.signal_all(Signal::SIGCONT);
    for session in &mut sessions {
        let started = Instant::now();
        while let Err(e) = session.ls("/").await {
            assert_eq!(code::<()>(Err(e)), ErrorCode::Unavailable);
            assert!(
                started.elapsed() < bound,
                "no service once the database answered"
            );
            // The poll's interval.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(server.interrupt().code(), Some(0));
}
