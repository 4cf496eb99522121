//! The room as a pure state machine: datagrams in, datagrams out.

use super::*;

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Sends `text` from port `from` and returns the datagrams, as (port, text).
fn say(room: &mut Room, from: u16, text: &str, now: Instant) -> Vec<(u16, String)> {
    room.handle(text.as_bytes(), addr(from), now, &ChatLimits::default())
        .into_iter()
        .map(|(a, t)| (a.port(), t))
        .collect()
}

fn s(port: u16, text: &str) -> (u16, String) {
    (port, text.to_string())
}

#[test]
fn every_datagram_gets_exactly_one_reply_and_it_comes_last() {
    let mut room = Room::default();
    let t = Instant::now();
    assert_eq!(
        say(&mut room, 1, "JOIN ann", t),
        [s(1, "OK joined as ann, 1 members")]
    );
    assert_eq!(
        say(&mut room, 2, "JOIN bob", t),
        [s(1, "SYS bob joined"), s(2, "OK joined as bob, 2 members")]
    );
    assert_eq!(
        say(&mut room, 1, "MSG hi all", t),
        [s(2, "MSG ann hi all"), s(1, "OK delivered to 1 members")]
    );
    assert_eq!(
        say(&mut room, 2, "@ann psst", t),
        [s(1, "DM bob psst"), s(2, "OK delivered to ann")]
    );
    // A seed client: not a member, one reply, and nothing else ever sent to it.
    assert_eq!(
        say(&mut room, 9, "你好", t),
        [
            s(1, "MSG 127.0.0.1:9 你好"),
            s(2, "MSG 127.0.0.1:9 你好"),
            s(9, "OK delivered to 2 members")
        ]
    );
    assert_eq!(
        say(&mut room, 2, "LEAVE", t),
        [s(1, "SYS bob left"), s(2, "OK bye")]
    );
}

#[test]
fn refusals_are_one_error_reply() {
    let mut room = Room::default();
    let t = Instant::now();
    say(&mut room, 1, "JOIN ann", t);
    for (text, why) in [
        ("JOIN ann", "taken"),
        ("JOIN", "not a usable name"),
        ("JOIN a b", "not a usable name"),
        ("JOIN 1.2.3.4:5", "not a usable name"),
        ("@nobody hi", "no member named nobody"),
        ("MSG ", "empty message"),
        ("LEAVE", "not in the room"),
    ] {
        let out = say(&mut room, 2, text, t);
        assert_eq!(out.len(), 1, "{text}: {out:?}");
        assert!(
            out[0].1.starts_with("ERR") && out[0].1.contains(why),
            "{text}: {out:?}"
        );
    }
    let out = room.handle(&[0xff, 0xfe], addr(2), t, &ChatLimits::default());
    assert!(out.len() == 1 && out[0].1.starts_with("ERR "), "{out:?}");
    let out = room.handle(&[b'x'; 1025], addr(2), t, &ChatLimits::default());
    assert!(
        out.len() == 1 && out[0].1.contains("over the 1024-byte limit"),
        "{out:?}"
    );
}

#[test]
fn the_room_has_a_cap() {
    let limits = ChatLimits {
        max_members: 2,
        ..ChatLimits::default()
    };
    let mut room = Room::default();
    let t = Instant::now();
    for port in 1..=2 {
        room.handle(format!("JOIN m{port}").as_bytes(), addr(port), t, &limits);
    }
    let out = room.handle(b"JOIN m3", addr(3), t, &limits);
    assert_eq!(
        out,
        [(addr(3), "ERR the room is full (2 members)".to_string())]
    );
    // A member may still rename.
    let out = room.handle(b"JOIN m1b", addr(1), t, &limits);
    assert_eq!(out.last().unwrap().1, "OK joined as m1b, 2 members");
}

#[test]
fn silent_members_expire_and_the_room_is_told() {
    let mut room = Room::default();
    let t = Instant::now();
    say(&mut room, 1, "JOIN ann", t);
    say(&mut room, 2, "JOIN bob", t);
    let later = t + Duration::from_secs(40);
    say(&mut room, 1, "PING", later);
    let out = say(&mut room, 1, "WHO", t + Duration::from_secs(61));
    assert_eq!(
        out,
        [
            s(1, "SYS bob left (silent for 60s)"),
            s(1, "OK 1 members: ann")
        ]
    );
}

#[test]
fn replies_fit_the_seed_buffer() {
    let long = "é".repeat(600); // 1200 bytes
    assert!(fit(format!("OK {long}")).len() <= MAX_REPLY);
}
