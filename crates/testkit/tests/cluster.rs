//! Cluster behaviour on a real local cluster: etcd, two controllers and three
//! brokers as OS processes, killed with SIGKILL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sluice_client::{Admin, ClientConfig, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord};
use sluice_testkit::{ClusterSpec, TestCluster};

async fn describe(c: &TestCluster, topic: &str) -> Vec<sluice_client::PartitionDescription> {
    let admin = Admin::new(c.client_config()).unwrap();
    admin.describe_topics(&[topic.to_string()]).await.unwrap()[0]
        .partitions
        .clone()
}

/// Waits (bounded) until `pred` holds for the topic's partitions.
async fn wait_partitions(
    c: &TestCluster,
    topic: &str,
    what: &str,
    pred: impl Fn(&[sluice_client::PartitionDescription]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        // A broker that has not seen a just-created topic yet answers
        // UNKNOWN_TOPIC_OR_PARTITION: not yet, rather than a failure.
        let admin = Admin::new(c.client_config()).unwrap();
        let parts = match admin.describe_topics(&[topic.to_string()]).await {
            Ok(d) => d[0].partitions.clone(),
            Err(e) if e.code() == ErrorCode::UnknownTopicOrPartition => Vec::new(),
            Err(e) => panic!("describe {topic}: {e}"),
        };
        if !parts.is_empty() && pred(&parts) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: {parts:?}\n{}", c.logs_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn consume_values(
    config: ClientConfig,
    topic: &str,
    expect_at_least: usize,
) -> HashMap<i32, Vec<String>> {
    let mut consumer =
        Consumer::new(config.with("auto.offset.reset", "earliest").unwrap()).unwrap();
    let tps = consumer.assign_all(topic).await.unwrap();
    consumer.seek_to_beginning(&tps).await.unwrap();
    let mut out: HashMap<i32, Vec<String>> = HashMap::new();
    let mut n = 0;
    let mut idle = 0;
    while idle < 10 {
        let recs = consumer.poll(Duration::from_millis(300)).await.unwrap();
        if recs.is_empty() {
            if n >= expect_at_least {
                idle += 1;
            }
            continue;
        }
        for r in recs {
            n += 1;
            out.entry(r.partition)
                .or_default()
                .push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_loses_nothing_when_the_leader_is_killed() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("stream", 3, 3))
        .await
        .unwrap();
    wait_partitions(&c, "stream", "full ISRs", |ps| {
        ps.iter().all(|p| p.isr.len() == 3)
    })
    .await;
    let victim = describe(&c, "stream").await[0].leader;

    let producer = Producer::new(
        c.client_config()
            .with("acks", "all")
            .unwrap()
            .with("linger.ms", "2")
            .unwrap()
            .with("delivery.timeout.ms", "60000")
            .unwrap()
            .with("request.timeout.ms", "5000")
            .unwrap(),
    )
    .unwrap();
    let total = 3000;
    let mut pending = Vec::new();
    for i in 0..total {
        pending.push((
            i,
            producer
                .send(ProducerRecord::new("stream", format!("{i:06}")))
                .await
                .unwrap(),
        ));
        if i == total / 3 {
            c.kill(&format!("broker-{victim}")).unwrap();
        }
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut acked = HashSet::new();
    let mut failed = 0;
    for (i, f) in pending {
        match f.await {
            Ok(_) => {
                acked.insert(format!("{i:06}"));
            }
            Err(e) => {
                failed += 1;
                eprintln!("record {i} not acknowledged: {e}");
            }
        }
    }
    producer.close().await;

    let by_partition = consume_values(c.client_config(), "stream", acked.len()).await;
    let mut seen = HashSet::new();
    let mut duplicated = 0;
    let mut reordered = 0;
    for values in by_partition.values() {
        let mut last = String::new();
        for v in values {
            if !seen.insert(v.clone()) {
                duplicated += 1;
                continue;
            }
            if *v < last {
                reordered += 1;
            }
            last = v.clone();
        }
    }
    let lost = acked.iter().filter(|v| !seen.contains(*v)).count();
    eprintln!(
        "leader kill: acked={} failed={failed} lost={lost} duplicated={duplicated} reordered={reordered}",
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged records lost\n{}", c.logs_tail());
    assert_eq!(reordered, 0, "records reordered within a partition");
    // The producer is idempotent (the default with acks=all): retries through
    // the failover must not write a record twice.
    assert_eq!(duplicated, 0, "records duplicated");
    assert!(
        acked.len() > total / 2,
        "most records acknowledged: {}",
        acked.len()
    );

    // The killed broker comes back and rejoins every ISR.
    c.restart(&format!("broker-{victim}")).unwrap();
    wait_partitions(
        &c,
        "stream",
        "the restarted broker back in every ISR",
        |ps| ps.iter().all(|p| p.isr.contains(&victim)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_refuses_acks_all_but_not_acks_1() {
    let mut c = TestCluster::start(ClusterSpec::default()).await.unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    let e = admin
        .create_topic(NewTopic::new("too-many", 1, 4))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidReplicationFactor, "{e}");

    let mut t = NewTopic::new("guarded", 1, 3);
    t.configs.insert("min.insync.replicas".into(), "2".into());
    admin.create_topic(t).await.unwrap();
    wait_partitions(&c, "guarded", "full ISR", |ps| ps[0].isr.len() == 3).await;
    let leader = describe(&c, "guarded").await[0].leader;
    for b in 1..=3 {
        if b != leader {
            c.kill(&format!("broker-{b}")).unwrap();
        }
    }
    wait_partitions(&c, "guarded", "ISR shrunk to the leader", |ps| {
        ps[0].isr == vec![leader]
    })
    .await;

    let strict = Producer::new(
        c.client_config()
            .with("acks", "all")
            .unwrap()
            .with("delivery.timeout.ms", "3000")
            .unwrap()
            .with("request.timeout.ms", "1000")
            .unwrap()
            .with("linger.ms", "0")
            .unwrap(),
    )
    .unwrap();
    let err = strict
        .send(ProducerRecord::new("guarded", "x"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotEnoughReplicas, "{err}");

    let relaxed = Producer::new(
        c.client_config()
            .with("acks", "1")
            .unwrap()
            .with("linger.ms", "0")
            .unwrap(),
    )
    .unwrap();
    let md = relaxed
        .send(ProducerRecord::new("guarded", "y"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 0, "nothing from the refused write was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_controller_takes_over() {
    let mut c = TestCluster::start(ClusterSpec {
        brokers: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    let before = admin.describe_cluster().await.unwrap().controller_id;
    assert!(before == 1001 || before == 1002, "{before}");
    c.kill(&format!("controller-{}", before - 1000)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = admin
            .describe_cluster()
            .await
            .map(|d| d.controller_id)
            .unwrap_or(-1);
        if now >= 0 && now != before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failover\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .create_topic(NewTopic::new("after-failover", 2, 1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_returns_to_the_preferred_replica() {
    let mut c = TestCluster::start(ClusterSpec {
        leader_imbalance_check_interval_seconds: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("pref", 3, 3))
        .await
        .unwrap();
    wait_partitions(&c, "pref", "preferred leaders, full ISR", |ps| {
        ps.iter()
            .all(|p| p.isr.len() == 3 && p.leader == p.replicas[0])
    })
    .await;
    let victim = describe(&c, "pref").await[0].leader;
    let producer = Producer::new(c.client_config().with("linger.ms", "0").unwrap()).unwrap();
    for i in 0..50 {
        let rec = ProducerRecord::new("pref", format!("before-{i}"));
        producer.send(rec).await.unwrap().await.unwrap();
    }
    c.kill(&format!("broker-{victim}")).unwrap();
    wait_partitions(&c, "pref", "failover away from the killed broker", |ps| {
        ps.iter().all(|p| p.leader >= 0 && p.leader != victim)
    })
    .await;
    for i in 0..50 {
        let rec = ProducerRecord::new("pref", format!("during-{i}"));
        producer.send(rec).await.unwrap().await.unwrap();
    }
    c.restart(&format!("broker-{victim}")).unwrap();
    // Back in sync, the restarted broker leads its preferred partitions again.
    wait_partitions(&c, "pref", "leadership back on preferred replicas", |ps| {
        ps.iter()
            .all(|p| p.isr.len() == 3 && p.leader == p.replicas[0])
    })
    .await;
    for i in 0..50 {
        let rec = ProducerRecord::new("pref", format!("after-{i}"));
        producer.send(rec).await.unwrap().await.unwrap();
    }
    let got = consume_values(c.client_config(), "pref", 150).await;
    let mut all: Vec<String> = got.into_values().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 150, "every acknowledged record, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_duplicates_and_reorders_nothing() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        // Restarted brokers take their preferred partitions back mid-stream:
        // more leader moves for the producer to ride out.
        leader_imbalance_check_interval_seconds: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let report = sluice_testkit::chaos::run(&mut c, 2).await.unwrap();
    // Printed for CI logs: the failover times are measured, not asserted.
    println!("{}", report.summary());
    eprintln!("{}", report.summary());
    assert!(report.acked > 0, "nothing acknowledged");
    // Retries ride out every failover within delivery.timeout.ms.
    assert_eq!(
        report.unacknowledged,
        0,
        "records given up on\n{}",
        c.logs_tail()
    );
    assert_eq!(report.failovers, 2, "both broker kills were measured");
    assert!(report.ok(), "{}\n{}", report.summary(), c.logs_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_metadata_and_data() {
    let mut c = TestCluster::start(ClusterSpec::default()).await.unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("durable", 3, 3))
        .await
        .unwrap();
    wait_partitions(&c, "durable", "full ISRs", |ps| {
        ps.iter().all(|p| p.isr.len() == 3)
    })
    .await;
    let producer = Producer::new(c.client_config().with("acks", "all").unwrap()).unwrap();
    let mut acks = Vec::new();
    for i in 0..1000 {
        acks.push(
            producer
                .send(ProducerRecord::new("durable", format!("{i:04}")))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    producer.close().await;
    // Every service process dies at once (etcd keeps the metadata).
    for name in [
        "broker-1",
        "broker-2",
        "broker-3",
        "controller-1",
        "controller-2",
    ] {
        c.kill(name).unwrap();
    }
    for name in [
        "controller-1",
        "controller-2",
        "broker-1",
        "broker-2",
        "broker-3",
    ] {
        c.restart(name).unwrap();
    }
    c.wait_ready(3).await.unwrap();
    wait_partitions(&c, "durable", "leaders after the restart", |ps| {
        ps.iter().all(|p| p.leader >= 0)
    })
    .await;
    let values = consume_values(c.client_config(), "durable", 1000).await;
    let mut all: Vec<String> = values.into_values().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        1000,
        "every acknowledged record is back\n{}",
        c.logs_tail()
    );
}
