//! `sluice`: the command-line tool, Kafka's scripts as subcommands.
//!
//! Each subcommand lives in its own module under [`cmd`]; shared flag parsing
//! is in `cmd::common`. Every failure prints `Error: CODE_NAME: message` to
//! stderr and exits with code 1.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    // A server logs its lifecycle; client commands stay quiet unless asked.
    let default_level = match cli.command {
        cmd::Command::Standalone(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cmd::run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
