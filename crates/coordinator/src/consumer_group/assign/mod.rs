//! Server-side assignors (KIP-848), with Kafka's names: `uniform` (the
//! default) and `range`. Both are sticky by construction: they start from
//! the group's current target assignment and move a partition only when
//! balance requires it, so a rebalance revokes only what changes hands.
//!
//! # Layout
//! - this file: the shared types and [`Assignor`].
//! - `uniform`: partitions spread evenly over the members subscribed to them.
//! - `range`: per topic, contiguous ranges (co-partitioning across topics of
//!   equal partition counts).

mod range;
#[cfg(test)]
mod tests;
mod uniform;

use std::collections::{BTreeMap, BTreeSet};

/// Partitions per topic.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// What an assignor reads.
pub struct AssignInput<'a> {
    /// Each member's subscription, resolved to topic names (a regex already
    /// matched against the cluster's topics).
    pub members: &'a BTreeMap<String, BTreeSet<String>>,
    /// Partition counts of the subscribed topics that exist.
    pub topics: &'a BTreeMap<String, i32>,
    /// The current target assignment, kept where balance allows.
    pub previous: &'a BTreeMap<String, Assignment>,
}

impl AssignInput<'_> {
    /// The members subscribed to `topic`, sorted by member id.
    fn subscribers(&self, topic: &str) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m.as_str())
            .collect()
    }

    /// `member`'s previous partitions that it may still own: its topic is
    /// subscribed, exists, and has the partition.
    fn still_valid<'b>(&'b self, member: &'b str) -> impl Iterator<Item = (&'b str, i32)> + 'b {
        let subscribed = self.members.get(member);
        self.previous
            .get(member)
            .into_iter()
            .flat_map(|a| a.iter())
            .filter(move |(t, _)| subscribed.is_some_and(|s| s.contains(*t)))
            .filter_map(|(t, ps)| self.topics.get(t).map(|n| (t, ps, *n)))
            .flat_map(|(t, ps, n)| {
                ps.iter()
                    .copied()
                    .filter(move |p| *p >= 0 && *p < n)
                    .map(move |p| (t.as_str(), p))
            })
    }
}

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    /// Every assignor, the default first (`group.consumer.assignors`).
    pub const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The target assignment of every member (members with nothing get an
    /// empty entry).
    pub fn assign(self, input: &AssignInput<'_>) -> BTreeMap<String, Assignment> {
        let mut out: BTreeMap<String, Assignment> = input
            .members
            .keys()
            .map(|m| (m.clone(), Assignment::new()))
            .collect();
        let owners = match self {
            Assignor::Uniform => uniform::assign(input),
            Assignor::Range => range::assign(input),
        };
        for ((topic, p), member) in owners {
            out.entry(member)
                .or_default()
                .entry(topic)
                .or_default()
                .insert(p);
        }
        out
    }
}
