//! `sluice-broker --config broker.yaml`: one broker of a cluster, with metadata
//! in etcd. Thin: flags, config, then [`sluice_broker::run`] until SIGTERM.

use clap::Parser;
use sluice_broker::BrokerConfig;
use sluice_server::runtime::ServiceArgs;
use sluice_server::{Host, names};

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-broker", version, about = "A Sluice broker")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = Args::parse().service.start::<BrokerConfig>().await?;
    config.validate()?;
    let Some((host, store)) = Host::bind_for_cluster(
        names::BROKER,
        &config.listeners,
        &config.security,
        &config.etcd_endpoints,
        &config.cluster_name,
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    sluice_broker::run(config, store, host, shutdown).await
}
