//! `sluice-broker --config broker.yaml`: one broker of a cluster, with metadata
//! in etcd. Thin: parse args, load config, run until Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice_broker::{Broker, BrokerConfig};
use sluice_metastore::{EtcdMetadataStore, MetadataStore};
use sluice_types::runtime::{init_tracing, shutdown_token};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let config: BrokerConfig =
        sluice_types::config::load_layered(args.config.as_deref(), &args.overrides)?;
    config.validate()?;
    let store: Arc<dyn MetadataStore> = Arc::new(
        EtcdMetadataStore::connect_cluster(&config.etcd_endpoints, &config.cluster_name).await?,
    );
    let shutdown = shutdown_token();
    let listen = sluice_broker::config::strip_scheme(&config.listeners).to_string();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let broker = Broker::start(config, store, shutdown.child_token()).await?;
    tracing::info!(%listen, "broker listening");
    sluice_broker::server_builder()
        .add_service(broker.service().into_server())
        .serve_with_incoming_shutdown(
            sluice_broker::incoming(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    broker.close().await;
    Ok(())
}
