//! `sluice-coordinator --config coordinator.yaml`: one group coordinator of a
//! cluster, with metadata in etcd. Thin: flags, config, then
//! [`sluice_coordinator::run`] until SIGTERM.

use clap::Parser;
use sluice_coordinator::CoordinatorConfig;
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
    let Some((host, store)) = Host::bind_for_cluster(
        names::COORDINATOR,
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
    sluice_coordinator::run(config, store, host, shutdown).await
}
