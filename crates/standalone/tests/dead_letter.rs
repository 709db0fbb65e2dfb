//! Retries and dead letters on a real standalone node: a group consumer that
//! fails every third record sees it again through the retry topic (delayed),
//! then the record lands in the dead-letter topic with its failure headers;
//! a redrive brings the dead letters back, once each, even when the first
//! redrive stops part-way; nothing is lost in between.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use sluice_client::dead_letter::{self, DeadLetter, Route, header};
use sluice_client::{
    Admin, ClientConfig, Consumer, ConsumerRecord, GroupConsumer, NewTopic, Producer,
    ProducerRecord,
};
use sluice_standalone::{Standalone, StandaloneOptions};

async fn start(dir: &Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut o = StandaloneOptions::new(dir, addr);
    o.coordinator.group_initial_rebalance_delay_ms = 0;
    o.controller.offsets_topic_num_partitions = 2;
    Standalone::start(o).await.unwrap()
}

fn config(node: &Standalone) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
}

fn member(node: &Standalone) -> GroupConsumer {
    let c = config(node)
        .with("group.id", "billing")
        .unwrap()
        .with("session.timeout.ms", "6000")
        .unwrap()
        .with("heartbeat.interval.ms", "200")
        .unwrap()
        .with("auto.offset.reset", "earliest")
        .unwrap()
        .with("auto.commit.interval.ms", "200")
        .unwrap()
        .with("max.delivery.attempts", "3")
        .unwrap()
        .with("delivery.retry.backoff.ms", "1000")
        .unwrap();
    GroupConsumer::new(c).unwrap()
}

fn value(r: &ConsumerRecord) -> String {
    String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap()
}

fn number(v: &str) -> u32 {
    v.trim_start_matches("order-").parse().unwrap()
}

/// Every record of `topic` from the start.
async fn read_all(node: &Standalone, topic: &str) -> Vec<ConsumerRecord> {
    let mut c = Consumer::new(config(node)).unwrap();
    let tps = c.assign_all(topic).await.unwrap();
    c.seek_to_beginning(&tps).await.unwrap();
    let end = c.end_offsets(&tps).await.unwrap();
    let mut out = Vec::new();
    while tps.iter().any(|tp| c.position(tp).unwrap_or(0) < end[tp]) {
        out.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_are_retried_then_dead_lettered_then_redriven_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("orders", 2, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    for i in 0..30 {
        let r = ProducerRecord::new("orders", format!("order-{i}"))
            .with_key(format!("customer-{}", i % 7));
        producer.send(r).await.unwrap().await.unwrap();
    }

    // Every third order fails, every time.
    let mut c = member(&node);
    c.subscribe(&["orders"]);
    let mut handled: Vec<String> = Vec::new();
    let mut attempts_seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut dead = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while handled.len() < 20 || dead < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled {} dead {dead}",
            handled.len()
        );
        for r in c.poll(Duration::from_millis(100)).await.unwrap() {
            let v = value(&r);
            let attempt = dead_letter::failed_attempts(&r) + 1;
            if attempt > 1 {
                // A retry came through delayed delivery, and not early.
                let due: i64 = header(&r, "sluice.delay.due.ms")
                    .expect("a retry is released by delayed delivery")
                    .parse()
                    .unwrap();
                let failed: i64 = header(&r, dead_letter::FAILED_MS).unwrap().parse().unwrap();
                let backoff = 1000 << (attempt - 2);
                assert!(due >= failed + backoff, "{v}: due {due}, failed {failed}");
                assert!(sluice_types::now_ms() >= due, "{v} came before it was due");
            }
            attempts_seen.entry(v.clone()).or_default().push(attempt);
            if !number(&v).is_multiple_of(3) {
                handled.push(v);
                continue;
            }
            let n = c.nack(&r, "card declined").await.unwrap();
            assert_eq!(n.attempt, attempt);
            match n.route {
                Route::Retry { topic, after } => {
                    assert!(attempt < 3, "{v}: retried after attempt {attempt}");
                    assert_eq!(topic, "orders.retry");
                    assert_eq!(after, Duration::from_secs(1 << (attempt - 1)));
                }
                Route::DeadLetter { topic } => {
                    assert_eq!((attempt, topic.as_str()), (3, "orders.dlq"));
                    dead += 1;
                }
            }
        }
    }
    c.commit_sync().await.unwrap();
    c.close().await.unwrap();

    // Each good order handled once; each bad one seen three times, in order.
    let mut good: Vec<u32> = handled.iter().map(|v| number(v)).collect();
    good.sort();
    assert_eq!(
        good,
        (0..30u32)
            .filter(|n| !n.is_multiple_of(3))
            .collect::<Vec<_>>()
    );
    for (v, seen) in &attempts_seen {
        let want: Vec<u32> = if number(v).is_multiple_of(3) {
            vec![1, 2, 3]
        } else {
            vec![1]
        };
        assert_eq!(seen, &want, "{v}");
    }
    assert_eq!(read_all(&node, "orders.retry").await.len(), 20);

    // The dead letters say where they came from and why.
    let originals: BTreeMap<String, ConsumerRecord> = read_all(&node, "orders")
        .await
        .into_iter()
        .map(|r| (value(&r), r))
        .collect();
    let mut letters: Vec<DeadLetter> = Vec::new();
    let n = dead_letter::list(
        config(&node),
        "orders.dlq",
        dead_letter::DEFAULT_GROUP,
        |d| letters.push(d),
    )
    .await
    .unwrap();
    assert_eq!(n, 10);
    for d in &letters {
        let v = value(&d.record);
        let first = &originals[&v];
        assert_eq!(d.origin.topic, "orders");
        assert_eq!(
            (d.origin.partition, d.origin.offset, d.origin.timestamp),
            (first.partition, first.offset, first.timestamp),
            "{v}"
        );
        assert_eq!(d.record.key, first.key);
        assert_eq!(d.attempts, 3);
        assert_eq!(d.error.as_deref(), Some("card declined"));
        assert_eq!(d.group.as_deref(), Some("billing"));
        assert!(d.failed_ms.is_some());
        assert!(!d.redriven);
        // The delay headers of the retries are gone.
        assert!(header(&d.record, "sluice.delay.id").is_none());
    }

    // A redrive stopped (Ctrl-C) after its first batch (3 records a batch
    // here) commits what it published...
    let small_batches = config(&node).with("max.poll.records", "3").unwrap();
    let first = dead_letter::redrive(
        small_batches.clone(),
        "orders.dlq",
        None,
        dead_letter::DEFAULT_GROUP,
        |_| ControlFlow::Break(()),
    )
    .await
    .unwrap();
    assert!(!first.finished);
    assert!((1..10).contains(&first.published), "{}", first.published);
    let mut marked = 0;
    dead_letter::list(
        config(&node),
        "orders.dlq",
        dead_letter::DEFAULT_GROUP,
        |d| marked += u64::from(d.redriven),
    )
    .await
    .unwrap();
    assert_eq!(marked, first.published);
    // ...one that dies after sending its next batch commits nothing...
    let crashed = tokio::spawn(dead_letter::redrive(
        small_batches.clone(),
        "orders.dlq",
        None,
        dead_letter::DEFAULT_GROUP,
        |_| panic!("the redrive process dies here"),
    ));
    assert!(crashed.await.unwrap_err().is_panic());
    // (Its producer, dropped, still sends what it holds: let that land, as
    // it would have before a real process died.)
    // At least one of its records, then no change for a second.
    let at_least = 30 + first.published as usize + 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut seen, mut steady_since) = (0, tokio::time::Instant::now());
    loop {
        let n = read_all(&node, "orders").await.len();
        if n != seen {
            (seen, steady_since) = (n, tokio::time::Instant::now());
        }
        if seen >= at_least && steady_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead run's records never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and the next run publishes the rest, skipping what the dead one sent.
    let second = dead_letter::redrive(
        small_batches,
        "orders.dlq",
        None,
        dead_letter::DEFAULT_GROUP,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert!(second.finished);
    assert!(second.already_published > 0, "{second:?}");
    assert_eq!(
        first.published + second.already_published + second.published,
        10
    );
    assert_eq!(second.targets, BTreeSet::from(["orders".to_string()]));
    let third = dead_letter::redrive(
        config(&node),
        "orders.dlq",
        None,
        dead_letter::DEFAULT_GROUP,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((third.published, third.already_published), (0, 0));
    // No marker is left behind: a redrive elsewhere is not taken for the
    // rest of an unfinished one.
    let elsewhere = dead_letter::redrive(
        config(&node),
        "orders.dlq",
        Some("orders"),
        dead_letter::DEFAULT_GROUP,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    assert_eq!((elsewhere.published, elsewhere.already_published), (0, 0));

    // The group, now healthy, gets the ten back, once each, as fresh records.
    let mut c = member(&node);
    c.subscribe(&["orders"]);
    let mut back: Vec<ConsumerRecord> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while back.len() < 10 && tokio::time::Instant::now() < deadline {
        back.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    back.extend(c.poll(Duration::from_secs(1)).await.unwrap());
    c.close().await.unwrap();
    let mut values: Vec<u32> = back.iter().map(|r| number(&value(r))).collect();
    values.sort();
    assert_eq!(
        values,
        (0..30u32)
            .filter(|n| n.is_multiple_of(3))
            .collect::<Vec<_>>()
    );
    for r in &back {
        assert_eq!(&*r.topic, "orders");
        assert_eq!(dead_letter::failed_attempts(r), 0);
        assert!(
            header(r, dead_letter::REDRIVE_ID)
                .unwrap()
                .starts_with("orders.dlq/")
        );
        assert_eq!(r.key, originals[&value(r)].key);
    }
    let mut listed = 0;
    dead_letter::list(
        config(&node),
        "orders.dlq",
        dead_letter::DEFAULT_GROUP,
        |d| {
            assert!(d.redriven);
            listed += 1;
        },
    )
    .await
    .unwrap();
    assert_eq!(listed, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_attempt_sends_a_failure_straight_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("payments", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    producer
        .send(ProducerRecord::new("payments", "p-1"))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut c = GroupConsumer::new(
        config(&node)
            .with("group.id", "ledger")
            .unwrap()
            .with("auto.offset.reset", "earliest")
            .unwrap(),
    )
    .unwrap();
    c.subscribe(&["payments"]);
    let r = loop {
        if let Some(r) = c.poll(Duration::from_millis(100)).await.unwrap().pop() {
            break r;
        }
    };
    let n = c.nack(&r, "no such account").await.unwrap();
    assert_eq!(
        n.route,
        Route::DeadLetter {
            topic: "payments.dlq".into()
        }
    );
    // No retry topic was made or read.
    let topics: Vec<String> = admin
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(
        !topics.contains(&"payments.retry".to_string()),
        "{topics:?}"
    );
    c.close().await.unwrap();
    let dlq = read_all(&node, "payments.dlq").await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(header(&dlq[0], dead_letter::ERROR), Some("no such account"));
    assert_eq!(header(&dlq[0], dead_letter::ATTEMPTS), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_that_cannot_be_written_rewinds_so_the_record_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(config(&node)).unwrap();
    admin
        .create_topic(NewTopic::new("refunds", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node)).unwrap();
    for v in ["r-0", "r-1", "r-2"] {
        producer
            .send(ProducerRecord::new("refunds", v))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A dead-letter topic name the cluster refuses: every nack fails.
    let mut c = GroupConsumer::new(
        config(&node)
            .with("group.id", "refunder")
            .unwrap()
            .with("auto.offset.reset", "earliest")
            .unwrap()
            .with("dead.letter.topic.suffix", "/dead")
            .unwrap(),
    )
    .unwrap();
    c.subscribe(&["refunds"]);
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    let failed = c.nack(&got[1], "bank offline").await.unwrap_err();
    assert_eq!(
        failed.code(),
        sluice_client::ErrorCode::InvalidTopicException,
        "{failed}"
    );
    // Committing now must not pass r-1, and poll hands it out again.
    c.commit_sync().await.unwrap();
    let tp = sluice_client::TopicPartition::new("refunds", 0);
    let committed = c.committed(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(committed[&tp], got[1].offset);
    let again = loop {
        let r = c.poll(Duration::from_millis(100)).await.unwrap();
        if !r.is_empty() {
            break r;
        }
    };
    assert_eq!(value(&again[0]), "r-1");
    assert_eq!(again[0].offset, got[1].offset);
    c.close().await.unwrap();
}
