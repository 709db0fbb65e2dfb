//! Consumer partition assignors: Kafka's `range`, `roundrobin` and `sticky`.
//!
//! The group leader runs one of these during a rebalance. They are pure
//! functions of (partition count per topic, member subscriptions) so they can
//! be tested exhaustively and so every leader computes the same answer; they
//! follow Kafka's Java `RangeAssignor`, `RoundRobinAssignor` and
//! `AbstractStickyAssignor` step by step, because operators (and tests ported
//! from Kafka) expect the same partition-to-member mapping.
//!
//! Common rules: every member appears in the result, possibly with nothing;
//! a member only gets partitions of topics it subscribes to; topics absent
//! from `partitions_per_topic` (or with no partitions) are skipped; topics
//! nobody subscribes to are never assigned. Member ids are expected to be
//! unique; if one repeats, its first entry is used.
//!
//! Rack ids are carried but unused: Kafka's rack-aware variants need the racks
//! of partition replicas, which this interface does not take, and without them
//! Kafka falls back to exactly the non-rack-aware logic implemented here.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque, hash_map::Entry};

/// One member's JoinGroup metadata, as the assignor sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    /// `group.instance.id` of a static member: range and roundrobin order by
    /// it so a restarted static member gets its partitions back.
    pub group_instance_id: Option<String>,
    pub topics: Vec<String>,
    /// Partitions the member owned before this rebalance (sticky input).
    pub owned_partitions: Vec<(String, i32)>,
    /// Generation in which `owned_partitions` were assigned; the highest wins
    /// when two members claim the same partition (one of them is stale).
    pub generation_id: i32,
    pub rack_id: Option<String>,
}

/// member id -> topic -> partitions (ascending). Topics with no partitions for
/// a member are left out of its map.
pub type Assignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// A partition assignment strategy, selected by its protocol name.
pub trait Assignor: Send + Sync {
    /// The protocol name sent in JoinGroup (`partition.assignment.strategy`).
    fn name(&self) -> &'static str;
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment;
}

/// Per topic, contiguous ranges over the topic's subscribers; the first
/// `partitions % subscribers` get one extra. Co-partitioned topics land on the
/// same member (useful for joins), at the cost of imbalance across topics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

/// All partitions (topic, then partition order) dealt in turn to the members,
/// skipping members not subscribed to the partition's topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

/// Balanced like roundrobin, but keeps as many previously owned partitions as
/// balance allows, so a rebalance moves few partitions (eager `sticky`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// The assignor for a protocol name: `range`, `roundrobin` or `sticky`.
pub fn by_name(name: &str) -> Option<Box<dyn Assignor>> {
    match name {
        "range" => Some(Box::new(RangeAssignor)),
        "roundrobin" => Some(Box::new(RoundRobinAssignor)),
        "sticky" => Some(Box::new(StickyAssignor)),
        _ => None,
    }
}

/// A topic-partition borrowed from the inputs; the tuple order (topic, then
/// partition) is Kafka's partition order.
type Tp<'a> = (&'a str, i32);

/// Members without repeated ids (first entry wins), in input order.
fn unique_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut seen = HashSet::new();
    members
        .iter()
        .filter(|m| seen.insert(m.member_id.as_str()))
        .collect()
}

fn empty_assignment(members: &[&MemberSubscription]) -> Assignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), BTreeMap::new()))
        .collect()
}

/// Builds the result from per-member partition lists (indexed like `members`).
fn to_assignment(members: &[&MemberSubscription], per_member: Vec<Vec<Tp<'_>>>) -> Assignment {
    let mut out = empty_assignment(members);
    for (m, tps) in members.iter().zip(per_member) {
        let topics = out
            .get_mut(&m.member_id)
            .expect("every member has an entry");
        for (topic, p) in tps {
            topics.entry(topic.to_owned()).or_default().push(p);
        }
        for ps in topics.values_mut() {
            ps.sort_unstable();
        }
    }
    out
}

/// Kafka's `MemberInfo` order: static members first, by `group.instance.id`,
/// then dynamic ones by member id. Member id breaks the remaining ties so the
/// order is total (Kafka leaves equal instance ids in map order).
fn kafka_member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.member_id.cmp(&b.member_id))
}

/// Partition count of an assignable topic; Kafka drops topics without
/// metadata or without partitions before calling the assignor.
fn partition_count(partitions_per_topic: &BTreeMap<String, i32>, topic: &str) -> Option<i32> {
    partitions_per_topic.get(topic).copied().filter(|&n| n > 0)
}

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let members = unique_members(members);
        let mut out = empty_assignment(&members);
        let mut subscribers: BTreeMap<&str, Vec<&MemberSubscription>> = BTreeMap::new();
        for m in &members {
            let topics: BTreeSet<&str> = m.topics.iter().map(String::as_str).collect();
            for topic in topics {
                subscribers.entry(topic).or_default().push(m);
            }
        }
        for (topic, mut consumers) in subscribers {
            let Some(n) = partition_count(partitions_per_topic, topic) else {
                continue;
            };
            consumers.sort_by(|a, b| kafka_member_order(a, b));
            let c = i32::try_from(consumers.len()).unwrap_or(i32::MAX);
            let (per_member, extra) = (n / c, n % c);
            for (i, m) in (0..).zip(&consumers) {
                let start = per_member * i + i.min(extra);
                let len = per_member + i32::from(i < extra);
                if len > 0 {
                    out.get_mut(&m.member_id)
                        .expect("every member has an entry")
                        .insert(topic.to_owned(), (start..start + len).collect());
                }
            }
        }
        out
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let mut members = unique_members(members);
        members.sort_by(|a, b| kafka_member_order(a, b));
        let subscriptions: Vec<HashSet<&str>> = members
            .iter()
            .map(|m| m.topics.iter().map(String::as_str).collect())
            .collect();
        let topics: BTreeSet<&str> = subscriptions.iter().flatten().copied().collect();
        let mut per_member = vec![Vec::new(); members.len()];
        let mut next = 0;
        for topic in topics {
            let Some(n) = partition_count(partitions_per_topic, topic) else {
                continue;
            };
            for p in 0..n {
                // Terminates: the topic came from someone's subscription.
                while !subscriptions[next].contains(topic) {
                    next = (next + 1) % members.len();
                }
                per_member[next].push((topic, p));
                next = (next + 1) % members.len();
            }
        }
        to_assignment(&members, per_member)
    }
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let mut members = unique_members(members);
        // Kafka walks a HashMap here; member-id order makes the result
        // deterministic and independent of the input order.
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        if members.is_empty() {
            return Assignment::new();
        }
        let sticky = Sticky::new(partitions_per_topic, &members);
        let per_member = if sticky.all_subscriptions_equal {
            sticky.constrained_assign()
        } else {
            sticky.general_assign()
        };
        to_assignment(&members, per_member)
    }
}

/// Inputs of one sticky assignment, members indexed in member-id order.
struct Sticky<'a, 'm> {
    members: &'m [&'a MemberSubscription],
    /// Topics someone subscribes to that have partitions, with their counts.
    topics: BTreeMap<&'a str, i32>,
    /// Per member, its subscribed topics that have partitions.
    subscribed: Vec<BTreeSet<&'a str>>,
    /// Per member, the owned partitions it may keep: existing, not repeated,
    /// and not lost to a higher-generation claim (or a same-generation tie).
    owned: Vec<Vec<Tp<'a>>>,
    /// Selects Kafka's fast "constrained" path.
    all_subscriptions_equal: bool,
}

impl<'a, 'm> Sticky<'a, 'm> {
    fn new(
        partitions_per_topic: &'a BTreeMap<String, i32>,
        members: &'m [&'a MemberSubscription],
    ) -> Self {
        let raw: Vec<BTreeSet<&'a str>> = members
            .iter()
            .map(|m| m.topics.iter().map(String::as_str).collect())
            .collect();
        let all_subscriptions_equal = raw.windows(2).all(|w| w[0] == w[1]);
        let topics: BTreeMap<&'a str, i32> = partitions_per_topic
            .iter()
            .filter(|&(t, &n)| n > 0 && raw.iter().any(|s| s.contains(t.as_str())))
            .map(|(t, &n)| (t.as_str(), n))
            .collect();
        let subscribed = raw
            .into_iter()
            .map(|s| s.into_iter().filter(|t| topics.contains_key(t)).collect())
            .collect();
        let owned = Self::resolve_owned(&topics, members);
        Sticky {
            members,
            topics,
            subscribed,
            owned,
            all_subscriptions_equal,
        }
    }

    /// Kafka's claim rules: a claim on a partition of a topic that no longer
    /// exists is ignored; of several claims the highest generation wins, and a
    /// tie at the highest generation is invalid input, so nobody keeps it.
    fn resolve_owned(
        topics: &BTreeMap<&'a str, i32>,
        members: &[&'a MemberSubscription],
    ) -> Vec<Vec<Tp<'a>>> {
        let claims: Vec<Vec<Tp<'a>>> = members
            .iter()
            .map(|m| {
                let mut seen = HashSet::new();
                m.owned_partitions
                    .iter()
                    .filter_map(|(t, p)| {
                        let (&topic, &n) = topics.get_key_value(t.as_str())?;
                        (0..n).contains(p).then_some((topic, *p))
                    })
                    .filter(|tp| seen.insert(*tp))
                    .collect()
            })
            .collect();
        // partition -> (highest claimed generation, sole claimant at it)
        let mut winner: HashMap<Tp<'a>, (i32, Option<usize>)> = HashMap::new();
        for (i, tps) in claims.iter().enumerate() {
            let generation = members[i].generation_id;
            for &tp in tps {
                match winner.entry(tp) {
                    Entry::Vacant(e) => {
                        e.insert((generation, Some(i)));
                    }
                    Entry::Occupied(mut e) => {
                        let best = e.get().0;
                        if generation > best {
                            e.insert((generation, Some(i)));
                        } else if generation == best {
                            e.insert((generation, None));
                        }
                    }
                }
            }
        }
        claims
            .into_iter()
            .enumerate()
            .map(|(i, tps)| {
                tps.into_iter()
                    .filter(|tp| winner[tp].1 == Some(i))
                    .collect()
            })
            .collect()
    }

    /// All partitions in Kafka's (topic, partition) order.
    fn all_partitions(&self) -> impl Iterator<Item = Tp<'a>> + '_ {
        self.topics
            .iter()
            .flat_map(|(&t, &n)| (0..n).map(move |p| (t, p)))
    }

    /// Kafka's `ConstrainedAssignmentBuilder`, for identical subscriptions:
    /// with T partitions and N members everyone ends with floor(T/N) or
    /// ceil(T/N) (exactly T % N members get the ceiling), each member keeping
    /// up to its quota of owned partitions; the rest is dealt round-robin.
    fn constrained_assign(&self) -> Vec<Vec<Tp<'a>>> {
        let n = self.members.len();
        let total: usize = self.topics.values().map(|&c| c as usize).sum();
        let min_quota = total / n;
        let max_quota = total.div_ceil(n);
        let expected_over_min = total % n;
        let mut current_over_min = 0;

        let mut assignment: Vec<Vec<Tp<'a>>> = vec![Vec::with_capacity(max_quota); n];
        let mut assigned = HashSet::new();
        // Members still below the min quota, and members at exactly the min
        // quota that may take one more (while ceil slots remain).
        let mut under_min: Vec<usize> = Vec::new();
        let mut exactly_min: VecDeque<usize> = VecDeque::new();

        // 1. Keep owned partitions: all of them below the min quota, else the
        //    first max-quota ones while ceil slots remain, else min-quota ones.
        for (i, owned) in self.owned.iter().enumerate() {
            let keep = if owned.len() < min_quota {
                under_min.push(i);
                owned.len()
            } else if owned.len() >= max_quota && current_over_min < expected_over_min {
                current_over_min += 1;
                if current_over_min == expected_over_min {
                    exactly_min.clear();
                }
                max_quota
            } else {
                if current_over_min < expected_over_min {
                    exactly_min.push_back(i);
                }
                min_quota
            };
            assignment[i].extend_from_slice(&owned[..keep]);
            assigned.extend(owned[..keep].iter().copied());
        }
        // (Kafka sorts both lists by member id here; they already are.)

        // 2. Deal the rest round-robin over the members below the min quota;
        //    once all reach it, hand one each to members at the min quota.
        let unassigned: Vec<Tp<'a>> = self
            .all_partitions()
            .filter(|tp| !assigned.contains(tp))
            .collect();
        let mut next = 0;
        for tp in unassigned {
            let (member, from_under_min) = if next < under_min.len() {
                (under_min[next], true)
            } else if !under_min.is_empty() {
                next = 0;
                (under_min[0], true)
            } else if let Some(m) = exactly_min.pop_front() {
                (m, false)
            } else {
                // Unreachable by the quota arithmetic (Kafka throws here);
                // stay valid and balanced regardless.
                let m = (0..n).min_by_key(|&m| assignment[m].len()).unwrap_or(0);
                (m, false)
            };
            assignment[member].push(tp);
            if from_under_min && assignment[member].len() == min_quota {
                under_min.remove(next);
                exactly_min.push_back(member);
            } else if from_under_min {
                next += 1;
            }
        }
        assignment
    }

    /// Kafka's `GeneralAssignmentBuilder`, for differing subscriptions: keep
    /// valid owned partitions, give each unassigned partition to its least
    /// loaded subscriber, then move partitions from a member to a subscriber
    /// with at least two fewer until no such move exists. Every move lowers
    /// the sum of squared counts, so this terminates.
    fn general_assign(&self) -> Vec<Vec<Tp<'a>>> {
        let n = self.members.len();
        let mut consumers_of: BTreeMap<&'a str, Vec<usize>> =
            self.topics.keys().map(|&t| (t, Vec::new())).collect();
        for (i, topics) in self.subscribed.iter().enumerate() {
            for t in topics {
                consumers_of
                    .get_mut(t)
                    .expect("subscribed topics exist")
                    .push(i);
            }
        }

        // 1. Keep owned partitions of still-subscribed topics.
        let mut revocation_required = false;
        let mut current: Vec<Vec<Tp<'a>>> = Vec::with_capacity(n);
        for (i, owned) in self.owned.iter().enumerate() {
            let (keep, revoke): (Vec<_>, Vec<_>) = owned
                .iter()
                .copied()
                .partition(|(t, _)| self.subscribed[i].contains(t));
            revocation_required |= !revoke.is_empty();
            current.push(keep);
        }
        let mut owner: HashMap<Tp<'a>, usize> = HashMap::new();
        for (i, tps) in current.iter().enumerate() {
            for &tp in tps {
                owner.insert(tp, i);
            }
        }

        // Topics with fewer potential consumers first: they have the least
        // freedom, so they are placed (and rebalanced) first.
        let mut sorted_topics: Vec<&'a str> = self.topics.keys().copied().collect();
        sorted_topics.sort_by_key(|t| (consumers_of[t].len(), *t));
        let sorted_all: Vec<Tp<'a>> = sorted_topics
            .iter()
            .flat_map(|&t| (0..self.topics[t]).map(move |p| (t, p)))
            .collect();
        let unassigned: Vec<Tp<'a>> = sorted_all
            .iter()
            .copied()
            .filter(|tp| !owner.contains_key(tp))
            .collect();

        // Claims from older generations: a partition may return to such a
        // previous owner when that also improves balance.
        let max_generation = self.members.iter().map(|m| m.generation_id).max();
        let mut previous: HashMap<Tp<'a>, (i32, usize)> = HashMap::new();
        for (i, m) in self.members.iter().enumerate() {
            if Some(m.generation_id) == max_generation {
                continue;
            }
            for (t, p) in &m.owned_partitions {
                let Some((&topic, _)) = self.topics.get_key_value(t.as_str()) else {
                    continue;
                };
                match previous.entry((topic, *p)) {
                    Entry::Vacant(e) => {
                        e.insert((m.generation_id, i));
                    }
                    Entry::Occupied(mut e) => {
                        if m.generation_id > e.get().0 {
                            e.insert((m.generation_id, i));
                        }
                    }
                }
            }
        }

        // 2. Each unassigned partition to its least loaded subscriber.
        for &tp in &unassigned {
            if let Some(&c) = consumers_of[tp.0]
                .iter()
                .min_by_key(|&&c| (current[c].len(), c))
            {
                current[c].push(tp);
                owner.insert(tp, c);
            }
        }

        // 3. Rebalance. Only topics with two or more potential consumers can
        //    move; first try moving only the new partitions (cheapest for
        //    stickiness) unless revocations are needed anyway.
        let movable = |tp: &Tp<'a>| consumers_of[tp.0].len() >= 2;
        let movable_new: Vec<Tp<'a>> = unassigned.iter().copied().filter(movable).collect();
        let movable_all: Vec<Tp<'a>> = sorted_all.iter().copied().filter(movable).collect();
        let mut state = Rebalance {
            sticky: self,
            consumers_of: &consumers_of,
            previous: &previous,
            original_owner: owner.clone(),
            current,
            owner,
        };
        if !revocation_required {
            state.perform_reassignments(&movable_new);
        }
        state.perform_reassignments(&movable_all);
        // Kafka then reverts if the balance score did not improve; here every
        // move strictly improves it, so that check can never fire.
        state.current
    }
}

/// Mutable state of the general path's rebalancing loop.
struct Rebalance<'a, 's, 'm> {
    sticky: &'s Sticky<'a, 'm>,
    consumers_of: &'s BTreeMap<&'a str, Vec<usize>>,
    previous: &'s HashMap<Tp<'a>, (i32, usize)>,
    /// Owners before any move, to undo moves rather than make new ones.
    original_owner: HashMap<Tp<'a>, usize>,
    current: Vec<Vec<Tp<'a>>>,
    owner: HashMap<Tp<'a>, usize>,
}

impl<'a> Rebalance<'a, '_, '_> {
    /// Passes over `partitions` until one moves nothing. A partition moves
    /// when its owner has more than one partition more than a subscriber of
    /// its topic: back to an older-generation owner if that one qualifies,
    /// else to the least loaded subscriber.
    fn perform_reassignments(&mut self, partitions: &[Tp<'a>]) {
        loop {
            let mut modified = false;
            for &tp in partitions {
                let from = self.owner[&tp];
                let load = self.current[from].len();
                if let Some(&(_, prev)) = self.previous.get(&tp)
                    && self.sticky.subscribed[prev].contains(tp.0)
                    && load > self.current[prev].len() + 1
                {
                    self.move_partition(tp, from, prev);
                    modified = true;
                    continue;
                }
                let target = self.consumers_of[tp.0]
                    .iter()
                    .copied()
                    .min_by_key(|&c| (self.current[c].len(), c));
                if let Some(to) = target
                    && load > self.current[to].len() + 1
                {
                    self.move_partition(tp, from, to);
                    modified = true;
                }
            }
            if !modified {
                return;
            }
        }
    }

    /// Moves `tp` (or, for stickiness, a partition of the same topic that
    /// earlier moved from `to` to `from`, which then simply goes home).
    fn move_partition(&mut self, tp: Tp<'a>, from: usize, to: usize) {
        let actual = if self.original_owner.get(&tp) == Some(&to) {
            tp
        } else {
            self.current[from]
                .iter()
                .copied()
                .filter(|q| q.0 == tp.0 && self.original_owner.get(q) == Some(&to))
                .min()
                .unwrap_or(tp)
        };
        let pos = self.current[from]
            .iter()
            .position(|&q| q == actual)
            .expect("moved partition belongs to its owner");
        self.current[from].remove(pos);
        self.current[to].push(actual);
        self.owner.insert(actual, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ppt(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn owning(
        mut m: MemberSubscription,
        generation: i32,
        owned: &[(&str, i32)],
    ) -> MemberSubscription {
        m.generation_id = generation;
        m.owned_partitions = owned.iter().map(|&(t, p)| (t.to_owned(), p)).collect();
        m
    }

    /// One expected member: its id and `(topic, partitions)` pairs.
    type Row<'a> = (&'a str, &'a [(&'a str, &'a [i32])]);

    /// Builds an expected assignment from one row per member.
    fn expect(rows: &[Row<'_>]) -> Assignment {
        rows.iter()
            .map(|(m, topics)| {
                let topics = topics
                    .iter()
                    .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                    .collect();
                ((*m).to_owned(), topics)
            })
            .collect()
    }

    fn flat(a: &BTreeMap<String, Vec<i32>>) -> BTreeSet<(String, i32)> {
        a.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
            .collect()
    }

    fn count(a: &Assignment, m: &str) -> usize {
        a[m].values().map(Vec::len).sum()
    }

    /// Previous assignment as each member's owned partitions, all at `generation`.
    fn with_owned(
        members: &[MemberSubscription],
        prev: &Assignment,
        generation: i32,
    ) -> Vec<MemberSubscription> {
        members
            .iter()
            .map(|m| {
                let owned: Vec<(String, i32)> = prev
                    .get(&m.member_id)
                    .map(|a| flat(a).into_iter().collect())
                    .unwrap_or_default();
                MemberSubscription {
                    owned_partitions: owned,
                    generation_id: generation,
                    ..m.clone()
                }
            })
            .collect()
    }

    #[test]
    fn by_name_knows_the_three_protocols() {
        assert_eq!(by_name("range").unwrap().name(), "range");
        assert_eq!(by_name("roundrobin").unwrap().name(), "roundrobin");
        assert_eq!(by_name("sticky").unwrap().name(), "sticky");
        assert!(by_name("cooperative-sticky").is_none());
        assert!(by_name("Range").is_none());
    }

    #[test]
    fn range_ten_partitions_three_consumers() {
        let members = [
            member("c0", &["t"]),
            member("c1", &["t"]),
            member("c2", &["t"]),
        ];
        let got = RangeAssignor.assign(&ppt(&[("t", 10)]), &members);
        let want = expect(&[
            ("c0", &[("t", &[0, 1, 2, 3])]),
            ("c1", &[("t", &[4, 5, 6])]),
            ("c2", &[("t", &[7, 8, 9])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn roundrobin_ten_partitions_three_consumers() {
        // Input order must not matter: members are sorted by id.
        let members = [
            member("c2", &["t"]),
            member("c0", &["t"]),
            member("c1", &["t"]),
        ];
        let got = RoundRobinAssignor.assign(&ppt(&[("t", 10)]), &members);
        let want = expect(&[
            ("c0", &[("t", &[0, 3, 6, 9])]),
            ("c1", &[("t", &[1, 4, 7])]),
            ("c2", &[("t", &[2, 5, 8])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn uneven_counts() {
        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let topics = ppt(&[("t", 7)]);
        let range = RangeAssignor.assign(&topics, &members);
        assert_eq!(
            range,
            expect(&[
                ("a", &[("t", &[0, 1, 2])]),
                ("b", &[("t", &[3, 4])]),
                ("c", &[("t", &[5, 6])])
            ])
        );
        let rr = RoundRobinAssignor.assign(&topics, &members);
        assert_eq!(
            rr,
            expect(&[
                ("a", &[("t", &[0, 3, 6])]),
                ("b", &[("t", &[1, 4])]),
                ("c", &[("t", &[2, 5])])
            ])
        );
        let sticky = StickyAssignor.assign(&topics, &members);
        let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&sticky, m)).collect();
        counts.sort_unstable();
        assert_eq!(counts, [2, 2, 3]);
    }

    #[test]
    fn range_assigns_per_topic() {
        // Kafka's javadoc example: 2 topics x 3 partitions, 2 consumers.
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let got = RangeAssignor.assign(&ppt(&[("t0", 3), ("t1", 3)]), &members);
        let want = expect(&[
            ("c0", &[("t0", &[0, 1]), ("t1", &[0, 1])]),
            ("c1", &[("t0", &[2]), ("t1", &[2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn roundrobin_interleaves_topics() {
        // Kafka's javadoc example: C0 [t0p0, t0p2, t1p1], C1 [t0p1, t1p0, t1p2].
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let got = RoundRobinAssignor.assign(&ppt(&[("t0", 3), ("t1", 3)]), &members);
        let want = expect(&[
            ("c0", &[("t0", &[0, 2]), ("t1", &[1])]),
            ("c1", &[("t0", &[1]), ("t1", &[0, 2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn different_subscriptions() {
        // Kafka's roundrobin javadoc: t0, t1, t2 with 1, 2, 3 partitions;
        // C0 subscribes t0, C1 t0+t1, C2 t0+t1+t2.
        let members = [
            member("c0", &["t0"]),
            member("c1", &["t0", "t1"]),
            member("c2", &["t0", "t1", "t2"]),
        ];
        let topics = ppt(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let rr = RoundRobinAssignor.assign(&topics, &members);
        assert_eq!(
            rr,
            expect(&[
                ("c0", &[("t0", &[0])]),
                ("c1", &[("t1", &[0])]),
                ("c2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
            ])
        );
        let range = RangeAssignor.assign(&topics, &members);
        assert_eq!(
            range,
            expect(&[
                ("c0", &[("t0", &[0])]),
                ("c1", &[("t1", &[0])]),
                ("c2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
            ])
        );
        // Kafka's sticky javadoc: C0 [t0p0], C1 [t1p0, t1p1], C2 [t2p0..2].
        let sticky = StickyAssignor.assign(&topics, &members);
        let want_sticky = expect(&[
            ("c0", &[("t0", &[0])]),
            ("c1", &[("t1", &[0, 1])]),
            ("c2", &[("t2", &[0, 1, 2])]),
        ]);
        assert_eq!(sticky, want_sticky);

        // Then C0 leaves: sticky keeps everything and gives t0p0 to C1.
        let rest = with_owned(&members[1..], &sticky, 1);
        let got = StickyAssignor.assign(&topics, &rest);
        assert_eq!(
            got,
            expect(&[
                ("c1", &[("t0", &[0]), ("t1", &[0, 1])]),
                ("c2", &[("t2", &[0, 1, 2])]),
            ])
        );
    }

    #[test]
    fn missing_and_unsubscribed_topics_are_skipped() {
        let members = [member("a", &["t", "gone"]), member("b", &["t"])];
        let topics = ppt(&[("t", 2), ("nobody", 4), ("empty", 0)]);
        for assignor in [by_name("range"), by_name("roundrobin"), by_name("sticky")] {
            let assignor = assignor.unwrap();
            let got = assignor.assign(&topics, &members);
            assert_eq!(
                got,
                expect(&[("a", &[("t", &[0])]), ("b", &[("t", &[1])])]),
                "{}",
                assignor.name()
            );
        }
        let lonely = [member("a", &["gone"]), member("b", &["empty"])];
        for assignor in [by_name("range"), by_name("roundrobin"), by_name("sticky")] {
            let got = assignor.unwrap().assign(&topics, &lonely);
            assert_eq!(got, expect(&[("a", &[]), ("b", &[])]));
        }
    }

    #[test]
    fn more_members_than_partitions() {
        let members: Vec<_> = ["m0", "m1", "m2", "m3"]
            .iter()
            .map(|m| member(m, &["t"]))
            .collect();
        let topics = ppt(&[("t", 2)]);
        let want = expect(&[
            ("m0", &[("t", &[0])]),
            ("m1", &[("t", &[1])]),
            ("m2", &[]),
            ("m3", &[]),
        ]);
        assert_eq!(RangeAssignor.assign(&topics, &members), want);
        assert_eq!(RoundRobinAssignor.assign(&topics, &members), want);
        assert_eq!(StickyAssignor.assign(&topics, &members), want);

        // Sticky with owners: the two owners keep their partition.
        let members = vec![
            owning(member("m0", &["t"]), 3, &[]),
            owning(member("m1", &["t"]), 3, &[("t", 1)]),
            owning(member("m2", &["t"]), 3, &[("t", 0)]),
            owning(member("m3", &["t"]), -1, &[]),
        ];
        let want = expect(&[
            ("m0", &[]),
            ("m1", &[("t", &[1])]),
            ("m2", &[("t", &[0])]),
            ("m3", &[]),
        ]);
        assert_eq!(StickyAssignor.assign(&topics, &members), want);
    }

    #[test]
    fn static_members_order_by_instance_id() {
        let mut a = member("a", &["t"]);
        a.group_instance_id = Some("z".into());
        let mut b = member("b", &["t"]);
        b.group_instance_id = Some("y".into());
        let c = member("c", &["t"]); // dynamic: after the static ones
        let members = [a, b, c];
        let topics = ppt(&[("t", 5)]);
        assert_eq!(
            RangeAssignor.assign(&topics, &members),
            expect(&[
                ("b", &[("t", &[0, 1])]),
                ("a", &[("t", &[2, 3])]),
                ("c", &[("t", &[4])])
            ])
        );
        assert_eq!(
            RoundRobinAssignor.assign(&topics, &members),
            expect(&[
                ("b", &[("t", &[0, 3])]),
                ("a", &[("t", &[1, 4])]),
                ("c", &[("t", &[2])])
            ])
        );
    }

    /// Kafka's sticky javadoc: three consumers on t0..t3 with 2 partitions each.
    fn four_topics() -> BTreeMap<String, i32> {
        ppt(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)])
    }

    #[test]
    fn sticky_initial_assignment_matches_kafka() {
        let all = ["t0", "t1", "t2", "t3"];
        let members = [member("c0", &all), member("c1", &all), member("c2", &all)];
        let got = StickyAssignor.assign(&four_topics(), &members);
        let want = expect(&[
            ("c0", &[("t0", &[0]), ("t1", &[1]), ("t3", &[0])]),
            ("c1", &[("t0", &[1]), ("t2", &[0]), ("t3", &[1])]),
            ("c2", &[("t1", &[0]), ("t2", &[1])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_member_leaves_only_its_partitions_move() {
        let all = ["t0", "t1", "t2", "t3"];
        let members = [member("c0", &all), member("c1", &all), member("c2", &all)];
        let before = StickyAssignor.assign(&four_topics(), &members);
        let rest = with_owned(&[members[0].clone(), members[2].clone()], &before, 1);
        let after = StickyAssignor.assign(&four_topics(), &rest);
        for m in ["c0", "c2"] {
            assert!(
                flat(&before[m]).is_subset(&flat(&after[m])),
                "{m} lost a partition"
            );
            assert_eq!(count(&after, m), 4);
        }
        // Constrained path: c1's t0p1, t2p0, t3p1 dealt round-robin to c0, c2, c2.
        // (Kafka's javadoc shows the older general-path result for this case.)
        let want = expect(&[
            ("c0", &[("t0", &[0, 1]), ("t1", &[1]), ("t3", &[0])]),
            ("c2", &[("t1", &[0]), ("t2", &[0, 1]), ("t3", &[1])]),
        ]);
        assert_eq!(after, want);
    }

    #[test]
    fn sticky_member_joins_minimum_moves() {
        let topics = ppt(&[("t", 7)]);
        let members = [
            owning(
                member("a", &["t"]),
                1,
                &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
            ),
            owning(member("b", &["t"]), 1, &[("t", 4), ("t", 5), ("t", 6)]),
            owning(member("c", &["t"]), -1, &[]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        // 7 over 3 is 3/2/2: c needs two, and they can only come from the
        // surplus of a (4 -> 3) and b (3 -> 2).
        let want = expect(&[
            ("a", &[("t", &[0, 1, 2])]),
            ("b", &[("t", &[4, 5])]),
            ("c", &[("t", &[3, 6])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_member_joins_with_different_subscription() {
        // General path: a owns all of t0, b all of t1; c joins on t1 only.
        let topics = ppt(&[("t0", 4), ("t1", 4)]);
        let t0: Vec<_> = (0..4).map(|p| ("t0", p)).collect();
        let t1: Vec<_> = (0..4).map(|p| ("t1", p)).collect();
        let members = [
            owning(member("a", &["t0", "t1"]), 2, &t0),
            owning(member("b", &["t0", "t1"]), 2, &t1),
            owning(member("c", &["t1"]), -1, &[]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&got, m)).collect();
        counts.sort_unstable();
        assert_eq!(counts, [2, 3, 3]);
        assert!(got["c"].keys().all(|t| t == "t1"));
        // c needs two of b's, and a must hand one to b: three moves minimum.
        let kept = flat(&got["a"]).iter().filter(|tp| tp.0 == "t0").count()
            + flat(&got["b"]).iter().filter(|tp| tp.0 == "t1").count();
        assert_eq!(8 - kept, 3);
    }

    #[test]
    fn sticky_conflicting_claims_go_to_the_highest_generation() {
        let topics = ppt(&[("t", 4)]);
        // a is current (gen 5); b still claims t-1 from generation 4.
        let members = [
            owning(member("a", &["t"]), 5, &[("t", 0), ("t", 1)]),
            owning(member("b", &["t"]), 4, &[("t", 1), ("t", 2)]),
        ];
        let want = expect(&[("a", &[("t", &[0, 1])]), ("b", &[("t", &[2, 3])])]);
        assert_eq!(StickyAssignor.assign(&topics, &members), want);

        // Same claims, generations swapped: now b keeps t-1.
        let members = [
            owning(member("a", &["t"]), 4, &[("t", 0), ("t", 1)]),
            owning(member("b", &["t"]), 5, &[("t", 1), ("t", 2)]),
        ];
        let want = expect(&[("a", &[("t", &[0, 3])]), ("b", &[("t", &[1, 2])])]);
        assert_eq!(StickyAssignor.assign(&topics, &members), want);

        // Same generation: the claim is invalid and neither keeps t-1, so it
        // is dealt like a free partition (a: [t-1], b: [t-0] would keep it).
        let members = [
            owning(member("a", &["t"]), 5, &[("t", 1)]),
            owning(member("b", &["t"]), 5, &[("t", 0), ("t", 1)]),
        ];
        let want = expect(&[("a", &[("t", &[1, 3])]), ("b", &[("t", &[0, 2])])]);
        assert_eq!(StickyAssignor.assign(&topics, &members), want);
    }

    #[test]
    fn sticky_general_path_returns_partitions_to_an_older_generation_owner() {
        // a (generation 3) holds all of t0 plus t1; b's stale claim on t0-0
        // from generation 2 lost to a, but when a must shed partitions, t0-0
        // goes back to b rather than to the emptier newcomer c.
        let topics = ppt(&[("t0", 6), ("t1", 1), ("t2", 2)]);
        let t0: Vec<_> = (0..6).map(|p| ("t0", p)).collect();
        let members = [
            owning(member("a", &["t0", "t1"]), 3, &t0),
            owning(
                member("b", &["t0", "t2"]),
                2,
                &[("t0", 0), ("t2", 0), ("t2", 1)],
            ),
            owning(member("c", &["t0"]), -1, &[]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        let want = expect(&[
            ("a", &[("t0", &[4, 5]), ("t1", &[0])]),
            ("b", &[("t0", &[0]), ("t2", &[0, 1])]),
            ("c", &[("t0", &[1, 2, 3])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_general_path_moves_new_partitions_before_owned_ones() {
        // a ends up with s-0 (owned), u-0 and v-2 (new) and must shed one to
        // b. Moving the new u-0 keeps every owned partition where it was;
        // walking all partitions in order would have moved s-0 instead.
        let topics = ppt(&[("s", 2), ("u", 1), ("v", 3)]);
        let members = [
            owning(member("a", &["s", "u", "v"]), 1, &[("s", 0)]),
            owning(member("b", &["s", "u"]), 1, &[("s", 1)]),
            owning(member("c", &["v"]), 1, &[("v", 0), ("v", 1)]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        let want = expect(&[
            ("a", &[("s", &[0]), ("v", &[2])]),
            ("b", &[("s", &[1]), ("u", &[0])]),
            ("c", &[("v", &[0, 1])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_general_path_undoes_moves_rather_than_making_new_ones() {
        // c owns t0-1, t0-3, t1-0, t1-1; d joins on t0 and t1, a and b on t1.
        // Balancing first moves t0-1 from c to d, and later needs one t0
        // partition from d back to c: t0-1 goes home instead of c taking t0-0.
        let topics = ppt(&[("t0", 4), ("t1", 2)]);
        let owned = [("t0", 1), ("t0", 3), ("t1", 0), ("t1", 1)];
        let members = [
            owning(member("a", &["t1"]), 1, &[]),
            owning(member("b", &["t1"]), 1, &[]),
            owning(member("c", &["t0", "t1"]), 1, &owned),
            owning(member("d", &["t0", "t1"]), 1, &[]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        let want = expect(&[
            ("a", &[("t1", &[0])]),
            ("b", &[("t1", &[1])]),
            ("c", &[("t0", &[1, 3])]),
            ("d", &[("t0", &[0, 2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sticky_drops_partitions_of_gone_or_unsubscribed_topics() {
        let topics = ppt(&[("t", 4), ("other", 2)]);
        let members = [
            owning(member("a", &["t"]), 1, &[("gone", 0), ("t", 3), ("t", 9)]),
            owning(member("b", &["t", "other"]), 1, &[("t", 0), ("other", 1)]),
        ];
        // General path (subscriptions differ): b keeps t-0 and other-1, a keeps
        // t-3; out-of-range and deleted-topic claims are ignored.
        let got = StickyAssignor.assign(&topics, &members);
        assert!(flat(&got["a"]).contains(&("t".to_owned(), 3)));
        assert!(
            flat(&got["b"]).is_superset(&[("t".to_owned(), 0), ("other".to_owned(), 1)].into())
        );
        assert_eq!(count(&got, "a") + count(&got, "b"), 6);
        assert!(got["a"].keys().all(|t| t == "t"));

        // b drops "other": its claim on other-1 is revoked (nobody subscribes).
        let members = [
            owning(member("a", &["t"]), 1, &[("t", 3)]),
            owning(member("b", &["t"]), 1, &[("t", 0), ("other", 1)]),
        ];
        let got = StickyAssignor.assign(&topics, &members);
        assert_eq!(
            got,
            expect(&[("a", &[("t", &[1, 3])]), ("b", &[("t", &[0, 2])])])
        );
    }

    /// Random topics (plus one nobody subscribes to and one that is missing),
    /// members with random subscriptions, ownership claims and generations.
    fn scenario() -> impl Strategy<Value = (BTreeMap<String, i32>, Vec<MemberSubscription>)> {
        (
            prop::collection::vec(0i32..9, 1..5),
            1usize..7,
            any::<bool>(),
        )
            .prop_flat_map(|(counts, n_members, same_subscription)| {
                let n_topics = counts.len();
                // Index n_topics stands for a topic missing from the metadata.
                let one = (
                    prop::collection::vec(any::<bool>(), n_topics + 1),
                    prop::collection::vec((0..=n_topics, -1i32..10), 0..8),
                    -1i32..4,
                    prop::option::of(0u8..4),
                );
                (
                    Just(counts),
                    prop::collection::vec(one, n_members),
                    Just(same_subscription),
                )
            })
            .prop_map(|(counts, raw, same_subscription)| {
                let name = |i: usize, n: usize| {
                    if i == n {
                        "missing".to_owned()
                    } else {
                        format!("t{i}")
                    }
                };
                let n = counts.len();
                let mut topics: BTreeMap<String, i32> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (name(i, n), c))
                    .collect();
                topics.insert("unsubscribed".into(), 3);
                let first_subs = raw[0].0.clone();
                let members = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (subs, owned, generation, instance))| {
                        let subs = if same_subscription {
                            first_subs.clone()
                        } else {
                            subs
                        };
                        MemberSubscription {
                            member_id: format!("m{}", (i * 5) % 7),
                            group_instance_id: instance.map(|x| format!("i{x}")),
                            topics: (0..=n).filter(|&t| subs[t]).map(|t| name(t, n)).collect(),
                            owned_partitions: owned
                                .into_iter()
                                .map(|(t, p)| (name(t, n), p))
                                .collect(),
                            generation_id: generation,
                            rack_id: None,
                        }
                    })
                    .collect();
                (topics, members)
            })
    }

    /// Partition counts per member.
    fn counts(a: &Assignment) -> Vec<usize> {
        a.values().map(|t| t.values().map(Vec::len).sum()).collect()
    }

    fn check_valid(
        name: &str,
        topics: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
        got: &Assignment,
    ) -> Result<(), TestCaseError> {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        let got_ids: BTreeSet<&str> = got.keys().map(String::as_str).collect();
        prop_assert_eq!(ids, got_ids, "{}: members", name);
        let mut seen: BTreeMap<(String, i32), usize> = BTreeMap::new();
        for m in members {
            for (t, ps) in &got[&m.member_id] {
                prop_assert!(
                    m.topics.contains(t),
                    "{}: {} got unsubscribed {}",
                    name,
                    m.member_id,
                    t
                );
                prop_assert!(!ps.is_empty(), "{}: empty topic entry", name);
                for &p in ps {
                    let n = topics.get(t).copied().unwrap_or(0);
                    prop_assert!((0..n).contains(&p), "{}: {}-{} does not exist", name, t, p);
                    *seen.entry((t.clone(), p)).or_default() += 1;
                }
            }
        }
        for (t, &n) in topics {
            let subscribed = members.iter().any(|m| m.topics.contains(t));
            for p in 0..n {
                let times = seen.get(&(t.clone(), p)).copied().unwrap_or(0);
                prop_assert_eq!(
                    times,
                    usize::from(subscribed),
                    "{}: {}-{} assigned {} times",
                    name,
                    t,
                    p,
                    times
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn assignments_are_valid_and_balanced((topics, members) in scenario()) {
            let identical = members.windows(2).all(|w| {
                let a: BTreeSet<_> = w[0].topics.iter().collect();
                let b: BTreeSet<_> = w[1].topics.iter().collect();
                a == b
            });
            for name in ["range", "roundrobin", "sticky"] {
                let assignor = by_name(name).unwrap();
                let got = assignor.assign(&topics, &members);
                check_valid(name, &topics, &members, &got)?;

                let mut reversed = members.clone();
                reversed.reverse();
                prop_assert_eq!(&assignor.assign(&topics, &reversed), &got, "{}: depends on member order", name);

                if name == "range" {
                    // Range balances each topic over its subscribers.
                    for t in topics.keys() {
                        let per: Vec<usize> = members
                            .iter()
                            .filter(|m| m.topics.contains(t))
                            .map(|m| got[&m.member_id].get(t).map_or(0, Vec::len))
                            .collect();
                        if let (Some(max), Some(min)) = (per.iter().max(), per.iter().min()) {
                            prop_assert!(max - min <= 1, "range: {} split {:?}", t, per);
                        }
                    }
                } else if identical {
                    let c = counts(&got);
                    let (max, min) = (c.iter().max().unwrap(), c.iter().min().unwrap());
                    prop_assert!(max - min <= 1, "{}: counts {:?}", name, c);
                }
                if name == "sticky" {
                    // Near balance: no partition could move to a subscriber
                    // of its topic with two fewer partitions.
                    for owner in &members {
                        let load = count(&got, &owner.member_id);
                        for t in got[&owner.member_id].keys() {
                            for other in members.iter().filter(|m| m.topics.contains(t)) {
                                prop_assert!(
                                    load <= count(&got, &other.member_id) + 1,
                                    "sticky: {} ({}) could give {} to {}", owner.member_id, load, t, other.member_id
                                );
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn sticky_keeps_owned_partitions_up_to_quota(
            topic_sizes in prop::collection::vec(1i32..8, 1..4),
            n_members in 1usize..6,
            owners in prop::collection::vec(prop::option::of(0usize..6), 0..28),
        ) {
            let topics: BTreeMap<String, i32> =
                topic_sizes.iter().enumerate().map(|(i, &c)| (format!("t{i}"), c)).collect();
            let all: Vec<(String, i32)> = topics
                .iter()
                .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
                .collect();
            let subs: Vec<&str> = topics.keys().map(String::as_str).collect();
            let mut members: Vec<MemberSubscription> =
                (0..n_members).map(|i| owning(member(&format!("m{i}"), &subs), 7, &[])).collect();
            // A conflict-free previous assignment (some partitions unowned).
            for (tp, owner) in all.iter().zip(&owners) {
                if let Some(o) = owner.filter(|&o| o < n_members) {
                    members[o].owned_partitions.push(tp.clone());
                }
            }
            let got = StickyAssignor.assign(&topics, &members);
            check_valid("sticky", &topics, &members, &got)?;
            let min_quota = all.len() / n_members;
            let c = counts(&got);
            prop_assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "counts {:?}", c);
            for m in &members {
                let owned: BTreeSet<(String, i32)> = m.owned_partitions.iter().cloned().collect();
                let kept = flat(&got[&m.member_id]).intersection(&owned).count();
                prop_assert!(kept >= owned.len().min(min_quota), "{} kept {} of {:?}", m.member_id, kept, owned);
            }
        }
    }
}
