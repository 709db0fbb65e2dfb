//! One consumer group's state machine: Kafka's classic group protocol
//! (GroupMetadata + GroupCoordinator), without I/O.
//!
//! States: Empty -> PreparingRebalance (members (re)join) -> CompletingRebalance
//! (the leader computes the assignment) -> Stable (everyone heartbeats), back to
//! PreparingRebalance on any membership or subscription change. Join and sync
//! requests that must wait are parked as oneshot senders and answered when the
//! phase completes; [`Group::tick`] drives the timers (initial delay, rebalance
//! timeout, session expiry). The caller persists what [`Group::snapshot`]
//! returns after an assignment or when the group empties.
//!
//! # Layout
//! - this file: the [`Group`] type, its state and the records it persists
//!   ([`Group::restore`], [`Group::snapshot`]).
//! - `join`: JoinGroup and the join phase (rebalance start and completion,
//!   protocol vote, static members).
//! - `sync`: SyncGroup and the settling of an assignment.
//! - `heartbeat`: heartbeats, LeaveGroup and the timers ([`Group::tick`]).
//! - `offsets`: commit fencing and the in-memory committed offsets.

mod heartbeat;
mod join;
mod migration;
mod offsets;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::consumer_group::{ConsumerGroup, ConsumerGroupRecord, ConsumerSettings, TopicCounts};
use crate::error::{CoordinatorError, NotServed};

/// Kafka's group states, with Kafka's names (shown by DescribeGroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup answers once the join phase completes.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata for the chosen protocol); only the
    /// leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A JoinGroup answer: joined, or (KIP-394) "join again with this id".
#[derive(Debug, Clone)]
pub enum JoinOutcome {
    Joined(JoinResult),
    MemberIdRequired(String),
}

pub type JoinReply = oneshot::Receiver<Result<JoinOutcome, CoordinatorError>>;
pub type SyncReply = oneshot::Receiver<Result<Bytes, CoordinatorError>>;

/// A JoinGroup request, as the group needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

/// One member, as persisted in the group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// Subscription metadata for the chosen protocol.
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// The group as persisted in `__consumer_offsets` (Kafka's GroupMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberRecord>,
    /// Set for a group on the consumer protocol (KIP-848); the classic
    /// fields are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerGroupRecord>,
}

/// A committed offset (Kafka's OffsetCommitValue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<Result<JoinOutcome, CoordinatorError>>>,
    sync_waiter: Option<oneshot::Sender<Result<Bytes, CoordinatorError>>>,
    heartbeat_deadline: Instant,
    /// Join order, so the first member to join leads.
    joined_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Timing settings of the coordinator that apply to every group.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Groups on the consumer protocol.
    pub consumer: ConsumerSettings,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            consumer: ConsumerSettings::default(),
        }
    }
}

/// The outcome of a call that may need the group record written.
#[must_use]
#[derive(Debug, Default)]
pub struct Effects {
    /// Write this group record (acks=all) before answering the parked syncs.
    pub persist: Option<GroupRecord>,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join (or
    /// their session timeout passes).
    pending: HashMap<String, Instant>,
    /// The join phase ends by then even if members are missing.
    rebalance_deadline: Option<Instant>,
    /// Kafka's InitialDelayedJoin for a group that was empty: (next check,
    /// hard limit); every new member pushes the check out by the delay.
    initial_delay: Option<(Instant, Instant)>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Per partition, the write number of the commit `offsets` holds. Writes
    /// reach `__consumer_offsets` in number order but are acknowledged in any
    /// order; keeping the highest number keeps memory equal to the log.
    offset_writes: BTreeMap<(String, i32), u64>,
    /// Commits on their way to the log, per partition, so deleting the group
    /// tombstones those too and the group is not dropped under them.
    in_flight: BTreeMap<(String, i32), u32>,
    /// Writes numbered up to this were submitted before this group existed
    /// (to a deleted group of the same name, tombstoned after them).
    pub write_floor: u64,
    next_seq: u64,
    settings: GroupSettings,
    /// Rebalances completed (for metrics and tests).
    pub rebalances: u64,
    /// The group's state when it is on the consumer protocol (KIP-848).
    pub consumer: Option<ConsumerGroup>,
    /// After a move back to the classic protocol: each member's epoch from
    /// the consumer protocol, accepted as its generation (heartbeats answer
    /// "rejoin", commits pass) until the next generation.
    downgraded: HashMap<String, i32>,
}

impl Group {
    pub fn new(id: String, settings: GroupSettings) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            offsets: BTreeMap::new(),
            offset_writes: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            write_floor: 0,
            next_seq: 0,
            settings,
            rebalances: 0,
            consumer: None,
            downgraded: HashMap::new(),
        }
    }

    /// Restores a group from its record after a coordinator takes over the
    /// partition: members keep their assignment and must heartbeat within a
    /// session timeout from `now`, so a coordinator move needs no rebalance.
    pub fn restore(&mut self, rec: GroupRecord, now: Instant) {
        self.consumer = rec.consumer.map(|c| {
            ConsumerGroup::restore(self.id.clone(), c, self.settings.consumer.clone(), now)
        });
        self.generation = rec.generation;
        self.protocol_type = Some(rec.protocol_type).filter(|s| !s.is_empty());
        self.protocol = rec.protocol;
        self.leader = rec.leader;
        self.members.clear();
        for m in rec.members {
            let seq = self.next_seq;
            self.next_seq += 1;
            let session = Duration::from_millis(m.session_timeout_ms);
            let protocol = self.protocol.clone().unwrap_or_default();
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: session,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol, Bytes::from(m.metadata))],
                    assignment: Bytes::from(m.assignment),
                    join_waiter: None,
                    sync_waiter: None,
                    heartbeat_deadline: now + session,
                    joined_seq: seq,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// The record to persist for the group's current generation.
    pub fn snapshot(&self) -> GroupRecord {
        if let Some(c) = &self.consumer {
            return GroupRecord {
                protocol_type: "consumer".into(),
                generation: c.rec.epoch,
                protocol: None,
                leader: None,
                members: Vec::new(),
                consumer: Some(c.rec.clone()),
            };
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    metadata: m.metadata_for(&protocol).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
            consumer: None,
        }
    }

    /// FENCED_INSTANCE_ID for `member_id`, replaced under `instance`.
    fn fenced(&self, instance: &str, member_id: &str) -> CoordinatorError {
        CoordinatorError::FencedInstance {
            group: self.id.clone(),
            instance: instance.to_string(),
            member: member_id.to_string(),
        }
    }

    /// UNKNOWN_MEMBER_ID for `member_id`.
    fn unknown_member(&self, member_id: &str) -> CoordinatorError {
        CoordinatorError::UnknownMember {
            group: self.id.clone(),
            member: member_id.to_string(),
        }
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), CoordinatorError> {
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(CoordinatorError::IllegalGeneration {
                group: self.id.clone(),
                generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    /// Answers the member's parked join and sync with `e`.
    fn fail_waiters(m: Member, e: CoordinatorError) {
        if let Some(tx) = m.join_waiter {
            let _ = tx.send(Err(e.clone()));
        }
        if let Some(tx) = m.sync_waiter {
            let _ = tx.send(Err(e));
        }
    }

    /// Whether the group can be dropped from memory: no members, no offsets,
    /// none being written.
    pub fn is_unused(&self) -> bool {
        self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && self.in_flight.is_empty()
            && self.state == GroupState::Empty
            && self.consumer.as_ref().is_none_or(ConsumerGroup::is_empty)
    }

    /// Members of either protocol.
    pub fn member_count(&self) -> usize {
        self.members.len() + self.consumer.as_ref().map_or(0, |c| c.rec.members.len())
    }

    /// "classic" or "consumer", as ListGroups shows it.
    pub fn group_type(&self) -> &'static str {
        if self.is_consumer() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The state's name, Kafka's for the group's protocol.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) if self.state != GroupState::Dead => c.state_name(),
            _ => self.state.name(),
        }
    }

    /// Whether the group uses the consumer protocol (KIP-848).
    pub fn is_consumer(&self) -> bool {
        self.consumer.is_some()
    }

    /// The group's consumer-protocol state, made from an empty classic group
    /// if need be (KIP-848: an empty group changes protocol freely; one
    /// with classic members is refused rather than split in two).
    pub fn as_consumer(&mut self, now: Instant) -> Result<&mut ConsumerGroup, CoordinatorError> {
        if self.state == GroupState::Dead {
            return Err(CoordinatorError::GroupBeingDeleted {
                group: self.id.clone(),
            });
        }
        if self.consumer.is_none() && (!self.members.is_empty() || self.state != GroupState::Empty)
        {
            // Members: moved online if the policy allows, else refused.
            self.upgrade(now)?;
        }
        if self.consumer.is_none() {
            self.pending.clear();
            self.protocol_type = Some("consumer".into());
            self.protocol = None;
            self.leader = None;
            self.consumer = Some(ConsumerGroup::new(
                self.id.clone(),
                self.settings.consumer.clone(),
            ));
        }
        Ok(self.consumer.as_mut().expect("set above"))
    }

    /// The consumer-protocol timers (see [`ConsumerGroup::tick`]).
    pub fn tick_consumer(&mut self, topics: &TopicCounts, now: Instant) -> Effects {
        let mut changed = self.consumer.as_mut().is_some_and(|c| c.tick(topics, now));
        changed |= self.maybe_downgrade(now);
        Effects {
            persist: changed.then(|| self.snapshot()),
        }
    }

    /// Fails every parked request: the coordinator no longer owns the group.
    pub fn unload(&mut self, why: NotServed) {
        let e = CoordinatorError::NotCoordinator {
            group: self.id.clone(),
            why,
        };
        for (_, m) in std::mem::take(&mut self.members) {
            Self::fail_waiters(m, e.clone());
        }
        self.state = GroupState::Dead;
    }
}
