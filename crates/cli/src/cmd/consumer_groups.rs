//! `sluice consumer-groups`: kafka-consumer-groups.sh. `--list`, `--describe
//! --group G` (Kafka's columns), `--reset-offsets` for an inactive group
//! (dry run unless `--execute`), `--delete --group G`.

use std::collections::{BTreeMap, BTreeSet};

use sluice_client::{Admin, Consumer, GroupDescription, GroupListing, TopicPartition};

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// List every group.
    #[arg(long)]
    pub list: bool,
    /// With --list: show each group's type (classic or consumer, KIP-848);
    /// with a comma list, only groups of those types.
    #[arg(long = "type", num_args = 0..=1, default_missing_value = "", value_name = "TYPES")]
    pub group_type: Option<String>,
    /// Describe --group: members and offsets with lag.
    #[arg(long)]
    pub describe: bool,
    /// With --describe: the members and how many partitions each has.
    #[arg(long)]
    pub members: bool,
    /// With --describe --members: also each member's partitions.
    #[arg(long)]
    pub verbose: bool,
    /// With --describe: the group's coordinator, assignor, state and size.
    #[arg(long)]
    pub state: bool,
    /// Delete --group (it must have no active members).
    #[arg(long)]
    pub delete: bool,
    /// Reset --group's committed offsets (the group must be inactive).
    #[arg(long = "reset-offsets")]
    pub reset_offsets: bool,
    /// The group.
    #[arg(long)]
    pub group: Option<String>,
    /// With --reset-offsets: `TOPIC` or `TOPIC:P1,P2`.
    #[arg(long)]
    pub topic: Option<String>,
    /// With --reset-offsets: every topic the group has committed offsets for.
    #[arg(long = "all-topics")]
    pub all_topics: bool,
    #[arg(long = "to-earliest")]
    pub to_earliest: bool,
    #[arg(long = "to-latest")]
    pub to_latest: bool,
    #[arg(long = "to-offset", value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Move each committed offset by N (negative: back).
    #[arg(long = "shift-by", value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// The first offset at or after a time: `YYYY-MM-DDTHH:mm:SS.sss`, local
    /// time unless it ends with `Z` or an offset such as `+01:00`.
    #[arg(long = "to-datetime", value_name = "DATETIME")]
    pub to_datetime: Option<String>,
    /// The first offset at or after now minus an ISO-8601 duration
    /// (`PnDTnHnMnS`, such as `PT30M` or `P1DT12H`).
    #[arg(long = "by-duration", value_name = "DURATION")]
    pub by_duration: Option<String>,
    /// Apply the reset (without it, only show the plan).
    #[arg(long)]
    pub execute: bool,
    /// Show the plan only (the default).
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let actions = [a.list, a.describe, a.delete, a.reset_offsets]
        .iter()
        .filter(|x| **x)
        .count();
    if actions != 1 {
        return Err(usage(
            "consumer-groups needs exactly one action: --list, --describe, --delete or --reset-offsets",
        ));
    }
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config.clone())?;
    if a.list {
        let groups = admin.list_consumer_groups().await?;
        match &a.group_type {
            None => groups.iter().for_each(|g| println!("{}", g.group_id)),
            Some(types) => print!("{}", render_types(&groups, types)),
        }
        return Ok(());
    }
    if a.group_type.is_some() {
        return Err(usage("--type goes with --list"));
    }
    let group = a
        .group
        .clone()
        .ok_or_else(|| usage("this action needs --group"))?;
    if a.delete {
        admin.delete_consumer_group(&group).await?;
        println!("Deletion of requested consumer groups ('{group}') was successful.");
        return Ok(());
    }
    let consumer = Consumer::new(config)?;
    if a.members && a.state {
        return Err(usage("--members and --state cannot be used together"));
    }
    if (a.members || a.state) && !a.describe {
        return Err(usage("--members and --state go with --describe"));
    }
    if a.verbose && !a.members {
        return Err(usage("--verbose goes with --describe --members"));
    }
    if a.describe && a.state {
        let d = admin.describe_consumer_group(&group).await?;
        print!("{}", render_state(&d));
        return Ok(());
    }
    if a.describe && a.members {
        let d = admin.describe_consumer_group(&group).await?;
        if d.members.is_empty() {
            println!("\nConsumer group '{group}' has no active members.");
            return Ok(());
        }
        print!("{}", render_members(&d, a.verbose));
        return Ok(());
    }
    if a.describe {
        let d = admin.describe_consumer_group(&group).await?;
        let committed = admin.list_consumer_group_offsets(&group).await?;
        if d.state == "Dead" && committed.is_empty() {
            println!("Consumer group '{group}' does not exist.");
            return Ok(());
        }
        if d.members.is_empty() {
            println!("\nConsumer group '{group}' has no active members.");
        }
        let rows = describe_rows(&d, &committed, &consumer).await?;
        print!("{}", render(&rows));
        return Ok(());
    }
    reset(&admin, &consumer, &group, &a).await
}

/// One line of `--describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub current: Option<i64>,
    pub log_end: i64,
    pub consumer_id: String,
    pub host: String,
    pub client_id: String,
}

async fn describe_rows(
    d: &GroupDescription,
    committed: &BTreeMap<TopicPartition, i64>,
    consumer: &Consumer,
) -> anyhow::Result<Vec<Row>> {
    let mut owner: BTreeMap<TopicPartition, (&str, &str, &str)> = BTreeMap::new();
    for m in &d.members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), (&m.member_id, &m.host, &m.client_id));
        }
    }
    let tps: BTreeSet<TopicPartition> = owner.keys().chain(committed.keys()).cloned().collect();
    let tps: Vec<TopicPartition> = tps.into_iter().collect();
    let ends = if tps.is_empty() {
        Default::default()
    } else {
        consumer.end_offsets(&tps).await?
    };
    Ok(tps
        .into_iter()
        .map(|tp| {
            let (id, host, client) = owner.get(&tp).copied().unwrap_or(("-", "-", "-"));
            Row {
                group: d.group_id.clone(),
                current: committed.get(&tp).copied(),
                log_end: ends.get(&tp).copied().unwrap_or(-1),
                consumer_id: id.to_string(),
                host: host.to_string(),
                client_id: client.to_string(),
                topic: tp.topic,
                partition: tp.partition,
            }
        })
        .collect())
}

/// Kafka's `--describe` table: left-aligned columns padded to their widest
/// cell; `-` where there is no committed offset (and so no lag).
pub fn render(rows: &[Row]) -> String {
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let lag = r
                .current
                .map_or("-".to_string(), |c| (r.log_end - c).max(0).to_string());
            vec![
                r.group.clone(),
                r.topic.clone(),
                r.partition.to_string(),
                r.current.map_or("-".to_string(), |c| c.to_string()),
                r.log_end.to_string(),
                lag,
                r.consumer_id.clone(),
                r.host.clone(),
                r.client_id.clone(),
            ]
        })
        .collect();
    table(&header, &cells)
}

/// `--list --type [TYPES]`: kafka-consumer-groups.sh's GROUP, TYPE and
/// PROTOCOL columns, filtered by type when some are named.
fn render_types(groups: &[GroupListing], types: &str) -> String {
    let wanted: Vec<String> = types
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let rows: Vec<Vec<String>> = groups
        .iter()
        .filter(|g| wanted.is_empty() || wanted.contains(&g.group_type))
        .map(|g| {
            let mut kind = g.group_type.clone();
            if let Some(first) = kind.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            vec![g.group_id.clone(), kind, g.protocol_type.clone()]
        })
        .collect();
    table(&["GROUP", "TYPE", "PROTOCOL"], &rows)
}

/// `--describe --state`, with kafka-consumer-groups.sh's columns (a
/// consumer-protocol group also shows its group and target epochs).
fn render_state(d: &GroupDescription) -> String {
    let strategy = if d.protocol.is_empty() {
        "-"
    } else {
        d.protocol.as_str()
    };
    let mut header = vec!["GROUP", "COORDINATOR", "ASSIGNMENT-STRATEGY", "STATE"];
    let mut row = vec![
        d.group_id.clone(),
        d.coordinator.clone(),
        strategy.to_string(),
        d.state.clone(),
    ];
    if let Some(target) = d.assignment_epoch {
        header.extend(["GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH"]);
        row.extend([d.generation.to_string(), target.to_string()]);
    }
    header.push("#MEMBERS");
    row.push(d.members.len().to_string());
    table(&header, &[row])
}

/// `topic(0,1),other(2)`, or `-` for none.
fn assignment_text(tps: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let text: Vec<String> = by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort();
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}({})", ps.join(","))
        })
        .collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(",")
    }
}

/// `--describe --members [--verbose]`, with kafka-consumer-groups.sh's
/// columns; ASSIGNMENT reads `topic(0,1),other(2)`.
fn render_members(d: &GroupDescription, verbose: bool) -> String {
    let mut header = vec![
        "GROUP",
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
    ];
    let consumer = d.group_type == "consumer";
    if consumer {
        header.push("MEMBER-EPOCH");
    }
    if verbose {
        header.push("ASSIGNMENT");
        if consumer {
            header.push("TARGET-ASSIGNMENT");
        }
    }
    let mut members: Vec<_> = d.members.iter().collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let mut row = vec![
                d.group_id.clone(),
                m.member_id.clone(),
                m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
                m.host.clone(),
                m.client_id.clone(),
                m.assignment.len().to_string(),
            ];
            if consumer {
                row.push(
                    m.consumer
                        .as_ref()
                        .map_or("-".into(), |c| c.member_epoch.to_string()),
                );
            }
            if verbose {
                row.push(assignment_text(&m.assignment));
                if consumer {
                    row.push(
                        m.consumer
                            .as_ref()
                            .map_or("-".into(), |c| assignment_text(&c.target)),
                    );
                }
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// A left-aligned table after a blank line, as the describe output.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} ", w = w));
            }
        }
        s.push('\n');
        s
    };
    let mut out = String::from("\n");
    out.push_str(&line(header));
    for r in rows {
        let refs: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&refs));
    }
    out
}

async fn reset(admin: &Admin, consumer: &Consumer, group: &str, a: &Args) -> anyhow::Result<()> {
    let targets = [
        a.to_earliest,
        a.to_latest,
        a.to_offset.is_some(),
        a.shift_by.is_some(),
        a.to_datetime.is_some(),
        a.by_duration.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if targets != 1 {
        return Err(usage(
            "--reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset N, --shift-by N, --to-datetime T, --by-duration D",
        ));
    }
    // Parsed before anything is read, so a typo fails fast.
    let since = match (&a.to_datetime, &a.by_duration) {
        (Some(t), _) => Some(parse_datetime(t)?),
        (_, Some(d)) => Some(since_duration(d)?),
        _ => None,
    };
    if a.execute && a.dry_run {
        return Err(usage("--execute and --dry-run cannot be used together"));
    }
    let tps: Vec<TopicPartition> = match (&a.topic, a.all_topics) {
        (Some(t), false) => match t.split_once(':') {
            Some((topic, parts)) => parts
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .map(|p| TopicPartition::new(topic, p))
                        .map_err(|_| usage(format!("bad partition \"{p}\" in --topic {t}")))
                })
                .collect::<anyhow::Result<_>>()?,
            None => {
                let d = admin.describe_topics(std::slice::from_ref(t)).await?;
                d[0].partitions
                    .iter()
                    .map(|p| TopicPartition::new(t.as_str(), p.partition))
                    .collect()
            }
        },
        (None, true) => admin
            .list_consumer_group_offsets(group)
            .await?
            .into_keys()
            .collect(),
        _ => {
            return Err(usage(
                "--reset-offsets needs --topic T[:P,...] or --all-topics",
            ));
        }
    };
    let clamped = async |target: &dyn Fn(&TopicPartition) -> i64| -> anyhow::Result<_> {
        let start = consumer.beginning_offsets(&tps).await?;
        let end = consumer.end_offsets(&tps).await?;
        // Kafka clamps an out-of-range target into the log's range.
        Ok(tps
            .iter()
            .map(|tp| {
                let lo = start.get(tp).copied().unwrap_or(0);
                let hi = end.get(tp).copied().unwrap_or(0);
                (tp.clone(), target(tp).clamp(lo, hi.max(lo)))
            })
            .collect::<BTreeMap<_, _>>())
    };
    let plan: BTreeMap<TopicPartition, i64> = if let Some(o) = a.to_offset {
        clamped(&|_| o).await?
    } else if let Some(n) = a.shift_by {
        let committed = admin.list_consumer_group_offsets(group).await?;
        if let Some(tp) = tps.iter().find(|tp| !committed.contains_key(*tp)) {
            return Err(usage(format!(
                "group {group} has no committed offset for {}-{} to shift; use --to-earliest, --to-latest or --to-offset",
                tp.topic, tp.partition
            )));
        }
        clamped(&|tp| committed[tp].saturating_add(n)).await?
    } else if let Some(ts) = since {
        let found = consumer.offsets_for_times(&tps, ts).await?;
        let end = consumer.end_offsets(&tps).await?;
        // No record that late: the end of the log, as Kafka does.
        tps.iter()
            .map(|tp| {
                let o = found.get(tp).copied().filter(|o| *o >= 0);
                (tp.clone(), o.or(end.get(tp).copied()).unwrap_or(0))
            })
            .collect()
    } else if a.to_earliest {
        consumer
            .beginning_offsets(&tps)
            .await?
            .into_iter()
            .collect()
    } else {
        consumer.end_offsets(&tps).await?.into_iter().collect()
    };
    if a.execute {
        admin.alter_consumer_group_offsets(group, &plan).await?;
    } else {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. Add --execute to reset offsets."
        );
    }
    println!(
        "\n{:<20} {:<20} {:<10} NEW-OFFSET",
        "GROUP", "TOPIC", "PARTITION"
    );
    for (tp, o) in &plan {
        println!("{:<20} {:<20} {:<10} {o}", group, tp.topic, tp.partition);
    }
    Ok(())
}

/// `--to-datetime`: milliseconds since the epoch. Without a zone, the time
/// is local, as kafka-consumer-groups.sh reads it.
fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let bad = |e: jiff::Error| {
        usage(format!(
            "--to-datetime \"{s}\": {e}; expected YYYY-MM-DDTHH:mm:SS.sss, optionally with Z or an offset such as +01:00"
        ))
    };
    let local: jiff::civil::DateTime = s.parse().map_err(bad)?;
    let zoned = local.to_zoned(jiff::tz::TimeZone::system()).map_err(bad)?;
    Ok(zoned.timestamp().as_millisecond())
}

/// `--by-duration`: now minus an ISO-8601 duration, in milliseconds.
fn since_duration(s: &str) -> anyhow::Result<i64> {
    let bad = |e: jiff::Error| {
        usage(format!(
            "--by-duration \"{s}\": {e}; expected an ISO-8601 duration such as PT30M or P1DT12H"
        ))
    };
    let span: jiff::Span = s.parse().map_err(bad)?;
    let then = jiff::Zoned::now().checked_sub(span).map_err(bad)?;
    Ok(then.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_state_tables_have_kafkas_columns() {
        let d = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol: "range".into(),
            generation: 3,
            coordinator: "127.0.0.1:9092".into(),
            members: vec![sluice_client::MemberDescription {
                member_id: "c-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                host: "/127.0.0.1".into(),
                assignment: vec![
                    TopicPartition::new("t", 1),
                    TopicPartition::new("t", 0),
                    TopicPartition::new("u", 2),
                ],
                consumer: None,
            }],
            group_type: "classic".into(),
            assignment_epoch: None,
        };
        let out = render_members(&d, true);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "GROUP",
                "CONSUMER-ID",
                "GROUP-INSTANCE-ID",
                "HOST",
                "CLIENT-ID",
                "#PARTITIONS",
                "ASSIGNMENT"
            ]
        );
        assert_eq!(
            lines[1],
            ["g", "c-1", "i-1", "/127.0.0.1", "c", "3", "t(0,1),u(2)"]
        );
        let out = render_state(&d);
        let row: Vec<&str> = out.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(row, ["g", "127.0.0.1:9092", "range", "Stable", "1"]);
    }

    #[test]
    fn consumer_protocol_groups_show_their_epochs_and_type() {
        let d = GroupDescription {
            group_id: "g".into(),
            state: "Reconciling".into(),
            protocol: "uniform".into(),
            generation: 5,
            coordinator: "127.0.0.1:9092".into(),
            members: vec![sluice_client::MemberDescription {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                host: "/127.0.0.1".into(),
                assignment: vec![TopicPartition::new("t", 0)],
                consumer: Some(sluice_client::ConsumerMemberState {
                    member_epoch: 4,
                    target: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
                }),
            }],
            group_type: "consumer".into(),
            assignment_epoch: Some(5),
        };
        let out = render_state(&d);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0][4..],
            ["GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH", "#MEMBERS"]
        );
        assert_eq!(lines[1][2..], ["uniform", "Reconciling", "5", "5", "1"]);
        let out = render_members(&d, true);
        let row: Vec<&str> = out.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(row[5..], ["1", "4", "t(0)", "t(0,1)"]);
        let listing = |id: &str, kind: &str| GroupListing {
            group_id: id.into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            group_type: kind.into(),
        };
        let groups = [listing("a", "classic"), listing("b", "consumer")];
        let out = render_types(&groups, "");
        assert!(out.contains("a     Classic  consumer"), "{out}");
        let out = render_types(&groups, "consumer");
        assert!(
            !out.contains("Classic") && out.contains("Consumer"),
            "{out}"
        );
    }

    #[test]
    fn reset_times_parse_as_kafka_writes_them() {
        assert_eq!(
            parse_datetime("2026-11-24T10:00:00.000Z").unwrap(),
            1_795_514_400_000
        );
        assert_eq!(
            parse_datetime("2026-11-24T11:00:00.000+01:00").unwrap(),
            1_795_514_400_000
        );
        // Local time: whatever the zone, within a day of the UTC reading.
        let local = parse_datetime("2026-11-24T10:00:00.000").unwrap();
        assert!((local - 1_795_514_400_000).abs() <= 26 * 3_600_000);
        assert!(parse_datetime("yesterday").is_err());
        let now = jiff::Timestamp::now().as_millisecond();
        let hour_ago = since_duration("PT1H").unwrap();
        assert!(
            (now - hour_ago - 3_600_000).abs() < 60_000,
            "{}",
            now - hour_ago
        );
        assert!(since_duration("P1DT12H").unwrap() < hour_ago);
        assert!(since_duration("soon").is_err());
    }

    #[test]
    fn describe_table_has_kafkas_columns_and_dashes() {
        let rows = vec![
            Row {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                current: Some(7),
                log_end: 10,
                consumer_id: "c-1".into(),
                host: "/127.0.0.1".into(),
                client_id: "c".into(),
            },
            Row {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                current: None,
                log_end: 4,
                consumer_id: "-".into(),
                host: "-".into(),
                client_id: "-".into(),
            },
        ];
        let out = render(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        let head: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID"
            ]
        );
        let r0: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            r0,
            ["g", "t", "0", "7", "10", "3", "c-1", "/127.0.0.1", "c"]
        );
        let r1: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(r1, ["g", "t", "1", "-", "4", "-", "-", "-", "-"]);
        // Columns line up.
        assert_eq!(lines[1].find("LAG"), lines[2].find(" 3 ").map(|i| i + 1));
    }
}
