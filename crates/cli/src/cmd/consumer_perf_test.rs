//! `sluice consumer-perf-test`: kafka-consumer-perf-test.sh, with Kafka's
//! output. Without `--group` one consumer reads every partition; with
//! `--group G` (and `--members N`) the records are shared by N group members
//! in this process, and `rebalance.time.ms` is the longest time a member
//! spent joining (from its first poll or revocation to its assignment).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;

use super::common::{
    BootstrapOrBrokerList, Role, client_config, consumer_group, format_time_ms, now_ms,
    progress_bar, property_keys, warn_ignored,
};
use sluice_client::{
    ClientConfig, Committer, Consumer, GroupConsumer, RebalanceListener, TopicPartition,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: BootstrapOrBrokerList,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// How many records to read.
    #[arg(long)]
    pub messages: u64,
    /// Stop when no record arrived for this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout: u64,
    /// Print a stats line every --reporting-interval.
    #[arg(long = "show-detailed-stats")]
    pub show_detailed_stats: bool,
    /// Milliseconds between detailed stats lines.
    #[arg(long = "reporting-interval", default_value_t = 5000)]
    pub reporting_interval: u64,
    /// Start at the end of the partitions instead of the beginning.
    #[arg(long = "from-latest")]
    pub from_latest: bool,
    /// max.partition.fetch.bytes.
    #[arg(long = "fetch-size")]
    pub fetch_size: Option<i32>,
    /// Leave out the header line.
    #[arg(long = "hide-header")]
    pub hide_header: bool,
    /// Consume as members of this consumer group (offsets are committed);
    /// group.id in --consumer-property or --consumer.config does the same.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: how many members to run in this process.
    #[arg(long, default_value_t = 1)]
    pub members: usize,
    /// Consumer property `key=value` (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    pub consumer_property: Vec<String>,
    /// Consumer properties file.
    #[arg(long = "consumer.config", value_name = "FILE")]
    pub consumer_config: Option<PathBuf>,
}

const MB: f64 = 1024.0 * 1024.0;

pub const HEADER: &str = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";
const DETAIL_HEADER: &str = "time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";

/// Kafka's values line; fetch.* leave out the time spent rebalancing.
pub fn summary_line(
    start_ms: i64,
    end_ms: i64,
    bytes: u64,
    count: u64,
    rebalance_ms: i64,
) -> String {
    let secs = ((end_ms - start_ms) as f64 / 1000.0).max(1e-3);
    let mb = bytes as f64 / MB;
    let fetch_ms = (end_ms - start_ms - rebalance_ms).max(1);
    let fetch_secs = fetch_ms as f64 / 1000.0;
    format!(
        "{}, {}, {:.4}, {:.4}, {}, {:.4}, {}, {}, {:.4}, {:.4}",
        format_time_ms(start_ms),
        format_time_ms(end_ms),
        mb,
        mb / secs,
        count,
        count as f64 / secs,
        rebalance_ms,
        fetch_ms,
        mb / fetch_secs,
        count as f64 / fetch_secs,
    )
}

/// Time spent in rebalances, measured by the listener (Kafka's joinTime).
struct JoinTimer {
    started: Option<Instant>,
    total: Arc<AtomicU64>,
}

impl RebalanceListener for JoinTimer {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        _committer: &'a mut Committer,
        _partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        self.started = Some(Instant::now());
        Box::pin(async {})
    }

    fn on_partitions_assigned<'a>(
        &'a mut self,
        _partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        if let Some(t) = self.started.take() {
            self.total
                .fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        Box::pin(async {})
    }
}

/// `--group`: `members` group members share the topic until `messages`
/// records are read in total (or nothing arrives for `timeout`).
async fn run_group(a: &Args, config: ClientConfig, group: &str) -> anyhow::Result<()> {
    let mut config = config;
    config.set("group.id", group)?;
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let last = Arc::new(parking_lot::Mutex::new(Instant::now()));
    let pb = progress_bar(a.messages, "msgs");
    let start_ms = now_ms();
    let mut tasks = Vec::new();
    let mut join_totals = Vec::new();
    for i in 0..a.members.max(1) {
        let mut member = GroupConsumer::new(
            config
                .clone()
                .with("client.id", &format!("perf-consumer-{i}"))?,
        )?;
        let total = Arc::new(AtomicU64::new(0));
        join_totals.push(total.clone());
        member.subscribe_with(
            &[a.topic.as_str()],
            Box::new(JoinTimer {
                // The first join counts from the start.
                started: Some(Instant::now()),
                total,
            }),
        );
        let (count, bytes, last, pb) = (count.clone(), bytes.clone(), last.clone(), pb.clone());
        let (messages, timeout) = (a.messages, Duration::from_millis(a.timeout));
        tasks.push(tokio::spawn(async move {
            while count.load(Ordering::Relaxed) < messages && last.lock().elapsed() < timeout {
                let records = member.poll(Duration::from_millis(200)).await?;
                if records.is_empty() {
                    continue;
                }
                *last.lock() = Instant::now();
                let b: u64 = records
                    .iter()
                    .map(|r| {
                        (r.key.as_ref().map_or(0, |k| k.len())
                            + r.value.as_ref().map_or(0, |v| v.len()))
                            as u64
                    })
                    .sum();
                count.fetch_add(records.len() as u64, Ordering::Relaxed);
                bytes.fetch_add(b, Ordering::Relaxed);
                if let Some(pb) = &pb {
                    pb.inc(records.len() as u64);
                }
            }
            member.close().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let end_ms = now_ms();
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let count = count.load(Ordering::Relaxed);
    if count < a.messages {
        eprintln!(
            "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded. You can use the --timeout option to increase the timeout.",
            a.timeout
        );
    }
    let rebalance_ms = join_totals
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0) as i64;
    if !a.hide_header {
        println!("{HEADER}");
    }
    println!(
        "{}",
        summary_line(
            start_ms,
            end_ms,
            bytes.load(Ordering::Relaxed),
            count,
            rebalance_ms
        )
    );
    Ok(())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let group = consumer_group(
        a.group.as_deref(),
        &a.consumer_property,
        a.consumer_config.as_deref(),
    )?;
    let mut config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.consumer_property,
        a.consumer_config.as_deref(),
    )?;
    let keys = property_keys(&a.consumer_property, a.consumer_config.as_deref());
    warn_ignored(
        Role::Consumer {
            group: group.is_some(),
        },
        &keys,
    );
    if keys.iter().any(|(k, _)| k == "auto.offset.reset") {
        eprintln!(
            "Warning: \"auto.offset.reset\" is ignored: the test starts at the beginning, or at the end with --from-latest."
        );
    }
    config.set(
        "auto.offset.reset",
        if a.from_latest { "latest" } else { "earliest" },
    )?;
    if let Some(f) = a.fetch_size {
        config.max_partition_fetch_bytes = f;
    }
    if let Some(g) = group {
        return run_group(&a, config, &g).await;
    }
    let mut consumer = Consumer::new(config)?;
    consumer.assign_all(&a.topic).await?;

    let timeout = Duration::from_millis(a.timeout);
    let interval = Duration::from_millis(a.reporting_interval.max(1));
    let pb = progress_bar(a.messages, "msgs");
    let mut poll_hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    if a.show_detailed_stats && !a.hide_header {
        println!("{DETAIL_HEADER}");
    }
    let start_ms = now_ms();
    let mut count: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_consumed = Instant::now();
    let (mut win_start_ms, mut win_count, mut win_bytes) = (start_ms, 0u64, 0u64);
    while count < a.messages {
        let left = timeout.saturating_sub(last_consumed.elapsed());
        if left.is_zero() {
            break;
        }
        let t0 = Instant::now();
        let records = consumer.poll(left.min(Duration::from_millis(1000))).await?;
        if records.is_empty() {
            continue;
        }
        poll_hist.saturating_record(t0.elapsed().as_micros().max(1) as u64);
        last_consumed = Instant::now();
        let n = records.len() as u64;
        let b: u64 = records
            .iter()
            .map(|r| {
                (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
                    as u64
            })
            .sum();
        count += n;
        bytes += b;
        win_count += n;
        win_bytes += b;
        if let Some(pb) = &pb {
            pb.inc(n);
        }
        if a.show_detailed_stats {
            let now = now_ms();
            if now - win_start_ms >= interval.as_millis() as i64 {
                let secs = ((now - win_start_ms) as f64 / 1000.0).max(1e-3);
                let mb = win_bytes as f64 / MB;
                let line = format!(
                    "{}, 0, {:.4}, {:.4}, {}, {:.4}, 0, {}, {:.4}, {:.4}",
                    format_time_ms(now),
                    bytes as f64 / MB,
                    mb / secs,
                    count,
                    win_count as f64 / secs,
                    now - win_start_ms,
                    mb / secs,
                    win_count as f64 / secs,
                );
                match &pb {
                    Some(pb) => pb.suspend(|| println!("{line}")),
                    None => println!("{line}"),
                }
                (win_start_ms, win_count, win_bytes) = (now, 0, 0);
            }
        }
    }
    let end_ms = now_ms();
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    if count < a.messages {
        eprintln!(
            "WARNING: Exiting before consuming the expected number of messages: timeout ({} ms) exceeded. You can use the --timeout option to increase the timeout.",
            a.timeout
        );
    }
    if !a.show_detailed_stats {
        if !a.hide_header {
            println!("{HEADER}");
        }
        println!("{}", summary_line(start_ms, end_ms, bytes, count, 0));
    }
    if !poll_hist.is_empty() {
        let ms = |q: f64| poll_hist.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "poll.latency.ms (non-empty polls: {}): p50 {:.2}, p95 {:.2}, p99 {:.2}, max {:.2}",
            poll_hist.len(),
            ms(0.5),
            ms(0.95),
            ms(0.99),
            poll_hist.max() as f64 / 1000.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_time_is_left_out_of_fetch_rates() {
        let line = summary_line(0, 2000, 2 * 1024 * 1024, 2048, 1000);
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields[3], "1.0000", "MB.sec over the whole run");
        assert_eq!(fields[6], "1000");
        assert_eq!(fields[7], "1000");
        assert_eq!(fields[8], "2.0000", "fetch.MB.sec over fetch time only");
    }

    #[test]
    fn summary_has_ten_fields() {
        let line = summary_line(0, 2000, 2 * 1024 * 1024, 2048, 0);
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields.len(), HEADER.split(", ").count());
        assert_eq!(fields[2], "2.0000");
        assert_eq!(fields[3], "1.0000");
        assert_eq!(fields[4], "2048");
        assert_eq!(fields[5], "1024.0000");
        assert_eq!(fields[7], "2000");
    }
}
