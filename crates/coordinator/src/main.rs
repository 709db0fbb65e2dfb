//! `sluice-coordinator --config coordinator.yaml`: one group coordinator of a
//! cluster, with metadata in etcd. Thin: parse args, load config, run until
//! Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice_coordinator::{Coordinator, CoordinatorConfig, CoordinatorService};
use sluice_metastore::{EtcdMetadataStore, MetadataStore};
use sluice_types::runtime::{init_tracing, shutdown_token};

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
        sluice_types::config::load_layered(args.config.as_deref(), &overrides)?;
    config.validate()?;
    let store: Arc<dyn MetadataStore> = Arc::new(
        EtcdMetadataStore::connect_cluster(&config.etcd_endpoints, &config.cluster_name).await?,
    );
    let shutdown = shutdown_token();
    let listen = config
        .listeners
        .rsplit_once("://")
        .map_or(config.listeners.as_str(), |(_, a)| a)
        .to_string();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let coordinator = Coordinator::start(config, store, None, shutdown.child_token()).await?;
    tracing::info!(%listen, "coordinator listening");
    tonic::transport::Server::builder()
        .add_service(CoordinatorService::new(coordinator.clone()).into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    coordinator.close().await;
    Ok(())
}
