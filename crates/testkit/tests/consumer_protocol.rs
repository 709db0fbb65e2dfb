//! Consumer groups on the consumer protocol (KIP-848) on a real local
//! cluster: etcd, two controllers, three brokers and two coordinators as OS
//! processes. Members in this process keep a timed log of what they took,
//! gave up, processed and committed; the checks read only those logs: no
//! partition is ever held by two members at once, and a record processed
//! twice was never committed past by its first reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Stdio};
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

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 12;
const HEARTBEAT_MS: u64 = 500;
const SESSION_MS: u64 = 6000;

fn spec() -> ClusterSpec {
    ClusterSpec {
        coordinators: 2,
        offsets_topic_num_partitions: 10,
        group_consumer_heartbeat_interval_ms: HEARTBEAT_MS,
        group_consumer_session_timeout_ms: SESSION_MS,
        ..Default::default()
    }
}

fn member_config(c: &TestCluster, group: &str, id: usize) -> ClientConfig {
    c.client_config()
        .with("group.id", group)
        .unwrap()
        .with("group.protocol", "consumer")
        .unwrap()
        .with("client.id", &format!("m{id}"))
        .unwrap()
        .with("auto.offset.reset", "earliest")
        .unwrap()
        .with("enable.auto.commit", "false")
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Took(i32),
    Gave(i32),
    Lost(i32),
    Processed(i32, i64),
    Committed(i32, i64),
}

/// Every member's own log: (when, member, what).
type Log = Arc<Mutex<Vec<(Instant, usize, Event)>>>;

fn note(log: &Log, id: usize, e: Event) {
    log.lock().push((Instant::now(), id, e));
}

/// Commits what was processed of the partitions it gives up, then logs
/// that they are gone; logs new partitions before any is read.
struct Listener {
    id: usize,
    log: Log,
    positions: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        committer: &'a mut Committer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let offsets: BTreeMap<TopicPartition, i64> = {
                let mut pos = self.positions.lock();
                partitions
                    .iter()
                    .filter_map(|tp| pos.remove(tp).map(|o| (tp.clone(), o)))
                    .collect()
            };
            if committer.commit(&offsets).await.is_ok() {
                for (tp, o) in &offsets {
                    note(&self.log, self.id, Event::Committed(tp.partition, *o));
                }
            }
            for tp in partitions {
                note(&self.log, self.id, Event::Gave(tp.partition));
            }
        })
    }

    fn on_partitions_assigned<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        for tp in partitions {
            note(&self.log, self.id, Event::Took(tp.partition));
        }
        Box::pin(async {})
    }

    fn on_partitions_lost<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        for tp in partitions {
            self.positions.lock().remove(tp);
            note(&self.log, self.id, Event::Lost(tp.partition));
        }
        Box::pin(async {})
    }
}

struct Member {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn close(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }
}

fn spawn_member(config: ClientConfig, id: usize, log: Log) -> Member {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let positions = Arc::new(Mutex::new(BTreeMap::new()));
        let mut c = GroupConsumer::new(config).unwrap();
        c.subscribe_with(
            &[TOPIC],
            Box::new(Listener {
                id,
                log: log.clone(),
                positions: positions.clone(),
            }),
        );
        let mut last_commit = Instant::now();
        while !*stopped.borrow_and_update() {
            let recs = match c.poll(Duration::from_millis(100)).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("member {id}: poll: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for r in recs {
                positions
                    .lock()
                    .insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
                note(&log, id, Event::Processed(r.partition, r.offset));
            }
            if last_commit.elapsed() > Duration::from_millis(300) {
                last_commit = Instant::now();
                let offsets = positions.lock().clone();
                if c.commit_offsets(&offsets).await.is_ok() {
                    for (tp, o) in &offsets {
                        note(&log, id, Event::Committed(tp.partition, *o));
                    }
                }
            }
        }
        let offsets = positions.lock().clone();
        if c.commit_offsets(&offsets).await.is_ok() {
            for (tp, o) in &offsets {
                note(&log, id, Event::Committed(tp.partition, *o));
            }
        }
        let mine = c.assignment();
        c.close().await.unwrap();
        for tp in mine {
            note(&log, id, Event::Gave(tp.partition));
        }
    });
    Member { stop, task }
}

/// Each member's partitions now, from the log.
fn holdings(log: &[(Instant, usize, Event)]) -> BTreeMap<usize, BTreeSet<i32>> {
    let mut out: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new();
    for (_, m, e) in log {
        match e {
            Event::Took(p) => {
                out.entry(*m).or_default().insert(*p);
            }
            Event::Gave(p) | Event::Lost(p) => {
                out.entry(*m).or_default().remove(p);
            }
            _ => {}
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

/// No partition is taken while another member still holds it.
fn check_single_owner(log: &[(Instant, usize, Event)]) {
    let mut holder: HashMap<i32, usize> = HashMap::new();
    for (t, m, e) in log {
        match e {
            Event::Took(p) => {
                if let Some(other) = holder.insert(*p, *m) {
                    panic!(
                        "partition {p} taken by member {m} at {t:?} while member {other} held it"
                    );
                }
            }
            Event::Gave(p) | Event::Lost(p) if holder.get(p) == Some(m) => {
                holder.remove(p);
            }
            _ => {}
        }
    }
}

/// A record processed by two members: the first never committed past it
/// before the second read it. Returns how many records were read twice.
fn check_duplicates(log: &[(Instant, usize, Event)]) -> usize {
    let mut readers: HashMap<(i32, i64), Vec<(usize, usize)>> = HashMap::new();
    for (i, (_, m, e)) in log.iter().enumerate() {
        if let Event::Processed(p, o) = e {
            readers.entry((*p, *o)).or_default().push((i, *m));
        }
    }
    let mut twice = 0;
    for ((p, o), rs) in &readers {
        for w in rs.windows(2) {
            let ((_, first), (second_at, second)) = (w[0], w[1]);
            twice += 1;
            let committed = log[..second_at]
                .iter()
                .filter_map(|(_, m, e)| match e {
                    Event::Committed(cp, co) if *m == first && cp == p => Some(*co),
                    _ => None,
                })
                .max()
                .unwrap_or(-1);
            assert!(
                committed <= *o,
                "partition {p} offset {o}: read by {first} (which committed up to {committed}) and again by {second}"
            );
        }
    }
    twice
}

async fn wait_for(
    c: &TestCluster,
    log: &Log,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&BTreeMap<usize, BTreeSet<i32>>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let h = holdings(&log.lock());
        if pred(&h) {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}: {h:?}\n{}", c.logs_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn shares(h: &BTreeMap<usize, BTreeSet<i32>>) -> Vec<usize> {
    let mut v: Vec<usize> = h.values().map(BTreeSet::len).collect();
    v.sort();
    v
}

/// Produces to every partition in turn until stopped.
fn spawn_producer(c: &TestCluster) -> (watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let producer = Producer::new(c.client_config().with("linger.ms", "2").unwrap()).unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut n = 0u64;
        while !*stopped.borrow() {
            for p in 0..PARTITIONS {
                let rec = ProducerRecord::new(TOPIC, n.to_string()).with_partition(p);
                producer.send(rec).await.unwrap().await.unwrap();
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    });
    (stop, task)
}

async fn start() -> (TestCluster, Log) {
    let c = TestCluster::start(spec()).await.unwrap();
    Admin::new(c.client_config())
        .unwrap()
        .create_topic(NewTopic::new(TOPIC, PARTITIONS, 3))
        .await
        .unwrap();
    (c, Arc::new(Mutex::new(Vec::new())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_member_takes_only_what_moves_and_a_killed_members_partitions_move() {
    let (c, log) = start().await;
    let (stop_producing, producer) = spawn_producer(&c);
    let group = "kip848-join";
    let mut members: Vec<Member> = (0..3)
        .map(|i| spawn_member(member_config(&c, group, i), i, log.clone()))
        .collect();
    wait_for(
        &c,
        &log,
        "three members with four each",
        Duration::from_secs(60),
        |h| shares(h) == [4, 4, 4],
    )
    .await;
    let before = holdings(&log.lock());
    let joined = Instant::now();
    members.push(spawn_member(member_config(&c, group, 3), 3, log.clone()));
    let took = wait_for(
        &c,
        &log,
        "four members with three each",
        Duration::from_secs(60),
        |h| shares(h) == [3, 3, 3, 3],
    )
    .await;
    let settled = Instant::now();
    let after = holdings(&log.lock());
    for (m, had) in &before {
        // Each old member gave up exactly one partition and took none.
        assert!(
            after[m].is_subset(had),
            "member {m} took partitions: {had:?} -> {:?}",
            after[m]
        );
        assert_eq!(had.len() - after[m].len(), 1, "member {m}");
    }
    // The partitions that did not move kept delivering during the rebalance.
    let unmoved: BTreeSet<i32> = before
        .iter()
        .flat_map(|(m, had)| had.intersection(&after[m]).copied())
        .collect();
    let (gap, delivered) = {
        let l = log.lock();
        let mut last: HashMap<i32, Instant> = HashMap::new();
        let mut gap = Duration::ZERO;
        let mut delivered = BTreeSet::new();
        for (t, _, e) in l.iter() {
            if let Event::Processed(p, _) = e
                && unmoved.contains(p)
            {
                if *t > joined && *t < settled {
                    delivered.insert(*p);
                }
                if *t > joined - Duration::from_secs(1)
                    && let Some(prev) = last.insert(*p, *t)
                {
                    gap = gap.max(*t - prev);
                }
            }
        }
        (gap, delivered)
    };
    eprintln!(
        "kip848: the fourth member held its share {:?} after joining; longest pause on an unmoved partition {:?}; unmoved partitions delivering meanwhile {}/{}",
        took,
        gap,
        delivered.len(),
        unmoved.len()
    );
    assert_eq!(
        delivered, unmoved,
        "unmoved partitions that paused for the whole rebalance"
    );

    // A fifth member, a separate process, killed with SIGKILL: its
    // partitions move to the others after the session timeout.
    let sluice = sluice_testkit::binary("sluice").unwrap();
    let mut victim = Command::new(sluice)
        .args([
            "console-consumer",
            "--bootstrap-server",
            &c.bootstrap(),
            "--topic",
            TOPIC,
            "--group",
            group,
            "--consumer-property",
            "group.protocol=consumer",
            "--consumer-property",
            "client.id=victim",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &c,
        &log,
        "the fifth member's share",
        Duration::from_secs(60),
        |h| h.values().map(BTreeSet::len).sum::<usize>() < PARTITIONS as usize,
    )
    .await;
    let admin = Admin::new(c.client_config()).unwrap();
    let d = admin.describe_consumer_group(group).await.unwrap();
    assert_eq!(d.group_type, "consumer");
    assert!(d.members.iter().any(|m| m.client_id == "victim"), "{d:?}");
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    wait_for(
        &c,
        &log,
        "the killed member's partitions back",
        Duration::from_secs(60),
        |h| h.values().map(BTreeSet::len).sum::<usize>() == PARTITIONS as usize && h.len() == 4,
    )
    .await;
    eprintln!(
        "kip848: the killed member's partitions moved {:?} after the kill",
        killed.elapsed()
    );
    assert!(killed.elapsed() >= Duration::from_millis(SESSION_MS / 2));

    stop_producing.send_replace(true);
    producer.await.unwrap();
    for m in members {
        m.close().await;
    }
    let l = log.lock();
    check_single_owner(&l);
    check_duplicates(&l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_mid_reconciliation_splits_nothing() {
    let (mut c, log) = start().await;
    let (stop_producing, producer) = spawn_producer(&c);
    let group = "kip848-failover";
    let mut members: Vec<Member> = (0..3)
        .map(|i| spawn_member(member_config(&c, group, i), i, log.clone()))
        .collect();
    wait_for(&c, &log, "three members", Duration::from_secs(60), |h| {
        shares(h) == [4, 4, 4]
    })
    .await;
    let admin = Admin::new(c.client_config()).unwrap();
    let p = sluice_types::hash::group_offsets_partition(group, spec().offsets_topic_num_partitions);
    let d = admin.describe_cluster().await.unwrap();
    let owner = d
        .coordinators
        .iter()
        .find(|co| co.owned_partitions.contains(&p))
        .expect("a coordinator owns the group");
    let victim = format!("coordinator-{}", owner.id);
    let mark = log.lock().len();
    members.push(spawn_member(member_config(&c, group, 3), 3, log.clone()));
    // Mid-reconciliation: the first partition given up for the new member.
    let start = Instant::now();
    while !log.lock()[mark..]
        .iter()
        .any(|(_, _, e)| matches!(e, Event::Gave(_)))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no revocation\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.kill(&victim).unwrap();
    let settle = wait_for(
        &c,
        &log,
        "four members after the failover",
        Duration::from_secs(90),
        |h| shares(h) == [3, 3, 3, 3],
    )
    .await;
    eprintln!("kip848: killed {victim} mid-reconciliation; settled {settle:?} later");
    let d = admin.describe_cluster().await.unwrap();
    let now_owner = d
        .coordinators
        .iter()
        .find(|co| co.owned_partitions.contains(&p));
    assert!(
        now_owner.is_some_and(|co| format!("coordinator-{}", co.id) != victim),
        "the group did not move off {victim}: {:?}",
        d.coordinators
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_producing.send_replace(true);
    let produced = producer.await.unwrap();
    // Every record is read (the members commit as they go).
    let start = Instant::now();
    loop {
        let read: BTreeSet<(i32, i64)> = log
            .lock()
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::Processed(p, o) => Some((*p, *o)),
                _ => None,
            })
            .collect();
        if read.len() as u64 >= produced {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "read {} of {produced}",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in members {
        m.close().await;
    }
    let l = log.lock();
    check_single_owner(&l);
    let twice = check_duplicates(&l);
    eprintln!(
        "kip848: {produced} records, {twice} read twice (each after its first reader's last commit)"
    );
}

/// Sluice's own classic (eager) members, then a consumer-protocol member:
/// the group moves to the consumer protocol with the classic members in it,
/// and back when the consumer-protocol member leaves; never two owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_members_move_to_the_consumer_protocol_and_back_online() {
    let (c, log) = start().await;
    let (stop_producing, producer) = spawn_producer(&c);
    let group = "kip848-migration";
    let classic = |id: usize| {
        member_config(&c, group, id)
            .with("group.protocol", "classic")
            .unwrap()
            .with("heartbeat.interval.ms", "300")
            .unwrap()
            .with("session.timeout.ms", "6000")
            .unwrap()
    };
    let mut members: Vec<Member> = (0..2)
        .map(|i| spawn_member(classic(i), i, log.clone()))
        .collect();
    wait_for(
        &c,
        &log,
        "two classic members",
        Duration::from_secs(60),
        |h| shares(h) == [6, 6],
    )
    .await;
    let admin = Admin::new(c.client_config()).unwrap();
    assert_eq!(
        admin
            .describe_consumer_group(group)
            .await
            .unwrap()
            .group_type,
        "classic"
    );
    let newcomer = spawn_member(member_config(&c, group, 2), 2, log.clone());
    wait_for(
        &c,
        &log,
        "three members on the consumer protocol",
        Duration::from_secs(90),
        |h| shares(h) == [4, 4, 4],
    )
    .await;
    assert_eq!(
        admin
            .describe_consumer_group(group)
            .await
            .unwrap()
            .group_type,
        "consumer"
    );
    newcomer.close().await;
    wait_for(
        &c,
        &log,
        "the classic members alone again",
        Duration::from_secs(90),
        |h| shares(h) == [6, 6],
    )
    .await;
    let start = Instant::now();
    while admin
        .describe_consumer_group(group)
        .await
        .unwrap()
        .group_type
        != "classic"
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not classic again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_producing.send_replace(true);
    producer.await.unwrap();
    for m in members.drain(..) {
        m.close().await;
    }
    let l = log.lock();
    check_single_owner(&l);
    check_duplicates(&l);
}
