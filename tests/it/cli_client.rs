//! The client's command line as a person types it: `sockit://` addresses in place of remote
//! paths, the configuration file under the flags, and the shell's `ls -l`, `df`, `lmkdir`.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{ServerProcess, output_with_input, sockit_bin};

/// The variables a developer's own shell may hold, which would steer these commands.
const CLIENT_VARS: [&str; 8] = [
    "SOCKIT_SERVER",
    "SOCKIT_USER",
    "SOCKIT_IDENTITY",
    "SOCKIT_PLAINTEXT",
    "SOCKIT_FINGERPRINT",
    "SOCKIT_TRUST",
    "SOCKIT_PASSWORD",
    "XDG_CONFIG_HOME",
];

/// Runs `sockit ARGS` in `dir` with `env` (a `None` value removes the variable) over a clean
/// client environment: trust on first use into the test's own known-hosts file, and an
/// empty configuration file.
fn sockit(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)], stdin: &str) -> Output {
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let mut command = Command::new(sockit_bin());
    command.args(args).current_dir(dir);
    for var in CLIENT_VARS {
        command.env_remove(var);
    }
    command
        .env("SOCKIT_TRUST", "accept-new")
        .env("SOCKIT_KNOWN_HOSTS", dir.join("known_hosts"))
        .env("SOCKIT_CONFIG", &empty);
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    output_with_input(&mut command, stdin)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server on a free port with users alice (10 MB quota, password `pw-alice`) and bob
/// (no quota, `pw-bob`), and a 100 kB file `up.bin` next to it.
fn server(dir: &Path) -> (ServerProcess, String) {
    for (name, extra) in [("alice", &["--quota", "10MB"][..]), ("bob", &[])] {
        let mut args = vec!["user", "add", name, "--password-stdin", "--data", "data"];
        args.extend(extra);
        let out = sockit(dir, &args, &[], &format!("pw-{name}\n"));
        assert!(out.status.success(), "{out:?}");
    }
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("up.bin"), payload).unwrap();
    let data = dir.join("data");
    let server = ServerProcess::start(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        1,
    );
    let addr = server.addr("native");
    (server, addr)
}

const ALICE: (&str, Option<&str>) = ("SOCKIT_PASSWORD", Some("pw-alice"));

#[test]
fn addresses_name_the_server_the_user_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, addr) = server(dir);
    let url = |path: &str| format!("sockit://alice@{addr}{path}");
    let ok = |args: &[&str]| {
        let out = sockit(dir, args, &[ALICE], "");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };

    // No -s, no -u: the address says both; `%20` is a space; a folder takes LOCAL's name.
    ok(&["mkdir", &url("/my%20docs")]);
    let put = ok(&["put", "up.bin", &url("/my%20docs/")]);
    assert!(
        put.contains("stored /my docs/up.bin: 100000 bytes"),
        "{put}"
    );
    assert!(ok(&["ls", &url("/my%20docs")]).contains("up.bin"));
    assert!(ok(&["stat", &url("/my%20docs/up.bin")]).contains("100000"));
    ok(&["mv", &url("/my%20docs/up.bin"), "/my docs/moved.bin"]);
    std::fs::create_dir(dir.join("down")).unwrap();
    let get = ok(&["get", &url("/my%20docs/moved.bin"), "down"]);
    assert!(get.contains("saved down/moved.bin"), "{get}");
    assert_eq!(
        std::fs::read(dir.join("down/moved.bin")).unwrap(),
        std::fs::read(dir.join("up.bin")).unwrap()
    );
    let home = dir.join("data/homes/alice");
    assert!(home.join("my docs/moved.bin").is_file());
    ok(&["rm", "-r", &url("/my%20docs")]);
    assert!(!home.join("my docs").exists());

    // An address beats the variables a shell keeps, and a flag that agrees is fine.
    let env = [
        ALICE,
        ("SOCKIT_SERVER", Some("127.0.0.1:1")),
        ("SOCKIT_USER", Some("bob")),
    ];
    let out = sockit(dir, &["put", "up.bin", &url("/")], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(home.join("up.bin").is_file());
    let same = sockit(
        dir,
        &["ls", "-s", &addr, "-u", "alice", &url("/")],
        &[ALICE],
        "",
    );
    assert!(same.status.success(), "{}", stderr(&same));

    // Flags that disagree, and a password in the address, are refused before connecting.
    let other = sockit(dir, &["ls", "-s", "127.0.0.1:1", &url("/")], &[ALICE], "");
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("-s 127.0.0.1:1 and sockit://alice@"),
        "{other:?}"
    );
    let bob = sockit(dir, &["get", "-u", "bob", &url("/up.bin")], &[ALICE], "");
    assert!(
        stderr(&bob).contains("-u bob and sockit://alice@"),
        "{bob:?}"
    );
    let secret = format!("sockit://alice:pw-alice@{addr}/");
    let out = sockit(dir, &["ls", &secret], &[], "");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("password") && !err.contains("pw-alice"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_configuration_file_saves_typing_and_yields_to_flags_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, addr) = server(dir);
    // alice logs in with a key the file names, relative to the file's folder.
    let conf_dir = dir.join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let key = conf_dir.join("id");
    let out = sockit(dir, &["key", "gen", key.to_str().unwrap()], &[], "");
    assert!(out.status.success(), "{out:?}");
    let pubkey = format!("{}.pub", key.display());
    let add = ["user", "key", "add", "alice", &pubkey, "--data", "data"];
    assert!(sockit(dir, &add, &[], "").status.success());
    let config = conf_dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{addr}\"\nuser = \"alice\"\nidentity = \"id\"\ntrust = \"accept-new\"\n"
        ),
    )
    .unwrap();
    let conf = config.to_str().unwrap();
    // No SOCKIT_TRUST: the file's `trust` lets the new server in (strict without a terminal).
    let from_file = [("SOCKIT_CONFIG", Some(conf)), ("SOCKIT_TRUST", None)];

    let put = sockit(dir, &["put", "up.bin"], &from_file, "");
    assert!(put.status.success(), "{}", stderr(&put));
    assert!(dir.join("data/homes/alice/up.bin").is_file());

    // A variable beats the file; a flag beats the variable.
    let mut env = from_file.to_vec();
    env.push(("SOCKIT_SERVER", Some("127.0.0.1:1")));
    let out = sockit(dir, &["ls"], &env, "");
    assert!(
        stderr(&out).contains("connecting to 127.0.0.1:1"),
        "{out:?}"
    );
    let out = sockit(dir, &["ls", "-s", &addr], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));
    // Another user: the file's key is alice's, so bob is asked for his password.
    env.push(("SOCKIT_PASSWORD", Some("pw-bob")));
    let out = sockit(dir, &["ls", "-s", &addr, "-u", "bob"], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("up.bin"), "bob's home is his own");

    // The default place under $XDG_CONFIG_HOME.
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("sockit")).unwrap();
    std::fs::write(
        xdg.join("sockit/config.toml"),
        format!("server = \"{addr}\"\nuser = \"bob\"\n"),
    )
    .unwrap();
    let env = [
        ("SOCKIT_CONFIG", None),
        ("XDG_CONFIG_HOME", xdg.to_str()),
        ("SOCKIT_PASSWORD", Some("pw-bob")),
    ];
    let out = sockit(dir, &["put", "up.bin", "bobs.bin"], &env, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("data/homes/bob/bobs.bin").is_file());

    // Mistakes name the key and the file, in one line.
    std::fs::write(&config, "sever = \"h:1\"\n").unwrap();
    let out = sockit(dir, &["ls"], &from_file, "");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("`sever`") && err.contains(conf), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let missing = [("SOCKIT_CONFIG", Some("no-such.toml"))];
    let out = sockit(dir, &["ls"], &missing, "");
    assert!(stderr(&out).contains("no-such.toml"), "{out:?}");
}

#[test]
fn the_shell_lists_long_reports_space_and_makes_local_folders() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, addr) = server(dir);
    let shell = |args: &[&str], script: &str| {
        let mut all = vec!["shell", "-s", &addr, "-u", "alice"];
        all.extend_from_slice(args);
        let out = sockit(dir, &all, &[ALICE], script);
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        stdout(&out)
    };

    shell(
        &[],
        "mkdir docs\nput up.bin docs/a.bin\nput up.bin docs/.hidden\n",
    );
    let plain = shell(&["docs"], "pwd\nls\n");
    assert_eq!(plain, "/docs\na.bin\n", "started in docs; no dot files");
    let all = shell(&[], "ls -a docs\n");
    assert_eq!(all, ".hidden\na.bin\n");
    let long = shell(&[], "ls -l\nls -la docs\n");
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), 3, "{long}");
    assert!(
        lines[0].starts_with('d') && lines[0].ends_with(" docs/"),
        "{long}"
    );
    for (line, name) in lines[1..].iter().zip([".hidden", "a.bin"]) {
        assert!(line.starts_with('-') && line.contains(" 100000 "), "{long}");
        assert!(line.ends_with(&format!(" {name}")), "{long}");
    }

    // Two files of 100,000 bytes and a folder, at 4 KiB an entry, against 10 MB.
    let df = shell(&[], "df\n");
    let used = 200_000 + 3 * 4096;
    assert_eq!(
        df,
        format!(
            "quota 9.5 MiB (10000000 bytes)\nused  207.3 KiB ({used} bytes)\n\
             free  9.3 MiB ({} bytes)\n",
            10_000_000 - used
        )
    );

    // Every line runs, in order: a local folder made, entered, and filled by a download; the
    // script stops at the first failure.
    let script = "lmkdir -p local/deep\nlcd local/deep\nget docs/a.bin\nlpwd\n\
                  lmkdir ../deep\nlmkdir never\n";
    let args = ["shell", "-s", &addr, "-u", "alice"];
    let out = sockit(dir, &args, &[ALICE], script);
    assert!(!out.status.success(), "lmkdir of an existing folder fails");
    assert!(stderr(&out).contains("line 5: lmkdir ../deep"), "{out:?}");
    assert_eq!(
        std::fs::read(dir.join("local/deep/a.bin")).unwrap().len(),
        100_000
    );
    assert!(stdout(&out).trim_end().ends_with("local/deep"), "{out:?}");
    assert!(!dir.join("local/deep/never").exists());
}
