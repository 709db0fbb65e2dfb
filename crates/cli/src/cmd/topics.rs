//! `sluice topics`: kafka-topics.sh.

use clap::ArgGroup;
use sluice_client::{Admin, ErrorCode, NewTopic};

use super::common::{Bootstrap, client_config, properties, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["create", "list", "describe", "delete", "alter"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Create a topic.
    #[arg(long)]
    pub create: bool,
    /// List topic names.
    #[arg(long)]
    pub list: bool,
    /// Describe topics (all, or the one given with --topic).
    #[arg(long)]
    pub describe: bool,
    /// Delete a topic.
    #[arg(long)]
    pub delete: bool,
    /// Change a topic's partition count.
    #[arg(long)]
    pub alter: bool,
    /// The topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions (create: default is the cluster's num.partitions; alter: the new total).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replicas per partition (default: the cluster's default.replication.factor).
    #[arg(long = "replication-factor")]
    pub replication_factor: Option<i32>,
    /// Topic config override `key=value` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// With --create: succeed when the topic exists.
    #[arg(long = "if-not-exists")]
    pub if_not_exists: bool,
    /// With --delete, --alter, --describe: succeed when the topic does not exist.
    #[arg(long = "if-exists")]
    pub if_exists: bool,
    /// With --list: leave out internal topics.
    #[arg(long = "exclude-internal")]
    pub exclude_internal: bool,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

fn topic_arg(a: &Args, action: &str) -> anyhow::Result<String> {
    a.topic
        .clone()
        .ok_or_else(|| usage(format!("--{action} needs --topic")))
}

fn missing_ok(e: &sluice_client::ClientError, if_exists: bool) -> bool {
    if_exists && e.code() == ErrorCode::UnknownTopicOrPartition
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    if a.create {
        let name = topic_arg(&a, "create")?;
        let mut topic = NewTopic::new(
            name.clone(),
            a.partitions.unwrap_or(-1),
            a.replication_factor.unwrap_or(-1),
        );
        topic.configs = properties(&a.config)?;
        match admin.create_topic(topic).await {
            Ok(_) => println!("Created topic {name}."),
            Err(e) if a.if_not_exists && e.code() == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    } else if a.list {
        for t in admin.list_topics(!a.exclude_internal).await? {
            println!("{}", t.name);
        }
    } else if a.describe {
        let names: Vec<String> = a.topic.iter().cloned().collect();
        let topics = match admin.describe_topics(&names).await {
            Ok(t) => t,
            Err(e) if missing_ok(&e, a.if_exists) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for t in topics {
            print!("{}", describe_topic(&t));
        }
    } else if a.delete {
        let name = topic_arg(&a, "delete")?;
        match admin.delete_topic(&name).await {
            Ok(()) => {}
            Err(e) if missing_ok(&e, a.if_exists) => {}
            Err(e) => return Err(e.into()),
        }
    } else if a.alter {
        let name = topic_arg(&a, "alter")?;
        let n = a
            .partitions
            .ok_or_else(|| usage("--alter needs --partitions (the new total)"))?;
        match admin.create_partitions(&name, n).await {
            Ok(()) => println!("Adding partitions succeeded!"),
            Err(e) if missing_ok(&e, a.if_exists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Kafka's `--describe` layout.
pub fn describe_topic(t: &sluice_client::TopicDescription) -> String {
    let configs = t
        .configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        t.name,
        t.topic_id,
        t.partitions.len(),
        t.replication_factor(),
        configs
    );
    for p in &t.partitions {
        let leader = if p.leader < 0 {
            "none".to_string()
        } else {
            p.leader.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            t.name,
            p.partition,
            leader,
            join(&p.replicas),
            join(&p.isr)
        ));
        if !p.offline_replicas.is_empty() {
            out.push_str(&format!("\tOffline: {}", join(&p.offline_replicas)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::{PartitionDescription, TopicDescription};

    #[test]
    fn describe_matches_kafka_layout() {
        let t = TopicDescription {
            name: "orders".into(),
            topic_id: "abc".into(),
            is_internal: false,
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    offline_replicas: vec![],
                },
                PartitionDescription {
                    partition: 1,
                    leader: -1,
                    leader_epoch: 0,
                    replicas: vec![2, 1],
                    isr: vec![],
                    offline_replicas: vec![],
                },
            ],
            configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        };
        assert_eq!(
            describe_topic(&t),
            "Topic: orders\tTopicId: abc\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: orders\tPartition: 1\tLeader: none\tReplicas: 2,1\tIsr: \n"
        );
    }
}
