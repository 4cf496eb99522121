//! `sockit demo`: the whole system in one run, on free loopback ports, with readable output.
//!
//! It starts a server in this process on 127.0.0.1:0 (the native protocol, the seed echo,
//! UDP echo, time and chat), runs each feature once as a client would, and shuts the server
//! down, leaving nothing behind: data lives in a temporary folder.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use sockit::client::Client;
use sockit::client::chat::{self, Incoming};
use sockit::config::Options;
use sockit::filecopy::Quiet;
use sockit::net::Endpoint;
use sockit::protocol::encode_head;
use sockit::users::{Password, Users};

/// How long a UDP step waits for its reply.
const WAIT: Duration = Duration::from_secs(5);

/// Runs the demo, writing what happens to `out`.
///
/// # Errors
/// Any step that does not behave as shown.
pub async fn run(out: &mut impl Write) -> Result<()> {
    writeln!(out, "sockit demo: a server and its clients on loopback\n")?;
    // Data goes to a temporary folder: the demo leaves nothing where it ran.
    let data = tempfile::tempdir().context("creating a temporary data folder")?;
    let any = || Some("127.0.0.1:0".to_string());
    let options = Options {
        listen: Some("127.0.0.1:0".parse().map_err(anyhow::Error::msg)?),
        data: Some(data.path().to_path_buf()),
        seed_echo: Some("127.0.0.1:0".parse().map_err(anyhow::Error::msg)?),
        udp_echo: any(),
        udp_time: any(),
        udp_chat: any(),
        grace: Some(5),
        allow_exec: true,
        http: Some("127.0.0.1:0".parse().map_err(anyhow::Error::msg)?),
        ftp: any(),
        ..Options::default()
    };
    let running = sockit::config::start(options.resolve()?).await?;
    for (what, addr) in &running.listeners {
        writeln!(out, "[server] {what} on {addr}")?;
    }
    let addr = |what| {
        running
            .addr(what)
            .map(str::to_string)
            .with_context(|| format!("no {what} listener"))
    };
    let server: Endpoint = addr("native protocol")?
        .parse()
        .map_err(anyhow::Error::msg)?;
    writeln!(out)?;

    let mut client = Client::connect(&server).await?;
    let reply = client.echo("hello, sockit".as_bytes()).await?;
    writeln!(
        out,
        "[echo]   sent \"hello, sockit\" -> got \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;

    if let Some(fingerprint) = &running.fingerprint {
        let mut secure = Client::connect_tls(&server, fingerprint).await?;
        let reply = secure.echo(b"over TLS").await?;
        writeln!(
            out,
            "[tls]    TLS 1.3 to the same port, certificate pinned to {fingerprint} -> \"{}\"",
            String::from_utf8_lossy(&reply)
        )?;
        trust_on_first_use(out, &server, data.path()).await?;
    }

    sticky_packets(out, &mut client).await?;

    let big = vec![b'x'; 8 << 20];
    let reply = client.echo(&big).await?;
    writeln!(
        out,
        "[echo]   an 8 MiB message, streamed through 64 KiB chunks -> {} bytes back, {}",
        reply.len(),
        if reply[..] == big[..] {
            "identical"
        } else {
            "DIFFERENT"
        }
    )?;

    match client.call(&json!({"op": "fly"}), b"").await {
        Err(e) => writeln!(out, "[error]  unknown op `fly` -> the server replies: {e}")?,
        Ok(_) => bail!("the server accepted an unknown op"),
    }

    hostile_peer(out, &server).await?;
    let reply = client.echo(b"still here?").await?;
    writeln!(
        out,
        "[echo]   the first client, afterwards -> \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;
    drop(client);

    // The file service and exec as the sockit client speaks to them: over TLS.
    let fingerprint = running
        .fingerprint
        .clone()
        .context("the server has no TLS")?;
    file_server(out, &server, &fingerprint, data.path()).await?;
    remote_command(out, &server, &fingerprint).await?;
    http_door(out, &addr("http")?, &fingerprint).await?;
    ftp_door(out, &addr("ftp")?).await?;
    seed_listeners(out, &addr("seed-echo")?, &addr("udp-echo")?).await?;
    time_server(out, &addr("udp-time")?).await?;
    chat_room(out, &addr("udp-chat")?).await?;

    let clean = running.stop().await?;
    writeln!(
        out,
        "\n[server] shut down {}",
        if clean {
            "cleanly"
        } else {
            "after the grace period"
        }
    )?;
    Ok(())
}

/// Trust on first use as a person meets it: the question on a first connection (answered
/// here), the certificate remembered, no question the next time, and a changed certificate
/// refused.
async fn trust_on_first_use(out: &mut impl Write, server: &Endpoint, scratch: &Path) -> Result<()> {
    use sockit::client::known_hosts::KnownHosts;
    use sockit::client::tls;

    use crate::cli::trust::{Trust, check, question};
    let Endpoint::Tcp(host) = server else {
        return Ok(());
    };
    let known = KnownHosts::at(scratch.join("known_hosts"));
    let mut answer = |host: &str, seen: &str| -> Result<bool> {
        writeln!(
            out,
            "[trust]  a first `sockit ls` to {host}, with an empty known-hosts file:"
        )?;
        for line in format!("{}yes   <- the demo answers for you", question(host, seen)).lines() {
            writeln!(out, "           {line}")?;
        }
        Ok(true)
    };
    let (stream, seen) = tls::connect_any(sockit::net::connect(server).await?).await?;
    check(&known, host, &seen, Trust::Ask, &mut answer)?;
    drop(stream);
    let remembered = std::fs::read_to_string(known.path())?;
    writeln!(out, "[trust]  remembered: \"{}\"", remembered.trim())?;
    let (stream, seen) = tls::connect_any(sockit::net::connect(server).await?).await?;
    let mut never = |_: &str, _: &str| -> Result<bool> { bail!("asked twice") };
    check(&known, host, &seen, Trust::Ask, &mut never)?;
    let reply = Client::from_stream(stream).echo(b"known").await?;
    writeln!(
        out,
        "[trust]  the next connection: known, same certificate -> no question, \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;
    // Another certificate at the same address, as a man in the middle would show: here the
    // remembered line names another one, which is the same comparison.
    let other = sockit::tls::Identity::load_or_create(&scratch.join("other-server"))?;
    std::fs::write(known.path(), format!("{host} {}\n", other.fingerprint()))?;
    let (_, seen) = tls::connect_any(sockit::net::connect(server).await?).await?;
    match check(&known, host, &seen, Trust::AcceptNew, &mut never) {
        Ok(_) => bail!("a changed certificate was accepted"),
        Err(e) => {
            let banner = e.to_string();
            let first = banner.trim().lines().next().unwrap_or_default().to_string();
            writeln!(
                out,
                "[trust]  the certificate changes (even with --trust accept-new) -> refused: {first}"
            )?;
        }
    }
    Ok(())
}

/// The seeds' 粘包 case: several messages written at once must still come back one by one.
async fn sticky_packets(out: &mut impl Write, client: &mut Client) -> Result<()> {
    let words = ["one", "two", "three"];
    let mut wire = BytesMut::new();
    for w in words {
        encode_head(&sockit::protocol::Request::Echo, w.len() as u64, &mut wire)?;
        wire.extend_from_slice(w.as_bytes());
    }
    let conn = client.connection();
    conn.queue_raw(&wire);
    conn.flush().await?;
    let mut got = Vec::new();
    for _ in words {
        let (_, body) = client.read_reply().await?;
        got.push(String::from_utf8_lossy(&body).into_owned());
    }
    writeln!(
        out,
        "[粘包]   3 requests in one write ({} bytes) -> 3 separate replies: {got:?}",
        wire.len()
    )?;
    Ok(())
}

/// A peer that announces a 2 GiB header gets one error frame and loses only its connection.
async fn hostile_peer(out: &mut impl Write, server: &Endpoint) -> Result<()> {
    let mut raw = sockit::net::connect(server).await?;
    raw.write_all(&i32::MAX.to_le_bytes()).await?;
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(reply.get(4..).unwrap_or_default());
    writeln!(
        out,
        "[hostile] a 2 GiB header length -> one error frame {text}, then the server closes that connection"
    )?;
    Ok(())
}

/// The seeds' homework, the FTP program: a user with a quota, a verified upload with its
/// bar, a listing, a verified download, a refused over-quota upload and a refused escape.
async fn file_server(
    out: &mut impl Write,
    server: &Endpoint,
    fingerprint: &str,
    data: &Path,
) -> Result<()> {
    let users = Users::open(data)?;
    users.add("demo", &Password::new("demo-password"), Some(64 << 20))?;
    writeln!(
        out,
        "\n[files]  user `demo` added: argon2id hash in users.db, quota 64 MiB, home homes/demo/"
    )?;
    let mut client = Client::connect_tls(server, fingerprint).await?;
    match client.login("demo", "wrong").await {
        Err(e) => writeln!(out, "[files]  login with a wrong password -> {e}")?,
        Ok(_) => bail!("a wrong password was accepted"),
    }
    client.login("demo", "demo-password").await?;

    let scratch = tempfile::tempdir()?;
    let local = scratch.path().join("photos.tar");
    let bytes: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&local, &bytes)?;
    client.mkdir("backup", false).await?;
    let mut bar = crate::cli::files::progress_bar("backup/photos.tar", false);
    let stored = client
        .put(&local, "backup/photos.tar", false, bar.as_mut())
        .await?;
    writeln!(
        out,
        "[files]  put photos.tar (24 MiB) -> stored backup/photos.tar once the server verified every byte: {} {}",
        stored.digest().0,
        stored.digest().1
    )?;
    for e in client.ls("backup").await? {
        writeln!(out, "[files]  ls backup -> {} {} bytes", e.name, e.size)?;
    }
    let back = scratch.path().join("restored.tar");
    let mut bar = crate::cli::files::progress_bar("restored.tar", false);
    let got = client
        .get("backup/photos.tar", &back, false, bar.as_mut())
        .await?;
    let same = std::fs::read(&back)? == bytes;
    writeln!(
        out,
        "[files]  get -> restored.tar, {} {} {} the upload's; bytes {}",
        got.digest().0,
        got.digest().1,
        if got.digest() == stored.digest() {
            "matches"
        } else {
            "DIFFERS FROM"
        },
        if same { "identical" } else { "DIFFERENT" }
    )?;
    let huge = scratch.path().join("huge.bin");
    std::fs::File::create(&huge)?.set_len(100 << 20)?;
    match client.put(&huge, "huge.bin", false, &mut Quiet).await {
        Err(e) => writeln!(
            out,
            "[files]  put 100 MiB -> refused before any byte is sent: {e}"
        )?,
        Ok(_) => bail!("the quota let 100 MiB through"),
    }
    match client.get("../../users.db", &back, false, &mut Quiet).await {
        Err(e) => writeln!(out, "[files]  get ../../users.db -> {e}")?,
        Ok(_) => bail!("a path escaped the home"),
    }
    Ok(())
}

/// The seeds' own echo protocols: raw TCP bytes and a UDP datagram, upper-cased.
async fn seed_listeners(out: &mut impl Write, seed_echo: &str, udp_echo: &str) -> Result<()> {
    let endpoint: Endpoint = seed_echo.parse().map_err(anyhow::Error::msg)?;
    let reply = sockit::seed::echo::request_tcp(&endpoint, b"hello from the seed client").await?;
    writeln!(
        out,
        "\n[seed-echo] raw bytes \"hello from the seed client\" -> \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;
    let reply = sockit::seed::echo::request_udp(udp_echo, b"one datagram", WAIT).await?;
    writeln!(
        out,
        "[udp-echo]  datagram \"one datagram\" -> \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;
    Ok(())
}

/// The seeds' "NTP" server: a strftime format in, the local time out; a bad format is an
/// error reply, not a crash.
async fn time_server(out: &mut impl Write, addr: &str) -> Result<()> {
    use sockit::client::udp::time as request;
    let now = request(addr, "%Y-%m-%d %H:%M:%S", WAIT).await?;
    writeln!(out, "[udp-time]  \"%Y-%m-%d %H:%M:%S\" -> \"{now}\"")?;
    match request(addr, "%Q", WAIT).await {
        Err(e) => writeln!(out, "[udp-time]  \"%Q\" -> error reply: {e}")?,
        Ok(t) => bail!("the time server accepted %Q: {t}"),
    }
    Ok(())
}

/// Two members and a seed-style raw client in the UDP chat room.
async fn chat_room(out: &mut impl Write, addr: &str) -> Result<()> {
    let alice = chat::Client::connect(addr).await?;
    let bob = chat::Client::connect(addr).await?;
    let mut seen = Vec::new();
    alice.send("JOIN alice").await?;
    alice.reply(WAIT, &mut seen).await?;
    bob.send("JOIN bob").await?;
    let welcome = bob.reply(WAIT, &mut seen).await?;
    writeln!(
        out,
        "[udp-chat]  alice and bob join -> bob is told \"{welcome}\""
    )?;
    // alice hears about bob first; the message itself comes after.
    alice.say("hi bob, the room works").await?;
    alice.reply(WAIT, &mut seen).await?;
    let heard = next_message(&bob).await?;
    writeln!(
        out,
        "[udp-chat]  alice says \"hi bob, the room works\" -> bob gets {heard}"
    )?;
    let reply = sockit::client::udp::request(addr, b"hello from a seed client", WAIT).await?;
    writeln!(
        out,
        "[udp-chat]  a seed client's raw datagram -> exactly one reply: \"{}\"",
        String::from_utf8_lossy(&reply)
    )?;
    for member in [alice, bob] {
        member.send("LEAVE").await?;
        member.reply(WAIT, &mut seen).await?;
    }
    Ok(())
}

/// The next chat message (not a notice) a member receives.
async fn next_message(member: &chat::Client) -> Result<String> {
    loop {
        match tokio::time::timeout(WAIT, member.recv())
            .await
            .context("no chat message came")??
        {
            Incoming::Message { from, text, .. } => return Ok(format!("[{from}] {text}")),
            _ => continue,
        }
    }
}

/// `exec` as user `demo` (added by the file step): stdout, stderr and the exit code apart.
async fn remote_command(out: &mut impl Write, server: &Endpoint, fingerprint: &str) -> Result<()> {
    let mut client = Client::connect_tls(server, fingerprint).await?;
    client.login("demo", "demo-password").await?;
    let command = "echo hi; echo oops >&2; exit 3";
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let sinks = sockit::client::command::Sinks {
        stdout: &mut stdout,
        stderr: &mut stderr,
        encoding: None,
    };
    let exit = client.exec(command, sinks).await?;
    writeln!(
        out,
        "\n[exec]   `{command}` in homes/demo -> stdout {:?}, stderr {:?}, exit code {}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
        exit.status_code()
    )?;
    Ok(())
}

/// The HTTP door as a WebDAV client (or a browser) meets it: HTTPS with the native port's
/// certificate, HTTP Basic, the user's home at `/dav/`, ranges.
async fn http_door(out: &mut impl Write, addr: &str, fingerprint: &str) -> Result<()> {
    writeln!(out)?;
    let endpoint: Endpoint = addr.parse().map_err(anyhow::Error::msg)?;
    for (password, what) in [("wrong", "a wrong password"), ("demo-password", "demo's")] {
        let stream = sockit::net::connect(&endpoint).await?;
        let mut stream = sockit::client::tls::connect(stream, fingerprint).await?;
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("demo:{password}"),
        );
        let request = format!(
            "GET /dav/backup/photos.tar HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {basic}\r\n\
             Range: bytes=0-15\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(64 << 10)
            .read_to_end(&mut response)
            .await?;
        let text = String::from_utf8_lossy(&response);
        let status = text.lines().next().unwrap_or_default().to_owned();
        let range = text
            .lines()
            .find_map(|l| l.strip_prefix("content-range: "))
            .map(|r| format!(", {r}"))
            .unwrap_or_default();
        writeln!(
            out,
            "[http]   GET https://{addr}/dav/backup/photos.tar, bytes 0-15, {what} -> {status}{range}"
        )?;
    }
    writeln!(
        out,
        "[http]   the same door serves the web page at https://{addr}/"
    )?;
    Ok(())
}

/// The FTP door as an FTP client meets it: a login (plaintext here, on loopback; FTPS with
/// AUTH TLS from anywhere else), the file's size, the jail.
async fn ftp_door(out: &mut impl Write, addr: &str) -> Result<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let mut reply = async || -> Result<String> {
        lines
            .next_line()
            .await?
            .context("the FTP door closed the connection")
    };
    reply().await?; // the greeting
    for command in [
        "USER demo",
        "PASS demo-password",
        "SIZE backup/photos.tar",
        "CWD ../..",
        "QUIT",
    ] {
        write.write_all(format!("{command}\r\n").as_bytes()).await?;
        let answer = reply().await?;
        let shown = command.replace("demo-password", "********");
        writeln!(out, "[ftp]    {shown} -> {answer}")?;
    }
    Ok(())
}
