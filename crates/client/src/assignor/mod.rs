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
//!
//! # Layout
//! - this file: the [`Assignor`] trait, its inputs and output, [`by_name`],
//!   and the helpers all three share (member order, result building).
//! - `range`, `roundrobin`, `sticky`: one assignor each.
//! - `tests`: Kafka's examples and property tests across all three.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

mod range;
mod roundrobin;
mod sticky;
#[cfg(test)]
mod tests;

pub use range::RangeAssignor;
pub use roundrobin::RoundRobinAssignor;
pub use sticky::StickyAssignor;

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
