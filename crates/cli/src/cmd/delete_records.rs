//! `sluice delete-records`: kafka-delete-records.sh. Reads the same JSON
//! file: `{"partitions": [{"topic": "t", "partition": 0, "offset": 5}],
//! "version": 1}` (offset -1: everything committed).

use std::path::PathBuf;

use sluice_client::Admin;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// The JSON file naming partitions and offsets.
    #[arg(long = "offset-json-file")]
    pub offset_json_file: PathBuf,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

#[derive(serde::Deserialize)]
struct OffsetFile {
    partitions: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    topic: String,
    partition: i32,
    offset: i64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.offset_json_file)
        .map_err(|e| usage(format!("read {}: {e}", a.offset_json_file.display())))?;
    let file: OffsetFile = serde_json::from_str(&text)
        .map_err(|e| usage(format!("{}: {e}", a.offset_json_file.display())))?;
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    println!("Executing records delete operation");
    let mut failed = None;
    let mut lines = Vec::new();
    for e in &file.partitions {
        match admin.delete_records(&e.topic, e.partition, e.offset).await {
            Ok(low) => lines.push(format!(
                "partition: {}-{}\tlow_watermark: {low}",
                e.topic, e.partition
            )),
            Err(err) => {
                lines.push(format!(
                    "partition: {}-{}\terror: {err}",
                    e.topic, e.partition
                ));
                failed.get_or_insert(err);
            }
        }
    }
    println!("Records delete operation completed:");
    for l in lines {
        println!("{l}");
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
