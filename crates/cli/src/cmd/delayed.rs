//! `sluice delayed`: what delayed delivery holds (pending records per
//! partition and when they fall due) and cancelling one by its delay id.

use sluice_client::Admin;

use super::common::{Bootstrap, client_config, format_time_ms, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Show pending delayed records per partition.
    #[arg(long)]
    pub describe: bool,
    /// Cancel one pending record (with --topic, --partition and --id).
    #[arg(long)]
    pub cancel: bool,
    /// Only this topic (describe); the record's topic (cancel).
    #[arg(long)]
    pub topic: Option<String>,
    /// The record's partition (cancel).
    #[arg(long)]
    pub partition: Option<i32>,
    /// The record's delay id: the offset its produce answer gave it (cancel).
    #[arg(long)]
    pub id: Option<i64>,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    match (a.describe, a.cancel) {
        (true, false) => describe(&admin, a.topic).await,
        (false, true) => {
            let (Some(topic), Some(partition), Some(id)) = (a.topic, a.partition, a.id) else {
                return Err(usage("--cancel needs --topic, --partition and --id"));
            };
            admin.cancel_delayed(&topic, partition, id).await?;
            println!("Cancelled the delayed record {id} of {topic}-{partition}.");
            Ok(())
        }
        _ => Err(usage("give one of --describe or --cancel")),
    }
}

async fn describe(admin: &Admin, topic: Option<String>) -> anyhow::Result<()> {
    let topics: Vec<String> = topic.into_iter().collect();
    let parts = admin.describe_delayed(&topics).await?;
    if parts.is_empty() {
        println!("No delayed records pending.");
        return Ok(());
    }
    println!(
        "{:<24} {:>9} {:>9} {:<23} {:<23} {:>8} {:>8} {:>8} {:>8}",
        "TOPIC",
        "PARTITION",
        "PENDING",
        "NEXT-DUE",
        "LAST-DUE",
        "IN-1MIN",
        "IN-1H",
        "IN-1D",
        "LATER"
    );
    for p in parts {
        let [m, h, d, l] = p.due_within;
        println!(
            "{:<24} {:>9} {:>9} {:<23} {:<23} {:>8} {:>8} {:>8} {:>8}",
            p.topic,
            p.partition,
            p.pending,
            format_time_ms(p.next_due_ms),
            format_time_ms(p.last_due_ms),
            m,
            h,
            d,
            l
        );
    }
    Ok(())
}
