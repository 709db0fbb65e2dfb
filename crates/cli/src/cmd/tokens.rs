//! `sluice tokens`: API tokens for gRPC clients (`sluice.token` in a
//! client's properties). `--create` prints the token once; the cluster
//! keeps only its hash. `--revoke` ends every request made with it.

use std::time::Duration;

use clap::ArgGroup;
use sluice_client::Admin;

use super::common::{Bootstrap, client_config, usage};

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["create", "revoke", "list"])))]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// Create a token acting as --principal.
    #[arg(long)]
    pub create: bool,
    /// Revoke the token with this id.
    #[arg(long, value_name = "ID")]
    pub revoke: Option<String>,
    /// List the tokens (ids, principals, expiry; never the secrets).
    #[arg(long)]
    pub list: bool,
    /// `User:<name>` the token acts as.
    #[arg(long)]
    pub principal: Option<String>,
    /// How long it is valid: `30d`, `12h`, `45m`, `90s` (default: no expiry).
    #[arg(long = "expires-in", value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// What the token is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Client properties `key=value` (repeatable).
    #[arg(long = "command-property", value_name = "KEY=VALUE")]
    pub command_property: Vec<String>,
}

/// `30d`, `12h`, `45m`, `90s` or plain milliseconds.
fn duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| {
        usage(format!(
            "--expires-in {s}: expected a number and d, h, m, s or ms"
        ))
    })?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        "" | "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(usage(format!("--expires-in {s}: unit d, h, m, s or ms"))),
    };
    Ok(Duration::from_secs(secs))
}

fn when(ms: i64) -> String {
    if ms < 0 {
        return "never".into();
    }
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.command_property,
        a.bootstrap.command_config.as_deref(),
    )?;
    let admin = Admin::new(config)?;
    if a.create {
        let principal = a
            .principal
            .as_deref()
            .ok_or_else(|| usage("--create needs --principal User:<name>"))?;
        let expires = a.expires_in.as_deref().map(duration).transpose()?;
        let t = admin
            .create_token(principal, expires, &a.description)
            .await?;
        println!(
            "Created token {} for {principal} (expires {}).",
            t.id,
            when(t.expires_ms.unwrap_or(-1))
        );
        println!(
            "It is shown only now; a client sends it with sluice.token={}",
            t.token
        );
        println!("{}", t.token);
        return Ok(());
    }
    if let Some(id) = &a.revoke {
        admin.revoke_token(id).await?;
        println!("Revoked token {id}.");
        return Ok(());
    }
    println!(
        "{:<18} {:<24} {:<26} {:<26} DESCRIPTION",
        "ID", "PRINCIPAL", "CREATED", "EXPIRES"
    );
    for t in admin.describe_tokens().await? {
        println!(
            "{:<18} {:<24} {:<26} {:<26} {}",
            t.token_id,
            t.principal,
            when(t.created_ms),
            when(t.expires_ms),
            t.description
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("1500").unwrap(), Duration::from_millis(1500));
        assert!(duration("3w").is_err());
        assert!(duration("d").is_err());
    }
}
