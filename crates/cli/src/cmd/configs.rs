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
    /// What the configs belong to: `topics`, `users` (SCRAM credentials and
    /// quotas) or `clients` (quotas by client id); broker configs are
    /// static (the broker's config file).
    #[arg(long = "entity-type", default_value = "topics")]
    pub entity_type: String,
    /// The topic (or user, or client id).
    #[arg(long = "entity-name")]
    pub entity_name: Option<String>,
    /// The default user (or client id): its quotas apply to every user
    /// (client) without its own.
    #[arg(long = "entity-default")]
    pub entity_default: bool,
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
    if !["topics", "users", "clients"].contains(&a.entity_type.as_str()) {
        return Err(usage(format!(
            "--entity-type {}: topics, users and clients have configs to change (broker configs are the broker's config file)",
            a.entity_type
        )));
    }
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    if a.entity_type != "topics" {
        return principals(&admin, &a).await;
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

/// `--entity-type users|clients`: SCRAM credentials (users) and quotas,
/// Kafka's way.
async fn principals(admin: &Admin, a: &Args) -> anyhow::Result<()> {
    use sluice_auth::scram::Mechanism;
    let quota_entity = if a.entity_type == "users" {
        "user"
    } else {
        "client-id"
    };
    let name = match (&a.entity_name, a.entity_default) {
        (Some(n), false) => Some(n.clone()),
        (None, true) => Some(DEFAULT_ENTITY.to_string()),
        (None, false) => None,
        (Some(_), true) => return Err(usage("--entity-name or --entity-default, not both")),
    };
    if a.describe {
        for q in admin.describe_quotas().await? {
            let e = q.entity.unwrap_or_default();
            if e.entity_type != quota_entity || name.as_ref().is_some_and(|n| *n != e.name) {
                continue;
            }
            let values: Vec<String> = q.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "Quota configs for {quota_entity} '{}' are {}",
                e.name,
                values.join(", ")
            );
        }
        if a.entity_type == "users" {
            let names: Vec<String> = name.iter().cloned().collect();
            for u in admin.describe_users(&names).await.unwrap_or_default() {
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
        }
        return Ok(());
    }
    let user = name
        .as_ref()
        .ok_or_else(|| usage("--entity-name (or --entity-default) names the user or client"))?;
    let is_quota = |k: &str| {
        [
            "producer_byte_rate",
            "consumer_byte_rate",
            "request_percentage",
        ]
        .contains(&k)
    };
    let mechanism = |name: &str| {
        Mechanism::parse(name.trim()).ok_or_else(|| {
            usage(format!(
                "{name}: users have SCRAM-SHA-256 and SCRAM-SHA-512 configs"
            ))
        })
    };
    for (name, value) in parse_add_config(a.add_config.as_deref().unwrap_or(""))? {
        if is_quota(&name) {
            let v: f64 = value
                .parse()
                .map_err(|_| usage(format!("{name}={value} is not a number")))?;
            admin
                .alter_quota(quota_entity, user, &name, Some(v))
                .await?;
            continue;
        }
        if a.entity_type != "users" {
            return Err(usage(format!(
                "{name}: clients have producer_byte_rate, consumer_byte_rate and request_percentage"
            )));
        }
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
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        if is_quota(name) {
            admin.alter_quota(quota_entity, user, name, None).await?;
            continue;
        }
        admin.delete_scram(user, mechanism(name)?).await?;
    }
    let what = if a.entity_type == "users" {
        "user"
    } else {
        "client-id"
    };
    println!("Completed updating config for {what} {user}.");
    Ok(())
}

/// Kafka's name for the default user or client id.
const DEFAULT_ENTITY: &str = "<default>";

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
