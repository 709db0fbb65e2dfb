//! One member of a consumer-protocol group and its reconciliation (Kafka's
//! CurrentAssignmentBuilder): how a member moves from what it owns to its
//! target assignment without a partition ever being owned by two members.
//!
//! A member first gives up what its target no longer holds (state
//! `UnrevokedPartitions`, epoch unchanged, so it can still commit for them);
//! once a heartbeat shows it no longer owns them it moves to the target
//! epoch and takes the target partitions no other member holds
//! (`UnreleasedPartitions` while some are still held elsewhere, `Stable`
//! when it has them all).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::assign::Assignment;

/// Kafka's member states (shown by ConsumerGroupDescribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Stable,
    /// Waiting for the member to give up `revoking`.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// A member as persisted in the group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: BTreeSet<String>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: u64,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member owns (or may take) now.
    pub assigned: Assignment,
    /// What it must give up before it moves on.
    pub revoking: Assignment,
    /// A static member that left with epoch -2: its partitions stay reserved
    /// for its next incarnation until the session timeout.
    #[serde(default)]
    pub left_static: bool,
    /// Set for a member speaking the classic protocol (JoinGroup, SyncGroup,
    /// Heartbeat) in this group: a group moving between protocols online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<ClassicInfo>,
}

/// What the coordinator keeps of a classic member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicInfo {
    pub session_timeout_ms: u64,
    /// Its assignors (by name) with their subscription metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
}

impl ConsumerMember {
    pub fn new(member_id: String) -> Self {
        Self {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topics: BTreeSet::new(),
            subscribed_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: 0,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            left_static: false,
            classic: None,
        }
    }

    /// The partitions it holds: assigned or still being revoked.
    pub fn holds(&self) -> impl Iterator<Item = (&str, i32)> {
        flat(&self.assigned).chain(flat(&self.revoking))
    }

    /// The member's next state toward `target` of `target_epoch`. `owned` is
    /// what its heartbeat says it owns (`None`: not said, so assumed
    /// unchanged); `held_by_other` says whether another member holds a
    /// partition.
    pub fn reconcile(
        &self,
        target_epoch: i32,
        target: &Assignment,
        owned: Option<&Assignment>,
        held_by_other: impl Fn(&str, i32) -> bool,
    ) -> ConsumerMember {
        let mut next = self.clone();
        match self.state {
            MemberState::UnrevokedPartitions => {
                if still_owns_any(owned, &self.revoking) {
                    return next;
                }
                next.revoking.clear();
            }
            MemberState::Stable if self.epoch == target_epoch => return next,
            _ => {}
        }
        let keep = intersect(&next.assigned, target);
        let revoke = minus(&next.assigned, target);
        if !revoke.is_empty() && still_owns_any(owned, &revoke) {
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = keep;
            next.revoking = revoke;
            return next;
        }
        let mut assigned = keep;
        let mut unreleased = false;
        for (t, p) in flat(target) {
            if assigned.get(t).is_some_and(|ps| ps.contains(&p)) {
                continue;
            }
            if held_by_other(t, p) {
                unreleased = true;
            } else {
                assigned.entry(t.to_string()).or_default().insert(p);
            }
        }
        if next.epoch != target_epoch {
            next.previous_epoch = next.epoch;
            next.epoch = target_epoch;
        }
        next.assigned = assigned;
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next
    }
}

/// (topic, partition) pairs of an assignment.
pub fn flat(a: &Assignment) -> impl Iterator<Item = (&str, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
}

/// Whether `owned` (None: unknown, so yes) still has any of `these`.
fn still_owns_any(owned: Option<&Assignment>, these: &Assignment) -> bool {
    let Some(owned) = owned else {
        return !these.is_empty();
    };
    flat(these).any(|(t, p)| owned.get(t).is_some_and(|ps| ps.contains(&p)))
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    filter(a, |t, p| b.get(t).is_some_and(|ps| ps.contains(&p)))
}

pub fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    filter(a, |t, p| !b.get(t).is_some_and(|ps| ps.contains(&p)))
}

fn filter(a: &Assignment, keep: impl Fn(&str, i32) -> bool) -> Assignment {
    let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (t, p) in flat(a) {
        if keep(t, p) {
            out.entry(t.to_string()).or_default().insert(p);
        }
    }
    out
}

/// Whether `a` holds every partition of `sub`.
pub fn contains_all(a: &Assignment, sub: &Assignment) -> bool {
    flat(sub).all(|(t, p)| a.get(t).is_some_and(|ps| ps.contains(&p)))
}
