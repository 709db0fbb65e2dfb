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
        Ok(h) => {
            describe();
            Ok(HANDLE.get_or_init(|| h))
        }
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

/// The `# HELP` text of every metric a Sluice process exports: the catalog
/// operators read, in one place.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "grpc_server_handled_total",
        "RPCs completed, by service, method and gRPC status code"
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Time from an RPC's arrival to its response headers"
    );
    describe_counter!(
        "sluice_broker_topic_in_bytes_total",
        Unit::Bytes,
        "Record batch bytes appended by this broker as leader, per topic"
    );
    describe_counter!(
        "sluice_broker_topic_in_messages_total",
        "Records appended by this broker as leader, per topic"
    );
    describe_counter!(
        "sluice_broker_topic_out_bytes_total",
        Unit::Bytes,
        "Record batch bytes sent to consumers, per topic"
    );
    describe_counter!(
        "sluice_broker_replication_out_bytes_total",
        Unit::Bytes,
        "Record batch bytes sent to followers"
    );
    describe_counter!(
        "sluice_broker_partition_errors_total",
        "Per-partition errors answered, by API and error code"
    );
    describe_counter!(
        "sluice_broker_isr_shrinks_total",
        "ISR shrinks of partitions this broker leads"
    );
    describe_counter!(
        "sluice_broker_isr_expands_total",
        "ISR expansions of partitions this broker leads"
    );
    describe_gauge!("sluice_broker_partitions", "Replicas hosted by this broker");
    describe_gauge!(
        "sluice_broker_leader_partitions",
        "Partitions this broker leads"
    );
    describe_gauge!(
        "sluice_broker_under_replicated_partitions",
        "Partitions this broker leads whose ISR is smaller than the replica set"
    );
    describe_gauge!(
        "sluice_broker_registered",
        "1 while the broker holds its registration lease"
    );
    describe_gauge!(
        "sluice_partition_log_end_offset",
        "Next offset to be written, per hosted partition"
    );
    describe_gauge!(
        "sluice_partition_high_watermark",
        "High watermark, per hosted partition"
    );
    describe_gauge!(
        "sluice_partition_log_start_offset",
        "First offset still in the log, per hosted partition"
    );
    describe_gauge!(
        "sluice_partition_under_replicated",
        "1 if this broker leads the partition and its ISR is short, else 0"
    );
    describe_gauge!(
        "sluice_controller_active",
        "1 on the active controller, 0 on one that stepped down"
    );
    describe_counter!(
        "sluice_controller_elections_total",
        "Times this controller won the election"
    );
    describe_counter!(
        "sluice_controller_partition_leader_elections_total",
        "Partition leader changes made by this controller"
    );
    describe_gauge!("sluice_controller_partitions", "Partitions in the cluster");
    describe_gauge!(
        "sluice_controller_offline_partitions",
        "Partitions without a leader"
    );
    describe_gauge!(
        "sluice_controller_under_replicated_partitions",
        "Partitions whose ISR is smaller than the replica set"
    );
    describe_gauge!("sluice_controller_live_brokers", "Registered brokers");
    describe_gauge!(
        "sluice_delayed_pending",
        "Delayed records not yet due, by topic (on the partitions' leaders)"
    );
    describe_counter!(
        "sluice_delayed_released_total",
        "Delayed records released (appended when due), by topic"
    );
    describe_counter!(
        "sluice_delayed_dropped_total",
        "Delayed records no longer in the log when due (deleted by retention first), by topic"
    );
    describe_histogram!(
        "sluice_delayed_release_lateness_seconds",
        Unit::Seconds,
        "How long after its due time each delayed record was released"
    );
    describe_counter!(
        "sluice_controller_crashes_detected_total",
        "Registration leases revoked because the process was gone (its connection broke and its port refused connections), by kind"
    );
    describe_gauge!(
        "sluice_coordinator_groups",
        "Groups loaded on this coordinator"
    );
    describe_gauge!(
        "sluice_coordinator_owned_partitions",
        "__consumer_offsets partitions assigned to this coordinator"
    );
    describe_gauge!(
        "sluice_coordinator_loading_partitions",
        "Owned __consumer_offsets partitions still being replayed"
    );
    describe_gauge!("sluice_consumer_group_members", "Members of a group");
    describe_counter!(
        "sluice_consumer_group_rebalances_total",
        "Rebalances completed by a group on this coordinator"
    );
    describe_gauge!(
        "sluice_consumer_group_committed_offset",
        "A group's committed offset, per partition"
    );
    describe_gauge!(
        "sluice_consumer_group_lag",
        "High watermark minus a group's committed offset, per partition"
    );
}
