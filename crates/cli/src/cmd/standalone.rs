//! `sluice standalone`: controller, broker and coordinator in one process on
//! one port, with the embedded metadata store. Runs until Ctrl-C / SIGTERM, then
//! flushes and closes every log.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use sluice_standalone::{Standalone, StandaloneOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for partition logs (`logs/`) and metadata (`meta/`).
    #[arg(long, default_value = ".sluice-data")]
    pub data_dir: PathBuf,
    /// Address the server binds (gRPC and Kafka's protocol, for the broker,
    /// controller and coordinator): `HOST:PORT`, `SSL://HOST:PORT` for TLS
    /// with the `ssl.*` keys of the config file's `broker:` section, and
    /// `SASL_PLAINTEXT://` or `SASL_SSL://` for Kafka clients to
    /// authenticate (`sluice users`, `--add-scram`).
    #[arg(
        long,
        default_value = "127.0.0.1:9092",
        value_name = "[PROTOCOL://]HOST:PORT"
    )]
    pub listen: String,
    /// Address clients are told to connect to (advertised.listeners); defaults
    /// to the bound address.
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// YAML config with `broker:` and `controller:` sections
    /// (see deploy/config/standalone.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve the web console here (`sluice console`'s pages for this node).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub console_listen: SocketAddr,
    /// Do not serve the web console.
    #[arg(long)]
    pub no_console: bool,
    /// Serve the console read-only (no changes from the browser).
    #[arg(long)]
    pub console_read_only: bool,
    /// A SCRAM user to have from the start (Kafka's `kafka-storage.sh format
    /// --add-scram`): `SCRAM-SHA-256=[name=admin,password=admin-secret]`.
    /// Set when the user has no credential of that mechanism yet (a changed
    /// password is kept across restarts). Repeatable. With an authorizer,
    /// name the user in `super.users` to have a first administrator.
    #[arg(long = "add-scram", value_name = "MECHANISM=[name=U,password=P]")]
    pub add_scram: Vec<String>,
}

/// One `--add-scram` value: (mechanism, user, password, iterations).
fn parse_add_scram(
    value: &str,
) -> anyhow::Result<(sluice_auth::scram::Mechanism, String, String, u32)> {
    let bad = || {
        anyhow::anyhow!(
            "--add-scram {value:?}: expected SCRAM-SHA-256=[name=USER,password=PASSWORD(,iterations=N)]"
        )
    };
    let (mech, rest) = value.split_once('=').ok_or_else(bad)?;
    let mechanism = sluice_auth::scram::Mechanism::parse(mech.trim()).ok_or_else(bad)?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    let (mut name, mut password) = (None, None);
    let mut iterations = sluice_client::security_admin::DEFAULT_ITERATIONS;
    for part in inner.split(',') {
        match part.split_once('=') {
            Some(("name", v)) => name = Some(v.to_string()),
            Some(("password", v)) => password = Some(v.to_string()),
            Some(("iterations", v)) => iterations = v.trim().parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok((
        mechanism,
        name.ok_or_else(bad)?,
        password.ok_or_else(bad)?,
        iterations,
    ))
}

/// Creates the `--add-scram` users that do not exist yet, as the node itself
/// (its own connections are trusted, so this works with ACLs on).
async fn add_scram(node: &Standalone, values: &[String]) -> anyhow::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let admin = sluice_client::Admin::new(node.client.clone().as_service())?;
    for v in values {
        let (mechanism, user, password, iterations) = parse_add_scram(v)?;
        let has =
            admin.describe_users(&[]).await?.iter().any(|u| {
                u.user == user && u.credentials.iter().any(|(m, _)| m == mechanism.name())
            });
        if !has {
            admin
                .set_scram_password(&user, mechanism, &password, iterations)
                .await?;
            eprintln!("Created {} credential for user {user}.", mechanism.name());
        }
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let protocol = sluice_tls::SecurityProtocol::of_listener("--listen", &args.listen)?;
    let addr = sluice_server::config::bind_address(&args.listen);
    let listen: SocketAddr = addr
        .parse()
        .with_context(|| format!("--listen {addr:?} is not IP:PORT"))?;
    let mut opts = StandaloneOptions::new(&args.data_dir, listen);
    opts.listen_protocol = protocol;
    if let Some(path) = &args.config {
        opts = opts
            .with_file(path)
            .with_context(|| format!("load {}", path.display()))?;
    }
    opts.advertised = args.advertised_listener;
    let shutdown = sluice_server::runtime::shutdown_token();
    if let Some(addr) = &args.metrics_listen {
        sluice_server::metrics::serve(addr, shutdown.clone()).await?;
    }
    for v in &args.add_scram {
        parse_add_scram(v)?;
    }
    let mut node = Standalone::start(opts).await?;
    add_scram(&node, &args.add_scram).await?;
    eprintln!(
        "Sluice standalone node listening on {} (data in {}). Ctrl-C to stop.",
        node.addr,
        args.data_dir.display()
    );
    if !args.no_console {
        let mut console = sluice_console::ConsoleOptions::new(&node.addr.to_string());
        console.client = node.client.clone();
        console.read_only = args.console_read_only;
        // The node serves without its console when the port is taken (a
        // second node on one machine): said, not fatal.
        match sluice_console::serve(console, args.console_listen, shutdown.clone()).await {
            Ok(addr) => eprintln!("Web console on http://{addr}/"),
            Err(e) => {
                tracing::warn!(error = %e, "web console not started (--console-listen ADDR picks another port, --no-console turns it off)")
            }
        }
    }
    tokio::select! {
        _ = shutdown.cancelled() => node.shutdown().await,
        stopped = node.stopped() => stopped,
    }
}
