//! The Prometheus endpoint (`--metrics-listen ADDR`): every `metrics::`
//! counter, gauge and histogram of the process, as Prometheus text at
//! `http://ADDR/metrics`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Latency buckets in seconds: 100 µs to 10 s, dense where produce and fetch
/// latencies live.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same
/// handle (a test process may start several servers).
pub fn handle() -> anyhow::Result<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let h = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .context("histogram buckets")?
        // Per-partition and per-group gauges are refreshed every few seconds by
        // their owners; one not refreshed for a minute belongs to a partition
        // or group that moved away and must stop being reported.
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(Duration::from_secs(60)),
        )
        .install_recorder();
    match h {
        Ok(h) => Ok(HANDLE.get_or_init(|| h)),
        // Lost a race with another caller, which has set HANDLE by now.
        Err(_) => HANDLE
            .get()
            .context("a metrics recorder is already installed"),
    }
}

/// Whether a metrics endpoint was started in this process (work done only
/// to produce metrics can be skipped otherwise).
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

/// Binds `addr`, serves `/metrics` until `stop` fires, and logs
/// `metrics listening on ADDR` (the bound address, so port 0 works).
pub async fn serve(addr: &str, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let handle = handle()?.clone();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the metrics listener {addr}"))?;
    let bound = listener.local_addr()?;
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = render.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    h.render(),
                )
            }
        }),
    );
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        // Histograms drain into their buckets on upkeep.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!("metrics listening on {bound}");
    Ok(bound)
}
