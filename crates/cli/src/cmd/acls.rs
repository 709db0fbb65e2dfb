//! `sluice acls`: kafka-acls.sh. `--add` and `--remove` the ACLs that the
//! principal, host, operation and resource flags spell out; `--list` the
//! ACLs on a resource (or all). `--producer` and `--consumer` are Kafka's
//! shortcuts for the usual sets.

use clap::ArgGroup;
use sluice_auth::{AclBinding, Operation, PatternType, Permission, ResourceType};
use sluice_client::Admin;
use sluice_client::security_admin::AclFilter;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["add", "remove", "list"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Add the ACLs the other flags describe.
    #[arg(long)]
    pub add: bool,
    /// Remove them (with no principal or operation: every ACL on the resource).
    #[arg(long)]
    pub remove: bool,
    /// List ACLs (on the resources named, or all).
    #[arg(long)]
    pub list: bool,
    /// `User:<name>` allowed (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    pub allow_principal: Vec<String>,
    /// `User:<name>` denied (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    pub deny_principal: Vec<String>,
    /// Hosts the allow applies from (default `*`).
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Hosts the deny applies from (default `*`).
    #[arg(long = "deny-host", value_name = "HOST")]
    pub deny_host: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite or All (repeatable).
    #[arg(long = "operation", value_name = "OPERATION")]
    pub operation: Vec<String>,
    /// A topic (`*` for all; repeatable).
    #[arg(long)]
    pub topic: Vec<String>,
    /// A consumer group (`*` for all; repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// The cluster.
    #[arg(long)]
    pub cluster: bool,
    /// A transactional id (repeatable).
    #[arg(long = "transactional-id")]
    pub transactional_id: Vec<String>,
    /// LITERAL (default) or PREFIXED for --add; also ANY or MATCH for
    /// --list and --remove.
    #[arg(long = "resource-pattern-type", value_name = "TYPE")]
    pub pattern_type: Option<String>,
    /// With --list: only this principal's ACLs.
    #[arg(long = "principal", value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Kafka's producer set: Write, Describe and Create on the topics.
    #[arg(long)]
    pub producer: bool,
    /// Kafka's consumer set: Read and Describe on the topics, Read on the group.
    #[arg(long)]
    pub consumer: bool,
    /// Do not ask (Sluice never asks; accepted for kafka-acls.sh scripts).
    #[arg(long)]
    pub force: bool,
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
    let resources = resources(&a);
    if a.list {
        return list(&admin, &a, &resources).await;
    }
    if resources.is_empty() {
        return Err(usage(
            "name a resource: --topic, --group, --cluster or --transactional-id",
        ));
    }
    if a.add {
        let bindings = bindings(&a, &resources)?;
        if bindings.is_empty() {
            return Err(usage(
                "--add needs --allow-principal or --deny-principal, and --operation (or --producer/--consumer)",
            ));
        }
        for (b, r) in bindings.iter().zip(admin.create_acls(&bindings).await?) {
            r.map_err(|e| anyhow::anyhow!("{b}: {e}"))?;
        }
        println!("Adding ACLs:");
        for b in &bindings {
            println!(" \t{}", describe(b));
        }
        return Ok(());
    }
    // --remove: the exact bindings when principals are named; else every
    // ACL on each resource (with the operations given, if any).
    let filters: Vec<AclFilter> = if a.allow_principal.is_empty() && a.deny_principal.is_empty() {
        let ops: Vec<Option<String>> = if a.operation.is_empty() {
            vec![None]
        } else {
            a.operation.iter().cloned().map(Some).collect()
        };
        let pattern = pattern_filter(&a);
        resources
            .iter()
            .flat_map(|(t, n)| {
                let pattern = pattern.clone();
                ops.iter().map(move |op| AclFilter {
                    resource_type: Some(t.as_str().into()),
                    pattern_type: Some(pattern.clone()),
                    resource_name: Some(n.clone()),
                    operation: op.clone(),
                    ..Default::default()
                })
            })
            .collect()
    } else {
        bindings(&a, &resources)?
            .iter()
            .map(|b| AclFilter {
                resource_type: Some(b.resource_type.as_str().into()),
                pattern_type: Some(b.pattern_type.as_str().into()),
                resource_name: Some(b.resource_name.clone()),
                principal: Some(b.principal.clone()),
                host: Some(b.host.clone()),
                operation: Some(b.operation.as_str().into()),
                permission: Some(b.permission.as_str().into()),
            })
            .collect()
    };
    let mut removed = Vec::new();
    for r in admin.delete_acls(filters).await? {
        removed.extend(r?);
    }
    println!("Removed {} ACL(s):", removed.len());
    for b in &removed {
        println!(" \t{}", describe(b));
    }
    Ok(())
}

/// The resources named on the command line.
fn resources(a: &Args) -> Vec<(ResourceType, String)> {
    let mut out: Vec<(ResourceType, String)> = Vec::new();
    out.extend(a.topic.iter().map(|t| (ResourceType::Topic, t.clone())));
    out.extend(a.group.iter().map(|g| (ResourceType::Group, g.clone())));
    if a.cluster {
        out.push((ResourceType::Cluster, sluice_auth::acl::CLUSTER_NAME.into()));
    }
    out.extend(
        a.transactional_id
            .iter()
            .map(|t| (ResourceType::TransactionalId, t.clone())),
    );
    out
}

fn pattern_filter(a: &Args) -> String {
    a.pattern_type.clone().unwrap_or_else(|| "LITERAL".into())
}

/// Every binding the flags spell out: principals x hosts x operations x
/// resources, allows then denies.
fn bindings(a: &Args, resources: &[(ResourceType, String)]) -> anyhow::Result<Vec<AclBinding>> {
    let pattern: PatternType = match a.pattern_type.as_deref() {
        None => PatternType::Literal,
        Some(p) => p
            .parse()
            .map_err(|e| usage(format!("--resource-pattern-type: {e}")))?,
    };
    let ops: Vec<Operation> = a
        .operation
        .iter()
        .map(|o| o.parse().map_err(|e| usage(format!("--operation: {e}"))))
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    let mut add = |permission, principals: &[String], hosts: &[String]| {
        let hosts: Vec<String> = if hosts.is_empty() {
            vec!["*".into()]
        } else {
            hosts.to_vec()
        };
        for principal in principals {
            for host in &hosts {
                for (rtype, name) in resources {
                    let mut these: Vec<Operation> = ops.clone();
                    if a.producer && *rtype == ResourceType::Topic {
                        these.extend([Operation::Write, Operation::Describe, Operation::Create]);
                    }
                    if a.consumer && *rtype == ResourceType::Topic {
                        these.extend([Operation::Read, Operation::Describe]);
                    }
                    if a.consumer && *rtype == ResourceType::Group {
                        these.push(Operation::Read);
                    }
                    these.sort();
                    these.dedup();
                    for op in these {
                        out.push(AclBinding {
                            resource_type: *rtype,
                            pattern_type: pattern,
                            resource_name: name.clone(),
                            principal: principal.clone(),
                            host: host.clone(),
                            operation: op,
                            permission,
                        });
                    }
                }
            }
        }
    };
    add(Permission::Allow, &a.allow_principal, &a.allow_host);
    add(Permission::Deny, &a.deny_principal, &a.deny_host);
    for b in &out {
        b.validate().map_err(|e| usage(e.to_string()))?;
    }
    Ok(out)
}

async fn list(admin: &Admin, a: &Args, resources: &[(ResourceType, String)]) -> anyhow::Result<()> {
    let filters: Vec<AclFilter> = if resources.is_empty() {
        vec![AclFilter {
            principal: a.principal.clone(),
            ..Default::default()
        }]
    } else {
        resources
            .iter()
            .map(|(t, n)| AclFilter {
                resource_type: Some(t.as_str().into()),
                pattern_type: Some(a.pattern_type.clone().unwrap_or_else(|| "ANY".into())),
                resource_name: Some(n.clone()),
                principal: a.principal.clone(),
                ..Default::default()
            })
            .collect()
    };
    let mut found: Vec<AclBinding> = Vec::new();
    for f in filters {
        found.extend(admin.describe_acls(f).await?);
    }
    found.sort();
    found.dedup();
    // Kafka's layout: one block per resource pattern.
    let mut last: Option<(ResourceType, PatternType, String)> = None;
    for b in &found {
        let key = (b.resource_type, b.pattern_type, b.resource_name.clone());
        if last.as_ref() != Some(&key) {
            if last.is_some() {
                println!();
            }
            println!(
                "Current ACLs for resource `ResourcePattern(resourceType={}, name={}, patternType={})`: ",
                b.resource_type.as_str().to_ascii_uppercase(),
                b.resource_name,
                b.pattern_type
            );
            last = Some(key);
        }
        println!(" \t{}", describe(b));
    }
    Ok(())
}

fn describe(b: &AclBinding) -> String {
    format!(
        "(principal={}, host={}, operation={}, permissionType={})",
        b.principal,
        b.host,
        upper_snake(b.operation.as_str()),
        b.permission.as_str().to_ascii_uppercase()
    )
}

/// `DescribeConfigs` -> `DESCRIBE_CONFIGS`, as Kafka prints operations.
fn upper_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(line: &str) -> Args {
        let argv = std::iter::once("acls").chain(line.split_whitespace());
        T::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn flags_spell_out_kafkas_bindings() {
        let a = args(
            "--bootstrap-server h:1 --add --allow-principal User:alice --operation Read --operation write --topic orders --group g",
        );
        let b = bindings(&a, &resources(&a)).unwrap();
        // Read and Write on the topic and on the group.
        assert_eq!(b.len(), 4);
        assert!(
            b.iter()
                .all(|b| b.principal == "User:alice" && b.host == "*")
        );
        let a = args(
            "--bootstrap-server h:1 --add --allow-principal User:bob --consumer --topic t --group g --resource-pattern-type prefixed",
        );
        let b = bindings(&a, &resources(&a)).unwrap();
        let ops: Vec<_> = b
            .iter()
            .map(|b| (b.resource_type, b.operation, b.pattern_type))
            .collect();
        assert!(ops.contains(&(ResourceType::Topic, Operation::Read, PatternType::Prefixed)));
        assert!(ops.contains(&(
            ResourceType::Topic,
            Operation::Describe,
            PatternType::Prefixed
        )));
        assert!(ops.contains(&(ResourceType::Group, Operation::Read, PatternType::Prefixed)));
        assert_eq!(b.len(), 3);
        let a =
            args("--bootstrap-server h:1 --add --deny-principal Alice --operation Read --topic t");
        assert!(
            bindings(&a, &resources(&a)).is_err(),
            "a principal without User:"
        );
        assert_eq!(upper_snake("DescribeConfigs"), "DESCRIBE_CONFIGS");
        assert_eq!(upper_snake("Read"), "READ");
    }
}
