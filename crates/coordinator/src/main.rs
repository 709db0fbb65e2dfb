//! `sluice-coordinator --config coordinator.yaml`: one group coordinator of a
//! cluster, with metadata in etcd. Thin: parse args, load config, run until
//! Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice_coordinator::{Coordinator, CoordinatorConfig, CoordinatorService};
use sluice_metastore::{EtcdMetadataStore, MetadataStore};
use sluice_server::runtime::{init_tracing, shutdown_token};
use sluice_server::{Late, Ops, names};

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice-coordinator",
    version,
    about = "A Sluice group coordinator"
)]
struct Args {
    /// YAML config file (see deploy/config/coordinator.yaml). Environment
    /// variables `SLUICE_<KEY>` override it, and `--override` flags both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `key=value`, repeatable, as in Kafka's `--override`.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Shorthand for `--override listeners=HOST:PORT`.
    #[arg(long)]
    listen: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let mut overrides = args.overrides;
    if let Some(l) = args.listen {
        overrides.push(format!("listeners={l}"));
    }
    let config: CoordinatorConfig =
        sluice_server::config::load_layered(args.config.as_deref(), &overrides)?;
    config.validate()?;
    let store: Arc<dyn MetadataStore> = Arc::new(
        EtcdMetadataStore::connect_cluster(&config.etcd_endpoints, &config.cluster_name).await?,
    );
    let shutdown = shutdown_token();
    if let Some(addr) = &args.metrics_listen {
        sluice_server::metrics::serve(addr, shutdown.clone()).await?;
    }
    let listen = config
        .listeners
        .rsplit_once("://")
        .map_or(config.listeners.as_str(), |(_, a)| a)
        .to_string();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    // Health and reflection answer at once; group RPCs answer UNAVAILABLE
    // until the coordinator has registered.
    let mut builder = sluice_server::server_builder();
    let (router, ops) = Ops::router(&mut builder, &[names::COORDINATOR]).await?;
    let late = Late::new();
    let mut server = tokio::spawn(
        router
            .add_service(late.clone())
            .serve_with_incoming_shutdown(
                sluice_server::incoming(listener),
                shutdown.clone().cancelled_owned(),
            ),
    );
    tracing::info!(%listen, "coordinator listening");
    let coordinator = tokio::select! {
        c = Coordinator::start(config, store, None, shutdown.child_token()) => c?,
        served = &mut server => return Ok(served??),
    };
    late.set(CoordinatorService::new(coordinator.clone()).into_server());
    let c = coordinator.clone();
    let health = ops.follow(
        move || {
            let c = c.clone();
            async move { c.is_ready() }
        },
        shutdown.clone(),
    );
    tokio::select! {
        _ = shutdown.cancelled() => {}
        served = &mut server => {
            coordinator.close().await;
            return Ok(served??);
        }
    }
    let _ = health.await;
    // First: answers parked JoinGroup/SyncGroup calls (NOT_COORDINATOR) and
    // gives up the registration, so the server can drain.
    coordinator.close().await;
    sluice_server::drain(server).await
}
