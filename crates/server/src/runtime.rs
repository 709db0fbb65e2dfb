//! Process plumbing shared by every binary: logging setup and the shutdown signal.

use tokio_util::sync::CancellationToken;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`),
/// coloured only on a terminal (and unless `NO_COLOR` is set).
pub fn init_tracing() {
    init_tracing_at("info");
}

/// [`init_tracing`] with another default level (client commands: `warn`).
pub fn init_tracing_at(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only on a terminal: container logs and log files
        // (`sluice standalone > node.log`) get plain text that grep and log
        // shippers can read.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

/// A token cancelled on Ctrl-C or SIGTERM: the one signal every task watches.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

/// The flags every service binary takes (`sluice-broker`, `-controller`,
/// `-coordinator`), so the three start alike.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// Config file with Kafka's keys: YAML (see deploy/config/) or a Kafka
    /// `.properties` file. Environment variables `SLUICE_<KEY>`
    /// (`SLUICE_BROKER_ID=2` for `broker.id`) override it, and `--override`
    /// flags override both.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// `key=value`, repeatable, as in Kafka's `kafka-server-start.sh --override`.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Shorthand for `--override listeners=HOST:PORT`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

impl ServiceArgs {
    /// Initializes logging, loads the layered config, and starts the metrics
    /// endpoint: a service binary's first steps. Returns the config and the
    /// shutdown signal.
    pub async fn start<T>(&self) -> anyhow::Result<(T, CancellationToken)>
    where
        T: serde::de::DeserializeOwned + serde::Serialize + Default,
    {
        init_tracing();
        let mut overrides = self.overrides.clone();
        if let Some(l) = &self.listen {
            overrides.push(format!("listeners={l}"));
        }
        let config = crate::config::load_layered(self.config.as_deref(), &overrides)?;
        let shutdown = shutdown_token();
        if let Some(addr) = &self.metrics_listen {
            crate::metrics::serve(addr, shutdown.clone()).await?;
        }
        Ok((config, shutdown))
    }
}
