//! `sockit bench` as a library call against an in-process server: it counts what it sent.
//! Behaviour only: how fast is for the benchmarks to say, never for a test.

use sockit::client::bench::{self, BenchArgs, EchoLoad, IdleLoad, Mode};

use crate::common::spawn_native;

fn args(server: &sockit::net::Endpoint, mode: Mode) -> BenchArgs {
    BenchArgs {
        mode,
        server: server.clone(),
        json: false,
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
            requests: Some(10),
            duration: 0.0,
            body: 100,
            pipeline,
        };
        let report = bench::run(&args(&server.endpoint, Mode::Echo(load)))
            .await
            .unwrap();
        assert_eq!((report.ok, report.errors), (20, 0), "{report}");
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
        hold: 0.0,
        budget: 30.0,
    };
    let report = bench::run(&args(&server.endpoint, Mode::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (20, 0), "{report}");
    assert_eq!(report.idle.map(|i| i.held), Some(20));
}

#[tokio::test]
async fn idle_holds_more_connections_than_one_address_may_by_spreading_its_sources() {
    // The default per-address cap is 128: the bench's 200 come from 127.0.0.1 .. 127.0.0.4.
    let server = spawn_native().await;
    let load = IdleLoad {
        connections: 200,
        hold: 0.0,
        budget: 30.0,
    };
    let report = bench::run(&args(&server.endpoint, Mode::Idle(load)))
        .await
        .unwrap();
    assert_eq!((report.ok, report.errors), (200, 0), "{report}");
    assert_eq!(report.idle.map(|i| i.held), Some(200));
}
