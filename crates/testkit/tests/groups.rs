//! Consumer groups on a real local cluster: etcd, two controllers, three
//! brokers and two coordinators as OS processes; `__consumer_offsets` with
//! RF 3. Group members run in this process; "killing" one aborts its task
//! without a LeaveGroup, so the coordinator sees exactly what a kill -9 looks
//! like (heartbeats stop).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_client::{
    Admin, ClientConfig, Committer, GroupConsumer, NewTopic, Producer, ProducerRecord,
    RebalanceListener, TopicPartition,
};
use sluice_testkit::{ClusterSpec, TestCluster};
use tokio::sync::watch;

fn spec() -> ClusterSpec {
    ClusterSpec {
        coordinators: 2,
        offsets_topic_num_partitions: 10,
        ..Default::default()
    }
}

const SESSION_MS: u64 = 6000;

fn member_config(c: &TestCluster, group: &str, strategy: &str, id: usize) -> ClientConfig {
    c.client_config()
        .with("group.id", group)
        .unwrap()
        .with("client.id", &format!("m{id}"))
        .unwrap()
        .with("partition.assignment.strategy", strategy)
        .unwrap()
        .with("session.timeout.ms", &SESSION_MS.to_string())
        .unwrap()
        .with("heartbeat.interval.ms", "300")
        .unwrap()
        .with("auto.offset.reset", "earliest")
        .unwrap()
        .with("enable.auto.commit", "false")
        .unwrap()
}

/// What every member did, shared with the test.
#[derive(Default)]
struct Ledger {
    /// (member, partition, offset, value) in processing order.
    processed: Vec<(usize, i32, i64, String)>,
    /// Each member's last successful commit per partition.
    committed: HashMap<usize, BTreeMap<TopicPartition, i64>>,
    /// Each running member's current partitions.
    assignment: HashMap<usize, Vec<i32>>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Commits what was processed before partitions go (Kafka's usual listener).
struct CommitOnRevoke {
    id: usize,
    ledger: Shared,
    positions: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
}

impl RebalanceListener for CommitOnRevoke {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        committer: &'a mut Committer,
        _partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let offsets = std::mem::take(&mut *self.positions.lock());
            if committer.commit(&offsets).await.is_ok() {
                self.ledger
                    .lock()
                    .committed
                    .entry(self.id)
                    .or_default()
                    .extend(offsets);
            }
        })
    }

    fn on_partitions_assigned<'a>(
        &'a mut self,
        _partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

struct Member {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Graceful: commit, LeaveGroup.
    async fn close(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }

    /// Like kill -9: no commit, no LeaveGroup; heartbeats stop.
    fn kill(self) {
        self.task.abort();
    }
}

fn spawn_member(config: ClientConfig, topic: &str, id: usize, ledger: Shared) -> Member {
    let (stop, mut stopped) = watch::channel(false);
    let topic = topic.to_string();
    let task = tokio::spawn(async move {
        let positions = Arc::new(Mutex::new(BTreeMap::new()));
        let mut c = GroupConsumer::new(config).unwrap();
        c.subscribe_with(
            &[topic.as_str()],
            Box::new(CommitOnRevoke {
                id,
                ledger: ledger.clone(),
                positions: positions.clone(),
            }),
        );
        let mut last_commit = Instant::now();
        while !*stopped.borrow_and_update() {
            let recs = match c.poll(Duration::from_millis(200)).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("member {id}: poll: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            {
                let mut l = ledger.lock();
                let mut mine: Vec<i32> = c.assignment().iter().map(|tp| tp.partition).collect();
                mine.sort();
                l.assignment.insert(id, mine);
                let mut pos = positions.lock();
                for r in recs {
                    pos.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
                    l.processed.push((
                        id,
                        r.partition,
                        r.offset,
                        String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            if last_commit.elapsed() > Duration::from_millis(300) {
                last_commit = Instant::now();
                let offsets = positions.lock().clone();
                if c.commit_offsets(&offsets).await.is_ok() {
                    ledger
                        .lock()
                        .committed
                        .entry(id)
                        .or_default()
                        .extend(offsets);
                }
            }
        }
        let offsets = positions.lock().clone();
        if c.commit_offsets(&offsets).await.is_ok() {
            ledger
                .lock()
                .committed
                .entry(id)
                .or_default()
                .extend(offsets);
        }
        ledger.lock().assignment.remove(&id);
        c.close().await.unwrap();
    });
    Member { stop, task }
}

async fn wait_for(
    c: &TestCluster,
    ledger: &Shared,
    what: &str,
    pred: impl Fn(&Ledger) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if pred(&ledger.lock()) {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!(
                "timed out waiting for {what}: {:?}\n{}",
                ledger.lock().assignment,
                c.logs_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn shares(l: &Ledger) -> Vec<Vec<i32>> {
    let mut v: Vec<Vec<i32>> = l.assignment.values().cloned().collect();
    v.sort();
    v
}

fn covers(l: &Ledger, members: usize, partitions: i32) -> bool {
    let mut all: Vec<i32> = l.assignment.values().flatten().copied().collect();
    all.sort();
    l.assignment.len() == members && all == (0..partitions).collect::<Vec<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_follow_kafka_and_membership() {
    let c = TestCluster::start(spec()).await.unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("ten", 10, 3))
        .await
        .unwrap();

    for (strategy, expect) in [
        (
            "range",
            vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]],
        ),
        (
            "roundrobin",
            vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]],
        ),
    ] {
        let ledger = Shared::default();
        let group = format!("shares-{strategy}");
        let members: Vec<Member> = (0..3)
            .map(|i| {
                spawn_member(
                    member_config(&c, &group, strategy, i),
                    "ten",
                    i,
                    ledger.clone(),
                )
            })
            .collect();
        wait_for(&c, &ledger, strategy, |l| shares(l) == expect).await;
        for m in members {
            m.close().await;
        }
    }

    // Membership changes: a killed member's partitions move after its
    // session times out; a graceful leave moves them at once; new partitions
    // are picked up.
    let ledger = Shared::default();
    let mut members: Vec<Option<Member>> = (0..3)
        .map(|i| {
            Some(spawn_member(
                member_config(&c, "moves", "range", i),
                "ten",
                i,
                ledger.clone(),
            ))
        })
        .collect();
    wait_for(&c, &ledger, "three members", |l| covers(l, 3, 10)).await;
    members[2].take().unwrap().kill();
    ledger.lock().assignment.remove(&2);
    let after_kill = wait_for(&c, &ledger, "reassignment after a kill", |l| {
        shares(l) == vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]
    })
    .await;
    members[1].take().unwrap().close().await;
    let after_leave = wait_for(&c, &ledger, "reassignment after a leave", |l| {
        covers(l, 1, 10)
    })
    .await;
    admin.create_partitions("ten", 12).await.unwrap();
    let after_grow = wait_for(&c, &ledger, "the new partitions", |l| covers(l, 1, 12)).await;
    // Reported, not asserted (shared machines): the protocol bound for a kill
    // is session.timeout.ms ({SESSION_MS} ms) plus the rebalance.
    println!(
        "groups: reassigned after kill in {} ms (session.timeout.ms {SESSION_MS}), after leave in {} ms, after adding partitions in {} ms",
        after_kill.as_millis(),
        after_leave.as_millis(),
        after_grow.as_millis()
    );
    members[0].take().unwrap().close().await;
}

/// The group the coordinators serve `group` from, and its owner's process name.
async fn coordinator_of(c: &TestCluster, group: &str) -> String {
    let admin = Admin::new(c.client_config()).unwrap();
    let p = sluice_types::hash::group_offsets_partition(group, spec().offsets_topic_num_partitions);
    let d = admin.describe_cluster().await.unwrap();
    let owner = d
        .coordinators
        .iter()
        .find(|co| co.owned_partitions.contains(&p))
        .unwrap_or_else(|| panic!("no coordinator owns partition {p}: {:?}", d.coordinators));
    format!("coordinator-{}", owner.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_processed_through_member_and_coordinator_kills() {
    let mut c = TestCluster::start(spec()).await.unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("stream", 6, 3))
        .await
        .unwrap();

    // A numbered stream, acks=all, for the whole test.
    let producer = Producer::new(c.client_config().with("linger.ms", "2").unwrap()).unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let (stop_producing, stopped) = watch::channel(false);
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !*stopped.borrow() {
                let f = producer
                    .send(ProducerRecord::new("stream", n.to_string()).with_key(n.to_string()))
                    .await
                    .unwrap();
                let acked = acked.clone();
                tokio::spawn(async move {
                    if f.await.is_ok() {
                        acked.lock().insert(n);
                    }
                });
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            producer.close().await;
        })
    };

    let ledger = Shared::default();
    let other = Shared::default();
    let spawn = |id: usize| {
        spawn_member(
            member_config(&c, "proc", "range", id),
            "stream",
            id,
            ledger.clone(),
        )
    };
    let mut members: BTreeMap<usize, Member> = (0..3).map(|i| (i, spawn(i))).collect();
    // A second group reads the same stream on its own.
    let second = spawn_member(
        member_config(&c, "audit", "roundrobin", 100),
        "stream",
        100,
        other.clone(),
    );
    wait_for(&c, &ledger, "three members", |l| covers(l, 3, 6)).await;
    eprintln!("phase: three members");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut killed = HashSet::new();
    members.remove(&0).unwrap().kill();
    killed.insert(0);
    ledger.lock().assignment.remove(&0);
    wait_for(&c, &ledger, "survivors taking over", |l| covers(l, 2, 6)).await;
    members.insert(3, spawn(3));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let victim = coordinator_of(&c, "proc").await;
    eprintln!("phase: killing {victim}");
    c.kill(&victim).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.restart(&victim).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    members.remove(&1).unwrap().kill();
    killed.insert(1);
    ledger.lock().assignment.remove(&1);
    wait_for(&c, &ledger, "survivors after the second kill", |l| {
        covers(l, 2, 6)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("phase: stopping the producer");
    stop_producing.send_replace(true);
    writer.await.unwrap();
    eprintln!("phase: producer stopped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let want: HashSet<String> = acked.lock().iter().map(|n| n.to_string()).collect();
    assert!(
        want.len() > 1000,
        "the producer wrote too little: {}",
        want.len()
    );
    let got = |l: &Ledger| -> HashSet<String> { l.processed.iter().map(|p| p.3.clone()).collect() };
    wait_for(
        &c,
        &ledger,
        "every acknowledged record in group proc",
        |l| got(l).is_superset(&want),
    )
    .await;
    wait_for(
        &c,
        &other,
        "every acknowledged record in group audit",
        |l| got(l).is_superset(&want),
    )
    .await;

    // Duplicates: allowed only for records a killed member processed at or
    // after its last commit on that partition.
    let (acked_n, processed_n, allowed, unexpected) = {
        let l = ledger.lock();
        let mut first: HashMap<&str, (usize, i32, i64)> = HashMap::new();
        let (mut allowed, mut unexpected) = (0usize, Vec::new());
        for (m, p, o, v) in &l.processed {
            match first.get(v.as_str()) {
                None => {
                    first.insert(v, (*m, *p, *o));
                }
                Some(&(fm, fp, fo)) => {
                    let last_commit = l
                        .committed
                        .get(&fm)
                        .and_then(|c| c.get(&TopicPartition::new("stream", fp)))
                        .copied()
                        .unwrap_or(0);
                    if killed.contains(&fm) && fo >= last_commit {
                        allowed += 1;
                    } else {
                        unexpected.push((v.clone(), fm, *m, fo));
                    }
                }
            }
        }
        (want.len(), first.len(), allowed, unexpected)
    };
    println!(
        "groups: acked={} processed={} duplicates_after_last_commit_of_killed_members={} unexpected_duplicates={} audit_group_processed={}",
        acked_n,
        processed_n,
        allowed,
        unexpected.len(),
        other.lock().processed.len()
    );
    assert!(
        unexpected.is_empty(),
        "records processed twice without a kill to explain it: {:?}",
        &unexpected[..unexpected.len().min(10)]
    );
    eprintln!("phase: closing members");
    for (_, m) in members {
        m.close().await;
    }
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_full_restart_and_describe_shows_lag() {
    let mut c = TestCluster::start(spec()).await.unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("lag", 2, 3))
        .await
        .unwrap();
    let producer = Producer::new(c.client_config()).unwrap();
    for i in 0..40 {
        producer
            .send(ProducerRecord::new("lag", format!("v{i}")).with_partition(i % 2))
            .await
            .unwrap();
    }
    producer.flush().await;
    let ledger = Shared::default();
    let m = spawn_member(
        member_config(&c, "keeper", "range", 0),
        "lag",
        0,
        ledger.clone(),
    );
    wait_for(&c, &ledger, "all 40 records", |l| l.processed.len() >= 40).await;
    m.close().await;
    // 10 more on partition 0 after the commit: lag 10 there.
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("lag", format!("w{i}")).with_partition(0))
            .await
            .unwrap();
    }
    producer.flush().await;
    producer.close().await;

    let names: Vec<String> = [
        "broker-1",
        "broker-2",
        "broker-3",
        "controller-1",
        "controller-2",
        "coordinator-1",
        "coordinator-2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in &names {
        c.kill(n).unwrap();
    }
    for n in &names {
        c.restart(n).unwrap();
    }
    c.wait_ready(3).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let offsets = loop {
        match admin.list_consumer_group_offsets("keeper").await {
            Ok(o) if !o.is_empty() => break o,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "offsets not back: {other:?}\n{}",
                    c.logs_tail()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(offsets[&TopicPartition::new("lag", 0)], 20);
    assert_eq!(offsets[&TopicPartition::new("lag", 1)], 20);

    let out = tokio::process::Command::new(sluice_testkit::binary("sluice").unwrap())
        .args([
            "consumer-groups",
            "--bootstrap-server",
            &c.bootstrap(),
            "--describe",
            "--group",
            "keeper",
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("has no active members"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("keeper"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(
        &rows[0][..6],
        ["keeper", "lag", "0", "20", "30", "10"],
        "{text}"
    );
    assert_eq!(
        &rows[1][..6],
        ["keeper", "lag", "1", "20", "20", "0"],
        "{text}"
    );
}
