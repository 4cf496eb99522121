//! `sockit bench` as a library call against an in-process server: it counts what it sent.
//! Behaviour only: how fast is for the benchmarks to say, never for a test.

use std::time::Duration;

use sockit::client::bench::{self, Config, EchoLoad, IdleLoad, Load, Until};

use crate::common::spawn_native;

fn config(server: &sockit::net::Endpoint, load: Load) -> Config {
    Config {
        load,
        server: server.clone(),
        server_pid: Some(std::process::id()),
        threads: 1,
    }
}

#[tokio::test]
async fn echo_counts_every_request_of_every_connection() {
    let server = spawn_native().await;
    for pipeline in [1, 4] {
        let load = EchoLoad {
            connections: 2,
            until: Until::Count(10),
            body: 100,
            pipeline,
        };
        let report = bench::run(&config(&server.endpoint, Load::Echo(load)))
            .await
            .unwrap();
        assert_eq!((report.ok, report.errors), (20, 0), "{report:?}");
        assert!(report.server_process.is_some_and(|p| p.rss_bytes > 0));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ok"], 20);
    }
}

#[tokio::test]
async fn idle_answers_one_request_on_each_held_connection() {
    let server = spawn_native().await;
    let load = IdleLoad {
        connections: 20,
        hold: Duration::ZERO,
        budget: Duration::from_secs(30),
    };
    let report = bench::run(&config(&server.endpoint, Load::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (20, 0), "{report:?}");
    assert_eq!(report.idle.map(|i| i.held), Some(20));
}

#[tokio::test]
async fn idle_holds_more_connections_than_one_address_may_by_spreading_its_sources() {
    // The default per-address cap is 128: the bench's 200 come from 127.0.0.1 .. 127.0.0.4.
    let server = spawn_native().await;
    let load = IdleLoad {
        connections: 200,
        hold: Duration::ZERO,
        budget: Duration::from_secs(30),
    };
    let report = bench::run(&config(&server.endpoint, Load::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (200, 0), "{report:?}");
    assert_eq!(report.idle.map(|i| i.held), Some(200));
}

#[tokio::test]
async fn echo_for_a_duration_stops_sending_when_it_is_over() {
    let server = spawn_native().await;
    let load = EchoLoad {
        connections: 2,
        until: Until::Elapsed(Duration::from_millis(200)),
        body: 64,
        pipeline: 2,
    };
    let report = bench::run(&config(&server.endpoint, Load::Echo(load)))
        .await
        .unwrap();
    assert!(report.ok > 0 && report.errors == 0, "{report:?}");
    assert!(report.seconds >= 0.2, "{report:?}");
    assert_eq!(report.mode, bench::Mode::Echo);
}

#[tokio::test]
async fn no_server_is_a_setup_error_not_a_count() {
    // Bind and drop: a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let load = EchoLoad {
        connections: 1,
        until: Until::Count(1),
        body: 1,
        pipeline: 1,
    };
    let got = bench::run(&config(&server, Load::Echo(load))).await;
    assert!(matches!(got, Err(sockit::Error::Io(_))), "{got:?}");
}
