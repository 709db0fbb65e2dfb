//! `sluice`: the command-line tool, Kafka's scripts as subcommands.
//!
//! Every failure prints `Error: CODE_NAME: message` to stderr and exits with
//! code 1. Logs go to stderr, filtered by `RUST_LOG` (default `warn`; `info`
//! for `standalone`).
//!
//! # Layout
//! - `cmd/mod.rs`: the `Command` enum and its dispatch (add a subcommand here).
//! - `cmd/common.rs`: shared flags (`--bootstrap-server`, `key=value`
//!   properties, `.properties` files, which properties a tool ignores),
//!   delivery tracking, progress bars.
//! - `cmd/compat.rs`: Kafka command lines before clap (`kafka-topics.sh` as a
//!   subcommand name, `-long-option`, `--zookeeper` and the server scripts
//!   refused with what to type instead).
//! - `cmd/topics.rs`: `sluice topics` (kafka-topics.sh).
//! - `cmd/console_producer.rs`, `cmd/console_consumer.rs`: the console tools.
//! - `cmd/producer_perf_test.rs`, `cmd/consumer_perf_test.rs`: the benchmarks.
//! - `cmd/cluster.rs`: `sluice cluster --describe`.
//! - `cmd/standalone.rs`: `sluice standalone`, a single-process node.

mod cmd;

/// mimalloc instead of glibc malloc: the data path allocates and frees
/// multi-MiB buffers per request, which glibc keeps returning to the OS and
/// faulting back in (measured: ~10% of producer CPU in page faults).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    cmd::main(std::env::args_os().collect()).await
}
