//! Kafka command lines as people type them, before clap sees them.
//!
//! - `sluice kafka-topics.sh ...` (or `bin/kafka-topics.sh`, `kafka-topics`)
//!   runs `sluice topics ...`.
//! - Kafka's tools (joptsimple) take long options with one dash
//!   (`-record-size 1024`, `-topic t`); they become `--record-size`, `--topic`
//!   when the subcommand has that option.
//! - What Sluice does not have fails with what to type instead: `--zookeeper`
//!   (no ZooKeeper: `--bootstrap-server`), `--broker-list` on a tool where
//!   Kafka does not take it either, and the server scripts
//!   (`kafka-server-start.sh`, `zookeeper-server-start.sh`, ...).

use std::ffi::OsString;

use clap::CommandFactory;

use super::Cli;

/// Kafka scripts with no Sluice subcommand, and what to run instead.
const NO_SUBCOMMAND: &[(&str, &str)] = &[
    (
        "server-start",
        "Sluice has no kafka-server-start.sh. One node (broker, controller and group \
         coordinator in one process, no ZooKeeper): `sluice standalone --listen HOST:PORT \
         --data-dir DIR` (scripts/standalone.sh builds and runs it). A cluster's brokers: \
         `sluice-broker --config broker.yaml --override broker.id=N` (YAML with Kafka's \
         keys, see deploy/config/broker.yaml); scripts/local-cluster.sh up --brokers 3 starts \
         etcd, controllers, a coordinator and brokers on one machine",
    ),
    (
        "server-stop",
        "Sluice has no kafka-server-stop.sh: stop a node with Ctrl-C or `kill PID` \
         (SIGTERM flushes and checkpoints its logs); scripts/local-cluster.sh down stops a \
         local cluster",
    ),
    (
        "zookeeper-server-start",
        "Sluice has no ZooKeeper: `sluice standalone` keeps its metadata itself, and a \
         cluster keeps it in etcd (scripts/local-cluster.sh up starts one)",
    ),
    ("zookeeper-server-stop", "Sluice has no ZooKeeper to stop"),
    (
        "zookeeper-shell",
        "Sluice has no ZooKeeper: inspect the cluster with `sluice cluster --bootstrap-server \
         HOST:PORT --describe` and `sluice topics --bootstrap-server HOST:PORT --describe`",
    ),
    (
        "storage",
        "Sluice has no kafka-storage.sh: there is nothing to format; a node creates its data \
         directory on first start",
    ),
    (
        "broker-api-versions",
        "use `sluice cluster --bootstrap-server HOST:PORT --describe` (the brokers, cluster id \
         and active controller)",
    ),
];

/// Rewrites Kafka-style command lines for clap, or says what to type instead
/// (the message goes after `Error: INVALID_REQUEST: `).
pub fn normalize(mut args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut cli = Cli::command();
    cli.build();
    let Some(first) = args.get(1).and_then(|a| a.to_str()).map(str::to_string) else {
        return Ok(args);
    };
    let (name, from_script) = script_name(&first);
    if cli.find_subcommand(&name).is_some() {
        if from_script {
            args[1] = OsString::from(&name);
        }
    } else if let Some((_, hint)) = NO_SUBCOMMAND.iter().find(|(n, _)| *n == name) {
        return Err(hint.to_string());
    } else {
        return Ok(args);
    }
    let sub = cli.find_subcommand(&name).expect("found above");
    let longs: Vec<String> = sub
        .get_arguments()
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let has = |l: &str| longs.iter().any(|x| x == l);
    for i in 2..args.len() {
        let Some(arg) = args[i].to_str().map(str::to_string) else {
            continue;
        };
        if arg == "--" {
            break;
        }
        // joptsimple's `-long-option`.
        if let Some(rest) = arg.strip_prefix('-')
            && !rest.starts_with('-')
            && rest.len() > 1
            && rest.starts_with(|c: char| c.is_ascii_alphabetic())
            && has(rest.split_once('=').map_or(rest, |(k, _)| k))
        {
            args[i] = OsString::from(format!("-{arg}"));
        }
        let flag = args[i].to_str().unwrap_or_default();
        let (flag, inline_value) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag, None),
        };
        // With one dash too: Kafka's tools took `-zookeeper`.
        let flag = match flag.strip_prefix("--").or_else(|| flag.strip_prefix('-')) {
            Some(f) => f,
            None => continue,
        };
        if flag == "zookeeper" && !has("zookeeper") {
            let value = inline_value
                .or_else(|| args.get(i + 1).and_then(|v| v.to_str()).map(str::to_string));
            return Err(zookeeper_hint(
                &name,
                &args,
                i,
                value.as_deref(),
                has("bootstrap-server"),
            ));
        }
        if flag == "broker-list" && !has("broker-list") {
            return Err(if has("bootstrap-server") {
                format!(
                    "sluice {name} takes --bootstrap-server HOST:PORT (kafka-{name}.sh does not take \
                     --broker-list either; it is the console producer's and consumer-perf-test's \
                     older name for --bootstrap-server)"
                )
            } else {
                format!("sluice {name} has no --broker-list")
            });
        }
    }
    Ok(args)
}

/// `bin/kafka-topics.sh` -> (`topics`, true); `topics` -> (`topics`, false).
fn script_name(arg: &str) -> (String, bool) {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    let mut name = base;
    let mut from_script = false;
    if let Some(n) = name.strip_suffix(".sh") {
        name = n;
        from_script = true;
    }
    if let Some(n) = name.strip_prefix("kafka-") {
        name = n;
        from_script = true;
    }
    if from_script {
        (name.to_string(), true)
    } else {
        (arg.to_string(), false)
    }
}

/// `--zookeeper` fails with the same command line using `--bootstrap-server`.
fn zookeeper_hint(
    tool: &str,
    args: &[OsString],
    at: usize,
    zk: Option<&str>,
    takes_bootstrap: bool,
) -> String {
    if !takes_bootstrap {
        return format!("--zookeeper: Sluice has no ZooKeeper, and sluice {tool} does not need it");
    }
    // The broker usually runs on the ZooKeeper host; 9092 is Kafka's port.
    let host = zk
        .and_then(|z| z.split(',').next())
        .map(|z| z.split('/').next().unwrap_or(z))
        .map(|z| z.rsplit_once(':').map_or(z, |(h, _)| h))
        .filter(|h| !h.is_empty() && !h.starts_with('-'))
        .unwrap_or("localhost");
    let inline = args[at].to_str().is_some_and(|a| a.contains('='));
    let skip_value = !inline && zk.is_some();
    let mut line = vec!["sluice".to_string(), tool.to_string()];
    for (i, a) in args.iter().enumerate().skip(2) {
        if i == at {
            line.push("--bootstrap-server".into());
            line.push(format!("{host}:9092"));
        } else if !(skip_value && i == at + 1) {
            line.push(shell_quote(&a.to_string_lossy()));
        }
    }
    format!(
        "--zookeeper: Sluice has no ZooKeeper; use --bootstrap-server <broker> (a broker's \
         HOST:PORT, 9092 by default) instead, for example:\n  {}",
        line.join(" ")
    )
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@%+[]".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> Result<String, String> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        normalize(args).map(|a| {
            a.iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn script_names_become_subcommands() {
        assert_eq!(
            norm("sluice bin/kafka-topics.sh --list --bootstrap-server h:1").unwrap(),
            "sluice topics --list --bootstrap-server h:1"
        );
        assert_eq!(
            norm("sluice kafka-console-consumer --topic t").unwrap(),
            "sluice console-consumer --topic t"
        );
        assert_eq!(
            norm("sluice topics --list").unwrap(),
            "sluice topics --list"
        );
        // Unknown names are left to clap's error.
        assert_eq!(norm("sluice nonsense --x").unwrap(), "sluice nonsense --x");
        let e =
            norm("sluice bin/kafka-server-start.sh -daemon config/server.properties").unwrap_err();
        assert!(e.contains("sluice standalone"), "{e}");
        assert!(norm("sluice server-start x").is_err());
        assert!(
            norm("sluice zookeeper-server-start.sh x")
                .unwrap_err()
                .contains("no ZooKeeper")
        );
    }

    #[test]
    fn single_dash_long_options_are_kafkas() {
        assert_eq!(
            norm("sluice producer-perf-test --topic t -record-size 1024 --throughput -1").unwrap(),
            "sluice producer-perf-test --topic t --record-size 1024 --throughput -1"
        );
        assert_eq!(
            norm("sluice topics -create -topic=a -partitions 3").unwrap(),
            "sluice topics --create --topic=a --partitions 3"
        );
        // Not an option of this subcommand, a number, or after `--`: untouched.
        assert_eq!(
            norm("sluice topics -nope --x -1 -- -topic").unwrap(),
            "sluice topics -nope --x -1 -- -topic"
        );
    }

    #[test]
    fn zookeeper_names_the_bootstrap_server_command() {
        let e = norm(
            "sluice topics --create --zookeeper zk1:2181/kafka --replication-factor 1 --topic t1",
        )
        .unwrap_err();
        assert!(
            e.contains("Sluice has no ZooKeeper; use --bootstrap-server <broker>"),
            "{e}"
        );
        assert!(
            e.ends_with(
                "sluice topics --create --bootstrap-server zk1:9092 --replication-factor 1 --topic t1"
            ),
            "{e}"
        );
        let e = norm("sluice consumer-groups --zookeeper=localhost:2181 --list").unwrap_err();
        assert!(
            e.ends_with("sluice consumer-groups --bootstrap-server localhost:9092 --list"),
            "{e}"
        );
        assert!(norm("sluice configs -zookeeper localhost:2181 --describe").is_err());
        assert!(norm("sluice console-consumer --zookeeper localhost:2181").is_err());
    }

    #[test]
    fn broker_list_elsewhere_names_bootstrap_server() {
        let e = norm("sluice topics --broker-list h:1 --list").unwrap_err();
        assert!(e.contains("--bootstrap-server"), "{e}");
        // Where Kafka takes it, clap does (an alias).
        assert!(norm("sluice console-producer --broker-list h:1 --topic t").is_ok());
        assert!(norm("sluice consumer-perf-test --broker-list h:1 --topic t").is_ok());
    }

    #[test]
    fn quotes_what_the_shell_would_split() {
        assert_eq!(shell_quote("a:b,c"), "a:b,c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
