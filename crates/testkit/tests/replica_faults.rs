//! Replica faults found from the outside, replayed on a real local cluster
//! (etcd, controllers and brokers as OS processes): pauses with SIGSTOP,
//! kills with SIGKILL.

use std::time::Duration;

use sluice_client::{Admin, ErrorCode, NewTopic, PartitionDescription, Producer, ProducerRecord};
use sluice_testkit::{ClusterSpec, TestCluster};

/// Waits (bounded) until `pred` holds for the topic's only partition.
async fn wait_partition(
    c: &TestCluster,
    topic: &str,
    what: &str,
    pred: impl Fn(&PartitionDescription) -> bool,
) -> PartitionDescription {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let admin = Admin::new(c.client_config()).unwrap();
        match admin.describe_topics(&[topic.to_string()]).await {
            Ok(d) if d[0].partitions.first().is_some_and(&pred) => {
                return d[0].partitions[0].clone();
            }
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::UnknownTopicOrPartition => {}
            // A paused broker in the bootstrap list times out: try another.
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", c.logs_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last (epoch, start offset) of a replica's leader-epoch checkpoint.
fn last_epoch_entry(c: &TestCluster, broker: i32, dir: &str) -> Option<(i32, i64)> {
    let path = c
        .broker_data_dir(broker)
        .join(dir)
        .join("leader-epoch-checkpoint");
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().skip(2).last()?;
    let mut it = line.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Issue 12's recipe: with writes stopped, `kill -9` the leader; the next
/// replica is elected (epoch N+1) and paused before it writes anything; its
/// lease expires and the third replica is elected (N+2) at the same offset.
/// The paused replica resumes holding an epoch-(N+1) entry at its log end
/// and the killed one restarts: both must rejoin the ISR. (Before the fix
/// the resumed replica asked the same ReplicaFetch about 8,000 times a
/// second, for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_paused_right_after_its_election_rejoins_the_isr() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        // The test reads each replica's leader-epoch checkpoint, which a
        // flush writes: flush often.
        log_flush_interval_ms: Some(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("paused", 1, 3))
        .await
        .unwrap();
    let p = wait_partition(&c, "paused", "a full ISR", |p| p.isr.len() == 3).await;
    let producer = Producer::new(c.client_config().with("acks", "all").unwrap()).unwrap();
    for i in 0..20 {
        producer
            .send(ProducerRecord::new("paused", format!("{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    drop(producer);
    let epoch = p.leader_epoch;
    let first = p.leader;
    // The controller elects the first live in-sync replica in assignment order.
    let rest: Vec<i32> = p.replicas.iter().copied().filter(|&r| r != first).collect();
    let (second, third) = (rest[0], rest[1]);

    c.kill(&format!("broker-{first}")).unwrap();
    // Pause the second replica once its own epoch is on disk (the next flush
    // after its election; nothing is written meanwhile, writes are stopped).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while last_epoch_entry(&c, second, "paused-0").is_none_or(|(e, _)| e <= epoch) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker {second} was not elected\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.pause(&format!("broker-{second}")).unwrap();
    let p = wait_partition(&c, "paused", "the third replica to lead", |p| {
        p.leader == third
    })
    .await;
    assert!(p.leader_epoch >= epoch + 2, "{p:?}");

    c.resume(&format!("broker-{second}")).unwrap();
    c.restart(&format!("broker-{first}")).unwrap();
    wait_partition(&c, "paused", "both replicas back in the ISR", |p| {
        p.isr.len() == 3
    })
    .await;
    // The resumed replica dropped its empty epoch, and takes the leader's
    // epoch with the next record.
    let producer = Producer::new(c.client_config().with("acks", "all").unwrap()).unwrap();
    producer
        .send(ProducerRecord::new("paused", "after"))
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mine = last_epoch_entry(&c, second, "paused-0");
        let leaders = last_epoch_entry(&c, third, "paused-0");
        if mine == leaders {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "epoch caches differ: {mine:?} vs the leader's {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
