//! `sluice-controller --config controller.yaml`: one controller of a cluster.
//! Several may run; one wins the etcd election. Thin: parse args, load config,
//! run until Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sluice_controller::{Controller, ControllerConfig, ControllerService};
use sluice_metastore::{EtcdMetadataStore, MetadataStore};
use sluice_server::runtime::{init_tracing, shutdown_token};
use sluice_server::{Ops, names};

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice-controller", version, about = "A Sluice controller")]
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
    let config: ControllerConfig =
        sluice_server::config::load_layered(args.config.as_deref(), &args.overrides)?;
    config.validate()?;
    let store: Arc<dyn MetadataStore> = Arc::new(
        EtcdMetadataStore::connect_cluster(&config.etcd_endpoints, &config.cluster_name).await?,
    );
    let shutdown = shutdown_token();
    if let Some(addr) = &args.metrics_listen {
        sluice_server::metrics::serve(addr, shutdown.clone()).await?;
    }
    let listen = config.listeners.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let controller = Controller::new(store, config);
    let task = tokio::spawn(controller.clone().run(shutdown.child_token()));
    let mut builder = sluice_server::server_builder();
    let (router, ops) = Ops::router(&mut builder, &[names::CONTROLLER]).await?;
    let c = controller.clone();
    let health = ops.follow(
        move || {
            let c = c.clone();
            async move { c.is_ready().await }
        },
        shutdown.clone(),
    );
    tracing::info!(%listen, "controller listening");
    let server = tokio::spawn(
        router
            .add_service(ControllerService::new(controller).into_server())
            .serve_with_incoming_shutdown(
                sluice_server::incoming(listener),
                shutdown.clone().cancelled_owned(),
            ),
    );
    let served = sluice_server::drain_after(server, &shutdown).await;
    let _ = health.await;
    let _ = task.await;
    served
}
