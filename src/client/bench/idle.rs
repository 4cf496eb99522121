//! `idle` mode: connect K connections (in waves, spread over loopback source addresses), hold
//! them idle, then release one echo on each at once and time the burst. The server's memory
//! is sampled while the connections sit idle, its CPU time over the burst.

use std::sync::Arc;
use std::time::Instant;

use super::echo::{echo_frame, read_echo};
use super::probe::{Probe, own_cpu_seconds};
use super::report::{IdleFigures, Mode, Report, ServerFigures, Tally, per_request};
use super::{IdleLoad, Target, connect};
use crate::Result;

/// Body bytes of each burst request.
const BODY: u64 = 64;

/// Connections that may be connecting at once, so the listen backlog is never the bottleneck.
const WAVE: usize = 256;

/// Runs an `idle` load against `server`.
pub(super) async fn run(server: &Target, load: &IdleLoad, probe: Option<Probe>) -> Result<Report> {
    crate::net::raise_fd_limit();
    let frame: Arc<[u8]> = echo_frame(BODY)?.into();
    let go = Arc::new(tokio::sync::Notify::new());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(load.connections.max(1));
    let connect_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let wave = Arc::new(tokio::sync::Semaphore::new(WAVE));
    for i in 0..load.connections {
        let (server, frame, go, ready) =
            (server.clone(), frame.clone(), go.clone(), ready_tx.clone());
        let wave = wave.clone();
        tasks.spawn(async move {
            let permit = wave.acquire_owned().await;
            let mut client = match connect(&server, i).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(false).await;
                    return Err(e);
                }
            };
            drop(permit);
            // Register for the signal before reporting ready, so no `notify_waiters` is missed.
            let notified = go.notified();
            let _ = ready.send(true).await;
            notified.await;
            let began = Instant::now();
            let conn = client.connection();
            conn.queue_raw(&frame);
            conn.flush().await?;
            read_echo(conn, &frame, BODY).await?;
            Ok(began.elapsed())
        });
    }
    drop(ready_tx);
    let mut held = 0;
    for _ in 0..load.connections {
        match ready_rx.recv().await {
            Some(true) => held += 1,
            Some(false) => {}
            None => break,
        }
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(load.hold).await;
    // The server's figures while the connections sit idle.
    let idle_sample = probe.as_ref().map(Probe::sample);
    let own_cpu_before = own_cpu_seconds();
    let burst_start = Instant::now();
    go.notify_waiters();
    let mut total = Tally::new();
    let budget = load.budget;
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(took)) => total.record_took(took),
                Ok(Err(e)) => total.fail(e),
                Err(e) => total.fail(e),
            }
        }
    };
    let _ = tokio::time::timeout(budget, collect).await;
    let burst_seconds = burst_start.elapsed().as_secs_f64();
    let unanswered = (load.connections as u64).saturating_sub(total.ok + total.errors);
    if unanswered > 0 {
        total.fail(format!(
            "{unanswered} requests unanswered within {budget:?}"
        ));
        total.errors += unanswered - 1;
    }
    tasks.abort_all();
    let mut figures = idle_sample.zip(probe.as_ref().map(Probe::sample));
    // Memory while idle, CPU over the burst.
    if let Some((at_idle, after)) = figures.as_mut() {
        after.rss_bytes = at_idle.rss_bytes;
    }
    let server_process = figures.map(|(a, b)| ServerFigures {
        rss_bytes: b.rss_bytes,
        peak_rss_bytes: b.peak_rss_bytes,
        cpu_seconds: b.cpu_seconds - a.cpu_seconds,
        cpu_us_per_request: per_request(b.cpu_seconds - a.cpu_seconds, total.ok),
    });
    let ok = total.ok;
    Ok(Report {
        mode: Mode::Idle,
        server: server.server.to_string(),
        tls: server.tls.is_some(),
        connections: load.connections,
        body_bytes: BODY,
        pipeline: 1,
        ok,
        errors: total.errors,
        first_error: total.first_error.clone(),
        seconds: burst_seconds,
        requests_per_sec: ok as f64 / burst_seconds.max(1e-9),
        mb_per_sec: (ok * BODY) as f64 / burst_seconds.max(1e-9) / 1e6,
        latency_us: total.latency(),
        idle: Some(IdleFigures {
            held,
            connect_seconds,
            burst_seconds,
        }),
        client_cpu_seconds: own_cpu_seconds() - own_cpu_before,
        server_process,
        flood: None,
    })
}
