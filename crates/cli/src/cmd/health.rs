//! `sluice health --server HOST:PORT`: asks a broker, controller, coordinator
//! or standalone node through the standard gRPC health service whether it
//! serves. Exit status 0 when SERVING, 1 otherwise: made for container health
//! checks (the runtime image has no grpc_health_probe).

use std::time::Duration;

use anyhow::Context;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server to ask, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// The service to ask about (e.g. `sluice.broker.v1.Broker`); empty asks
    /// about the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(a.timeout_ms);
    let status = tokio::time::timeout(timeout, check(&a.server, &a.service))
        .await
        .with_context(|| format!("{} did not answer within {timeout:?}", a.server))??;
    let name = status.as_str_name();
    let service = if a.service.is_empty() {
        "server"
    } else {
        &a.service
    };
    println!("{}: {service} {name}", a.server);
    if status != ServingStatus::Serving {
        std::process::exit(1);
    }
    Ok(())
}

async fn check(server: &str, service: &str) -> anyhow::Result<ServingStatus> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .connect()
        .await
        .with_context(|| format!("connect to {server}"))?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .with_context(|| format!("health check of {server}"))?;
    Ok(resp.into_inner().status())
}
