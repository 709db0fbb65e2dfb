//! `sluice-coordinator --config coordinator.yaml`: one group coordinator of a
//! cluster, with metadata in etcd. Thin: flags, config, then
//! [`sluice_coordinator::run`] until SIGTERM.

use std::sync::Arc;

use clap::Parser;
use sluice_coordinator::CoordinatorConfig;
use sluice_metastore::EtcdMetadataStore;
use sluice_server::runtime::ServiceArgs;
use sluice_server::{Host, names};

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
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = Args::parse().service.start::<CoordinatorConfig>().await?;
    config.validate()?;
    // Reads the TLS files now: a bad one stops the start, not a later call.
    config.security.inter_service()?;
    let host = Host::bind(
        &config.listeners,
        &[names::COORDINATOR],
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
    sluice_coordinator::run(config, Arc::new(store), host, shutdown).await
}
