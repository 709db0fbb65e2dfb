//! `sluice-coordinator --listen HOST:PORT`: the group coordinator. This release
//! serves the API contract only (every RPC answers NOT_IMPLEMENTED). Thin:
//! parse args, run until Ctrl-C / SIGTERM.

use anyhow::Context;
use clap::Parser;
use sluice_coordinator::CoordinatorService;
use sluice_types::runtime::{init_tracing, shutdown_token};

/// mimalloc: see the note in the `sluice` CLI; the same allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice-coordinator",
    version,
    about = "The Sluice group coordinator"
)]
struct Args {
    /// Where the gRPC server binds.
    #[arg(long, default_value = "127.0.0.1:9094")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let shutdown = shutdown_token();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    tracing::info!(listen = %args.listen, "coordinator listening");
    tonic::transport::Server::builder()
        .add_service(CoordinatorService::new().into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
