//! The consumer protocol's state machine with an injected clock: joins,
//! reconciliation, fencing, timers, static members, and a randomized run of
//! simulated members checking that no partition is ever owned twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::error::CoordinatorError;

fn topics(spec: &[(&str, i32)]) -> TopicCounts {
    TopicCounts {
        version: 1,
        counts: spec.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        ..Default::default()
    }
}

fn settings() -> ConsumerSettings {
    ConsumerSettings {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        ..Default::default()
    }
}

fn join(id: &str, subscribed: &[&str]) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 5000,
        subscribed_topic_names: Some(subscribed.iter().map(|s| s.to_string()).collect()),
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

fn beat(id: &str, epoch: i32, owned: Option<&Assignment>) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Default::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// A simulated member: what it owns and its epoch, as its answers told it.
#[derive(Debug, Clone, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

impl Client {
    fn apply(&mut self, a: &HeartbeatAnswer) {
        self.id = a.member_id.clone();
        self.epoch = a.member_epoch;
        if let Some(next) = &a.assignment {
            self.owned = next.clone();
        }
    }

    fn beat(&mut self, g: &mut ConsumerGroup, t: &TopicCounts, now: Instant) -> HeartbeatAnswer {
        let (a, _) = g
            .heartbeat(beat(&self.id, self.epoch, Some(&self.owned)), t, now)
            .unwrap();
        self.apply(&a);
        a
    }
}

fn settle(clients: &mut [Client], g: &mut ConsumerGroup, t: &TopicCounts, now: Instant) {
    for _ in 0..4 {
        for c in clients.iter_mut() {
            c.beat(g, t, now);
        }
    }
}

#[test]
fn three_members_then_a_fourth_moves_only_three_partitions() {
    let t = topics(&[("orders", 12)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let mut clients: Vec<Client> = Vec::new();
    for id in ["a", "b", "c"] {
        let (a, changed) = g.heartbeat(join(id, &["orders"]), &t, now).unwrap();
        assert!(changed);
        let mut c = Client::default();
        c.apply(&a);
        clients.push(c);
    }
    settle(&mut clients, &mut g, &t, now);
    assert_eq!(g.state_name(), "Stable");
    for c in &clients {
        assert_eq!(count(&c.owned), 4, "{c:?}");
        assert_eq!(c.epoch, g.rec.epoch);
    }
    let before: Vec<Assignment> = clients.iter().map(|c| c.owned.clone()).collect();
    let epoch = g.rec.epoch;

    let (a, _) = g.heartbeat(join("d", &["orders"]), &t, now).unwrap();
    let mut d = Client::default();
    d.apply(&a);
    assert_eq!(g.rec.epoch, epoch + 1);
    // Every partition is held by the old members: d waits for them.
    assert_eq!(count(&d.owned), 0);
    assert_eq!(g.rec.members["d"].state, MemberState::UnreleasedPartitions);
    // Each old member is told to give one up, keeping its epoch meanwhile.
    for c in clients.iter_mut() {
        let a = c.beat(&mut g, &t, now);
        assert_eq!(a.member_epoch, epoch, "epoch held while revoking");
        assert_eq!(count(&c.owned), 3);
        assert_eq!(g.rec.members[&c.id].state, MemberState::UnrevokedPartitions);
    }
    // The acknowledgements move them to the new epoch; d takes the three.
    for c in clients.iter_mut() {
        let a = c.beat(&mut g, &t, now);
        assert_eq!(a.member_epoch, epoch + 1);
    }
    d.beat(&mut g, &t, now);
    assert_eq!(count(&d.owned), 3);
    assert_eq!(g.state_name(), "Stable");
    for (c, b) in clients.iter().zip(&before) {
        let kept: usize = c
            .owned
            .iter()
            .map(|(t, ps)| ps.intersection(&b[t]).count())
            .sum();
        assert_eq!(kept, 3, "an old member kept all but the one it gave up");
    }
}

#[test]
fn epochs_fence_and_a_lost_answer_is_forgiven() {
    let t = topics(&[("x", 4)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let (a, _) = g.heartbeat(join("a", &["x"]), &t, now).unwrap();
    let mut a_client = Client::default();
    a_client.apply(&a);
    assert_eq!(count(&a_client.owned), 4);
    let e1 = a_client.epoch;
    // b joins: a is asked to give up two; the answer is "lost".
    g.heartbeat(join("b", &["x"]), &t, now).unwrap();
    let (lost, _) = g
        .heartbeat(beat("a", e1, Some(&a_client.owned)), &t, now)
        .unwrap();
    assert_eq!(count(lost.assignment.as_ref().unwrap()), 2);
    // a revokes (after hearing again), moves to the new epoch.
    let (ok, _) = g
        .heartbeat(beat("a", e1, lost.assignment.as_ref()), &t, now)
        .unwrap();
    let e2 = ok.member_epoch;
    assert!(e2 > e1);
    // That answer is lost too: a retries with its previous epoch, owning a
    // subset of its assignment: accepted.
    g.heartbeat(beat("a", e1, lost.assignment.as_ref()), &t, now)
        .unwrap();
    // An epoch from the future, or an old one with partitions it no longer
    // has, is fenced.
    let err = g.heartbeat(beat("a", e2 + 5, None), &t, now).unwrap_err();
    assert!(
        matches!(err, CoordinatorError::FencedMemberEpoch { .. }),
        "{err}"
    );
    let err = g
        .heartbeat(beat("a", e1, Some(&a_client.owned)), &t, now)
        .unwrap_err();
    assert!(
        matches!(err, CoordinatorError::FencedMemberEpoch { .. }),
        "{err}"
    );
    // Unknown members are told so.
    let err = g.heartbeat(beat("zz", 3, None), &t, now).unwrap_err();
    assert!(matches!(err, CoordinatorError::UnknownMember { .. }));
    // Commits carry the member's current epoch.
    assert!(g.check_commit("a", e2).is_ok());
    let err = g.check_commit("a", e1).unwrap_err();
    assert!(matches!(err, CoordinatorError::StaleMemberEpoch { .. }));
    assert!(
        g.check_commit("", -1).is_err(),
        "simple commit to an active group"
    );
}

#[test]
fn a_fenced_member_rejoining_with_epoch_zero_starts_over() {
    let t = topics(&[("x", 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let (a, _) = g.heartbeat(join("a", &["x"]), &t, now).unwrap();
    assert_eq!(count(a.assignment.as_ref().unwrap()), 2);
    // It lost its state and rejoins with the same id: it owns nothing and
    // gets its partitions again.
    let (again, _) = g.heartbeat(join("a", &["x"]), &t, now).unwrap();
    assert_eq!(count(again.assignment.as_ref().unwrap()), 2);
    assert_eq!(g.rec.members.len(), 1);
}

#[test]
fn sessions_expire_and_slow_revokers_are_removed() {
    let t = topics(&[("x", 4)]);
    let start = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let mut a = Client::default();
    a.apply(&g.heartbeat(join("a", &["x"]), &t, start).unwrap().0);
    let mut b = Client::default();
    b.apply(&g.heartbeat(join("b", &["x"]), &t, start).unwrap().0);
    // a is told to revoke two but never acknowledges: after its rebalance
    // timeout (5 s) it is removed, though b's heartbeats keep b alive.
    let (ans, _) = g.heartbeat(beat("a", a.epoch, None), &t, start).unwrap();
    assert!(ans.assignment.is_some());
    assert!(!g.tick(&t, start + Duration::from_secs(4)));
    b.beat(&mut g, &t, start + Duration::from_secs(4));
    assert!(g.tick(&t, start + Duration::from_secs(6)));
    assert!(!g.rec.members.contains_key("a"));
    b.beat(&mut g, &t, start + Duration::from_secs(6));
    assert_eq!(count(&b.owned), 4, "b takes everything once a is gone");
    // b stops heartbeating: gone after the session timeout.
    assert!(g.tick(&t, start + Duration::from_secs(17)));
    assert!(g.is_empty());
    assert_eq!(g.state_name(), "Empty");
}

#[test]
fn static_members_keep_their_partitions_across_a_restart() {
    let t = topics(&[("x", 4)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let mut ids = Vec::new();
    for (id, inst) in [("a1", "A"), ("b1", "B")] {
        let mut j = join(id, &["x"]);
        j.instance_id = Some(inst.into());
        let mut c = Client::default();
        c.apply(&g.heartbeat(j, &t, now).unwrap().0);
        ids.push(c);
    }
    settle(&mut ids, &mut g, &t, now);
    let a_parts = ids[0].owned.clone();
    let epoch = g.rec.epoch;
    // A second process with instance A while a1 is active: refused.
    let mut j = join("a2", &["x"]);
    j.instance_id = Some("A".into());
    let err = g.heartbeat(j.clone(), &t, now).unwrap_err();
    assert!(matches!(err, CoordinatorError::UnreleasedInstance { .. }));
    // a1 leaves for a restart (-2); a2 takes its place and partitions
    // without a new group epoch.
    let mut leave = beat("a1", ids[0].epoch, None);
    leave.member_epoch = LEAVE_STATIC_EPOCH;
    leave.instance_id = Some("A".into());
    let (ans, _) = g.heartbeat(leave, &t, now).unwrap();
    assert_eq!(ans.member_epoch, LEAVE_STATIC_EPOCH);
    let (ans, _) = g.heartbeat(j, &t, now).unwrap();
    assert_eq!(ans.member_id, "a2");
    assert_eq!(ans.assignment.as_ref(), Some(&a_parts));
    assert_eq!(g.rec.epoch, epoch);
    assert!(!g.rec.members.contains_key("a1"));
}

#[test]
fn new_partitions_and_regex_subscriptions_raise_the_epoch() {
    let mut t = topics(&[("logs-a", 2), ("other", 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let mut j = join("a", &[]);
    j.subscribed_topic_regex = Some("logs-.*".into());
    let mut a = Client::default();
    a.apply(&g.heartbeat(j, &t, now).unwrap().0);
    assert_eq!(a.owned.keys().collect::<Vec<_>>(), ["logs-a"]);
    let epoch = g.rec.epoch;
    assert!(!g.tick(&t, now), "nothing changed");
    t.version += 1;
    t.counts.insert("logs-b".into(), 3);
    assert!(g.tick(&t, now));
    assert_eq!(g.rec.epoch, epoch + 1);
    a.beat(&mut g, &t, now);
    assert_eq!(count(&a.owned), 5);
    // A topic it does not match changes nothing.
    t.version += 1;
    t.counts.insert("unrelated".into(), 9);
    assert!(!g.tick(&t, now));
    // Bad input: a regex that does not compile, an unknown assignor.
    let mut bad = join("b", &[]);
    bad.subscribed_topic_regex = Some("(".into());
    let err = g.heartbeat(bad, &t, now).unwrap_err();
    assert!(matches!(err, CoordinatorError::InvalidRegex { .. }));
    let mut bad = join("b", &["x"]);
    bad.server_assignor = Some("sticky".into());
    let err = g.heartbeat(bad, &t, now).unwrap_err();
    assert!(matches!(err, CoordinatorError::UnsupportedAssignor { .. }));
    let mut bad = join("b", &["x"]);
    bad.rebalance_timeout_ms = -1;
    assert!(matches!(
        g.heartbeat(bad, &t, now).unwrap_err(),
        CoordinatorError::InvalidHeartbeat(_)
    ));
}

#[test]
fn a_restored_group_answers_as_before() {
    let t = topics(&[("x", 6)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    let mut cs = Vec::new();
    for id in ["a", "b"] {
        let mut c = Client::default();
        c.apply(&g.heartbeat(join(id, &["x"]), &t, now).unwrap().0);
        cs.push(c);
    }
    // Mid-reconciliation: a is revoking.
    cs[0].beat(&mut g, &t, now);
    let rec: ConsumerGroupRecord =
        serde_json::from_slice(&serde_json::to_vec(&g.rec).unwrap()).unwrap();
    assert_eq!(rec, g.rec);
    let mut restored = ConsumerGroup::restore("g".into(), rec, settings(), now);
    for c in cs.iter_mut() {
        let mut copy = c.clone();
        let a1 = c.beat(&mut g, &t, now);
        let a2 = copy.beat(&mut restored, &t, now);
        assert_eq!(a1, a2);
    }
    assert_eq!(restored.rec, g.rec);
}

#[test]
fn the_members_choose_the_assignor() {
    let t = topics(&[("x", 4), ("y", 4)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g".into(), settings());
    for id in ["a", "b"] {
        let mut j = join(id, &["x", "y"]);
        j.server_assignor = Some("range".into());
        g.heartbeat(j, &t, now).unwrap();
    }
    assert_eq!(g.rec.assignor, "range");
    assert_eq!(g.rec.target["a"]["x"], g.rec.target["a"]["y"]);
}

#[derive(Debug, Clone)]
enum Op {
    Join,
    Beat(usize),
    /// A plain heartbeat: owned partitions not repeated.
    BeatQuiet(usize),
    /// The answer is lost on the way.
    BeatLost(usize),
    /// The member applies the last assignment it was sent.
    Apply(usize),
    Leave(usize),
    /// kill -9: the member stops; its session runs out.
    Crash(usize),
    Advance(u64),
    AddPartitions,
    DeleteTopic,
    /// Another coordinator takes over from the persisted record.
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Join),
        6 => (0usize..8).prop_map(Op::Beat),
        3 => (0usize..8).prop_map(Op::BeatQuiet),
        1 => (0usize..8).prop_map(Op::BeatLost),
        4 => (0usize..8).prop_map(Op::Apply),
        1 => (0usize..8).prop_map(Op::Leave),
        1 => (0usize..8).prop_map(Op::Crash),
        2 => (100u64..12_000).prop_map(Op::Advance),
        1 => Just(Op::AddPartitions),
        1 => Just(Op::DeleteTopic),
        1 => Just(Op::Failover),
    ]
}

/// A member as the real clients behave: the epoch from each answer at
/// once; an assignment applied later (`Apply`), the latest one winning.
#[derive(Debug, Clone, Default)]
struct SlowClient {
    id: String,
    epoch: i32,
    owned: Assignment,
    pending: Option<Assignment>,
}

impl SlowClient {
    fn answer(&mut self, a: &HeartbeatAnswer) {
        self.id = a.member_id.clone();
        self.epoch = a.member_epoch;
        if let Some(next) = &a.assignment {
            self.pending = Some(next.clone());
        }
    }

    /// Fenced or removed: gives everything up, joins again.
    fn rejoin(&mut self, g: &mut ConsumerGroup, t: &TopicCounts, now: Instant) {
        self.owned.clear();
        self.pending = None;
        let (a, _) = g.heartbeat(join(&self.id, &["x", "y"]), t, now).unwrap();
        self.answer(&a);
    }

    fn beat(
        &mut self,
        g: &mut ConsumerGroup,
        t: &TopicCounts,
        now: Instant,
        quiet: bool,
        lost: bool,
    ) {
        // What it owns and what it may still take: an assignment not
        // applied yet must not count as given up.
        let mut owned = self.owned.clone();
        for (topic, p) in self.pending.iter().flat_map(member::flat) {
            owned.entry(topic.to_string()).or_default().insert(p);
        }
        let owned = (!quiet).then_some(&owned);
        match g.heartbeat(beat(&self.id, self.epoch, owned), t, now) {
            Ok((a, _)) if !lost => self.answer(&a),
            Ok(_) => {}
            Err(_) => self.rejoin(g, t, now),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Random joins, heartbeats (full or plain), lost answers, assignments
    /// applied late, leaves, crashes, time, topics changing and coordinator
    /// failovers: no partition is ever owned by two members of the group,
    /// each one a member owns is held for it by the coordinator, and once
    /// everyone heartbeats the group settles with every partition owned.
    #[test]
    fn no_partition_is_ever_owned_twice(ops in proptest::collection::vec(op(), 1..150)) {
        let mut t = topics(&[("x", 6), ("y", 3)]);
        let start = Instant::now();
        let mut now = start;
        let mut g = ConsumerGroup::new("g".into(), settings());
        let mut live: Vec<SlowClient> = Vec::new();
        let mut next_id = 0;
        for op in ops {
            let pick = |i: usize, n: usize| i % n.max(1);
            match op {
                Op::Join => {
                    next_id += 1;
                    let mut c = SlowClient { id: format!("m{next_id}"), ..Default::default() };
                    c.rejoin(&mut g, &t, now);
                    live.push(c);
                }
                Op::Beat(i) | Op::BeatQuiet(i) | Op::BeatLost(i) if !live.is_empty() => {
                    let i = pick(i, live.len());
                    let quiet = matches!(op, Op::BeatQuiet(_));
                    let lost = matches!(op, Op::BeatLost(_));
                    live[i].beat(&mut g, &t, now, quiet, lost);
                }
                Op::Apply(i) if !live.is_empty() => {
                    let i = pick(i, live.len());
                    if let Some(p) = live[i].pending.take() {
                        live[i].owned = p;
                    }
                }
                Op::Leave(i) if !live.is_empty() => {
                    let c = live.remove(pick(i, live.len()));
                    let _ = g.heartbeat(beat(&c.id, LEAVE_EPOCH, None), &t, now);
                }
                Op::Crash(i) if !live.is_empty() => {
                    live.remove(pick(i, live.len()));
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    g.tick(&t, now);
                }
                Op::AddPartitions => {
                    t.version += 1;
                    *t.counts.entry("x".into()).or_insert(0) += 1;
                    g.tick(&t, now);
                }
                Op::DeleteTopic => {
                    t.version += 1;
                    if t.counts.remove("y").is_none() {
                        t.counts.insert("y".into(), 3);
                    }
                    g.tick(&t, now);
                }
                Op::Failover => {
                    let rec = serde_json::from_slice(&serde_json::to_vec(&g.rec).unwrap()).unwrap();
                    g = ConsumerGroup::restore("g".into(), rec, settings(), now);
                }
                _ => {}
            }
            let mut seen = BTreeMap::new();
            // A member the coordinator removed (its session or rebalance
            // timeout passed while it was silent) is a zombie until its next
            // heartbeat is refused; its commits are fenced. Every other
            // member owns only what the coordinator holds for it.
            for c in live.iter().filter(|c| g.rec.members.contains_key(&c.id)) {
                for (topic, p) in member::flat(&c.owned) {
                    if let Some(other) = seen.insert((topic.to_string(), p), c.id.clone()) {
                        prop_assert!(false, "{topic}-{p} owned by {} and {}", other, c.id);
                    }
                    // A deleted topic's partitions are simply gone.
                    if t.counts.get(topic).is_some_and(|n| p < *n) {
                        prop_assert_eq!(g.owner(topic, p), Some(c.id.as_str()), "{}-{}", topic, p);
                    }
                }
            }
        }
        // Everyone heartbeats and applies every 3 s (crashed members time
        // out): the group settles with all partitions owned.
        for _ in 0..10 {
            now += Duration::from_secs(3);
            g.tick(&t, now);
            for c in live.iter_mut() {
                c.beat(&mut g, &t, now, false, false);
                if let Some(p) = c.pending.take() {
                    c.owned = p;
                }
            }
        }
        if !live.is_empty() {
            prop_assert_eq!(g.state_name(), "Stable");
            let total: usize = live.iter().map(|c| count(&c.owned)).sum();
            prop_assert_eq!(total as i32, t.counts.values().sum::<i32>());
        }
    }
}
