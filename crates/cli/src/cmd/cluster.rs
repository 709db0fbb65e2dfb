//! `sluice cluster --describe`: brokers, cluster id and the active controller.

use sluice_client::Admin;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Describe the cluster.
    #[arg(long)]
    pub describe: bool,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if !a.describe {
        return Err(usage("cluster needs an action: --describe"));
    }
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    let c = admin.describe_cluster().await?;
    println!("Cluster ID: {}", c.cluster_id);
    let controller = if c.controller_id < 0 {
        "none".to_string()
    } else {
        format!("{} (epoch {})", c.controller_id, c.controller_epoch)
    };
    println!("Controller: {controller}");
    println!("Brokers:");
    for b in &c.brokers {
        println!(
            "\tId: {}\tEndpoint: {}:{}\tRack: {}\tStatus: alive",
            b.id,
            b.host,
            b.port,
            b.rack.as_deref().unwrap_or("null")
        );
    }
    if !c.coordinators.is_empty() {
        println!("Coordinators:");
        for co in &c.coordinators {
            println!(
                "\tId: {}\tEndpoint: {}:{}\tOwnedPartitions: {}",
                co.id,
                co.host,
                co.port,
                co.owned_partitions.len()
            );
        }
    }
    Ok(())
}
