//! The subcommands. To add one: write `cmd/<name>.rs` with an `Args` struct
//! (clap `Args` derive) and `pub async fn run(args: Args) -> anyhow::Result<()>`,
//! then add one variant to [`Command`] and one arm to [`run`].

pub mod acls;
pub mod cluster;
pub mod common;
pub mod compat;
pub mod configs;
pub mod console;
pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod consumer_perf_test;
pub mod delayed;
pub mod delete_records;
pub mod dlq;
pub mod health;
pub mod producer_perf_test;
pub mod standalone;
pub mod tokens;
pub mod topics;
pub mod users;

use clap::{Parser, Subcommand};

/// Sluice: a Kafka-class distributed commit log. The subcommands mirror
/// Kafka's scripts and take Kafka's flags.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics (kafka-topics.sh).
    Topics(topics::Args),
    /// Write stdin lines as records (kafka-console-producer.sh).
    ConsoleProducer(console_producer::Args),
    /// Print records to stdout (kafka-console-consumer.sh).
    ConsoleConsumer(console_consumer::Args),
    /// Producer throughput and latency benchmark (kafka-producer-perf-test.sh).
    ProducerPerfTest(producer_perf_test::Args),
    /// Consumer throughput benchmark (kafka-consumer-perf-test.sh).
    ConsumerPerfTest(consumer_perf_test::Args),
    /// Describe the cluster: brokers, cluster id, active controller.
    Cluster(cluster::Args),
    /// Describe and change topic configs (kafka-configs.sh).
    Configs(configs::Args),
    /// Delete records before an offset (kafka-delete-records.sh).
    DeleteRecords(delete_records::Args),
    /// Pending delayed records and when they fall due; cancel one by id.
    Delayed(delayed::Args),
    /// The web console for a cluster (`sluice standalone` serves one too).
    Console(console::Args),
    /// List a dead-letter topic's records and redrive them.
    Dlq(dlq::Args),
    /// Run controller, broker and coordinator in one process (no etcd needed).
    Standalone(standalone::Args),
    /// List, describe (with lag), reset offsets of and delete consumer
    /// groups (kafka-consumer-groups.sh).
    ConsumerGroups(consumer_groups::Args),
    /// Ask a server whether it serves (grpc.health.v1); exit 0 when SERVING.
    Health(health::Args),
    /// Add, remove and list ACLs (kafka-acls.sh).
    Acls(acls::Args),
    /// SCRAM users for SASL on the Kafka listener (kafka-configs.sh
    /// --entity-type users).
    Users(users::Args),
    /// API tokens for gRPC clients (created, listed, revoked).
    Tokens(tokens::Args),
}

/// Runs one subcommand.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Topics(a) => topics::run(a).await,
        Command::Acls(a) => acls::run(a).await,
        Command::Users(a) => users::run(a).await,
        Command::Tokens(a) => tokens::run(a).await,
        Command::ConsoleProducer(a) => console_producer::run(a).await,
        Command::ConsoleConsumer(a) => console_consumer::run(a).await,
        Command::ProducerPerfTest(a) => producer_perf_test::run(a).await,
        Command::ConsumerPerfTest(a) => consumer_perf_test::run(a).await,
        Command::Cluster(a) => cluster::run(a).await,
        Command::Configs(a) => configs::run(a).await,
        Command::DeleteRecords(a) => delete_records::run(a).await,
        Command::Delayed(a) => delayed::run(a).await,
        Command::Dlq(a) => dlq::run(a).await,
        Command::Console(a) => console::run(a).await,
        Command::Standalone(a) => standalone::run(a).await,
        Command::ConsumerGroups(a) => consumer_groups::run(a).await,
        Command::Health(a) => health::run(a).await,
    }
}

/// The whole command line: Kafka-style forms rewritten or refused with what
/// to type instead (`kafka-topics.sh`, `-record-size`, `--zookeeper`), logging
/// set up, the command run, its error printed.
pub async fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    let args = match compat::normalize(args) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("Error: {}", common::usage(msg));
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    // A server logs its lifecycle; client commands stay quiet unless asked.
    let default_level = match cli.command {
        Command::Standalone(_) | Command::Console(_) => "info",
        _ => "warn",
    };
    sluice_server::runtime::init_tracing_at(default_level);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
