//! The chaos run: an idempotent acks=all producer writes a numbered stream to a
//! 6-partition, RF 3, `min.insync.replicas=2` topic while partition leaders and
//! the active controller are killed with SIGKILL and restarted. Afterwards every
//! partition is read from the beginning and compared with what was acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_client::{Admin, Consumer, NewTopic, PartitionDescription, Producer, ProducerRecord};

use crate::TestCluster;

/// What the checker found.
#[derive(Debug, Default, Clone)]
pub struct ChaosReport {
    pub acked: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
    pub failovers: usize,
    pub failover_ms: Vec<u128>,
    /// Records the producer gave up on (not counted as lost: never acknowledged).
    pub unacknowledged: usize,
}

impl ChaosReport {
    /// The one summary line both the test and `scripts/chaos.sh` print.
    pub fn summary(&self) -> String {
        format!(
            "chaos: acked={} lost={} duplicated={} reordered={} failovers={} max_failover_ms={}",
            self.acked,
            self.lost,
            self.duplicated,
            self.reordered,
            self.failovers,
            self.failover_ms.iter().max().copied().unwrap_or(0)
        )
    }

    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0
    }
}

/// One acknowledged record: its number, partition, and when it was sent and acked.
#[derive(Debug, Clone, Copy)]
struct Ack {
    n: u64,
    partition: i32,
    sent: Instant,
    acked: Instant,
}

const TOPIC: &str = "chaos";

async fn describe(c: &TestCluster) -> anyhow::Result<Vec<PartitionDescription>> {
    let admin = Admin::new(c.client_config())?;
    Ok(admin.describe_topics(&[TOPIC.to_string()]).await?[0]
        .partitions
        .clone())
}

async fn wait_for(
    c: &TestCluster,
    what: &str,
    pred: impl Fn(&[PartitionDescription]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(parts) = describe(c).await
            && pred(&parts)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}\n{}", c.logs_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The numbered stream an idempotent acks=all producer writes while a
/// scenario disrupts the cluster.
struct Stream {
    producer: Arc<Producer>,
    acks: Arc<parking_lot::Mutex<Vec<Ack>>>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// The last number sent.
    last: Arc<AtomicU64>,
    writer: tokio::task::JoinHandle<()>,
}

/// What a stopped stream leaves for the checker.
#[derive(Default)]
struct Written {
    acks: Vec<Ack>,
    failed: usize,
    last: u64,
}

impl Stream {
    /// Stops writing and waits for every record's outcome.
    async fn stop(self) -> anyhow::Result<Written> {
        self.stop.store(true, Ordering::Release);
        self.writer.await?;
        self.producer.flush().await;
        self.producer.close().await;
        Ok(Written {
            acks: self.acks.lock().clone(),
            failed: self.failed.load(Ordering::Relaxed),
            last: self.last.load(Ordering::Acquire),
        })
    }
}

/// Creates the topic, waits for full ISRs and starts writing.
async fn start_stream(c: &TestCluster) -> anyhow::Result<Stream> {
    let admin = Admin::new(c.client_config())?;
    let mut topic = NewTopic::new(TOPIC, 6, 3);
    topic
        .configs
        .insert("min.insync.replicas".into(), "2".into());
    admin.create_topic(topic).await?;
    wait_for(c, "full ISRs", |ps| ps.iter().all(|p| p.isr.len() == 3)).await?;
    start_writer(c, 0)
}

/// Starts writing numbers after `after` with a new producer (the cluster's
/// client config as it is now: plaintext or TLS).
fn start_writer(c: &TestCluster, after: u64) -> anyhow::Result<Stream> {
    let producer = Arc::new(Producer::new(
        c.client_config()
            .with("acks", "all")?
            .with("enable.idempotence", "true")?
            .with("linger.ms", "5")?
            .with("delivery.timeout.ms", "120000")?
            .with("request.timeout.ms", "5000")?,
    )?);
    let acks: Arc<parking_lot::Mutex<Vec<Ack>>> = Arc::default();
    let failed: Arc<AtomicUsize> = Arc::default();
    let stop: Arc<AtomicBool> = Arc::default();
    let last = Arc::new(AtomicU64::new(after));
    let writer = {
        let producer = producer.clone();
        let acks = acks.clone();
        let failed = failed.clone();
        let stop = stop.clone();
        let last = last.clone();
        tokio::spawn(async move {
            let mut n: u64 = after;
            while !stop.load(Ordering::Acquire) {
                // About 2,000 records a second: steady load, bounded memory.
                for _ in 0..20 {
                    n += 1;
                    last.store(n, Ordering::Release);
                    let sent = Instant::now();
                    let acks = acks.clone();
                    let failed_ack = failed.clone();
                    let value = format!("{n:012}");
                    let r = producer
                        .send_with_callback(
                            ProducerRecord::new(TOPIC, value).with_partition((n % 6) as i32),
                            move |res| match res {
                                Ok(md) => acks.lock().push(Ack {
                                    n,
                                    partition: md.partition,
                                    sent,
                                    acked: Instant::now(),
                                }),
                                Err(e) => {
                                    failed_ack.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("record {n} not acknowledged: {e}");
                                }
                            },
                        )
                        .await;
                    if let Err(e) = r {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("send {n} refused: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    Ok(Stream {
        producer,
        acks,
        failed,
        stop,
        last,
        writer,
    })
}

/// Kills (SIGKILL) the leader of one partition per round and restarts it,
/// and the active controller every other round.
pub async fn run(c: &mut TestCluster, rounds: usize) -> anyhow::Result<ChaosReport> {
    let admin = Admin::new(c.client_config())?;
    let stream = start_stream(c).await?;
    let mut broker_victims = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..rounds {
        // Kill the leader of one partition (a different one each round).
        let p = (round % 6) as i32;
        let parts = describe(c).await?;
        let victim = parts
            .iter()
            .find(|d| d.partition == p)
            .map(|d| d.leader)
            .context("partition missing")?;
        if victim < 0 {
            bail!("partition {p} has no leader before the kill");
        }
        let name = format!("broker-{victim}");
        let killed_at = Instant::now();
        c.kill(&name)?;
        broker_victims.push((p, killed_at));
        eprintln!("chaos: killed {name} (leader of {TOPIC}-{p})");
        wait_for(c, "a new leader", |ps| {
            ps.iter()
                .find(|d| d.partition == p)
                .is_some_and(|d| d.leader >= 0 && d.leader != victim)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.restart(&name)?;
        eprintln!("chaos: restarted {name}");

        // Kill the active controller every other round.
        if round % 2 == 0 {
            let active = admin.describe_cluster().await?.controller_id;
            if active >= 1000 {
                let cname = format!("controller-{}", active - 1000);
                c.kill(&cname)?;
                eprintln!("chaos: killed {cname} (active controller)");
                tokio::time::sleep(Duration::from_secs(3)).await;
                c.restart(&cname)?;
                eprintln!("chaos: restarted {cname}");
            }
        }
        wait_for(c, "the restarted broker back in every ISR", |ps| {
            ps.iter().all(|d| d.isr.len() == 3 && d.leader >= 0)
        })
        .await?;
    }
    finish(c, stream, &broker_victims).await
}

/// A rolling restart, as an orchestrator does one: every broker in turn is
/// stopped with SIGTERM (a controlled shutdown), started again, and waited
/// for until it is back in every ISR before the next one goes.
pub async fn rolling_restart(c: &mut TestCluster) -> anyhow::Result<ChaosReport> {
    let stream = start_stream(c).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut restarts = Vec::new();
    for id in c.broker_ids() {
        let name = format!("broker-{id}");
        let led: Vec<i32> = describe(c)
            .await?
            .iter()
            .filter(|d| d.leader == id)
            .map(|d| d.partition)
            .collect();
        let stopped_at = Instant::now();
        c.terminate(&name).await?;
        eprintln!(
            "rolling restart: {name} (leader of {led:?}) stopped in {} ms",
            stopped_at.elapsed().as_millis()
        );
        if let Some(p) = led.first() {
            restarts.push((*p, stopped_at));
        }
        c.restart(&name)?;
        wait_for(c, "the restarted broker back in every ISR", |ps| {
            ps.iter().all(|d| d.isr.len() == 3 && d.leader >= 0)
        })
        .await?;
        eprintln!("rolling restart: {name} back in every ISR");
    }
    finish(c, stream, &restarts).await
}

/// Stops writing, reads every partition back and compares it with what was
/// acknowledged. `disruptions`: (partition, when) pairs whose failover time
/// is measured.
async fn finish(
    c: &TestCluster,
    stream: Stream,
    disruptions: &[(i32, Instant)],
) -> anyhow::Result<ChaosReport> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    check(c, stream.stop().await?, disruptions).await
}

/// Reads the topic back and compares it with what was written.
async fn check(
    c: &TestCluster,
    written: Written,
    disruptions: &[(i32, Instant)],
) -> anyhow::Result<ChaosReport> {
    let mut report = ChaosReport::default();
    let acks = written.acks;
    report.acked = acks.len();
    // Failover time: from the disruption to the first acknowledged write,
    // sent after it, on the partition whose leader went away.
    for (p, at) in disruptions {
        if let Some(first) = acks
            .iter()
            .filter(|a| a.partition == *p && a.sent >= *at)
            .map(|a| a.acked)
            .min()
        {
            report
                .failover_ms
                .push(first.duration_since(*at).as_millis());
        }
    }
    report.failovers = report.failover_ms.len();

    // Read everything back.
    let mut consumer = Consumer::new(c.client_config().with("auto.offset.reset", "earliest")?)?;
    let tps = consumer.assign_all(TOPIC).await?;
    consumer.seek_to_beginning(&tps).await?;
    let ends = consumer.end_offsets(&tps).await?;
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut by_partition: HashMap<i32, Vec<u64>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while tps
        .iter()
        .any(|tp| positions.get(&tp.partition).copied().unwrap_or(0) < ends[tp])
    {
        if Instant::now() > deadline {
            bail!("reading back timed out");
        }
        for r in consumer.poll(Duration::from_millis(500)).await? {
            positions.insert(r.partition, r.offset + 1);
            let v = r.value.context("null value")?;
            let n: u64 = std::str::from_utf8(&v)?.parse()?;
            by_partition.entry(r.partition).or_default().push(n);
        }
    }
    let mut seen = HashSet::new();
    for values in by_partition.values() {
        let mut last = 0;
        for n in values {
            if !seen.insert(*n) {
                report.duplicated += 1;
                continue;
            }
            if *n < last {
                report.reordered += 1;
            }
            last = *n;
        }
    }
    report.lost = acks.iter().filter(|a| !seen.contains(&a.n)).count();
    report.unacknowledged = written.failed;
    Ok(report)
}

/// Moves a running plaintext cluster to mTLS by rolling restarts (SIGTERM,
/// a controlled shutdown each), under an acks=all stream, as an operator
/// would: (1) every process serves TLS and still takes plaintext; (2) every
/// process reaches the others over TLS; the clients move to TLS; (3) no
/// process takes plaintext any more. The stream's producer must see no
/// error (`unacknowledged` counts them) and nothing may be lost.
pub async fn tls_rolling_switch(c: &mut TestCluster) -> anyhow::Result<ChaosReport> {
    let plaintext = start_stream(c).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut names = c.process_names();
    // Controllers first: a broker moved to TLS for its own connections must
    // find the controller listening for it.
    names.sort_by_key(|n| !n.starts_with("controller"));
    for (phase, accept_plaintext, inter_tls) in [(1, true, false), (2, true, true)] {
        rolling_phase(c, &names, phase, accept_plaintext, inter_tls).await?;
    }
    // The clients move: the plaintext producer finishes, a TLS one goes on.
    let mut written = plaintext.stop().await?;
    c.use_tls_clients(true);
    let tls = start_writer(c, written.last)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rolling_phase(c, &names, 3, false, true).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let more = tls.stop().await?;
    written.acks.extend(more.acks);
    written.failed += more.failed;
    check(c, written, &[]).await
}

async fn rolling_phase(
    c: &mut TestCluster,
    names: &[String],
    phase: u32,
    accept_plaintext: bool,
    inter_tls: bool,
) -> anyhow::Result<()> {
    for name in names {
        let settings = c.tls_settings(name, accept_plaintext, inter_tls)?;
        c.set_overrides(name, &settings)?;
        c.restart_gracefully(name).await?;
        c.wait_serving(name, true).await?;
        wait_for(c, &format!("{name} back (phase {phase})"), |ps| {
            ps.iter().all(|d| d.isr.len() == 3 && d.leader >= 0)
        })
        .await?;
        if name.starts_with("controller") {
            // Back in the election: wait until a controller answers again.
            let admin = Admin::new(c.client_config())?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while admin
                .describe_cluster()
                .await
                .map(|d| d.controller_id)
                .unwrap_or(-1)
                < 0
            {
                if Instant::now() > deadline {
                    bail!(
                        "no active controller after restarting {name}\n{}",
                        c.logs_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eprintln!("tls switch: phase {phase}: {name} restarted");
    }
    Ok(())
}
