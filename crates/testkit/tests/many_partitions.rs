//! Issue 13 on a real etcd with its default limits (`--max-txn-ops` 128): a
//! topic with more partitions than one etcd transaction may hold is created,
//! and a `kill -9` of a broker moves every leadership it had. No wall-clock
//! thresholds: the machine is shared; deadlines are only there to end a hang.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::{
    Admin, ClientConfig, NewTopic, PartitionDescription, Producer, ProducerRecord,
};
use sluice_testkit::{ClusterSpec, TestCluster};

const TOPIC: &str = "wide";
/// Six etcd transactions' worth at the controller's chunk size.
const PARTITIONS: i32 = 600;

fn config(bootstrap: &str) -> ClientConfig {
    ClientConfig::new(bootstrap)
        .with("request.timeout.ms", "120000")
        .unwrap()
}

/// The topic's partitions as broker `name` alone serves them in Metadata
/// (a fresh client with one bootstrap address asks that broker first).
async fn metadata_from(c: &TestCluster, name: &str) -> Option<Vec<PartitionDescription>> {
    let admin = Admin::new(config(&c.grpc_addr(name)?)).ok()?;
    let topics = admin.describe_topics(&[TOPIC.to_string()]).await.ok()?;
    Some(topics.into_iter().next()?.partitions)
}

/// Polls every broker in `brokers` until `pred` holds for what each serves.
async fn wait_all_brokers(
    c: &TestCluster,
    brokers: &[i32],
    what: &str,
    pred: impl Fn(&[PartitionDescription]) -> bool,
) -> Vec<PartitionDescription> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let mut views = Vec::new();
        for b in brokers {
            match metadata_from(c, &format!("broker-{b}")).await {
                Some(v) if v.len() == PARTITIONS as usize && pred(&v) => views.push(v),
                _ => break,
            }
        }
        if views.len() == brokers.len() {
            return views.pop().expect("at least one broker");
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", c.logs_tail());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_partitions_are_created_and_fail_over_on_real_etcd() {
    // The production lease (6 s), not the suite's 2 s: a debug-build broker
    // creating hundreds of logs at once can stall past 2 s, lose its
    // registration and be fenced out of every ISR (a broker-side limit, not
    // what this test is about).
    let mut c = TestCluster::start(ClusterSpec {
        lease_ms: 6000,
        ..Default::default()
    })
    .await
    .unwrap();
    let brokers = c.broker_ids();
    let admin = Admin::new(config(&c.bootstrap())).unwrap();
    // One transaction for all of it is refused by etcd ("too many
    // operations in txn request"): this fails without chunked writes.
    admin
        .create_topic(NewTopic::new(TOPIC, PARTITIONS, 3))
        .await
        .unwrap();
    // Full ISRs too: had a broker been fenced meanwhile (see above), the
    // kill could leave partitions with no in-sync replica to elect.
    let before = wait_all_brokers(&c, &brokers, "a leader and full ISR everywhere", |ps| {
        ps.iter()
            .all(|p| p.leader >= 0 && p.replicas.len() == 3 && p.isr.len() == 3)
    })
    .await;

    // The broker that leads the most partitions dies.
    let mut led: BTreeMap<i32, Vec<&PartitionDescription>> = BTreeMap::new();
    for p in &before {
        led.entry(p.leader).or_default().push(p);
    }
    let (&victim, moved) = led.iter().max_by_key(|(_, ps)| ps.len()).unwrap();
    assert!(moved.len() >= PARTITIONS as usize / 3, "{:?}", led.keys());
    c.kill(&format!("broker-{victim}")).unwrap();
    let survivors: Vec<i32> = brokers.iter().copied().filter(|b| *b != victim).collect();

    // Every one of its leaderships moves to a live broker in a new leader
    // epoch, as each surviving broker serves it.
    let after = wait_all_brokers(
        &c,
        &survivors,
        "the dead broker's leaderships to move",
        |ps| {
            moved.iter().all(|old| {
                let p = &ps[old.partition as usize];
                survivors.contains(&p.leader) && p.leader_epoch > old.leader_epoch
            })
        },
    )
    .await;
    for old in moved {
        let p = &after[old.partition as usize];
        assert!(!p.isr.contains(&victim), "{p:?}");
    }

    // The new leaders take writes: one record to each moved partition.
    let producer = Producer::new(
        config(&c.grpc_addr(&format!("broker-{}", survivors[0])).unwrap())
            .with("acks", "all")
            .unwrap()
            .with("delivery.timeout.ms", "240000")
            .unwrap(),
    )
    .unwrap();
    let mut pending = Vec::new();
    for old in moved {
        let record =
            ProducerRecord::new(TOPIC, format!("p{}", old.partition)).with_partition(old.partition);
        pending.push((old.partition, producer.send(record).await.unwrap()));
    }
    for (partition, delivery) in pending {
        let meta = delivery
            .await
            .unwrap_or_else(|e| panic!("produce to partition {partition}: {e}\n{}", c.logs_tail()));
        assert_eq!(meta.partition, partition);
    }
}
