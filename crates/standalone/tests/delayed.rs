//! Delayed delivery on a real standalone node, through the gRPC client:
//! records asking for a delay appear when due (never before), with their
//! original key, value and headers; a bad request is refused whole; the
//! topic default applies; pending records survive a restart.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sluice_client::{
    Admin, ClientConfig, Consumer, ConsumerRecord, ErrorCode, NewTopic, Producer, ProducerRecord,
};
use sluice_standalone::{Standalone, StandaloneOptions};

const AFTER: &str = "sluice.deliver.after.ms";

fn now_ms() -> i64 {
    sluice_types::now_ms()
}

async fn start(dir: &std::path::Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Standalone::start(StandaloneOptions::new(dir, addr))
        .await
        .unwrap()
}

fn config(node: &Standalone) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
}

fn header<'a>(r: &'a ConsumerRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
}

fn delayed(topic: &str, value: &str, after_ms: &str) -> ProducerRecord {
    let mut r = ProducerRecord::new(topic, value.to_string())
        .with_key("order-17")
        .with_partition(0);
    r.headers = vec![
        ("trace".into(), Some(Bytes::from_static(b"t-1"))),
        (AFTER.into(), Some(Bytes::from(after_ms.to_string()))),
    ];
    r
}

/// Sends one record and returns the error it must fail with.
async fn refused(producer: &Producer, record: ProducerRecord) -> sluice_client::ClientError {
    producer
        .send(record)
        .await
        .unwrap()
        .await
        .expect_err("the record was refused")
}

/// Reads partition 0 from the start until `n` records came (or 30 s), and
/// for a second more to see any extra, noting when each was first seen.
async fn read(node: &Standalone, topic: &str, n: usize) -> Vec<(i64, ConsumerRecord)> {
    read_within(node, topic, n, Duration::from_secs(30)).await
}

async fn read_within(
    node: &Standalone,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<(i64, ConsumerRecord)> {
    let mut c = Consumer::new(config(node).with("auto.offset.reset", "earliest").unwrap()).unwrap();
    let tps = c.assign_all(topic).await.unwrap();
    c.seek_to_beginning(&tps).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n && tokio::time::Instant::now() < deadline {
        for r in c.poll(Duration::from_millis(50)).await.unwrap() {
            out.push((now_ms(), r));
        }
    }
    for r in c.poll(Duration::from_secs(1)).await.unwrap() {
        out.push((now_ms(), r));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_records_appear_when_due_with_their_headers_and_never_before() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("orders", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    let sent = now_ms();
    // Later first, then one due sooner, then an immediate one: they appear
    // in due order, the immediate one at once.
    for r in [
        delayed("orders", "unpaid-late", "2500"),
        delayed("orders", "unpaid-soon", "1500"),
        ProducerRecord::new("orders", "placed").with_partition(0),
    ] {
        producer.send(r).await.unwrap().await.unwrap();
    }
    let got = read(&node, "orders", 3).await;
    let values: Vec<String> = got
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(values, ["placed", "unpaid-soon", "unpaid-late"]);
    for (seen, r) in &got[1..] {
        let due: i64 = header(r, "sluice.delay.due.ms").unwrap().parse().unwrap();
        let produced: i64 = header(r, "sluice.delay.produced.ms")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            produced >= sent && due >= produced + 1500,
            "{due} {produced}"
        );
        assert!(*seen >= due, "seen at {seen}, before its due time {due}");
        assert!(header(r, "sluice.delay.id").is_some());
        assert_eq!(
            header(r, "trace"),
            Some("t-1"),
            "the original headers are kept"
        );
        assert_eq!(header(r, AFTER), None, "the request itself is not");
        assert_eq!(r.key.as_deref(), Some(&b"order-17"[..]));
    }
    // Each got its offset at release, after the immediate record.
    assert!(got[1].1.offset > got[0].1.offset && got[2].1.offset > got[1].1.offset);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_delay_refuses_the_batch_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("bad", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node).with("retries", "0").unwrap()).unwrap();
    for bad in ["-5", "500", "9223372036854775807", "soon"] {
        let e = refused(&producer, delayed("bad", "x", bad)).await;
        assert_eq!(e.code(), ErrorCode::InvalidRecord, "{bad}: {e}");
        assert!(e.to_string().contains(AFTER), "{e}");
    }
    producer
        .send(ProducerRecord::new("bad", "ok").with_partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    let got = read(&node, "bad", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].1.offset, 0,
        "nothing of the refused batches was stored"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_default_delays_and_pending_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    let mut topic = NewTopic::new("reminders", 1, 1);
    topic
        .configs
        .insert("delivery.delay.ms".into(), "3000".into());
    admin.create_topic(topic).await.unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    let sent = now_ms();
    producer
        .send(ProducerRecord::new("reminders", "review-me").with_partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    drop(producer);
    // Stopped before it is due, started again: still released, once.
    node.shutdown().await.unwrap();
    let node = start(dir.path()).await;
    let got = read(&node, "reminders", 1).await;
    assert_eq!(got.len(), 1, "released exactly once");
    let (seen, r) = &got[0];
    assert_eq!(r.value.as_deref(), Some(&b"review-me"[..]));
    assert!(*seen >= sent + 3000);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_delays_and_the_topic_maximum_caps_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    let mut compacted = NewTopic::new("state", 1, 1);
    compacted
        .configs
        .insert("cleanup.policy".into(), "compact".into());
    admin.create_topic(compacted).await.unwrap();
    let mut short = NewTopic::new("short", 1, 1);
    short.configs.insert("retention.ms".into(), "60000".into());
    short
        .configs
        .insert("delivery.delay.max.ms".into(), "100000".into());
    admin.create_topic(short).await.unwrap();
    let producer = Producer::new(config(&node).with("retries", "0").unwrap()).unwrap();
    let e = refused(&producer, delayed("state", "x", "5000")).await;
    assert_eq!(e.code(), ErrorCode::InvalidRecord, "{e}");
    assert!(e.to_string().contains("compacted"), "{e}");
    // Past delivery.delay.max.ms: refused, naming the limit.
    let e = refused(&producer, delayed("short", "x", "120000")).await;
    assert_eq!(e.code(), ErrorCode::InvalidRecord, "{e}");
    assert!(e.to_string().contains("100000"), "{e}");
    // Past retention.ms but within the maximum: retention waits for it.
    producer
        .send(delayed("short", "x", "90000"))
        .await
        .unwrap()
        .await
        .unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_records_are_described_and_one_is_cancelled_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("orders", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    let soon = producer
        .send(delayed("orders", "cancel-me", "1500"))
        .await
        .unwrap()
        .await
        .unwrap();
    for _ in 0..2 {
        producer
            .send(delayed("orders", "in-an-hour", "3600000"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let d = admin.describe_delayed(&["orders".into()]).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].pending, 3);
    assert_eq!(d[0].due_within, [1, 2, 0, 0]);
    assert!(d[0].next_due_ms <= d[0].last_due_ms);
    // The delay id is the offset the produce answer gave.
    admin
        .cancel_delayed("orders", 0, soon.offset)
        .await
        .unwrap();
    let again = admin
        .cancel_delayed("orders", 0, soon.offset)
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::InvalidRequest, "{again}");
    assert_eq!(admin.describe_delayed(&[]).await.unwrap()[0].pending, 2);
    // Past its due time: never released.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let got = read_within(&node, "orders", 1, Duration::from_secs(2)).await;
    assert!(got.is_empty(), "a cancelled record came");
    node.shutdown().await.unwrap();
}

/// gRPC clients in any language can also ask for a delay with the Produce
/// field `deliver_at_ms`: it applies to the partition's records that name no
/// delay of their own, and a time out of range is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_deliver_at_field_delays_records_without_their_own_header() {
    use sluice_proto::broker::broker_client::BrokerClient;
    use sluice_proto::broker::{self as pb};
    use sluice_proto::common::{Record, RecordHeader};

    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    Admin::new(config(&node))
        .unwrap()
        .create_topic(NewTopic::new("reminders", 1, 1))
        .await
        .unwrap();
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let produce = |records: Vec<Record>, at: i64| pb::ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topics: vec![pb::TopicProduceData {
            name: "reminders".into(),
            partitions: vec![pb::PartitionProduceData {
                partition: 0,
                records,
                deliver_at_ms: Some(at),
                ..Default::default()
            }],
        }],
    };
    let record = |v: &str, headers: Vec<RecordHeader>| Record {
        value: Some(Bytes::from(v.to_string())),
        headers,
        ..Default::default()
    };
    // In the past: refused, nothing stored.
    let resp = raw
        .produce(produce(vec![record("late", vec![])], now_ms() - 5_000))
        .await
        .unwrap()
        .into_inner();
    let err = resp.topics[0].partitions[0].error.clone().unwrap();
    assert_eq!(err.code, ErrorCode::InvalidRecord as i32, "{err:?}");
    assert!(err.message.contains("deliver_at_ms"), "{}", err.message);

    let sent = now_ms();
    let own = RecordHeader {
        key: AFTER.into(),
        value: Some(Bytes::from_static(b"1000")),
    };
    let resp = raw
        .produce(produce(
            vec![record("at-field", vec![]), record("own-header", vec![own])],
            sent + 2_500,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.topics[0].partitions[0].error.is_none(), "{resp:?}");
    let got = read(&node, "reminders", 2).await;
    let values: Vec<&str> = got
        .iter()
        .map(|(_, r)| std::str::from_utf8(r.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(values, ["own-header", "at-field"]);
    let (seen, r) = &got[1];
    let due: i64 = header(r, "sluice.delay.due.ms").unwrap().parse().unwrap();
    assert_eq!(due, sent + 2_500);
    assert!(*seen >= due);
}

/// A delay longer than the topic's retention: retention keeps the segment
/// holding the pending record (deleting only older ones) until it is
/// released, then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_longer_than_retention_keeps_its_segment_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut o = StandaloneOptions::new(dir.path(), addr);
    o.broker.log_retention_check_interval_ms = 100;
    let node = Standalone::start(o).await.unwrap();
    let mut topic = NewTopic::new("short", 1, 1);
    topic.configs = [
        ("retention.ms".to_string(), "500".to_string()),
        ("segment.bytes".to_string(), "400".to_string()),
    ]
    .into();
    Admin::new(config(&node))
        .unwrap()
        .create_topic(topic)
        .await
        .unwrap();
    let producer = Producer::new(config(&node).with("linger.ms", "0").unwrap()).unwrap();
    let send = |r: ProducerRecord| {
        let producer = &producer;
        async move { producer.send(r).await.unwrap().await.unwrap().offset }
    };
    for i in 0..10 {
        // About two batches a segment.
        let v = format!("before-{i:03}-{}", "x".repeat(120));
        send(ProducerRecord::new("short", v).with_partition(0)).await;
    }
    let pending = send(
        ProducerRecord::new("short", "reminder")
            .with_partition(0)
            .deliver_after(Duration::from_millis(10_000)),
    )
    .await;
    for i in 0..10 {
        send(ProducerRecord::new("short", format!("after-{i:03}")).with_partition(0)).await;
    }
    let mut c = Consumer::new(config(&node)).unwrap();
    let tp = c.assign_all("short").await.unwrap();
    let start = || async { c.beginning_offsets(&tp).await.unwrap()[&tp[0]] };
    // Retention runs: older segments go, the pending record's stays (looked
    // at for 3 s, well before the record is due).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut held = 0;
    while tokio::time::Instant::now() < deadline {
        held = start().await;
        assert!(
            held <= pending,
            "log start {held} passed the pending record at {pending}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files: Vec<String> = std::fs::read_dir(dir.path().join("logs/short-0"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        held > 0,
        "retention deleted nothing before the pending record at {pending}: {files:?}"
    );
    // Released when due, then retention moves on past it.
    let mut reader =
        Consumer::new(config(&node).with("auto.offset.reset", "earliest").unwrap()).unwrap();
    reader.assign_all("short").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    'wait: loop {
        assert!(tokio::time::Instant::now() < deadline, "never released");
        for r in reader.poll(Duration::from_millis(100)).await.unwrap() {
            if r.value.as_deref() == Some(&b"reminder"[..]) {
                break 'wait;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while start().await <= pending {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention stayed held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
