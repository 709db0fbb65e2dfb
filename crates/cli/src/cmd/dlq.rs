//! `sluice dlq`: what a dead-letter topic holds (each record with where it
//! came from, how often it failed and why) and re-publishing its records
//! (`--redrive`) to the topic they failed in or to `--to`.

use std::io::Write;
use std::ops::ControlFlow;

use sluice_client::dead_letter::{self, DEFAULT_GROUP, DeadLetter};

use super::common::{Bootstrap, client_config, format_time_ms, progress_bar, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// The dead-letter topic (for example orders.dlq).
    #[arg(long)]
    pub topic: String,
    /// Print every record with its failure headers.
    #[arg(long)]
    pub list: bool,
    /// Re-publish the records not yet redriven (at least once; a redrive
    /// that died part-way, run again, does not publish twice).
    #[arg(long)]
    pub redrive: bool,
    /// With --redrive: publish to this topic instead of each record's own.
    #[arg(long)]
    pub to: Option<String>,
    /// The consumer group whose offsets remember what was redriven.
    #[arg(long, default_value = DEFAULT_GROUP)]
    pub group: String,
    /// With --list: print values too.
    #[arg(long = "print-value")]
    pub print_value: bool,
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
    match (a.list, a.redrive) {
        (true, false) => {
            if a.to.is_some() {
                return Err(usage("--to goes with --redrive"));
            }
            list(config, &a).await
        }
        (false, true) => redrive(config, &a).await,
        _ => Err(usage("give one of --list or --redrive")),
    }
}

async fn list(config: sluice_client::ClientConfig, a: &Args) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut broken = None;
    let n = dead_letter::list(config, &a.topic, &a.group, |d| {
        if broken.is_none()
            && let Err(e) = writeln!(out, "{}", line(&d, a.print_value))
        {
            broken = Some(e);
        }
    })
    .await?;
    match broken {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => return Err(e.into()),
        None => {}
    }
    out.flush()?;
    drop(out);
    eprintln!("{n} dead letters in {}", a.topic);
    Ok(())
}

/// One dead letter on one line: where it is, where it came from, the
/// failures, and (asked for) its key and value.
fn line(d: &DeadLetter, print_value: bool) -> String {
    let r = &d.record;
    let mut s = format!(
        "{}-{}@{}\tfrom {}-{}@{}\tattempts={}\tfailed={}\t{}\terror={:?}",
        r.topic,
        r.partition,
        r.offset,
        d.origin.topic,
        d.origin.partition,
        d.origin.offset,
        d.attempts,
        d.failed_ms.map_or_else(|| "-".to_string(), format_time_ms),
        if d.redriven { "redriven" } else { "pending" },
        d.error.as_deref().unwrap_or(""),
    );
    if print_value {
        let text = |b: &Option<bytes::Bytes>| {
            b.as_deref()
                .map_or_else(|| "null".into(), String::from_utf8_lossy)
                .into_owned()
        };
        s.push_str(&format!("\tkey={}\tvalue={}", text(&r.key), text(&r.value)));
    }
    s
}

async fn redrive(config: sluice_client::ClientConfig, a: &Args) -> anyhow::Result<()> {
    let mut pb = None;
    // Ctrl-C stops between batches; what was sent is published and the next
    // redrive skips it.
    let shutdown = sluice_server::runtime::shutdown_token();
    let summary = dead_letter::redrive(config, &a.topic, a.to.as_deref(), &a.group, |p| {
        let bar = pb.get_or_insert_with(|| progress_bar(p.total, "records"));
        if let Some(bar) = bar {
            bar.set_position(p.done);
        }
        if shutdown.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await?;
    if let Some(Some(bar)) = pb {
        bar.finish_and_clear();
    }
    if !summary.finished {
        println!(
            "Interrupted after publishing {} records; run --redrive again to go on (it will not publish them twice).",
            summary.published
        );
        return Ok(());
    }
    let targets: Vec<&str> = summary.targets.iter().map(String::as_str).collect();
    if summary.published == 0 && summary.already_published == 0 {
        println!("Nothing to redrive in {}.", a.topic);
    } else {
        println!(
            "Redrove {} records from {} to {}{}.",
            summary.published,
            a.topic,
            if targets.is_empty() {
                "-".to_string()
            } else {
                targets.join(", ")
            },
            if summary.already_published > 0 {
                format!(
                    " ({} more were published by an earlier redrive that did not finish)",
                    summary.already_published
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
