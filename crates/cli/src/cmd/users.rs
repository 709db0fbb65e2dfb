//! `sluice users`: SCRAM users for SASL on the Kafka listener (what
//! `kafka-configs.sh --entity-type users --add-config SCRAM-SHA-256=[...]`
//! does; `sluice configs --entity-type users` takes that form too). The
//! password is salted here and only the salted form is sent.

use std::io::Read;

use clap::ArgGroup;
use sluice_auth::scram::Mechanism;
use sluice_client::Admin;
use sluice_client::security_admin::DEFAULT_ITERATIONS;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["create", "delete", "list"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Create the user, or set a new password (every mechanism given).
    #[arg(long, value_name = "USER")]
    pub create: Option<String>,
    /// Remove the user's credentials (the mechanisms given, or all).
    #[arg(long, value_name = "USER")]
    pub delete: Option<String>,
    /// List the users and their mechanisms.
    #[arg(long)]
    pub list: bool,
    /// The password (or --password-stdin).
    #[arg(long)]
    pub password: Option<String>,
    /// Read the password from stdin (first line), keeping it out of the
    /// process list and shell history.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// SCRAM-SHA-256 and/or SCRAM-SHA-512 (repeatable; default both).
    #[arg(long = "mechanism", value_name = "MECHANISM")]
    pub mechanism: Vec<String>,
    /// PBKDF2 iterations (4096..=16384).
    #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
    pub iterations: u32,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

fn mechanisms(names: &[String]) -> anyhow::Result<Vec<Mechanism>> {
    if names.is_empty() {
        return Ok(Mechanism::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Mechanism::parse(n)
                .ok_or_else(|| usage(format!("--mechanism {n}: SCRAM-SHA-256 or SCRAM-SHA-512")))
        })
        .collect()
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    if let Some(user) = &a.create {
        let password = match (&a.password, a.password_stdin) {
            (Some(p), false) => p.clone(),
            (None, true) => {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s.lines().next().unwrap_or("").to_string()
            }
            _ => return Err(usage("--create needs --password or --password-stdin")),
        };
        for m in mechanisms(&a.mechanism)? {
            set_password(&admin, user, m, &password, a.iterations).await?;
        }
        return Ok(());
    }
    if let Some(user) = &a.delete {
        let explicit = !a.mechanism.is_empty();
        let mut removed = 0;
        for m in mechanisms(&a.mechanism)? {
            match admin.delete_scram(user, m).await {
                Ok(()) => {
                    removed += 1;
                    println!("Deleted {} credential of user {user}.", m.name());
                }
                // Deleting "all" skips the mechanisms the user never had.
                Err(e) if !explicit && e.code() == sluice_client::ErrorCode::ResourceNotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if removed == 0 {
            return Err(usage(format!("user {user} has no SCRAM credential")));
        }
        return Ok(());
    }
    for u in admin.describe_users(&[]).await? {
        let creds: Vec<String> = u
            .credentials
            .iter()
            .map(|(m, i)| format!("{m}(iterations={i})"))
            .collect();
        println!("{} {}", u.user, creds.join(", "));
    }
    Ok(())
}

/// Sets one credential and says so (also used by `sluice configs`).
pub async fn set_password(
    admin: &Admin,
    user: &str,
    mechanism: Mechanism,
    password: &str,
    iterations: u32,
) -> anyhow::Result<()> {
    admin
        .set_scram_password(user, mechanism, password, iterations)
        .await?;
    println!("Set {} credential for user {user}.", mechanism.name());
    Ok(())
}
