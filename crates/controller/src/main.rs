//! `sluice-controller --config controller.yaml`: one controller of a cluster.
//! Several may run; one wins the etcd election. Thin: flags, config, then
//! [`sluice_controller::run`] until SIGTERM.

use clap::Parser;
use sluice_controller::ControllerConfig;
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
    let Some((host, store)) = Host::bind_for_cluster(
        names::CONTROLLER,
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
    sluice_controller::run(config, store, host, shutdown).await
}
