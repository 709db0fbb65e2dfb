//! Rebalance benchmark (scripts/bench-rebalance.sh runs it): a group of N
//! members on a running cluster reads a topic that is produced to all the
//! time; one more member joins. Prints how long until every member holds
//! its new assignment, how many partitions changed hands, and the longest
//! pause in consumption on the partitions that did not move, beside the
//! longest pause in the steady state before (the production cadence).
//!
//! Usage: rebalance_bench BOOTSTRAP classic|consumer MEMBERS PARTITIONS

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_client::{Admin, ClientConfig, GroupConsumer, NewTopic, Producer, ProducerRecord};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// Each member's partitions after its last poll.
    held: HashMap<usize, BTreeSet<i32>>,
    /// (when, partition) of every record read.
    reads: Vec<(Instant, i32)>,
}

type Shared = Arc<Mutex<State>>;

fn spawn_member(
    config: ClientConfig,
    topic: String,
    id: usize,
    state: Shared,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = GroupConsumer::new(config).expect("config");
        c.subscribe(&[topic.as_str()]);
        while !*stop.borrow() {
            let recs = c.poll(Duration::from_millis(50)).await.unwrap_or_default();
            let now = Instant::now();
            let mut s = state.lock();
            s.reads.extend(recs.iter().map(|r| (now, r.partition)));
            s.held
                .insert(id, c.assignment().iter().map(|tp| tp.partition).collect());
        }
        let _ = c.close().await;
    })
}

/// Every partition held by exactly one of `members` members, shares within one.
fn settled(s: &State, members: usize, partitions: i32) -> bool {
    let mut all: Vec<i32> = s.held.values().flatten().copied().collect();
    all.sort();
    let counts: Vec<usize> = s.held.values().map(BTreeSet::len).collect();
    s.held.len() == members
        && all == (0..partitions).collect::<Vec<_>>()
        && counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1
}

/// The longest gap between reads of any partition in `parts` within [from, to].
fn longest_gap(
    reads: &[(Instant, i32)],
    parts: &BTreeSet<i32>,
    from: Instant,
    to: Instant,
) -> Duration {
    let mut last: HashMap<i32, Instant> = parts.iter().map(|p| (*p, from)).collect();
    let mut gap = Duration::ZERO;
    for (t, p) in reads
        .iter()
        .filter(|(t, p)| *t >= from && *t <= to && parts.contains(p))
    {
        if let Some(prev) = last.insert(*p, *t) {
            gap = gap.max(*t - prev);
        }
    }
    for prev in last.values() {
        gap = gap.max(to.saturating_duration_since(*prev));
    }
    gap
}

async fn wait(state: &Shared, members: usize, partitions: i32) -> anyhow::Result<()> {
    let start = Instant::now();
    while !settled(&state.lock(), members, partitions) {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(180),
            "{members} members did not settle"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() == 4,
        "usage: rebalance_bench BOOTSTRAP classic|consumer MEMBERS PARTITIONS"
    );
    let (bootstrap, protocol) = (&args[0], &args[1]);
    let members: usize = args[2].parse()?;
    let partitions: i32 = args[3].parse()?;
    let base = ClientConfig::default().with("bootstrap.servers", bootstrap)?;
    let topic = format!("rebalance-{protocol}-{members}-{}", std::process::id());
    Admin::new(base.clone())?
        .create_topic(NewTopic::new(&topic, partitions, 1))
        .await?;
    let (stop, stopped) = watch::channel(false);
    let producer = Producer::new(base.clone().with("linger.ms", "5")?)?;
    let t = topic.clone();
    let stop_producer = stopped.clone();
    let writer = tokio::spawn(async move {
        // Every partition gets a record every 20 ms: the steady-state gap.
        while !*stop_producer.borrow() {
            for p in 0..partitions {
                let _ = producer
                    .send(ProducerRecord::new(t.clone(), "x").with_partition(p))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = producer.flush().await;
    });
    let config = |id: usize| -> anyhow::Result<ClientConfig> {
        Ok(base
            .clone()
            .with("group.id", &topic)?
            .with("group.protocol", protocol)?
            .with("client.id", &format!("m{id}"))?
            .with("auto.offset.reset", "latest")?
            .with("partition.assignment.strategy", "range")?)
    };
    let state: Shared = Arc::default();
    let mut tasks = Vec::new();
    for id in 0..members {
        tasks.push(spawn_member(
            config(id)?,
            topic.clone(),
            id,
            state.clone(),
            stopped.clone(),
        ));
    }
    wait(&state, members, partitions).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: BTreeMap<i32, usize> = {
        let s = state.lock();
        s.held
            .iter()
            .flat_map(|(m, ps)| ps.iter().map(|p| (*p, *m)))
            .collect()
    };
    let steady_from = Instant::now() - Duration::from_secs(2);
    let joined = Instant::now();
    tasks.push(spawn_member(
        config(members)?,
        topic.clone(),
        members,
        state.clone(),
        stopped.clone(),
    ));
    wait(&state, members + 1, partitions).await?;
    let settle = joined.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (moved, unmoved, pause, steady) = {
        let s = state.lock();
        let after: BTreeMap<i32, usize> = s
            .held
            .iter()
            .flat_map(|(m, ps)| ps.iter().map(|p| (*p, *m)))
            .collect();
        let unmoved: BTreeSet<i32> = after
            .iter()
            .filter(|(p, m)| before.get(p) == Some(m))
            .map(|(p, _)| *p)
            .collect();
        let all: BTreeSet<i32> = (0..partitions).collect();
        (
            partitions as usize - unmoved.len(),
            unmoved.len(),
            longest_gap(&s.reads, &unmoved, joined, joined + settle),
            longest_gap(&s.reads, &all, steady_from, joined),
        )
    };
    println!(
        "protocol={protocol} members={members}->{} partitions={partitions} settle_ms={} moved={moved} unmoved={unmoved} longest_pause_unmoved_ms={} steady_longest_gap_ms={}",
        members + 1,
        settle.as_millis(),
        if unmoved == 0 {
            "-".to_string()
        } else {
            pause.as_millis().to_string()
        },
        steady.as_millis(),
    );
    stop.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    writer.await?;
    Ok(())
}
