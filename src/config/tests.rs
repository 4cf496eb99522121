//! Settings files and defaults: keys in either case, ranges, and the errors people see.

use std::time::Duration;

use super::*;

#[test]
fn file_keys_are_field_names_in_either_case() {
    let file = Options::from_toml(
        "listen = \"127.0.0.1:7000\"\nmax_connections = 5\nidle-timeout = 9\n\
         exec-max-output = \"1MiB\"\nudp_time = \"127.0.0.1:0\"\nallow_exec = true\n",
    )
    .unwrap();
    assert_eq!(file.max_connections, Some(5));
    assert_eq!(file.exec_max_output, Some(1 << 20));
    let s = file.resolve().unwrap();
    assert_eq!(s.server.max_connections, 5);
    assert_eq!(s.server.idle_timeout, Duration::from_secs(9));
    assert_eq!(s.listen, Endpoint::Tcp("127.0.0.1:7000".into()));
    assert_eq!(s.udp_time.as_deref(), Some("127.0.0.1:0"));
    assert!(s.allow_exec);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let s = Options::default().resolve().unwrap();
    assert_eq!(s.listen, Endpoint::Tcp(DEFAULT_LISTEN.into()));
    assert_eq!(s.data, PathBuf::from("./sockit-data"));
    assert!(!s.allow_exec);
    assert_eq!(s.server.idle_timeout, Duration::from_secs(300));
    assert_eq!(s.server.grace, Duration::from_secs(10));
    assert_eq!(s.server.limits.max_header_len, MAX_HEADER_LEN);
    assert_eq!(s.exec.max_output, 16 << 20);
    assert_eq!(s.chat.max_message, 1024);
    assert_eq!(s.time.max_format, 256);
    assert!(s.seed_echo.is_none() && s.udp_chat.is_none());
}

#[test]
fn the_per_address_cap_stays_below_the_global_cap() {
    let resolve = |toml: &str| Options::from_toml(toml).unwrap().resolve();
    let s = resolve("").unwrap().server;
    assert_eq!((s.max_connections_per_ip, s.max_connections), (128, 10_000));
    assert_eq!(s.head_timeout, Duration::from_secs(10));
    let s = resolve("max-connections-per-ip = 20\nhead_timeout = 3").unwrap();
    assert_eq!(s.server.max_connections_per_ip, 20);
    assert_eq!(s.server.head_timeout, Duration::from_secs(3));
    // A smaller global cap halves the default; an asked-for cap must stay below it.
    let s = resolve("max-connections = 64").unwrap().server;
    assert_eq!(s.max_connections_per_ip, 32);
    assert!(resolve("max-connections = 64\nmax-connections-per-ip = 64").is_err());
    assert!(resolve("max-connections-per-ip = 0").is_err());
    assert_eq!(
        resolve("max-connections = 1")
            .unwrap()
            .server
            .max_connections_per_ip,
        1
    );
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    assert!(Options::from_toml("max-conections = 5").is_err());
    assert!(Options::from_toml("listen = \"nowhere\"").is_err());
    assert!(Options::from_toml("max-body = \"lots\"").is_err());
    // `--config` is a flag, not a key: a file cannot name another.
    assert!(Options::from_toml("config = \"x.toml\"").is_err());
}

#[test]
fn errors_name_the_setting_and_the_file() {
    let e = Options::from_toml("max-header = 0").unwrap().resolve();
    let text = e.unwrap_err().to_string();
    assert!(
        text.starts_with("max-header must be between 1 byte and 66325 bytes"),
        "{text}"
    );
    // A header limit that would let a frame begin like a TLS record is refused too.
    assert!(
        Options::from_toml("max-header = \"1MiB\"")
            .unwrap()
            .resolve()
            .is_err()
    );
    let e = Options::from_toml("tls-cert = \"c.pem\"")
        .unwrap()
        .resolve();
    assert_eq!(
        e.unwrap_err().to_string(),
        "tls-cert and tls-key go together"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sockit.toml");
    std::fs::write(&path, "max_conections = 5\n").unwrap();
    let e = Options::from_file(&path).unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    assert_eq!(e.to_string(), format!("in {}", path.display()));
    let why = std::error::Error::source(&e).unwrap().to_string();
    assert!(why.contains("unknown field `max-conections`"), "{why}");
    let e = Options::from_file(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.to_string().starts_with("reading "), "{e}");
}

#[test]
fn exec_limits_and_sandbox_settings_have_defaults_and_floors() {
    let s = Options::default().resolve().unwrap();
    assert_eq!(
        (
            s.exec.memory,
            s.exec.processes,
            s.exec.open_files,
            s.exec.cpu_secs
        ),
        (512 << 20, 64, 256, 60)
    );
    assert!(!s.exec_sandbox.network && !s.exec_sandbox.unconfined);
    let file = "exec-memory = \"1GiB\"\nexec_processes = 8\nexec-open-files = 64\n\
                exec-cpu-secs = 5\nexec-network = \"on\"\nexec-unconfined = true";
    let s = Options::from_toml(file).unwrap().resolve().unwrap();
    assert_eq!(
        (
            s.exec.memory,
            s.exec.processes,
            s.exec.open_files,
            s.exec.cpu_secs
        ),
        (1 << 30, 8, 64, 5)
    );
    assert!(s.exec_sandbox.network && s.exec_sandbox.unconfined);
    assert!(Options::from_toml("exec-network = \"maybe\"").is_err());
    assert!(Options::from_toml("exec-network = false").is_ok());
    for low in [
        "exec-memory = \"1MiB\"",
        "exec-processes = 0",
        "exec-open-files = 3",
    ] {
        let e = Options::from_toml(low).unwrap().resolve().unwrap_err();
        assert!(e.to_string().contains("must be at least"), "{low}: {e}");
    }
}
