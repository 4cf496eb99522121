//! `sockit lab`: each experiment runs on real loopback sockets and shows its phenomenon.
//! Only qualitative results are asserted (what the kernel did), never a timing.

use std::process::Command;

use sockit::lab::{
    EXPERIMENTS, Options, backlog, half_close, nagle, sticky, time_wait, udp_boundaries,
};

use crate::common::sockit_bin;

fn options() -> Options {
    Options { rounds: 5 }
}

/// `sockit lab ARGS...` as a user runs it.
fn lab(args: &[&str]) -> std::process::Output {
    Command::new(sockit_bin())
        .arg("lab")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sticky_merges_and_splits_raw_tcp_and_framing_keeps_every_message() {
    let r = sticky::run(&options()).unwrap();
    // Read only once every byte was queued: the seeds' recv(1024) takes several messages.
    assert!(r.waited.merged_calls >= 1, "{r:?}");
    assert!(r.waited.most_in_one > 1, "{r:?}");
    // One send of 4 MiB, read with a buffer that could hold it all, still came in pieces.
    assert!(r.large.pieces > 1, "{r:?}");
    assert_eq!(r.framed.intact, r.framed.messages);
    assert_eq!(r.framed.messages, r.messages);
    assert!(r.framed.large_intact);
}

#[test]
fn nagle_measures_percentiles_for_each_way_of_sending() {
    let r = nagle::run(&options()).unwrap();
    assert_eq!(r.rounds, 5);
    let names: Vec<_> = r.modes.iter().map(|m| m.name).collect();
    assert_eq!(names, ["nagle", "nodelay", "one-write"]);
    for m in &r.modes {
        assert!(m.p50_us <= m.p90_us && m.p90_us <= m.p99_us && m.p99_us <= m.max_us);
    }
    let nagle = r.mode("nagle").unwrap();
    assert_eq!((nagle.writes, nagle.nodelay), (2, false));
    assert!(r.mode("nodelay").unwrap().nodelay);
    assert_eq!(r.mode("one-write").unwrap().writes, 1);
}

#[test]
fn time_wait_takes_the_port_until_the_server_uses_so_reuseaddr() {
    let r = time_wait::run(&options()).unwrap();
    let [plain, reusing] = [&r.rounds[0], &r.rounds[1]];
    assert!(!plain.server_reuseaddr && reusing.server_reuseaddr);
    for round in &r.rounds {
        assert!(round.time_wait >= round.connections, "{round:?}");
        assert!(!round.restart_without.ok);
        assert_eq!(round.restart_without.errno.as_deref(), Some("EADDRINUSE"));
    }
    assert!(reusing.restart_with.ok, "{reusing:?}");
}

#[test]
fn udp_keeps_boundaries_truncates_short_reads_and_delivers_empty_datagrams() {
    let r = udp_boundaries::run(&options()).unwrap();
    assert_eq!(r.received, r.sent);
    let t = &r.truncation;
    assert_eq!(t.plain_returned, t.buffer);
    assert_eq!(
        t.trunc_returned, t.datagram,
        "MSG_TRUNC reports the real size"
    );
    assert_eq!(t.copied, t.buffer);
    assert!(t.copied_prefix_matches);
    assert!(t.rest_gone, "the truncated bytes are discarded");
    assert!(r.empty_datagram_received);
    assert!(!r.empty_tcp_send_arrived);
}

#[test]
fn backlog_completes_some_connects_and_makes_the_rest_wait() {
    let r = backlog::run(&options()).unwrap();
    assert!(r.completed >= 1, "{r:?}");
    assert!(r.first_waiting.is_some(), "{r:?}");
    assert!(r.completed <= (r.backlog as usize) + 1, "{r:?}");
    assert_eq!(r.completed + r.waiting + r.failed, r.clients);
}

#[test]
fn half_close_lets_the_peer_finish_and_close_with_unread_data_resets() {
    let r = half_close::run(&options()).unwrap();
    let h = &r.shutdown;
    assert!(h.request_bytes > 0);
    assert_eq!(h.states_after_fin, ["FIN_WAIT2", "CLOSE_WAIT"]);
    assert_eq!(h.client_send_after_shutdown, "EPIPE");
    assert!(h.reply_sent > 0);
    assert_eq!(
        h.reply_received, h.reply_sent,
        "the peer kept sending after SHUT_WR"
    );
    assert_eq!(h.states_after_close, ["TIME_WAIT", "gone"]);
    assert_eq!(r.reset.client_recv, "ECONNRESET");
    assert!(!r.reset.server_time_wait);
    assert_eq!(r.reset.control_recv, "EOF");
}

#[test]
fn the_cli_lists_runs_all_as_json_and_refuses_unknown_names() {
    let list = lab(&[]);
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    for e in &EXPERIMENTS {
        assert!(text.contains(e.name), "{text}");
    }

    let all = lab(&["all", "--json", "--rounds", "3"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    for e in &EXPERIMENTS {
        let outcome = &json[e.name];
        assert_eq!(outcome["name"], e.name);
        assert!(outcome["shown"].is_boolean());
        assert!(outcome["measured"].is_object(), "{outcome}");
    }
    assert_eq!(json["nagle"]["measured"]["rounds"], 3);
    assert_eq!(
        json["udp-boundaries"]["measured"]["truncation"]["trunc_returned"],
        1000
    );

    let unknown = lab(&["bogus"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("sticky"));
}
