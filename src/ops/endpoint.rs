//! `serve --metrics ADDR`: a small HTTP/1.1 listener (axum) that answers `GET /metrics` with
//! the Prometheus text format and `GET /healthz` with 200 `ok` while every listener and
//! back-end is up (503 and what is down otherwise).
//!
//! What a peer can make it spend: [`MAX_SCRAPERS`] connections at once (more wait in the
//! backlog), each closed after `IDLE` (30 s) without progress; hyper bounds each request head;
//! an answer costs one render of the series, whose number is bounded because no label is a
//! peer's choice. Bind it to loopback or a private network: it has no login.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{Health, metrics};
use crate::net::{Listener, Stream};
use crate::server::Shutdown;
use crate::server::idle::IdleStream;

/// Scrapers served at once.
pub const MAX_SCRAPERS: usize = 32;

/// A scraper connection that neither sends nor reads for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// How often the histograms' buffers are drained between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`. The recorder must be
/// installed first ([`metrics::install`]).
///
/// # Errors
/// None today: accept errors back off and go on.
pub async fn serve(listener: Listener, health: Arc<Health>, shutdown: Shutdown) -> io::Result<()> {
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = upkeep_stop.triggered() => return,
                _ = every.tick() => metrics::upkeep(),
            }
        }
    });
    let router = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(move || healthz(health.clone())));
    let listener = Limited {
        listener,
        permits: Arc::new(Semaphore::new(MAX_SCRAPERS)),
    };
    let stop = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.triggered().await })
        .await
}

/// `GET /metrics`.
async fn scrape() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}

/// `GET /healthz`.
async fn healthz(health: Arc<Health>) -> impl IntoResponse {
    let problems = tokio::task::spawn_blocking(move || health.problems())
        .await
        .unwrap_or_else(|e| vec![format!("health check: {e}")]);
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

/// The listener with a permit per connection and the idle timeout.
struct Limited {
    listener: Listener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for Limited {
    type Io = Scraper;
    type Addr = String;

    async fn accept(&mut self) -> (Scraper, String) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = match self.permits.clone().acquire_owned().await {
                Ok(permit) => permit,
                // Never closed; but never panic either.
                Err(_) => std::future::pending().await,
            };
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    debug!(%peer, "metrics: scraper connected");
                    let stream = IdleStream::new(stream, IDLE);
                    return (Scraper { stream, permit }, peer.to_string());
                }
                Err(e) => {
                    warn!(error = %e, ?backoff, "metrics: accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.listener.local_endpoint()?.to_string())
    }
}

/// One scraper's connection, holding its permit.
struct Scraper {
    stream: IdleStream<Stream>,
    #[allow(dead_code)] // held for its drop
    permit: OwnedSemaphorePermit,
}

impl AsyncRead for Scraper {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Scraper {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
