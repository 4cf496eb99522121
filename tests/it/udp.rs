//! The UDP services on the datagram framework: hostile datagrams never cost the service, and
//! the chat room's routing (broadcast, @direct, announcements, one reply per datagram).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sockit::client::chat::{Client, Incoming};
use sockit::client::udp::request;
use sockit::server::{Shutdown, UdpService, serve_udp};
use sockit::service::chat::{Chat, ChatLimits};
use sockit::service::time::Time;
use tokio::net::UdpSocket;

use crate::common::sockit_bin;

/// A hang guard for replies that arrive at once on loopback, not a synchronisation.
const WAIT: Duration = Duration::from_secs(30);

/// Serves `service` on 127.0.0.1:0; stopped when the returned guard drops.
async fn spawn_udp<S: UdpService>(service: S) -> (String, ShutdownOnDrop) {
    let socket = sockit::net::bind_udp("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let shutdown = Shutdown::new();
    tokio::spawn(serve_udp(socket, Arc::new(service), shutdown.clone()));
    (addr, ShutdownOnDrop(shutdown))
}

struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

async fn ask(addr: &str, datagram: &[u8]) -> Vec<u8> {
    request(addr, datagram, WAIT).await.unwrap()
}

#[tokio::test]
async fn time_answers_bad_formats_with_an_error_and_goes_on() {
    let (addr, _server) = spawn_udp(Time::default()).await;
    let huge = vec![b'%'; 60_000];
    for bad in [&b"%Q"[..], b"%", b"%Y-%", b"\xff\xfe%Y", &huge] {
        let reply = String::from_utf8(ask(&addr, bad).await).unwrap();
        assert!(reply.starts_with("error: "), "{reply}");
    }
    let year = String::from_utf8(ask(&addr, b"%Y").await).unwrap();
    assert!(
        year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()),
        "{year}"
    );
    let default = String::from_utf8(ask(&addr, b"").await).unwrap();
    assert_eq!(default.len(), "2024-01-01 00:00:00".len(), "{default}");
}

#[tokio::test]
async fn echo_takes_empty_and_60_kb_datagrams_whole() {
    let (addr, _server) = spawn_udp(sockit::seed::echo::Udp {}).await;
    assert_eq!(ask(&addr, b"").await, b"");
    let big: Vec<u8> = (0..60_000).map(|i| b"abcxyz"[i % 6]).collect();
    assert_eq!(ask(&addr, &big).await, big.to_ascii_uppercase());
    assert_eq!(ask(&addr, b"still up").await, b"STILL UP");
}

#[tokio::test]
async fn chat_refuses_oversize_and_garbage_then_serves() {
    let (addr, _server) = spawn_udp(Chat::new(ChatLimits::default())).await;
    let reply = String::from_utf8(ask(&addr, &[b'x'; 2000]).await).unwrap();
    assert!(
        reply.starts_with("ERR ") && reply.contains("2000 bytes"),
        "{reply}"
    );
    for garbage in [
        &b"\xff\xfe\x00"[..],
        b"JOIN",
        b"JOIN two words",
        b"@nobody hi",
        b"MSG ",
    ] {
        let reply = String::from_utf8(ask(&addr, garbage).await).unwrap();
        assert!(reply.starts_with("ERR "), "{garbage:?}: {reply}");
    }
    assert_eq!(ask(&addr, b"WHO").await, b"OK 0 members: ");
}

/// The next datagram `member` gets that is not a reply to it.
async fn next(member: &Client) -> Incoming {
    loop {
        match tokio::time::timeout(WAIT, member.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Incoming::Reply(_) => continue,
            other => return other,
        }
    }
}

fn msg(from: &str, text: &str, direct: bool) -> Incoming {
    Incoming::Message {
        from: from.into(),
        text: text.into(),
        direct,
    }
}

#[tokio::test]
async fn chat_room_routes_between_members_and_answers_seed_clients_once() {
    let (addr, _server) = spawn_udp(Chat::new(ChatLimits::default())).await;
    let (ann, bob) = (
        Client::connect(&addr).await.unwrap(),
        Client::connect(&addr).await.unwrap(),
    );
    let mut early = Vec::new();
    ann.send("JOIN ann").await.unwrap();
    ann.reply(WAIT, &mut early).await.unwrap();
    bob.send("JOIN bob").await.unwrap();
    assert_eq!(
        bob.reply(WAIT, &mut early).await.unwrap(),
        "joined as bob, 2 members"
    );
    assert_eq!(next(&ann).await, Incoming::Notice("bob joined".into()));

    ann.say("hello room").await.unwrap();
    assert_eq!(
        ann.reply(WAIT, &mut early).await.unwrap(),
        "delivered to 1 members"
    );
    assert_eq!(next(&bob).await, msg("ann", "hello room", false));

    bob.say("@ann just you").await.unwrap();
    assert_eq!(
        bob.reply(WAIT, &mut early).await.unwrap(),
        "delivered to ann"
    );
    assert_eq!(next(&ann).await, msg("bob", "just you", true));

    // A seed client: plain text, one reply per datagram, never anything else. Its second
    // reply must be the answer to its second datagram, or an extra datagram came between.
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.connect(&addr).await.unwrap();
    let me = raw.local_addr().unwrap().to_string();
    let mut buf = [0u8; 1024];
    raw.send("我是种子客户端".as_bytes()).await.unwrap();
    let n = tokio::time::timeout(WAIT, raw.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"OK delivered to 2 members");
    assert_eq!(next(&ann).await, msg(&me, "我是种子客户端", false));
    assert_eq!(next(&bob).await, msg(&me, "我是种子客户端", false));
    raw.send(b"WHO").await.unwrap();
    let n = tokio::time::timeout(WAIT, raw.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"OK 2 members: ann, bob");

    bob.send("LEAVE").await.unwrap();
    assert_eq!(bob.reply(WAIT, &mut early).await.unwrap(), "bye");
    assert_eq!(next(&ann).await, Incoming::Notice("bob left".into()));
    assert!(early.is_empty(), "{early:?}");
}

#[tokio::test]
async fn a_full_room_says_so() {
    let limits = ChatLimits {
        max_members: 1,
        ..ChatLimits::default()
    };
    let (addr, _server) = spawn_udp(Chat::new(limits)).await;
    assert!(ask(&addr, b"JOIN ann").await.starts_with(b"OK"));
    assert_eq!(
        ask(&addr, b"JOIN bob").await,
        b"ERR the room is full (1 members)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockit_chat_talks_to_the_room_and_leaves_at_the_end_of_input() {
    let (addr, _server) = spawn_udp(Chat::new(ChatLimits::default())).await;
    let ann = Client::connect(&addr).await.unwrap();
    ann.send("JOIN ann").await.unwrap();
    ann.reply(WAIT, &mut Vec::new()).await.unwrap();

    let mut bob = Command::new(sockit_bin())
        .args(["chat", "--name", "bob", "-s", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = bob.stdin.take().unwrap();
    let mut stdout = BufReader::new(bob.stdout.take().unwrap());
    assert_eq!(next(&ann).await, Incoming::Notice("bob joined".into()));

    stdin.write_all("hello ann, 你好\n".as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(next(&ann).await, msg("bob", "hello ann, 你好", false));

    ann.say("@bob hi bob").await.unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in (&mut stdout).lines() {
            let line = line.unwrap();
            let done = line == "[ann -> you] hi bob";
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("* joined as bob, 2 members")
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("[ann -> you] hi bob"),
        "{seen:?}"
    );

    drop(stdin); // the end of input: bob leaves
    assert_eq!(next(&ann).await, Incoming::Notice("bob left".into()));
    let status = tokio::task::spawn_blocking(move || bob.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
