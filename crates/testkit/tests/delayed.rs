//! Delayed delivery under failure, on real clusters: pending records are
//! replicated like any record, so `kill -9` of the leader, or a paused
//! leader with the active controller killed, while they fall due loses none
//! and releases none twice; a broker restarted with 100,000 pending keeps
//! them on disk, not in memory.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sluice_client::{Admin, Consumer, NewTopic, Producer, ProducerRecord};
use sluice_testkit::{ClusterSpec, TestCluster};

const TOPIC: &str = "delayed";
const RECORDS: usize = 600;

async fn leader(c: &TestCluster) -> i32 {
    Admin::new(c.client_config())
        .unwrap()
        .describe_topics(&[TOPIC.to_string()])
        .await
        .map(|d| d[0].partitions[0].leader)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_while_records_fall_due_loses_and_doubles_none() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new(TOPIC, 1, 3))
        .await
        .unwrap();
    produce_delayed(&c).await;
    // Kill the leader once releases are under way.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let victim = leader(&c).await;
    assert!(victim > 0, "no leader");
    c.kill(&format!("broker-{victim}")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let l = leader(&c).await;
        if l > 0 && l != victim {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new leader\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.restart(&format!("broker-{victim}")).unwrap();

    // Everything is released by now or soon; read it all, and a little more.
    check_each_released_once(&c, "kill -9 of the leader").await;
}

/// Produces [`RECORDS`] delayed records due 1-4 s from now, in no order.
async fn produce_delayed(c: &TestCluster) {
    let producer = Producer::new(
        c.client_config()
            .with("acks", "all")
            .unwrap()
            .with("enable.idempotence", "true")
            .unwrap(),
    )
    .unwrap();
    let mut acks = Vec::new();
    for n in 0..RECORDS {
        let after = 1000 + (n * 7919) % 3000;
        let r = ProducerRecord::new(TOPIC, format!("{n:06}"))
            .with_partition(0)
            .deliver_after(Duration::from_millis(after as u64));
        acks.push(producer.send(r).await.unwrap());
    }
    for a in acks {
        a.await.expect("every delayed record is acknowledged");
    }
}

/// Reads the topic until every record came and nothing more arrived for
/// 3 s; fails on any record missing or seen twice.
async fn check_each_released_once(c: &TestCluster, what: &str) {
    let mut consumer = Consumer::new(
        c.client_config()
            .with("auto.offset.reset", "earliest")
            .unwrap(),
    )
    .unwrap();
    let tps = consumer.assign_all(TOPIC).await.unwrap();
    consumer.seek_to_beginning(&tps).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        let recs = consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap_or_default();
        if !recs.is_empty() {
            quiet_since = tokio::time::Instant::now();
        }
        for r in recs {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            *seen.entry(v).or_default() += 1;
        }
        if seen.len() == RECORDS && quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let lost: Vec<usize> = (0..RECORDS)
        .filter(|n| !seen.contains_key(&format!("{n:06}")))
        .collect();
    let doubled: Vec<(&String, &usize)> = seen.iter().filter(|(_, k)| **k > 1).collect();
    println!(
        "delayed, {what}: acked={RECORDS} lost={} duplicated={}",
        lost.len(),
        doubled.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}\n{}", c.logs_tail());
    assert!(
        doubled.is_empty(),
        "released twice: {doubled:?}\n{}",
        c.logs_tail()
    );
}

/// The leader is paused (SIGSTOP: it holds its connections, so only its
/// lease expiring moves leadership) while records fall due, and the active
/// controller is killed at the same moment. The paused leader, resumed after
/// a new one took over, must not release anything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_and_a_killed_controller_lose_and_double_none() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new(TOPIC, 1, 3))
        .await
        .unwrap();
    produce_delayed(&c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = leader(&c).await;
    assert!(victim > 0, "no leader");
    let active = admin.describe_cluster().await.unwrap().controller_id;
    let controller = format!("controller-{}", active - 1000);
    c.pause(&format!("broker-{victim}")).unwrap();
    c.kill(&controller).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let l = leader(&c).await;
        if l > 0 && l != victim {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new leader\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the new leader release for a while, then wake the old one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.resume(&format!("broker-{victim}")).unwrap();
    c.restart(&controller).unwrap();
    check_each_released_once(&c, "paused leader, killed controller").await;
}

/// 100,000 pending records, kill -9 of their broker, a restart: the timer
/// index comes back from its sealed runs on disk (memory holds only the
/// unsealed tail), every record is still pending, and the few due soon are
/// released, in due order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_100k_pending_keeps_them_on_disk_not_in_memory() {
    const FAR: usize = 100_000;
    const SOON: usize = 5;
    let mut c = TestCluster::start(ClusterSpec {
        brokers: 1,
        controllers: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("far", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(
        c.client_config()
            .with("batch.size", "262144")
            .unwrap()
            .with("linger.ms", "20")
            .unwrap(),
    )
    .unwrap();
    let delayed = |value: String, after_ms: u64| {
        let mut r = ProducerRecord::new("far", value).with_partition(0);
        r.headers = vec![(
            "sluice.deliver.after.ms".into(),
            Some(Bytes::from(after_ms.to_string())),
        )];
        r
    };
    let mut acks = Vec::with_capacity(FAR);
    for n in 0..FAR {
        // Due over the next days, in no order.
        let after = 3_600_000 + (n as u64 * 7_919) % (5 * 86_400_000);
        acks.push(
            producer
                .send(delayed(format!("far-{n}"), after))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.expect("acknowledged");
    }
    // A few due soon, later ones first.
    let mut soon = Vec::new();
    for n in 0..SOON {
        let after = 12_000 - 1_000 * n as u64;
        soon.push(
            producer
                .send(delayed(format!("soon-{n}"), after))
                .await
                .unwrap(),
        );
    }
    for a in soon {
        a.await.unwrap();
    }
    let before_kib = c.rss_kib("broker-1").unwrap_or(0);
    // The memory bound below needs a seal to have happened: wait for a run
    // file in the index directory.
    let index_dir = c.broker_data_dir(1).join("far-0/delay-index");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&index_dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("run"))
        })
        .unwrap_or(false)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run sealed in {}",
            index_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.restart("broker-1").unwrap(); // kill -9, then start again
    c.wait_ready(1).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (pending, in_memory) = loop {
        let pending = c
            .metric("broker-1", "sluice_delayed_pending", "topic=\"far\"")
            .await;
        let in_memory = c
            .metric("broker-1", "sluice_delayed_index_memory_entries", "")
            .await;
        if let (Some(p), Some(m)) = (pending, in_memory)
            && p > 0.0
        {
            break (p as usize, m as usize);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delayed metrics after the restart\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let after_kib = c.rss_kib("broker-1").unwrap_or(0);
    println!(
        "restart with {pending} pending: {in_memory} index entries in memory, \
         broker RSS {before_kib} KiB before the kill, {after_kib} KiB after the restart"
    );
    assert!(pending >= FAR, "pending after restart: {pending}");
    // The index seals every 64 Ki committed entries into a sorted run on
    // disk (sluice_delay::index::SEAL_AT); only the unsealed rest is in memory.
    assert!(
        in_memory <= FAR - 64 * 1024 + SOON,
        "{in_memory} entries in memory"
    );

    let mut consumer = Consumer::new(c.client_config()).unwrap();
    let tps = consumer.assign_all("far").await.unwrap();
    consumer.seek_to_beginning(&tps).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while got.len() < SOON && tokio::time::Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            got.push(String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned());
        }
    }
    for r in consumer.poll(Duration::from_secs(2)).await.unwrap() {
        got.push(String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned());
    }
    let want: Vec<String> = (0..SOON).rev().map(|n| format!("soon-{n}")).collect();
    assert_eq!(got, want, "\n{}", c.logs_tail());
}
