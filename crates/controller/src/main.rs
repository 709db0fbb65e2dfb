//! `sluice-controller --config controller.yaml`: one controller of a cluster.
//! Several may run; one wins the etcd election. Thin: flags, config, then
//! [`sluice_controller::run`] until SIGTERM.

use std::sync::Arc;

use clap::Parser;
use sluice_controller::ControllerConfig;
use sluice_metastore::EtcdMetadataStore;
use sluice_server::runtime::ServiceArgs;
use sluice_server::{Host, names};

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-controller", version, about = "A Sluice controller")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, shutdown) = Args::parse().service.start::<ControllerConfig>().await?;
    config.validate()?;
    // Reads the TLS files now: a bad one stops the start, not a later call.
    config.security.inter_service()?;
    let host = Host::bind(
        &config.listeners,
        &[names::CONTROLLER],
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
    sluice_controller::run(config, Arc::new(store), host, shutdown).await
}
