//! The client's group consumer against a real standalone node: Kafka's
//! assignments for range and round-robin, every record consumed once across
//! the members, a graceful leave moving partitions at once, and commits that
//! let the next member resume where the last one stopped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_client::{Admin, ClientConfig, GroupConsumer, NewTopic, Producer, ProducerRecord};
use sluice_standalone::{Standalone, StandaloneOptions};
use tokio::sync::watch;

async fn start(dir: &Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut o = StandaloneOptions::new(dir, addr);
    o.coordinator.group_initial_rebalance_delay_ms = 0;
    o.controller.offsets_topic_num_partitions = 4;
    Standalone::start(o).await.unwrap()
}

fn member_config(node: &Standalone, group: &str, strategy: &str, i: usize) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
        .with("group.id", group)
        .unwrap()
        .with("client.id", &format!("member-{i}"))
        .unwrap()
        .with("partition.assignment.strategy", strategy)
        .unwrap()
        .with("session.timeout.ms", "6000")
        .unwrap()
        .with("heartbeat.interval.ms", "200")
        .unwrap()
        .with("auto.offset.reset", "earliest")
        .unwrap()
        .with("auto.commit.interval.ms", "200")
        .unwrap()
}

/// What each running member reports: its partitions and what it consumed.
#[derive(Default)]
struct Seen {
    assignment: HashMap<usize, Vec<i32>>,
    values: HashMap<usize, Vec<String>>,
}

struct Member {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_member(config: ClientConfig, topic: &str, i: usize, seen: Arc<Mutex<Seen>>) -> Member {
    let (stop, mut stopped) = watch::channel(false);
    let topic = topic.to_string();
    let task = tokio::spawn(async move {
        let mut c = GroupConsumer::new(config).unwrap();
        c.subscribe(&[topic.as_str()]);
        while !*stopped.borrow_and_update() {
            let recs = c.poll(Duration::from_millis(100)).await.unwrap();
            let mut s = seen.lock();
            let mut mine: Vec<i32> = c.assignment().iter().map(|tp| tp.partition).collect();
            mine.sort();
            s.assignment.insert(i, mine);
            for r in recs {
                s.values
                    .entry(i)
                    .or_default()
                    .push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        c.close().await.unwrap();
        seen.lock().assignment.remove(&i);
    });
    Member { stop, task }
}

async fn wait_for(seen: &Arc<Mutex<Seen>>, what: &str, pred: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if pred(&seen.lock()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            seen.lock().assignment
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sorted_assignments(s: &Seen) -> Vec<Vec<i32>> {
    let mut v: Vec<Vec<i32>> = s.assignment.values().cloned().collect();
    v.sort();
    v
}

async fn shares(node: &Standalone, strategy: &str, expect: Vec<Vec<i32>>) {
    let topic = format!("ten-{strategy}");
    Admin::new(ClientConfig::new(&node.addr.to_string()))
        .unwrap()
        .create_topic(NewTopic::new(&topic, 10, 1))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let members: Vec<Member> = (0..3)
        .map(|i| {
            spawn_member(
                member_config(node, &format!("g-{strategy}"), strategy, i),
                &topic,
                i,
                seen.clone(),
            )
        })
        .collect();
    wait_for(&seen, "Kafka's shares", |s| sorted_assignments(s) == expect).await;
    for m in members {
        m.stop.send_replace(true);
        m.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_round_robin_share_ten_partitions_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    shares(
        &node,
        "range",
        vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]],
    )
    .await;
    shares(
        &node,
        "roundrobin",
        vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]],
    )
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keeps_survivors_partitions_when_a_member_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    Admin::new(ClientConfig::new(&node.addr.to_string()))
        .unwrap()
        .create_topic(NewTopic::new("sticky", 10, 1))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members: BTreeMap<usize, Member> = (0..3)
        .map(|i| {
            (
                i,
                spawn_member(
                    member_config(&node, "sticky-group", "sticky", i),
                    "sticky",
                    i,
                    seen.clone(),
                ),
            )
        })
        .collect();
    wait_for(&seen, "a balanced 4/3/3 split", |s| {
        let mut sizes: Vec<usize> = s.assignment.values().map(Vec::len).collect();
        sizes.sort();
        s.assignment.len() == 3 && sizes == [3, 3, 4]
    })
    .await;
    let before: HashMap<usize, Vec<i32>> = seen.lock().assignment.clone();
    let m = members.remove(&2).unwrap();
    m.stop.send_replace(true);
    m.task.await.unwrap();
    wait_for(&seen, "two members with all ten", |s| {
        s.assignment.len() == 2 && s.assignment.values().map(Vec::len).sum::<usize>() == 10
    })
    .await;
    let after = seen.lock().assignment.clone();
    for (id, old) in &before {
        if let Some(new) = after.get(id) {
            assert!(
                old.iter().all(|p| new.contains(p)),
                "member {id} lost partitions: {old:?} -> {new:?}"
            );
        }
    }
    for (_, m) in members {
        m.stop.send_replace(true);
        m.task.await.unwrap();
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_leave_rebalances_and_commits_resume() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let bootstrap = node.addr.to_string();
    Admin::new(ClientConfig::new(&bootstrap))
        .unwrap()
        .create_topic(NewTopic::new("work", 6, 1))
        .await
        .unwrap();
    let producer = Producer::new(ClientConfig::new(&bootstrap)).unwrap();
    let send = |from: usize, to: usize| {
        let producer = &producer;
        async move {
            for i in from..to {
                producer
                    .send(ProducerRecord::new("work", format!("v{i}")).with_key(format!("k{i}")))
                    .await
                    .unwrap();
            }
            producer.flush().await;
        }
    };
    send(0, 300).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members: BTreeMap<usize, Member> = (0..2)
        .map(|i| {
            (
                i,
                spawn_member(
                    member_config(&node, "work-group", "range", i),
                    "work",
                    i,
                    seen.clone(),
                ),
            )
        })
        .collect();
    wait_for(&seen, "two members with three partitions each", |s| {
        sorted_assignments(s) == vec![vec![0, 1, 2], vec![3, 4, 5]]
    })
    .await;
    wait_for(&seen, "the first 300 records", |s| {
        s.values.values().map(Vec::len).sum::<usize>() >= 300
    })
    .await;

    // A graceful close (LeaveGroup) hands member 1's partitions over at once.
    let m = members.remove(&1).unwrap();
    m.stop.send_replace(true);
    m.task.await.unwrap();
    wait_for(&seen, "the survivor owning all six", |s| {
        sorted_assignments(s) == vec![vec![0, 1, 2, 3, 4, 5]]
    })
    .await;
    send(300, 600).await;
    wait_for(&seen, "all 600 records", |s| {
        s.values.values().map(Vec::len).sum::<usize>() >= 600
    })
    .await;
    let m = members.remove(&0).unwrap();
    m.stop.send_replace(true);
    m.task.await.unwrap();

    // Every record exactly once across members: the leaver committed on close.
    {
        let s = seen.lock();
        let mut all: Vec<&String> = s.values.values().flatten().collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!((all.len(), n), (600, 600), "each record once");
    }

    // A new member of the group resumes after the committed offsets.
    send(600, 610).await;
    let seen2 = Arc::new(Mutex::new(Seen::default()));
    let m = spawn_member(
        member_config(&node, "work-group", "range", 9),
        "work",
        9,
        seen2.clone(),
    );
    wait_for(&seen2, "the 10 new records", |s| {
        s.values.values().map(Vec::len).sum::<usize>() >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.stop.send_replace(true);
    m.task.await.unwrap();
    {
        let s = seen2.lock();
        let mut got: Vec<&String> = s.values.values().flatten().collect();
        got.sort();
        let want: Vec<String> = (600..610).map(|i| format!("v{i}")).collect();
        let mut want: Vec<&String> = want.iter().collect();
        want.sort();
        assert_eq!(got, want, "only what was not committed before");
    }
    node.shutdown().await.unwrap();
}

/// Members with different subscriptions: the leader (the first to join)
/// reads only "mine", yet partitions added to "theirs" must reach the other
/// member, as Kafka's leader watches every topic of the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_notices_new_partitions_of_topics_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let admin = Admin::new(ClientConfig::new(&node.addr.to_string())).unwrap();
    admin
        .create_topic(NewTopic::new("mine", 1, 1))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("theirs", 2, 1))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let leader = spawn_member(
        member_config(&node, "mixed", "range", 0),
        "mine",
        0,
        seen.clone(),
    );
    wait_for(&seen, "the leader's partition", |s| {
        s.assignment.get(&0) == Some(&vec![0])
    })
    .await;
    let other = spawn_member(
        member_config(&node, "mixed", "range", 1),
        "theirs",
        1,
        seen.clone(),
    );
    wait_for(&seen, "both subscriptions", |s| {
        s.assignment.get(&1) == Some(&vec![0, 1])
    })
    .await;
    admin.create_partitions("theirs", 4).await.unwrap();
    wait_for(&seen, "the new partitions of \"theirs\"", |s| {
        s.assignment.get(&1) == Some(&vec![0, 1, 2, 3])
    })
    .await;
    for m in [leader, other] {
        m.stop.send_replace(true);
        m.task.await.unwrap();
    }
}

/// What a running static member last saw: member id, generation,
/// partitions, and the error of its last poll.
type StaticView = (String, i32, Vec<i32>, Option<sluice_client::ErrorCode>);

struct StaticMember {
    view: watch::Receiver<StaticView>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A group member with `group.instance.id` polling on its own task, as a
/// separate process would.
fn run_static(node: &Standalone, instance: &str) -> StaticMember {
    let config = member_config(node, "statics", "range", 0)
        .with("group.instance.id", instance)
        .unwrap();
    let (view_tx, view) = watch::channel((String::new(), -1, Vec::new(), None));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut c = GroupConsumer::new(config).unwrap();
        c.subscribe(&["static"]);
        while !*stopped.borrow_and_update() {
            let err = c
                .poll(Duration::from_millis(50))
                .await
                .err()
                .map(|e| e.code());
            let (id, generation) = c.member();
            let parts = c.assignment().iter().map(|tp| tp.partition).collect();
            view_tx.send_replace((id, generation, parts, err));
            if err.is_some() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c.close().await.unwrap();
    });
    StaticMember { view, stop, task }
}

impl StaticMember {
    async fn wait(&mut self, what: &str, pred: impl Fn(&StaticView) -> bool) -> StaticView {
        let mut view = self.view.clone();
        match tokio::time::timeout(Duration::from_secs(30), view.wait_for(|v| pred(v))).await {
            Ok(v) => v.unwrap().clone(),
            Err(_) => panic!("timed out waiting for {what}: {:?}", *self.view.borrow()),
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }
}

/// Static membership (KIP-345): a member with `group.instance.id` that
/// restarts within its session timeout gets its partitions back in the same
/// generation, the other member never rebalances, and a second process with
/// the same instance id fences the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance_and_a_duplicate_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    Admin::new(ClientConfig::new(&node.addr.to_string()))
        .unwrap()
        .create_topic(NewTopic::new("static", 4, 1))
        .await
        .unwrap();
    // `a` first, so it leads; both the follower and the leader restart below.
    let mut a = run_static(&node, "a");
    a.wait("a alone", |v| v.2.len() == 4).await;
    let mut b = run_static(&node, "b");
    let (_, generation, b_parts, _) = b.wait("b's share", |v| v.2.len() == 2).await;
    let (a_id, _, a_parts, _) = a
        .wait("a's share", |v| v.1 == generation && v.2.len() == 2)
        .await;

    // b stops (no LeaveGroup) and comes back as a new process.
    b.stop().await;
    let mut b2 = run_static(&node, "b");
    let (b2_id, b2_generation, b2_parts, _) = b2.wait("b back", |v| !v.2.is_empty()).await;
    assert_eq!(b2_parts, b_parts, "b got its partitions back");
    assert_eq!(b2_generation, generation, "no new generation");
    // Give a rebalance, if one were coming, the time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = a.view.borrow().clone();
    assert_eq!(
        (now.0, now.1, now.2),
        (a_id, generation, a_parts.clone()),
        "a never rebalanced"
    );

    // The leader restarts too: same partitions, same generation.
    a.stop().await;
    let mut a = run_static(&node, "a");
    let (_, a2_generation, a2_parts, _) = a.wait("a back", |v| !v.2.is_empty()).await;
    assert_eq!((a2_generation, a2_parts), (generation, a_parts));

    // A second process with instance id "b": the newer one wins.
    let mut b3 = run_static(&node, "b");
    let (b3_id, _, b3_parts, _) = b3.wait("b3's partitions", |v| !v.2.is_empty()).await;
    assert_ne!(b3_id, b2_id);
    assert_eq!(b3_parts, b_parts);
    b2.wait("b2 fenced, holding nothing", |v| {
        v.3 == Some(sluice_client::ErrorCode::FencedInstanceId) && v.2.is_empty()
    })
    .await;
    b2.task.abort();
    b3.stop().await;
    a.stop().await;
    node.shutdown().await.unwrap();
}
