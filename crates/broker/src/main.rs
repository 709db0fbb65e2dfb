//! `sluice-broker --config broker.yaml`: one broker of a cluster, with metadata
//! in etcd. Thin: parse args, load config, run until Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice_broker::{Broker, BrokerConfig};
use sluice_metastore::{EtcdMetadataStore, MetadataStore};
use sluice_server::runtime::{init_tracing, shutdown_token};
use sluice_server::{Late, Ops, names};
use tokio_util::sync::CancellationToken;

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-broker", version, about = "A Sluice broker")]
struct Args {
    /// YAML config file with Kafka's keys (see deploy/config/). Environment
    /// variables `SLUICE_<KEY>` (`SLUICE_BROKER_ID=2` for `broker.id`) override
    /// it, and `--override` flags override both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `key=value`, repeatable, as in Kafka's `kafka-server-start.sh --override`.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let config: BrokerConfig =
        sluice_server::config::load_layered(args.config.as_deref(), &args.overrides)?;
    config.validate()?;
    // SIGTERM starts a controlled shutdown; `stop` ends serving after it.
    let signal = shutdown_token();
    let stop = CancellationToken::new();
    if let Some(addr) = &args.metrics_listen {
        sluice_server::metrics::serve(addr, stop.clone()).await?;
    }
    let listen = sluice_broker::config::strip_scheme(&config.listeners).to_string();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    // Health and reflection answer at once; Broker RPCs answer UNAVAILABLE
    // until the broker has registered and loaded metadata.
    let mut builder = sluice_server::server_builder();
    let (router, ops) = Ops::router(&mut builder, &[names::BROKER]).await?;
    let late = Late::new();
    // One port for gRPC and Kafka's protocol, told apart by the first byte.
    let (grpc_incoming, kafka_incoming) = sluice_server::demux::split(listener, stop.clone());
    let mut server = tokio::spawn(
        router
            .add_service(late.clone())
            .serve_with_incoming_shutdown(grpc_incoming, stop.clone().cancelled_owned()),
    );
    tracing::info!(%listen, "broker listening");
    let store: Arc<dyn MetadataStore> = Arc::new(tokio::select! {
        s = EtcdMetadataStore::connect_cluster(&config.etcd_endpoints, &config.cluster_name) => s?,
        _ = signal.cancelled() => {
            stop.cancel();
            return Ok(());
        }
    });
    let start = Broker::start(config, store, stop.child_token());
    tokio::pin!(start);
    let broker = tokio::select! {
        b = &mut start => b?,
        _ = signal.cancelled() => {
            // Let start see its token rather than dropping it: it gives up a
            // registration it already made, so the next start need not wait
            // for the lease to expire.
            stop.cancel();
            if let Ok(b) = start.await {
                b.close().await;
            }
            return Ok(());
        }
    };
    late.set(broker.service().into_server());
    let kafka = tokio::spawn(sluice_broker::kafka::serve(
        broker.service(),
        kafka_incoming,
        stop.clone(),
    ));
    let health = {
        let b = broker.clone();
        ops.follow(
            move || {
                let b = b.clone();
                async move { b.is_ready() }
            },
            signal.clone(),
        )
    };
    let in_sync = {
        let b = broker.clone();
        ops.follow_check(
            names::BROKER_IN_SYNC,
            move || {
                let b = b.clone();
                async move { b.is_in_sync() }
            },
            signal.clone(),
        )
    };
    tokio::select! {
        _ = signal.cancelled() => {}
        served = &mut server => {
            stop.cancel();
            broker.close().await;
            return Ok(served??);
        }
    }
    let _ = health.await;
    let _ = in_sync.await;
    broker.controlled_shutdown().await;
    stop.cancel();
    let served = sluice_server::drain(server).await;
    let _ = tokio::time::timeout(sluice_server::DRAIN_TIMEOUT, kafka).await;
    broker.close().await;
    served
}
