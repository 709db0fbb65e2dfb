//! A consumer group on the consumer protocol (KIP-848), without I/O: the
//! coordinator computes the assignment; members only heartbeat their
//! subscription and what they own, and receive their partitions.
//!
//! Epochs: the group epoch rises with every change of membership,
//! subscription or subscribed topics' partitions; the target assignment is
//! computed for it (sticky, so few partitions change hands); each member then
//! reconciles toward its target at its own pace (see `member`), and its
//! member epoch reaches the target epoch once it has given up what it had to.
//! A request with an epoch that is not the member's is fenced.
//!
//! Everything but the timers is persisted as one [`ConsumerGroupRecord`]:
//! a coordinator that takes over the group keeps every member's epoch and
//! assignment.
//!
//! # Layout
//! - this file: [`ConsumerGroup`], heartbeats, leaving, the timers.
//! - `member`: a member and its reconciliation.
//! - `assign`: the server-side assignors.
//! - `subscription`: validating a heartbeat and resolving subscriptions.

pub mod assign;
pub mod classic;
pub mod member;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::CoordinatorError;
pub use assign::{Assignment, Assignor};
pub use classic::ClassicJoin;
pub use member::{ClassicInfo, ConsumerMember, MemberState};
pub use subscription::TopicCounts;

/// The member epoch of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for a while (it keeps its
/// partitions for its next incarnation until the session timeout).
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// Coordinator settings for consumer-protocol groups, Kafka's names.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `group.consumer.session.timeout.ms` (45000).
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms` (5000).
    pub heartbeat_interval: Duration,
    /// `group.consumer.assignors`: the first is the default.
    pub assignors: Vec<Assignor>,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.migration.policy`.
    pub migration: MigrationPolicy,
}

/// KIP-848's `group.consumer.migration.policy`: whether a group with members
/// may move between protocols online (classic members then live in a
/// consumer-protocol group until the last of either kind leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Disabled,
    /// Classic to consumer: a consumer-protocol member may join a classic
    /// group with members.
    Upgrade,
    /// Consumer to classic: when the last consumer-protocol member leaves a
    /// group of classic members, it becomes a classic group again.
    Downgrade,
    Bidirectional,
}

impl MigrationPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Some(Self::Disabled),
            "upgrade" => Some(Self::Upgrade),
            "downgrade" => Some(Self::Downgrade),
            "bidirectional" => Some(Self::Bidirectional),
            _ => None,
        }
    }

    pub fn upgrades(self) -> bool {
        matches!(self, Self::Upgrade | Self::Bidirectional)
    }

    pub fn downgrades(self) -> bool {
        matches!(self, Self::Downgrade | Self::Bidirectional)
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(5_000),
            assignors: Assignor::ALL.to_vec(),
            max_size: i32::MAX as usize,
            migration: MigrationPolicy::Bidirectional,
        }
    }
}

/// The group as persisted in `__consumer_offsets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    /// The group epoch.
    pub epoch: i32,
    /// The epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// The assignor that computed it.
    pub assignor: String,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Each member's target assignment.
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed for.
    pub subscribed: BTreeMap<String, i32>,
}

/// A ConsumerGroupHeartbeat, as the group needs it. `None` fields are
/// "unchanged since the last heartbeat".
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns now.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// What a heartbeat answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed (or the member may not know it).
    pub assignment: Option<Assignment>,
}

struct Deadlines {
    session: Instant,
    /// Set while the member has partitions to give up: it is removed if it
    /// has not within its rebalance timeout.
    revocation: Option<Instant>,
}

pub struct ConsumerGroup {
    pub id: String,
    pub rec: ConsumerGroupRecord,
    /// Who holds each partition (assigned or being revoked): topic ->
    /// partition -> member id.
    owners: HashMap<String, HashMap<i32, String>>,
    deadlines: HashMap<String, Deadlines>,
    /// The [`TopicCounts::version`] last checked.
    topics_seen: u64,
    settings: ConsumerSettings,
    /// The number of the last write of this group's record a heartbeat
    /// submitted, and the highest one confirmed: while one is unconfirmed
    /// (in flight, or failed) memory may be ahead of the log, so every
    /// answer writes (and waits for) the record again.
    last_write: u64,
    confirmed_write: u64,
}

impl ConsumerGroup {
    pub fn new(id: String, settings: ConsumerSettings) -> Self {
        Self {
            id,
            rec: ConsumerGroupRecord::default(),
            owners: HashMap::new(),
            deadlines: HashMap::new(),
            topics_seen: 0,
            settings,
            last_write: 0,
            confirmed_write: 0,
        }
    }

    /// A member's session timeout: the coordinator's, or a classic member's own.
    fn session_of(&self, m: &ConsumerMember) -> Duration {
        match &m.classic {
            Some(c) => Duration::from_millis(c.session_timeout_ms),
            None => self.settings.session_timeout,
        }
    }

    /// Whether a write of this group's record may not have reached the log.
    pub fn unconfirmed(&self) -> bool {
        self.last_write > self.confirmed_write
    }

    /// A heartbeat submitted write `number` of the group's record.
    pub fn write_submitted(&mut self, number: u64) {
        self.last_write = self.last_write.max(number);
    }

    /// Write `number` (and so every earlier one) is in the log.
    pub fn write_confirmed(&mut self, number: u64) {
        self.confirmed_write = self.confirmed_write.max(number);
    }

    /// Rebuilds the group from its record: every member must heartbeat
    /// within a session timeout from `now`.
    pub fn restore(
        id: String,
        rec: ConsumerGroupRecord,
        settings: ConsumerSettings,
        now: Instant,
    ) -> Self {
        let mut g = Self::new(id, settings);
        for m in rec.members.values() {
            g.hold(m);
            let revocation = (m.state == MemberState::UnrevokedPartitions)
                .then(|| now + Duration::from_millis(m.rebalance_timeout_ms));
            g.deadlines.insert(
                m.member_id.clone(),
                Deadlines {
                    session: now + g.session_of(m),
                    revocation,
                },
            );
        }
        g.rec = rec;
        g
    }

    pub fn is_empty(&self) -> bool {
        self.rec.members.is_empty()
    }

    /// Kafka's consumer group states: Empty, Assigning, Reconciling, Stable.
    pub fn state_name(&self) -> &'static str {
        if self.rec.members.is_empty() {
            "Empty"
        } else if self.rec.epoch > self.rec.assignment_epoch {
            "Assigning"
        } else if self
            .rec
            .members
            .values()
            .any(|m| m.epoch != self.rec.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The member holding `topic`-`p`, if any.
    pub fn owner(&self, topic: &str, p: i32) -> Option<&str> {
        self.owners.get(topic)?.get(&p).map(String::as_str)
    }

    fn hold(&mut self, m: &ConsumerMember) {
        let id = &m.member_id;
        for (t, p) in m.holds() {
            self.owners
                .entry(t.to_string())
                .or_default()
                .insert(p, id.clone());
        }
    }

    fn release(&mut self, m: &ConsumerMember) {
        for (t, p) in m.holds() {
            if let Some(ps) = self.owners.get_mut(t) {
                if ps.get(&p) == Some(&m.member_id) {
                    ps.remove(&p);
                }
                if ps.is_empty() {
                    self.owners.remove(t);
                }
            }
        }
    }

    /// Stores `m`, keeping `owners` in step.
    fn put(&mut self, m: ConsumerMember) {
        if let Some(old) = self.rec.members.remove(&m.member_id) {
            self.release(&old);
        }
        self.hold(&m);
        self.rec.members.insert(m.member_id.clone(), m);
    }

    /// Removes a member; its partitions are free at once. The caller
    /// raises the group epoch (once for any number of removals).
    fn remove(&mut self, id: &str) -> Option<ConsumerMember> {
        let m = self.rec.members.remove(id)?;
        self.release(&m);
        self.rec.target.remove(id);
        self.deadlines.remove(id);
        Some(m)
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    fn update_target(&mut self, topics: &TopicCounts) {
        if self.rec.epoch <= self.rec.assignment_epoch {
            return;
        }
        let resolved = subscription::resolve_all(&self.rec.members, topics);
        let counts = subscription::counts_of(&resolved, topics);
        let assignor = self.choose_assignor();
        self.rec.target = assignor.assign(&assign::AssignInput {
            members: &resolved,
            topics: &counts,
            previous: &self.rec.target,
        });
        self.rec.subscribed = counts;
        self.rec.assignor = assignor.name().to_string();
        self.rec.assignment_epoch = self.rec.epoch;
        // A new target is this protocol's rebalance (the classic counter's).
        metrics::counter!("sluice_consumer_group_rebalances_total", "group" => self.id.clone())
            .increment(1);
    }

    /// The assignor most members ask for (ties: the configured order), or
    /// the default.
    fn choose_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
        for m in self.rec.members.values() {
            let asked = m.server_assignor.as_deref().and_then(Assignor::parse);
            if let Some(i) =
                asked.and_then(|a| self.settings.assignors.iter().position(|x| *x == a))
            {
                *votes.entry(i).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| self.settings.assignors[i])
            .unwrap_or(self.settings.assignors[0])
    }

    /// Whether the subscribed topics changed (created, deleted, more
    /// partitions) since the target was computed: the group epoch must rise.
    fn check_topics(&mut self, topics: &TopicCounts) -> bool {
        if topics.version == self.topics_seen {
            return false;
        }
        self.topics_seen = topics.version;
        if self.rec.members.is_empty() {
            return false;
        }
        let resolved = subscription::resolve_all(&self.rec.members, topics);
        subscription::counts_of(&resolved, topics) != self.rec.subscribed
    }

    /// ConsumerGroupHeartbeat. Returns the answer and whether the group
    /// record changed (it must be written before the answer is sent).
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        topics: &TopicCounts,
        now: Instant,
    ) -> Result<(HeartbeatAnswer, bool), CoordinatorError> {
        subscription::validate(&req, &self.settings)?;
        match req.member_epoch {
            LEAVE_EPOCH => return self.leave(&req.member_id, topics),
            LEAVE_STATIC_EPOCH => return self.leave_static(&req, now),
            _ => {}
        }
        let joining = req.member_epoch == 0;
        // Kafka's "full request" (sent again after a coordinator change):
        // always answered with the assignment.
        let full = joining
            || (req.rebalance_timeout_ms != -1
                && req.subscribed_topic_names.is_some()
                && req.owned.is_some());
        let (mut m, new) = if joining {
            self.joining_member(&req)?
        } else {
            (self.current_member(&req)?, false)
        };
        let before = self.rec.members.get(&m.member_id).cloned();
        let mut bump = new;
        if let Some(names) = req.subscribed_topic_names {
            let set = names.into_iter().filter(|t| !t.is_empty()).collect();
            bump |= set != m.subscribed_topics;
            m.subscribed_topics = set;
        }
        if let Some(re) = req.subscribed_topic_regex {
            let re = Some(re).filter(|r| !r.is_empty());
            bump |= re != m.subscribed_regex;
            m.subscribed_regex = re;
        }
        if let Some(a) = req.server_assignor {
            let a = Some(a).filter(|a| !a.is_empty());
            bump |= a != m.server_assignor;
            m.server_assignor = a;
        }
        if req.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id;
        }
        if req.instance_id.is_some() {
            m.instance_id = req.instance_id;
        }
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        let id = m.member_id.clone();
        self.put(m);
        bump |= self.check_topics(topics);
        if bump {
            self.rec.epoch += 1;
        }
        self.update_target(topics);
        let target = self.rec.target.get(&id).cloned().unwrap_or_default();
        let current = &self.rec.members[&id];
        let next = current.reconcile(
            self.rec.assignment_epoch,
            &target,
            req.owned.as_ref(),
            |t, p| self.owner(t, p).is_some_and(|o| o != id),
        );
        // A member still revoking keeps the deadline it got when it started.
        let revocation = match self.deadlines.get(&id) {
            Some(d) if current.state == MemberState::UnrevokedPartitions => d.revocation,
            _ => None,
        };
        let revocation = (next.state == MemberState::UnrevokedPartitions)
            .then(|| revocation.unwrap_or(now + Duration::from_millis(next.rebalance_timeout_ms)));
        self.deadlines.insert(
            id.clone(),
            Deadlines {
                session: now + self.settings.session_timeout,
                revocation,
            },
        );
        let assignment_changed = before
            .as_ref()
            .is_none_or(|b| b.epoch != next.epoch || b.assigned != next.assigned);
        // The member says it owns something else than its assignment (an
        // answer was lost, or it has not revoked yet): tell it again; a
        // repeated assignment changes nothing on the member.
        let out_of_step = req.owned.as_ref().is_some_and(|o| *o != next.assigned);
        let send = full || assignment_changed || out_of_step;
        let answer = HeartbeatAnswer {
            member_id: id,
            member_epoch: next.epoch,
            heartbeat_interval_ms: self.settings.heartbeat_interval.as_millis() as i32,
            assignment: send.then(|| next.assigned.clone()),
        };
        let changed = bump || before.as_ref() != Some(&next);
        self.put(next);
        Ok((answer, changed))
    }

    /// The member a join (epoch 0) is for: a new one, a static member's next
    /// incarnation taking its place, or a member that lost its state and
    /// starts over owning nothing. The flag says whether it is new.
    fn joining_member(
        &mut self,
        req: &Heartbeat,
    ) -> Result<(ConsumerMember, bool), CoordinatorError> {
        let id = if req.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        if let Some(instance) = &req.instance_id
            && let Some(old) = self
                .rec
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .cloned()
        {
            if old.member_id != id && !old.left_static {
                return Err(CoordinatorError::UnreleasedInstance {
                    group: self.id.clone(),
                    instance: instance.clone(),
                    member: old.member_id,
                });
            }
            // The next incarnation takes the old one's place and partitions
            // (the old process is gone: it left, so what it was giving up
            // is given up).
            let mut m = self.take_place(old, &id);
            m.revoking.clear();
            if m.state == MemberState::UnrevokedPartitions {
                m.state = MemberState::UnreleasedPartitions;
            }
            return Ok((m, false));
        }
        if let Some(old) = self.rec.members.get(&id) {
            // Rejoining after losing its state (fenced): it owns nothing.
            let mut m = old.clone();
            m.assigned.clear();
            m.revoking.clear();
            m.epoch = 0;
            m.previous_epoch = -1;
            m.state = MemberState::Stable;
            return Ok((m, false));
        }
        if self.rec.members.len() >= self.settings.max_size {
            return Err(CoordinatorError::GroupMaxSize {
                group: self.id.clone(),
                max: self.settings.max_size,
            });
        }
        Ok((ConsumerMember::new(id), true))
    }

    /// A static member's next incarnation takes the old one's place under
    /// `id`: its partitions, target and epoch (the old one is fenced).
    fn take_place(&mut self, old: ConsumerMember, id: &str) -> ConsumerMember {
        self.release(&old);
        self.rec.members.remove(&old.member_id);
        let target = self.rec.target.remove(&old.member_id);
        self.deadlines.remove(&old.member_id);
        let mut m = old;
        m.member_id = id.to_string();
        m.left_static = false;
        if let Some(t) = target {
            self.rec.target.insert(id.to_string(), t);
        }
        m
    }

    /// The member a heartbeat with a positive epoch is for, fenced when the
    /// epoch is not its own (or its previous one, when the last answer was
    /// lost and the member still owns only what it had).
    fn current_member(&self, req: &Heartbeat) -> Result<ConsumerMember, CoordinatorError> {
        let Some(m) = self.rec.members.get(&req.member_id) else {
            return Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: req.member_id.clone(),
            });
        };
        // Plain heartbeats do not repeat the instance id; one that names
        // another is a second process sharing this member id.
        if let (Some(instance), Some(asked)) = (&m.instance_id, &req.instance_id)
            && asked != instance
        {
            return Err(CoordinatorError::FencedInstance {
                group: self.id.clone(),
                instance: instance.clone(),
                member: req.member_id.clone(),
            });
        }
        let fenced = || CoordinatorError::FencedMemberEpoch {
            group: self.id.clone(),
            member: m.member_id.clone(),
            epoch: req.member_epoch,
            current: m.epoch,
        };
        if m.left_static || req.member_epoch > m.epoch {
            return Err(fenced());
        }
        if req.member_epoch < m.epoch {
            let previous_ok = req.member_epoch == m.previous_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|o| member::contains_all(&m.assigned, o));
            if !previous_ok {
                return Err(fenced());
            }
        }
        Ok(m.clone())
    }

    fn leave(
        &mut self,
        member_id: &str,
        topics: &TopicCounts,
    ) -> Result<(HeartbeatAnswer, bool), CoordinatorError> {
        if self.remove(member_id).is_none() {
            return Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: member_id.to_string(),
            });
        }
        self.rec.epoch += 1;
        self.update_target(topics);
        tracing::info!(group = %self.id, member = %member_id, "member left the group");
        Ok((self.left(member_id, LEAVE_EPOCH), true))
    }

    fn leave_static(
        &mut self,
        req: &Heartbeat,
        now: Instant,
    ) -> Result<(HeartbeatAnswer, bool), CoordinatorError> {
        let Some(m) = self.rec.members.get(&req.member_id) else {
            return Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: req.member_id.clone(),
            });
        };
        if m.instance_id != req.instance_id {
            return Err(CoordinatorError::FencedInstance {
                group: self.id.clone(),
                instance: req.instance_id.clone().unwrap_or_default(),
                member: req.member_id.clone(),
            });
        }
        let mut m = m.clone();
        m.left_static = true;
        let id = m.member_id.clone();
        self.put(m);
        self.deadlines.insert(
            id.clone(),
            Deadlines {
                session: now + self.settings.session_timeout,
                revocation: None,
            },
        );
        tracing::info!(group = %self.id, member = %id, "static member left for now");
        Ok((self.left(&id, LEAVE_STATIC_EPOCH), true))
    }

    fn left(&self, member_id: &str, epoch: i32) -> HeartbeatAnswer {
        HeartbeatAnswer {
            member_id: member_id.to_string(),
            member_epoch: epoch,
            heartbeat_interval_ms: self.settings.heartbeat_interval.as_millis() as i32,
            assignment: None,
        }
    }

    /// Timers: members past their session timeout, or that did not give up
    /// partitions within their rebalance timeout, are removed; changed
    /// topics raise the group epoch. Returns whether the record changed.
    pub fn tick(&mut self, topics: &TopicCounts, now: Instant) -> bool {
        if self.rec.members.is_empty() {
            return false;
        }
        let mut changed = self.check_topics(topics);
        if changed {
            self.rec.epoch += 1;
        }
        let expired: Vec<(String, &'static str)> = self
            .deadlines
            .iter()
            .filter_map(|(id, d)| {
                if d.session <= now {
                    Some((id.clone(), "session timed out"))
                } else if d.revocation.is_some_and(|r| r <= now) {
                    Some((id.clone(), "did not revoke within its rebalance timeout"))
                } else {
                    None
                }
            })
            .collect();
        let mut removed = false;
        for (id, why) in expired {
            if self.remove(&id).is_some() {
                tracing::info!(group = %self.id, member = %id, "member removed: {why}");
                removed = true;
            }
        }
        if removed {
            self.rec.epoch += 1;
            changed = true;
        }
        self.update_target(topics);
        changed
    }

    /// Validates an OffsetCommit: a member commits with its current epoch;
    /// with no member and no epoch, only to a group without members.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), CoordinatorError> {
        if epoch < 0 && member_id.is_empty() {
            return if self.rec.members.is_empty() {
                Ok(())
            } else {
                Err(CoordinatorError::SimpleCommitToActiveGroup {
                    group: self.id.clone(),
                })
            };
        }
        let Some(m) = self.rec.members.get(member_id) else {
            return Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: member_id.to_string(),
            });
        };
        if m.epoch != epoch {
            return Err(CoordinatorError::StaleMemberEpoch {
                group: self.id.clone(),
                member: member_id.to_string(),
                epoch,
                current: m.epoch,
            });
        }
        Ok(())
    }
}
