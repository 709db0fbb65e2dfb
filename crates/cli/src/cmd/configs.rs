//! `sluice configs`: kafka-configs.sh for topics. `--describe` shows a
//! topic's overrides; `--alter --add-config k=v,k2=[a,b] --delete-config k3`
//! changes them, live on every replica.

use std::collections::BTreeMap;

use clap::ArgGroup;
use sluice_client::Admin;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["describe", "alter"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// What the configs belong to; only `topics` (broker configs are static:
    /// the broker's config file).
    #[arg(long = "entity-type", default_value = "topics")]
    pub entity_type: String,
    /// The topic.
    #[arg(long = "entity-name")]
    pub entity_name: String,
    /// Show the topic's config overrides.
    #[arg(long)]
    pub describe: bool,
    /// Change them.
    #[arg(long)]
    pub alter: bool,
    /// `k=v,k2=v2`; a value with commas goes in brackets: `cleanup.policy=[compact,delete]`.
    #[arg(long = "add-config", value_name = "K=V,...")]
    pub add_config: Option<String>,
    /// `k,k2`: overrides to remove (the broker default applies again).
    #[arg(long = "delete-config", value_name = "K,...")]
    pub delete_config: Option<String>,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.entity_type != "topics" {
        return Err(usage(format!(
            "--entity-type {}: only topics have configs to change (broker configs are the broker's config file)",
            a.entity_type
        )));
    }
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    let topic = &a.entity_name;
    if a.alter {
        let set = parse_add_config(a.add_config.as_deref().unwrap_or(""))?;
        let delete: Vec<String> = a
            .delete_config
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        if set.is_empty() && delete.is_empty() {
            return Err(usage("--alter needs --add-config or --delete-config"));
        }
        admin.alter_topic_configs(topic, &set, &delete).await?;
        println!("Completed updating config for topic {topic}.");
        return Ok(());
    }
    let d = admin.describe_topics(std::slice::from_ref(topic)).await?;
    println!("Dynamic configs for topic {topic} are:");
    for t in d {
        for (k, v) in &t.configs {
            println!("  {k}={v} sensitive=false synonyms={{DYNAMIC_TOPIC_CONFIG:{k}={v}}}");
        }
    }
    Ok(())
}

/// Kafka's `--add-config` syntax: comma-separated `k=v`, where a value in
/// square brackets may itself contain commas.
fn parse_add_config(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| usage(format!("\"{rest}\" is not key=value")))?;
        let (value, next) = if let Some(inner) = after.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| usage(format!("unclosed [ in the value of {key}")))?;
            (&inner[..end], inner[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.insert(key.trim().to_string(), value.trim().to_string());
        rest = next.trim();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_takes_kafkas_bracketed_lists() {
        let m = parse_add_config("retention.ms=1000,cleanup.policy=[compact,delete],segment.ms=5")
            .unwrap();
        assert_eq!(m["retention.ms"], "1000");
        assert_eq!(m["cleanup.policy"], "compact,delete");
        assert_eq!(m["segment.ms"], "5");
        assert!(parse_add_config("nokey").is_err());
        assert!(parse_add_config("a=[x,y").is_err());
    }
}
