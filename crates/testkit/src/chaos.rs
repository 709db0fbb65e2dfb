//! The chaos run: an idempotent acks=all producer writes a numbered stream to a
//! 6-partition, RF 3, `min.insync.replicas=2` topic while partition leaders and
//! the active controller are killed with SIGKILL and restarted. Afterwards every
//! partition is read from the beginning and compared with what was acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Runs the chaos scenario for about `rounds` kill rounds and checks the result.
pub async fn run(c: &mut TestCluster, rounds: usize) -> anyhow::Result<ChaosReport> {
    let admin = Admin::new(c.client_config())?;
    let mut topic = NewTopic::new(TOPIC, 6, 3);
    topic
        .configs
        .insert("min.insync.replicas".into(), "2".into());
    admin.create_topic(topic).await?;
    wait_for(c, "full ISRs", |ps| ps.iter().all(|p| p.isr.len() == 3)).await?;

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
    let writer = {
        let producer = producer.clone();
        let acks = acks.clone();
        let failed = failed.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Acquire) {
                // About 2,000 records a second: steady load, bounded memory.
                for _ in 0..20 {
                    n += 1;
                    let sent = Instant::now();
                    let acks = acks.clone();
                    let failed = failed.clone();
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
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("record {n} not acknowledged: {e}");
                                }
                            },
                        )
                        .await;
                    if let Err(e) = r {
                        eprintln!("send {n} refused: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut report = ChaosReport::default();
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
        broker_victims.push((victim, p, killed_at));
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    writer.await?;
    producer.flush().await;
    producer.close().await;

    let acks = acks.lock().clone();
    report.acked = acks.len();
    // Failover time: from the kill to the first acknowledged write, sent after
    // the kill, on the partition whose leader was killed.
    for (_, p, killed_at) in &broker_victims {
        if let Some(first) = acks
            .iter()
            .filter(|a| a.partition == *p && a.sent >= *killed_at)
            .map(|a| a.acked)
            .min()
        {
            report
                .failover_ms
                .push(first.duration_since(*killed_at).as_millis());
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
    report.unacknowledged = failed.load(Ordering::Relaxed);
    Ok(report)
}
