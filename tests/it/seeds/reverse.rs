//! sockit's clients against the seeds' own Python servers.

use super::*;

#[test]
fn sockit_clients_against_seed_python_servers() {
    let echo = PythonServer::start("echo_server.py", &[]);
    let (ok, out, err) = sockit(&["echo", "--seed", "-s", &echo.addr, "hello seed"]);
    assert!(ok, "{err}");
    assert_eq!(out, "HELLO SEED\n");

    let exec = PythonServer::start("exec_server.py", &[]);
    let (ok, out, err) = sockit(&[
        "exec", "--seed", "-s", &exec.addr, "echo", "hi;", "seq", "1", "500",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("hi\n1\n2\n") && out.ends_with("\n500\n"),
        "{out}"
    );

    let udp = PythonServer::start("udp_echo_server.py", &[]);
    let (ok, out, err) = sockit(&["echo", "--udp", "-s", &udp.addr, "datagram"]);
    assert!(ok, "{err}");
    assert_eq!(out, "DATAGRAM\n");

    let time = PythonServer::start("time_server.py", &[]);
    let (ok, out, err) = sockit(&["time", "-s", &time.addr, "%Y"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), chrono::Local::now().format("%Y").to_string());
}

#[test]
fn sockit_put_against_the_seed_upload_server() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let upload = PythonServer::start("upload_server.py", &[saved.to_str().unwrap()]);
    let local = dir.path().join("photo.jpg");
    let content = noise(150_000);
    std::fs::write(&local, &content).unwrap();
    let (ok, out, err) = sockit(&["put", "--seed", "-s", &upload.addr, local.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    // The seed server takes one file and exits: its exit is the signal.
    assert!(upload.finish().status.success());
    assert_eq!(std::fs::read(saved.join("photo.jpg")).unwrap(), content);
}
