//! Kafka's `roundrobin` assignor: every partition of every subscribed topic,
//! in (topic, partition) order, dealt in turn to the members in Kafka's member
//! order, skipping members not subscribed to the partition's topic.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{
    Assignment, Assignor, MemberSubscription, kafka_member_order, partition_count, to_assignment,
    unique_members,
};

/// All partitions (topic, then partition order) dealt in turn to the members,
/// skipping members not subscribed to the partition's topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

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
