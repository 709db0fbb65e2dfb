//! Kafka's `range` assignor: per topic, contiguous runs of partitions over
//! the topic's subscribers in Kafka's member order, so co-partitioned topics
//! land on the same member.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Assignment, Assignor, MemberSubscription, empty_assignment, kafka_member_order,
    partition_count, unique_members,
};

/// Per topic, contiguous ranges over the topic's subscribers; the first
/// `partitions % subscribers` get one extra. Co-partitioned topics land on the
/// same member (useful for joins), at the cost of imbalance across topics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

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
