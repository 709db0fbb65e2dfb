//! `sluice producer-perf-test`: kafka-producer-perf-test.sh, with Kafka's
//! output lines. Latency per record is ack time minus send time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use sluice_client::{ClientError, Producer, ProducerRecord, RecordMetadata};

use super::common::{
    Role, client_config, hint_unknown_topic, progress_bar, property_keys, usage, warn_ignored,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// How many records to send.
    #[arg(long = "num-records")]
    pub num_records: u64,
    /// Bytes per record value.
    #[arg(long = "record-size")]
    pub record_size: usize,
    /// Cap on records/sec; -1 (or any value <= 0) for no cap.
    #[arg(long, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Producer properties `key=value`, for example
    /// `bootstrap.servers=localhost:9092 acks=1 batch.size=1048576`.
    #[arg(long = "producer-props", num_args = 1.., value_name = "KEY=VALUE")]
    pub producer_props: Vec<String>,
    /// Producer properties file.
    #[arg(long = "producer.config", value_name = "FILE")]
    pub producer_config: Option<PathBuf>,
    /// Bootstrap servers (alternative to bootstrap.servers in --producer-props).
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT")]
    pub bootstrap_server: Option<String>,
    /// Milliseconds between progress lines.
    #[arg(long = "reporting-interval", default_value_t = 5000)]
    pub reporting_interval: u64,
    /// Records to treat as warmup (KIP-1052): they count in the overall line,
    /// and a second line summarises only the records sent after them.
    #[arg(long = "warmup-records", default_value_t = 0)]
    pub warmup_records: u64,
}

/// Totals and a latency histogram over a run (or its steady-state part).
struct Summary {
    start: Instant,
    count: u64,
    bytes: u64,
    total_latency_us: u64,
    max_latency_us: u64,
    hist: Histogram<u64>,
}

impl Summary {
    fn new(start: Instant) -> Self {
        Summary {
            start,
            count: 0,
            bytes: 0,
            total_latency_us: 0,
            max_latency_us: 0,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }

    fn record(&mut self, us: u64, bytes: usize) {
        self.count += 1;
        self.bytes += bytes as u64;
        self.total_latency_us += us;
        self.max_latency_us = self.max_latency_us.max(us);
        self.hist.saturating_record(us);
    }

    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        let pct = |q: f64| self.hist.value_at_quantile(q) / 1000;
        format!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.count,
            self.count as f64 / elapsed,
            self.bytes as f64 / MB / elapsed,
            self.total_latency_us as f64 / self.count.max(1) as f64 / 1000.0,
            self.max_latency_us as f64 / 1000.0,
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pct(0.999),
        )
    }
}

/// Kafka's ProducerPerformance.Stats, with KIP-1052's steady-state summary.
struct Stats {
    all: Summary,
    /// Records sent after the first `--warmup-records` (None without warmup).
    steady: Option<Summary>,
    window_start: Instant,
    window_count: u64,
    window_bytes: u64,
    window_total_us: u64,
    window_max_us: u64,
    interval: Duration,
    errors: u64,
    first_error: Option<ClientError>,
    pb: Option<ProgressBar>,
}

const MB: f64 = 1024.0 * 1024.0;

impl Stats {
    fn new(interval: Duration, pb: Option<ProgressBar>) -> Self {
        let now = Instant::now();
        Stats {
            all: Summary::new(now),
            steady: None,
            window_start: now,
            window_count: 0,
            window_bytes: 0,
            window_total_us: 0,
            window_max_us: 0,
            interval,
            errors: 0,
            first_error: None,
            pb,
        }
    }

    /// Records one acknowledged record; `steady` when it was sent after warmup.
    fn record(&mut self, latency: Duration, bytes: usize, steady: bool) {
        let us = latency.as_micros().max(1) as u64;
        self.all.record(us, bytes);
        if steady && let Some(s) = &mut self.steady {
            s.record(us, bytes);
        }
        self.window_count += 1;
        self.window_bytes += bytes as u64;
        self.window_total_us += us;
        self.window_max_us = self.window_max_us.max(us);
        if let Some(pb) = &self.pb {
            pb.inc(1);
        }
        if self.window_start.elapsed() >= self.interval {
            self.print_window();
        }
    }

    fn print_window(&mut self) {
        let elapsed = self.window_start.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.window_count,
            self.window_count as f64 / elapsed,
            self.window_bytes as f64 / MB / elapsed,
            self.window_total_us as f64 / self.window_count.max(1) as f64 / 1000.0,
            self.window_max_us as f64 / 1000.0,
        );
        match &self.pb {
            Some(pb) => pb.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
        self.window_start = Instant::now();
        self.window_count = 0;
        self.window_bytes = 0;
        self.window_total_us = 0;
        self.window_max_us = 0;
    }

    fn final_line(&self) -> String {
        self.all.line()
    }
}

/// Random uppercase letters, like Kafka's perf test payload.
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.producer_props.is_empty() && a.producer_config.is_none() && a.bootstrap_server.is_none() {
        return Err(usage(
            "pass --producer-props bootstrap.servers=HOST:PORT (or --producer.config FILE)",
        ));
    }
    let config = client_config(
        a.bootstrap_server.as_deref(),
        &a.producer_props,
        a.producer_config.as_deref(),
    )?;
    warn_ignored(
        Role::Producer,
        &property_keys(&a.producer_props, a.producer_config.as_deref()),
    );
    let bootstrap = config.bootstrap_servers.join(",");
    perf(&a, config)
        .await
        .map_err(|e| hint_unknown_topic(e, &bootstrap, &a.topic))
}

async fn perf(a: &Args, config: sluice_client::ClientConfig) -> anyhow::Result<()> {
    let producer = Producer::new(config)?;
    let value = payload(a.record_size);
    let pb = progress_bar(a.num_records, "records");
    let stats = Arc::new(Mutex::new(Stats::new(
        Duration::from_millis(a.reporting_interval.max(1)),
        pb.clone(),
    )));
    // Results arrive through callbacks on the producer's sender task: no future
    // or task per record, so the benchmark measures Sluice, not the harness.
    let on_result = {
        let stats = stats.clone();
        let size = a.record_size;
        move |sent_at: Instant, steady: bool, result: Result<RecordMetadata, ClientError>| {
            let mut s = stats.lock().expect("not poisoned");
            match result {
                Ok(_) => s.record(sent_at.elapsed(), size, steady),
                Err(e) => {
                    s.errors += 1;
                    if s.first_error.is_none() {
                        eprintln!("Error: {e}");
                        s.first_error = Some(e);
                    }
                }
            }
        }
    };
    let start = Instant::now();
    stats.lock().expect("not poisoned").all.start = start;
    let mut send_error = None;
    for i in 0..a.num_records {
        let rec = ProducerRecord {
            topic: a.topic.clone(),
            value: Some(value.clone()),
            ..Default::default()
        };
        let sent_at = Instant::now();
        let steady = a.warmup_records > 0 && i >= a.warmup_records;
        if a.warmup_records > 0 && i == a.warmup_records {
            stats.lock().expect("not poisoned").steady = Some(Summary::new(sent_at));
        }
        let on_result = on_result.clone();
        let sent = producer
            .send_with_callback(rec, move |r| on_result(sent_at, steady, r))
            .await;
        match sent {
            Ok(()) => {}
            Err(e) => {
                send_error = Some(e);
                break;
            }
        }
        if a.throughput > 0.0 {
            let due = Duration::from_secs_f64((i + 1) as f64 / a.throughput);
            let elapsed = start.elapsed();
            if due > elapsed + Duration::from_millis(1) {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    producer.close().await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    if let Some(e) = send_error {
        return Err(e.into());
    }
    let s = stats.lock().expect("not poisoned");
    println!("{}", s.final_line());
    if let Some(steady) = &s.steady {
        println!("steady state: {}", steady.line());
    }
    if let Some(e) = &s.first_error {
        return Err(anyhow::anyhow!(
            "{e} ({} record(s) were not acknowledged)",
            s.errors
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_line_has_kafkas_shape() {
        let mut s = Stats::new(Duration::from_secs(3600), None);
        for ms in [1u64, 2, 3, 4, 100] {
            s.record(Duration::from_millis(ms), 1024, false);
        }
        let line = s.final_line();
        assert!(line.starts_with("5 records sent, "), "{line}");
        assert!(
            line.contains(" ms avg latency, 100.00 ms max latency, 3 ms 50th,"),
            "{line}"
        );
        assert!(line.ends_with("100 ms 99.9th."), "{line}");
    }

    #[test]
    fn warmup_records_are_left_out_of_the_steady_state_line() {
        let mut s = Stats::new(Duration::from_secs(3600), None);
        s.record(Duration::from_millis(500), 1024, false);
        s.steady = Some(Summary::new(Instant::now()));
        for _ in 0..4 {
            s.record(Duration::from_millis(2), 1024, true);
        }
        assert!(s.final_line().starts_with("5 records sent, "));
        assert!(s.final_line().contains("500.00 ms max latency"));
        let steady = s.steady.as_ref().unwrap().line();
        assert!(steady.starts_with("4 records sent, "), "{steady}");
        assert!(steady.contains("2.00 ms max latency"), "{steady}");
    }

    #[test]
    fn payload_is_uppercase_letters() {
        let p = payload(100);
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(u8::is_ascii_uppercase));
    }
}
