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
    /// A client `.properties` file for TLS (`security.protocol=SSL`,
    /// `ssl.ca.location`, and for mTLS `ssl.certificate.location` and
    /// `ssl.key.location`).
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(a.timeout_ms);
    let tls = match &a.command_config {
        Some(_) => super::common::client_config(Some(&a.server), &[], a.command_config.as_deref())?
            .client_tls()?,
        None => None,
    };
    let status = tokio::time::timeout(timeout, check(&a.server, &a.service, tls.as_ref()))
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

async fn check(
    server: &str,
    service: &str,
    tls: Option<&sluice_tls::ClientTls>,
) -> anyhow::Result<ServingStatus> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url)?;
    let channel = sluice_tls::connect_channel(endpoint, tls)
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
