//! The client library's scenarios against a real standalone node (real gRPC
//! server on 127.0.0.1, real partition logs in a temporary directory): admin,
//! produce and consume round trips, fast failures for unknown topics and
//! oversized records, `acks=0`, back-pressure from `buffer.memory`, bulk
//! transfers with large batches, and raw-batch fetches that honour
//! `partition_max_bytes`. These replaced the client crate's in-memory mock
//! broker, so the client is tested against the server it really talks to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::{
    Admin, ClientConfig, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord, TopicPartition,
};
use sluice_proto::broker::{FetchPartition, FetchRequest, FetchTopic, RecordFormat};
use sluice_standalone::{Standalone, StandaloneOptions};

async fn start(dir: &Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Standalone::start(StandaloneOptions::new(dir, addr))
        .await
        .unwrap()
}

fn config(node: &Standalone, props: &[&str]) -> ClientConfig {
    let mut c = ClientConfig::new(&node.addr.to_string());
    c.set_pairs(props).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_produce_consume_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node, &[])).unwrap();
    let created = admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap();
    assert_eq!(created.partitions, 3);
    let e = admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TopicAlreadyExists);
    let e = admin
        .create_topic(NewTopic::new("rf2", 1, 2))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "INVALID_REPLICATION_FACTOR: replication factor 2 exceeds 1 live broker"
    );
    let listed: Vec<String> = admin
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, vec!["orders"]);
    let d = admin.describe_topics(&["orders".into()]).await.unwrap();
    assert_eq!(d[0].partitions.len(), 3);
    assert_eq!(d[0].replication_factor(), 1);
    assert_eq!(admin.describe_cluster().await.unwrap().brokers.len(), 1);

    let producer = Producer::new(config(&node, &["linger.ms=2", "batch.size=4096"])).unwrap();
    let mut futs = Vec::new();
    for i in 0..600 {
        let mut r = ProducerRecord::new("orders", format!("value-{i}"));
        if i % 2 == 0 {
            r = r.with_key(format!("key-{}", i % 10));
        }
        r.headers = vec![("h".into(), Some(Bytes::from_static(b"1")))];
        futs.push((r.key.clone(), producer.send(r).await.unwrap()));
    }
    let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    for (key, f) in futs {
        let md = f.await.unwrap();
        if let Some(k) = key {
            assert_eq!(md.partition, sluice_types::hash::partition_for_key(&k, 3));
        }
        per_partition
            .entry(md.partition)
            .or_default()
            .push(md.offset);
    }
    for offsets in per_partition.values() {
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(sorted, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    producer.close().await;

    let mut consumer = Consumer::new(config(
        &node,
        &["auto.offset.reset=earliest", "max.poll.records=100"],
    ))
    .unwrap();
    consumer.assign_all("orders").await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 600 && Instant::now() < deadline {
        let batch = consumer.poll(Duration::from_millis(500)).await.unwrap();
        assert!(batch.len() <= 100);
        seen.extend(batch);
    }
    assert_eq!(seen.len(), 600);
    let mut values: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 600);
    assert_eq!(
        seen[0].headers,
        vec![("h".to_string(), Some(Bytes::from_static(b"1")))]
    );
    // Nothing more arrives.
    assert!(
        consumer
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );

    // Seek back on one partition.
    let tp = TopicPartition::new("orders", 0);
    let n0 = per_partition[&0].len() as i64;
    assert_eq!(consumer.position(&tp), Some(n0));
    consumer.seek(&tp, n0 - 2).unwrap();
    let again = consumer.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![n0 - 2, n0 - 1]
    );
    consumer
        .seek_to_beginning(std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(consumer.position(&tp), Some(0));
    consumer.seek_to_end(&[]).await.unwrap();
    assert_eq!(consumer.position(&tp), Some(n0));

    // Long poll wakes on new data.
    let p2 = Producer::new(config(&node, &["acks=1"])).unwrap();
    let waiter = tokio::spawn(async move {
        let r = consumer.poll(Duration::from_secs(5)).await.unwrap();
        (r, consumer)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let md = p2
        .send(ProducerRecord::new("orders", "late").with_partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, n0);
    let (late, _) = waiter.await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value.as_deref(), Some(&b"late"[..]));
    p2.close().await;

    admin.create_partitions("orders", 5).await.unwrap();
    assert_eq!(
        admin.describe_topics(&["orders".into()]).await.unwrap()[0]
            .partitions
            .len(),
        5
    );
    admin.delete_topic("orders").await.unwrap();
    assert_eq!(
        admin.delete_topic("orders").await.unwrap_err().code(),
        ErrorCode::UnknownTopicOrPartition
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let producer = Producer::new(config(&node, &[])).unwrap();
    let t0 = Instant::now();
    let e = producer
        .send(ProducerRecord::new("missing", "x"))
        .await
        .err()
        .expect("unknown topic");
    assert_eq!(e.code(), ErrorCode::UnknownTopicOrPartition);
    assert!(
        e.to_string().starts_with("UNKNOWN_TOPIC_OR_PARTITION: "),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let e = producer
        .send(ProducerRecord::new("t", "x").with_partition(7))
        .await
        .err()
        .expect("bad partition");
    assert_eq!(e.code(), ErrorCode::UnknownTopicOrPartition);
    producer.close().await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_large_batches() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("big", 2, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node, &["acks=0"])).unwrap();
    let md = producer
        .send(ProducerRecord::new("big", "x"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, -1);
    let e = producer
        .send(ProducerRecord::new("big", vec![0u8; 2 << 20]))
        .await
        .err()
        .expect("too large");
    assert_eq!(e.code(), ErrorCode::MessageTooLarge);
    producer.close().await;

    // Many 1 KiB records through small buffer.memory: send waits for room.
    let producer = Producer::new(config(
        &node,
        &[
            "acks=1",
            "batch.size=65536",
            "buffer.memory=262144",
            "linger.ms=1",
        ],
    ))
    .unwrap();
    let value = Bytes::from(vec![b'a'; 1024]);
    let mut last = None;
    for _ in 0..5000 {
        last = Some(
            producer
                .send(ProducerRecord {
                    topic: "big".into(),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    last.unwrap().await.unwrap();
    producer.close().await;
    let mut consumer = Consumer::new(config(
        &node,
        &[
            "auto.offset.reset=earliest",
            "max.partition.fetch.bytes=100000",
        ],
    ))
    .unwrap();
    consumer.assign_all("big").await.unwrap();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < 5001 && Instant::now() < deadline {
        n += consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap()
            .len();
    }
    // The acks=0 record is there too: fire-and-forget still lands.
    assert_eq!(n, 5001);
    node.shutdown().await.unwrap();
}

/// Bulk round trip with large batches: every record comes back. Prints the
/// rate (run with `--nocapture` in release for a rough client-side number);
/// speed is measured by `scripts/bench.sh`, never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_round_trip_with_large_batches() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("perf", 4, 1))
        .await
        .unwrap();
    let n = 30_000;
    let producer = Producer::new(config(
        &node,
        &[
            "acks=1",
            "batch.size=1048576",
            "linger.ms=5",
            "max.request.size=8388608",
        ],
    ))
    .unwrap();
    let value = Bytes::from(vec![b'a'; 1024]);
    let t0 = Instant::now();
    let mut last = None;
    for _ in 0..n {
        last = Some(
            producer
                .send(ProducerRecord {
                    topic: "perf".into(),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    last.unwrap().await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "produce: {n} records in {secs:.2}s = {:.0} rec/s, {:.1} MB/s",
        n as f64 / secs,
        n as f64 * 1024.0 / secs / 1048576.0
    );
    producer.close().await;
    let mut consumer = Consumer::new(config(&node, &["auto.offset.reset=earliest"])).unwrap();
    consumer.assign_all("perf").await.unwrap();
    let t0 = Instant::now();
    let mut got = 0;
    let mut bytes = 0;
    while got < n {
        let r = consumer.poll(Duration::from_secs(2)).await.unwrap();
        assert!(!r.is_empty());
        got += r.len();
        assert!(got <= n, "more records than produced");
        bytes += r
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>();
    }
    assert_eq!(got, n);
    assert_eq!(bytes, n * 1024);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "consume: {got} records in {secs:.2}s = {:.0} rec/s, {:.1} MB/s",
        got as f64 / secs,
        bytes as f64 / secs / 1048576.0
    );
    node.shutdown().await.unwrap();
}

/// Raw-batch fetches honour `partition_max_bytes` (at least one whole batch,
/// never more than the limit plus that batch); prints fetch rates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_fetches_respect_partition_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let addr = node.addr.to_string();
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("perf", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node, &["acks=1", "batch.size=1048576"])).unwrap();
    let value = Bytes::from(vec![b'a'; 1024]);
    let mut last = None;
    for _ in 0..20_000 {
        last = Some(
            producer
                .send(ProducerRecord {
                    topic: "perf".into(),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    last.unwrap().await.unwrap();
    producer.close().await;
    let cluster = sluice_client::cluster::Cluster::new(config(&node, &[])).unwrap();
    let mut c = cluster.broker_at(&addr).unwrap();
    for max in [1 << 20, 4 << 20, 16 << 20] {
        let t0 = Instant::now();
        let mut bytes = 0;
        for _ in 0..20 {
            let r = c
                .fetch(FetchRequest {
                    max_wait_ms: 0,
                    min_bytes: 1,
                    max_bytes: 64 << 20,
                    isolation_level: 0,
                    format: RecordFormat::RecordBatches as i32,
                    topics: vec![FetchTopic {
                        name: "perf".into(),
                        partitions: vec![FetchPartition {
                            partition: 0,
                            fetch_offset: 0,
                            partition_max_bytes: max,
                            current_leader_epoch: -1,
                        }],
                    }],
                })
                .await
                .unwrap()
                .into_inner();
            let got = r.topics[0].partitions[0].record_batches.len();
            assert!(got > 0, "a fetch from offset 0 returns data");
            assert!(
                got <= max as usize + (2 << 20),
                "{got} bytes for a {max}-byte limit"
            );
            bytes += got;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "raw fetch max {max}: {:.1} ms/fetch, {:.1} MB/s",
            secs * 50.0,
            bytes as f64 / secs / 1048576.0
        );
    }
    node.shutdown().await.unwrap();
}
