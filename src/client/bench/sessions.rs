//! `sessions` mode: N fresh connections, C at a time, each doing what one short command does
//! (`sockit stat` in a script): connect, the TLS handshake (when the run speaks TLS), a login
//! by password or key, one stat of the home, and the close. Latency is one whole session.

use std::sync::Arc;
use std::time::Instant;

use super::probe::{Before, Probe};
use super::report::{Mode, Report, Shape, Tally, merged, report};
use super::{Credential, SessionLoad, Target, connect};
use crate::Result;

/// Runs a `sessions` load against `server`.
pub(super) async fn run(
    server: &Target,
    load: &SessionLoad,
    probe: Option<Probe>,
) -> Result<Report> {
    // One session first, unmeasured: a wrong password or an unknown key fails the run here
    // with its own error rather than as N counted failures.
    one(server, load, 0).await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let before = Before::now(probe);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency.max(1) {
        let (server, load, next) = (server.clone(), load.clone(), next.clone());
        tasks.spawn(async move {
            let mut tally = Tally::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= load.sessions {
                    break tally;
                }
                let began = Instant::now();
                match one(&server, &load, usize::try_from(i).unwrap_or(usize::MAX)).await {
                    Ok(()) => tally.record(began),
                    Err(e) => tally.fail(e),
                }
            }
        });
    }
    let total = merged(tasks).await;
    let seconds = start.elapsed().as_secs_f64();
    let shape = Shape {
        connections: load.concurrency.max(1),
        body_bytes: 0,
        pipeline: 1,
    };
    Ok(report(
        Mode::Sessions,
        server,
        shape,
        total,
        seconds,
        before,
    ))
}

/// Session number `i`: connect, log in, stat the home, close.
async fn one(server: &Target, load: &SessionLoad, i: usize) -> Result<()> {
    let mut client = connect(server, i).await?;
    match &load.credential {
        Credential::Password(password) => client.login(&load.user, password).await?,
        Credential::Key(key) => client.login_with_key(&load.user, key).await?,
    };
    client.stat(".").await?;
    Ok(())
}
