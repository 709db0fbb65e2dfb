//! `sluice console`: the web console for a cluster (see `crates/console`).

use std::net::SocketAddr;

use sluice_console::ConsoleOptions;

use super::common::{Bootstrap, client_config};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Address the console's web server binds.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Hide and refuse every change (create, delete, produce, reset, ...).
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// A host name the console answers to besides IP addresses and
    /// localhost (the name a proxy or ingress serves it under; repeatable).
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_host: Vec<String>,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut options = ConsoleOptions::new(&a.bootstrap.bootstrap_server);
    options.client = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    options.read_only = a.read_only;
    options.allowed_hosts = a.allowed_host;
    let shutdown = sluice_server::runtime::shutdown_token();
    let addr = sluice_console::serve(options, a.listen, shutdown.clone()).await?;
    eprintln!(
        "Sluice console on http://{addr}/ for {}{}. Ctrl-C to stop.",
        a.bootstrap.bootstrap_server,
        if a.read_only { " (read-only)" } else { "" }
    );
    shutdown.cancelled().await;
    Ok(())
}
