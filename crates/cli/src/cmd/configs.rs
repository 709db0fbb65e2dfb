//! `sluice configs`: kafka-configs.sh for topics and users. `--describe`
//! shows a topic's overrides; `--alter --add-config k=v,k2=[a,b]
//! --delete-config k3` changes them, live on every replica. For users,
//! `--add-config 'SCRAM-SHA-256=[iterations=8192,password=...]'` sets a
//! SCRAM credential and `--delete-config SCRAM-SHA-256` removes it.

use std::collections::BTreeMap;

use clap::ArgGroup;
use sluice_client::Admin;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["describe", "alter"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// What the configs belong to: `topics`, or `users` (SCRAM
    /// credentials; broker configs are static: the broker's config file).
    #[arg(long = "entity-type", default_value = "topics")]
    pub entity_type: String,
    /// The topic (or user).
    #[arg(long = "entity-name")]
    pub entity_name: Option<String>,
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
    if a.entity_type != "topics" && a.entity_type != "users" {
        return Err(usage(format!(
            "--entity-type {}: topics and users have configs to change (broker configs are the broker's config file)",
            a.entity_type
        )));
    }
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    if a.entity_type == "users" {
        return users(&admin, &a).await;
    }
    let topic = a
        .entity_name
        .as_ref()
        .ok_or_else(|| usage("--entity-name names the topic"))?;
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

/// `--entity-type users`: SCRAM credentials, Kafka's way.
async fn users(admin: &Admin, a: &Args) -> anyhow::Result<()> {
    use sluice_auth::scram::Mechanism;
    if a.describe {
        let names: Vec<String> = a.entity_name.iter().cloned().collect();
        for u in admin.describe_users(&names).await? {
            let creds: Vec<String> = u
                .credentials
                .iter()
                .map(|(m, i)| format!("{m}=iterations={i}"))
                .collect();
            println!(
                "SCRAM credential configs for user-principal '{}' are {}",
                u.user,
                creds.join(", ")
            );
        }
        return Ok(());
    }
    let user = a
        .entity_name
        .as_ref()
        .ok_or_else(|| usage("--entity-name names the user"))?;
    let mechanism = |name: &str| {
        Mechanism::parse(name.trim()).ok_or_else(|| {
            usage(format!(
                "{name}: users have SCRAM-SHA-256 and SCRAM-SHA-512 configs"
            ))
        })
    };
    for (name, value) in parse_add_config(a.add_config.as_deref().unwrap_or(""))? {
        let m = mechanism(&name)?;
        // `[iterations=8192,password=secret]`, as kafka-configs.sh takes it.
        let mut password = None;
        let mut iterations = sluice_client::security_admin::DEFAULT_ITERATIONS;
        for part in value.split(',') {
            match part.split_once('=') {
                Some(("password", p)) => password = Some(p.to_string()),
                Some(("iterations", i)) => {
                    iterations = i
                        .trim()
                        .parse()
                        .map_err(|_| usage(format!("iterations={i} is not a number")))?
                }
                _ => return Err(usage(format!("{name}: expected [iterations=N,password=P]"))),
            }
        }
        let password = password.ok_or_else(|| usage(format!("{name}: no password=")))?;
        super::users::set_password(admin, user, m, &password, iterations).await?;
    }
    for name in a.delete_config.as_deref().unwrap_or("").split(',') {
        if name.trim().is_empty() {
            continue;
        }
        admin.delete_scram(user, mechanism(name)?).await?;
    }
    println!("Completed updating config for user {user}.");
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
