//! `sluice-broker --config broker.yaml`: one broker of a cluster, with metadata
//! in etcd. Thin: flags, config, then [`sluice_broker::run`] until SIGTERM.

use std::sync::Arc;

use clap::Parser;
use sluice_broker::BrokerConfig;
use sluice_metastore::EtcdMetadataStore;
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
    // Bound first: health answers while etcd is still being reached.
    let host = Host::bind(
        &config.listeners,
        &[names::BROKER],
        config.security.listener(&config.listeners)?,
    )
    .await?;
    let etcd_tls = config.security.etcd_tls();
    let store = tokio::select! {
        s = EtcdMetadataStore::connect_cluster(
            &config.etcd_endpoints,
            &config.cluster_name,
            etcd_tls.as_ref(),
        ) => s?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    sluice_broker::run(config, Arc::new(store), host, shutdown).await
}
