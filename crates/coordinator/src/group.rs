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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::oneshot;

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

pub type JoinReply = oneshot::Receiver<Result<JoinOutcome, ApiError>>;
pub type SyncReply = oneshot::Receiver<Result<Bytes, ApiError>>;

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
    join_waiter: Option<oneshot::Sender<Result<JoinOutcome, ApiError>>>,
    sync_waiter: Option<oneshot::Sender<Result<Bytes, ApiError>>>,
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
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
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
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

fn fenced(instance: &str, member_id: &str) -> ApiError {
    err(
        ErrorCode::FencedInstanceId,
        format!(
            "member {member_id} was replaced by a newer consumer with group.instance.id \"{instance}\"; two consumers share that id"
        ),
    )
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
        }
    }

    /// Restores a group from its record after a coordinator takes over the
    /// partition: members keep their assignment and must heartbeat within a
    /// session timeout from `now`, so a coordinator move needs no rebalance.
    pub fn restore(&mut self, rec: GroupRecord, now: Instant) {
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
        }
    }

    /// JoinGroup. Returns the receiver of the answer, which may come at once
    /// or when the join phase completes.
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> (JoinReply, Effects) {
        let (tx, rx) = oneshot::channel();
        let effects = match self.try_join(req, tx, now) {
            Ok(e) => e,
            Err((tx, e)) => {
                let _ = tx.send(Err(e));
                Effects::default()
            }
        };
        (rx, effects)
    }

    #[allow(clippy::type_complexity)]
    fn try_join(
        &mut self,
        mut req: JoinRequest,
        tx: oneshot::Sender<Result<JoinOutcome, ApiError>>,
        now: Instant,
    ) -> Result<Effects, (oneshot::Sender<Result<JoinOutcome, ApiError>>, ApiError)> {
        if self.state == GroupState::Dead {
            return Err((
                tx,
                err(
                    ErrorCode::CoordinatorNotAvailable,
                    format!("group {} is being deleted", self.id),
                ),
            ));
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err((
                tx,
                err(
                    ErrorCode::InconsistentGroupProtocol,
                    "JoinGroup needs a protocol type and at least one protocol",
                ),
            ));
        }
        let s = &self.settings;
        if req.session_timeout < s.min_session_timeout
            || req.session_timeout > s.max_session_timeout
        {
            return Err((
                tx,
                err(
                    ErrorCode::InvalidSessionTimeout,
                    format!(
                        "session.timeout.ms {} is outside group.min.session.timeout.ms {} .. group.max.session.timeout.ms {}",
                        req.session_timeout.as_millis(),
                        s.min_session_timeout.as_millis(),
                        s.max_session_timeout.as_millis()
                    ),
                ),
            ));
        }
        if !self.supports(&req) {
            return Err((
                tx,
                err(
                    ErrorCode::InconsistentGroupProtocol,
                    format!(
                        "group {} uses protocol type {:?} with assignors the new member does not support",
                        self.id, self.protocol_type
                    ),
                ),
            ));
        }
        if let Some(instance) = req.group_instance_id.clone() {
            // KIP-345: a static member is known by its group.instance.id.
            match self.static_member(&instance).map(str::to_string) {
                Some(current) if !req.member_id.is_empty() && req.member_id != current => {
                    return Err((tx, fenced(&instance, &req.member_id)));
                }
                Some(current) if req.member_id.is_empty() => {
                    // The same instance restarted: it takes the old member's
                    // place (and assignment) under a new id, fencing the old one.
                    req.member_id = self.replace_static_member(&current, &req, now);
                    // As Kafka: in Stable only a change of the chosen
                    // assignor forces a rebalance; a changed subscription is
                    // the leader's to notice (its metadata check).
                    let keeps_protocol = self
                        .protocol
                        .as_deref()
                        .is_some_and(|p| req.protocols.iter().any(|(n, _)| n == p));
                    if self.state == GroupState::CompletingRebalance {
                        // The leader is assigning under the old member id:
                        // that assignment would miss the new one.
                        self.prepare_rebalance(now);
                    }
                    if self.state == GroupState::Stable && keeps_protocol {
                        // The leader too gets the members list back, and its
                        // SyncGroup in Stable returns the stored assignment
                        // (Kafka's KIP-814 answer, without the flag).
                        let m = self.members.get_mut(&req.member_id).expect("replaced");
                        m.protocols = req.protocols.clone();
                        let r = self.join_result_for(&req.member_id);
                        let _ = tx.send(Ok(JoinOutcome::Joined(r)));
                        return Ok(Effects {
                            persist: Some(self.snapshot()),
                        });
                    }
                }
                None if req.member_id.is_empty() => {
                    // A new static member needs no MEMBER_ID_REQUIRED round:
                    // its instance id already makes a retried join harmless.
                    req.member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
                    self.pending
                        .insert(req.member_id.clone(), now + req.session_timeout);
                }
                _ => {}
            }
        }
        if req.member_id.is_empty() {
            // KIP-394: hand out an id and make the client join again with it,
            // so a retried first join cannot leave a ghost member behind.
            let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            self.pending.insert(id.clone(), now + req.session_timeout);
            let _ = tx.send(Ok(JoinOutcome::MemberIdRequired(id)));
            return Ok(Effects::default());
        }
        let known = self.members.contains_key(&req.member_id);
        if !known && self.pending.remove(&req.member_id).is_none() {
            return Err((
                tx,
                err(
                    ErrorCode::UnknownMemberId,
                    format!("member {} is not in group {}", req.member_id, self.id),
                ),
            ));
        }
        if known {
            let m = &self.members[&req.member_id];
            let same = m.protocols == req.protocols;
            let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
            // A follower rejoining with the same subscription in a settled
            // generation gets the current generation back (Kafka does the same).
            let settled = match self.state {
                GroupState::CompletingRebalance => same,
                GroupState::Stable => same && !is_leader,
                _ => false,
            };
            if settled {
                let r = self.join_result_for(&req.member_id);
                let m = self.members.get_mut(&req.member_id).expect("known");
                m.heartbeat_deadline = now + m.session_timeout;
                let _ = tx.send(Ok(JoinOutcome::Joined(r)));
                return Ok(Effects::default());
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let member = self
            .members
            .entry(req.member_id.clone())
            .or_insert_with(|| Member {
                id: req.member_id.clone(),
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocol_type: String::new(),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline: now + req.session_timeout,
                joined_seq: seq,
            });
        member.instance_id = req.group_instance_id;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocol_type = req.protocol_type.clone();
        member.protocols = req.protocols;
        member.heartbeat_deadline = now + req.session_timeout;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(Err(err(
                ErrorCode::RebalanceInProgress,
                "superseded by a newer JoinGroup",
            )));
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type);
        }
        let new_member = !known;
        match self.state {
            GroupState::PreparingRebalance => {
                if new_member && let Some((check, limit)) = self.initial_delay {
                    // Another member arrived during the initial delay: wait
                    // one more delay for the rest, up to the rebalance timeout.
                    let next = (now + self.settings.initial_rebalance_delay).min(limit);
                    self.initial_delay = Some((next.max(check), limit));
                }
            }
            _ => self.prepare_rebalance(now),
        }
        Ok(self.try_complete_join(now))
    }

    /// Whether the member's protocol type and assignors fit the group.
    fn supports(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() || self.members.keys().all(|k| *k == req.member_id) {
            return true;
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != req.protocol_type)
        {
            return false;
        }
        req.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != req.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The longest rebalance timeout among the members.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being computed is void; members must rejoin.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(Err(err(
                        ErrorCode::RebalanceInProgress,
                        "the group is rebalancing again",
                    )));
                }
            }
        }
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = self.settings.initial_rebalance_delay.min(timeout);
            self.initial_delay = (!delay.is_zero()).then(|| (now + delay, now + timeout));
        } else {
            self.initial_delay = None;
        }
        self.rebalance_deadline = Some(now + timeout);
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase when every member has rejoined (and the
    /// initial delay is over), or when the rebalance timeout has passed.
    fn try_complete_join(&mut self, now: Instant) -> Effects {
        if self.state != GroupState::PreparingRebalance {
            return Effects::default();
        }
        if let Some((check, _)) = self.initial_delay {
            if now < check {
                return Effects::default();
            }
            self.initial_delay = None;
        }
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all_joined && !timed_out {
            return Effects::default();
        }
        // Dynamic members that did not rejoin in time are out; static ones
        // keep their place (and get an assignment) until their session
        // expires, so a restart in progress costs no second rebalance (KIP-345).
        self.members
            .retain(|_, m| m.join_waiter.is_some() || m.instance_id.is_some());
        if !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_none()) {
            // Only absent static members: nobody can lead; wait again.
            self.rebalance_deadline = Some(now + self.rebalance_timeout());
            return Effects::default();
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        self.generation += 1;
        self.rebalances += 1;
        metrics::counter!("sluice_consumer_group_rebalances_total", "group" => self.id.clone())
            .increment(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return Effects {
                persist: Some(self.snapshot()),
            };
        }
        self.protocol = Some(self.select_protocol());
        // The leader must be here to assign.
        if self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_none_or(|m| m.join_waiter.is_none())
        {
            self.leader = self
                .members
                .values()
                .filter(|m| m.join_waiter.is_some())
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let r = self.join_result_for(&id);
            let m = self.members.get_mut(&id).expect("member");
            if let Some(tx) = m.join_waiter.take() {
                m.heartbeat_deadline = now + m.session_timeout;
                let _ = tx.send(Ok(JoinOutcome::Joined(r)));
            }
        }
        Effects::default()
    }

    /// Kafka's vote: among the protocols every member supports, each member
    /// votes for its most preferred; most votes wins (ties by name).
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("members");
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.into_iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// The member id a static member (`group.instance.id`) has now.
    fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Refuses a call from a static member whose instance id now belongs to
    /// another member id (a newer incarnation replaced it).
    pub fn check_instance(&self, member_id: &str, instance: Option<&str>) -> Result<(), ApiError> {
        match instance.and_then(|i| self.static_member(i).map(|m| (i, m))) {
            Some((i, current)) if current != member_id => Err(fenced(i, member_id)),
            _ => Ok(()),
        }
    }

    /// Gives a static member's place to its new incarnation; returns the new
    /// member id. The old incarnation's parked calls fail with
    /// FENCED_INSTANCE_ID, and so does anything it sends later.
    fn replace_static_member(&mut self, old: &str, req: &JoinRequest, now: Instant) -> String {
        let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        let mut m = self.members.remove(old).expect("a current member");
        let instance = m.instance_id.clone().unwrap_or_default();
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(Err(fenced(&instance, old)));
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(Err(fenced(&instance, old)));
        }
        tracing::info!(group = %self.id, instance = %instance, old = %old, new = %new_id, "static member rejoined");
        m.id = new_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.heartbeat_deadline = now + req.session_timeout;
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        new_id
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ApiError> {
        if !self.members.contains_key(member_id) {
            return Err(err(
                ErrorCode::UnknownMemberId,
                format!("member {member_id} is not in group {}", self.id),
            ));
        }
        if generation != self.generation {
            return Err(err(
                ErrorCode::IllegalGeneration,
                format!(
                    "generation {generation} is not group {}'s current generation {}",
                    self.id, self.generation
                ),
            ));
        }
        Ok(())
    }

    /// SyncGroup. The leader's call carries the assignment; the returned
    /// effects ask for the group record to be written, after which the caller
    /// runs [`Group::assignment_persisted`].
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (SyncReply, Effects) {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.check_member(member_id, generation) {
            let _ = tx.send(Err(e));
            return (rx, Effects::default());
        }
        let m = self.members.get_mut(member_id).expect("checked");
        m.heartbeat_deadline = now + m.session_timeout;
        match self.state {
            GroupState::PreparingRebalance => {
                let _ = tx.send(Err(err(
                    ErrorCode::RebalanceInProgress,
                    "the group is rebalancing; join again",
                )));
            }
            GroupState::Stable => {
                let _ = tx.send(Ok(m.assignment.clone()));
            }
            GroupState::CompletingRebalance => {
                m.sync_waiter = Some(tx);
                if self.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    }
                    return (
                        rx,
                        Effects {
                            persist: Some(self.snapshot()),
                        },
                    );
                }
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = tx.send(Err(err(
                    ErrorCode::UnknownMemberId,
                    "the group has no members",
                )));
            }
        }
        (rx, Effects::default())
    }

    /// After the leader's assignment for `generation` was written (or failed
    /// to be): answers the parked syncs and settles the group.
    pub fn assignment_persisted(
        &mut self,
        generation: i32,
        result: Result<(), ApiError>,
        now: Instant,
    ) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return; // a newer rebalance already took over
        }
        match result {
            Ok(()) => {
                self.state = GroupState::Stable;
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Ok(m.assignment.clone()));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                self.prepare_rebalance(now);
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.check_member(member_id, generation)?;
        let m = self.members.get_mut(member_id).expect("checked");
        m.heartbeat_deadline = now + m.session_timeout;
        if self.state == GroupState::PreparingRebalance {
            return Err(err(
                ErrorCode::RebalanceInProgress,
                "the group is rebalancing; join again",
            ));
        }
        Ok(())
    }

    /// LeaveGroup for one member, named by its member id or (a static
    /// member, as an admin removes one) by its group.instance.id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<Effects, ApiError> {
        let member_id = match instance {
            Some(i) => match self.static_member(i) {
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return Err(fenced(i, member_id));
                }
                Some(current) => current.to_string(),
                None => {
                    return Err(err(
                        ErrorCode::UnknownMemberId,
                        format!(
                            "no member of group {} has group.instance.id \"{i}\"",
                            self.id
                        ),
                    ));
                }
            },
            None => member_id.to_string(),
        };
        let member_id = member_id.as_str();
        if self.pending.remove(member_id).is_some() {
            return Ok(self.try_complete_join(now));
        }
        let Some(m) = self.members.remove(member_id) else {
            return Err(err(
                ErrorCode::UnknownMemberId,
                format!("member {member_id} is not in group {}", self.id),
            ));
        };
        Self::fail_waiters(m, ErrorCode::UnknownMemberId, "the member left the group");
        Ok(self.member_gone(now))
    }

    fn fail_waiters(m: Member, code: ErrorCode, why: &str) {
        if let Some(tx) = m.join_waiter {
            let _ = tx.send(Err(err(code, why)));
        }
        if let Some(tx) = m.sync_waiter {
            let _ = tx.send(Err(err(code, why)));
        }
    }

    fn member_gone(&mut self, now: Instant) -> Effects {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => Effects::default(),
        }
    }

    /// Timers: session expiry, the initial delay and the rebalance timeout.
    /// Returns whether anything changed, with effects to apply.
    pub fn tick(&mut self, now: Instant) -> Effects {
        self.pending.retain(|_, deadline| *deadline > now);
        // Members parked in JoinGroup are not expired: the join phase's own
        // timeout handles them.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            return self.try_complete_join(now);
        }
        for id in &expired {
            if let Some(m) = self.members.remove(id) {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                Self::fail_waiters(m, ErrorCode::UnknownMemberId, "session timed out");
            }
        }
        self.member_gone(now)
    }

    /// Notes the partitions of a commit being written.
    pub fn commit_submitted(&mut self, tps: impl IntoIterator<Item = (String, i32)>) {
        for tp in tps {
            *self.in_flight.entry(tp).or_default() += 1;
        }
    }

    /// A commit noted by [`Group::commit_submitted`] was answered, either way.
    pub fn commit_finished<'a>(&mut self, tps: impl IntoIterator<Item = &'a (String, i32)>) {
        for tp in tps {
            if let Some(n) = self.in_flight.get_mut(tp) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(tp);
                }
            }
        }
    }

    /// The partitions this group has offsets for, in memory or on the way.
    pub fn offset_keys(&self) -> impl Iterator<Item = &(String, i32)> {
        let mut keys: BTreeSet<&(String, i32)> = self.offsets.keys().collect();
        keys.extend(self.in_flight.keys());
        keys.into_iter()
    }

    /// Takes the offsets of an acknowledged commit, numbered `write` in log
    /// order, unless a later write of the same partition was applied first.
    pub fn apply_commit(
        &mut self,
        write: u64,
        offsets: impl IntoIterator<Item = ((String, i32), CommittedOffset)>,
    ) {
        if write <= self.write_floor {
            return;
        }
        for (tp, o) in offsets {
            if self.offset_writes.get(&tp).is_some_and(|w| *w > write) {
                continue;
            }
            self.offset_writes.insert(tp.clone(), write);
            self.offsets.insert(tp, o);
        }
    }

    /// Validates an OffsetCommit's generation and member.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), ApiError> {
        if self.state == GroupState::Dead {
            return Err(err(
                ErrorCode::CoordinatorNotAvailable,
                format!("group {} is being deleted", self.id),
            ));
        }
        if generation < 0 && member_id.is_empty() {
            // A "simple" commit by a tool or a manually assigned consumer.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(err(
                    ErrorCode::UnknownMemberId,
                    format!(
                        "group {} has active members; commit as one of them",
                        self.id
                    ),
                ))
            };
        }
        self.check_member(member_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(err(
                ErrorCode::RebalanceInProgress,
                "the group is completing a rebalance",
            ));
        }
        Ok(())
    }

    /// Whether the group can be dropped from memory: no members, no offsets,
    /// none being written.
    pub fn is_unused(&self) -> bool {
        self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && self.in_flight.is_empty()
            && self.state == GroupState::Empty
    }

    /// Fails every parked request: the coordinator no longer owns the group.
    pub fn unload(&mut self, code: ErrorCode, why: &str) {
        for (_, m) in std::mem::take(&mut self.members) {
            Self::fail_waiters(m, code, why);
        }
        self.state = GroupState::Dead;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GroupSettings {
        GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            ..Default::default()
        }
    }

    fn req(id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
        }
    }

    /// Joins with an empty id, then with the id the group handed out.
    fn first_join(g: &mut Group, now: Instant) -> (String, JoinReply) {
        let id = new_id(g, &["range"], now);
        let (rx, eff) = g.join(req(&id, &["range"]), now);
        assert!(eff.persist.is_none());
        (id, rx)
    }

    fn new_id(g: &mut Group, protocols: &[&str], now: Instant) -> String {
        let (mut rx, _) = g.join(req("", protocols), now);
        match rx.try_recv().unwrap().unwrap() {
            JoinOutcome::MemberIdRequired(id) => id,
            other => panic!("{other:?}"),
        }
    }

    /// The completed join's result.
    fn joined(rx: &mut JoinReply) -> JoinResult {
        match rx.try_recv().unwrap().unwrap() {
            JoinOutcome::Joined(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn static_req(id: &str, instance: &str) -> JoinRequest {
        JoinRequest {
            group_instance_id: Some(instance.into()),
            ..req(id, &["range"])
        }
    }

    /// Two static members, "ia" (the leader) and "ib", settled in generation 1
    /// with assignments "A" and "B".
    fn static_pair(now: Instant) -> (Group, String, String) {
        let mut g = Group::new("g".into(), settings());
        // No MEMBER_ID_REQUIRED round for a static member.
        let (mut ra, _) = g.join(static_req("", "ia"), now);
        let a = joined(&mut ra).member_id;
        let (sa, _) = g.sync(&a, 1, vec![], now);
        drop(sa);
        let (mut rb, _) = g.join(static_req("", "ib"), now);
        let b_pending = rb.try_recv();
        assert!(b_pending.is_err(), "waits for the leader to rejoin");
        let (mut ra, _) = g.join(static_req(&a, "ia"), now);
        let ja = joined(&mut ra);
        let b = joined(&mut rb).member_id;
        assert_eq!((ja.generation, ja.leader.as_str()), (2, a.as_str()));
        let _ = g.sync(&b, 2, vec![], now);
        let (_, eff) = g.sync(
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            now,
        );
        assert!(eff.persist.is_some());
        g.assignment_persisted(2, Ok(()), now);
        assert_eq!(g.state, GroupState::Stable);
        (g, a, b)
    }

    #[test]
    fn a_restarted_static_follower_gets_its_assignment_without_a_rebalance() {
        let now = Instant::now();
        let (mut g, a, old_b) = static_pair(now);
        let (mut rb, eff) = g.join(static_req("", "ib"), now);
        let jb = joined(&mut rb);
        assert_ne!(jb.member_id, old_b);
        assert_eq!(jb.generation, 2, "same generation: no rebalance");
        assert_eq!(g.state, GroupState::Stable);
        let rec = eff.persist.expect("the new member id is persisted");
        assert!(rec.members.iter().any(|m| m.member_id == jb.member_id));
        let (mut sb, _) = g.sync(&jb.member_id, 2, vec![], now);
        assert_eq!(sb.try_recv().unwrap().unwrap(), Bytes::from_static(b"B"));
        // The old incarnation is fenced, the leader is untouched.
        assert_eq!(
            g.check_instance(&old_b, Some("ib")).unwrap_err().code,
            ErrorCode::FencedInstanceId
        );
        g.check_instance(&jb.member_id, Some("ib")).unwrap();
        g.heartbeat(&a, 2, now).unwrap();
        // A join naming the old id with the instance id is fenced too.
        let (mut r, _) = g.join(static_req(&old_b, "ib"), now);
        assert_eq!(
            r.try_recv().unwrap().unwrap_err().code,
            ErrorCode::FencedInstanceId
        );
    }

    #[test]
    fn restarted_static_leader_or_changed_follower_needs_no_rebalance() {
        let now = Instant::now();
        let (mut g, old_a, b) = static_pair(now);
        let (mut ra, _) = g.join(static_req("", "ia"), now);
        let ja = joined(&mut ra);
        assert_ne!(ja.member_id, old_a);
        assert_eq!(
            (ja.generation, ja.leader.as_str()),
            (2, ja.member_id.as_str())
        );
        assert_eq!(ja.members.len(), 2, "the leader gets the members back");
        assert_eq!(g.state, GroupState::Stable);
        // In Stable the leader's SyncGroup returns the stored assignment.
        let (mut sa, eff) = g.sync(
            &ja.member_id,
            2,
            vec![(ja.member_id.clone(), Bytes::from_static(b"ignored"))],
            now,
        );
        assert!(eff.persist.is_none());
        assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"A"));
        g.heartbeat(&b, 2, now).unwrap();

        // A follower with another subscription but the same assignor comes
        // back at once; its new subscription is stored for the leader.
        let (mut g, _a, _b) = static_pair(now);
        let mut changed = static_req("", "ib");
        changed.protocols = vec![("range".into(), Bytes::from_static(b"other topics"))];
        let (mut rb, eff) = g.join(changed, now);
        let jb = joined(&mut rb);
        assert_eq!(g.state, GroupState::Stable);
        let rec = eff.persist.unwrap();
        let m = rec.members.iter().find(|m| m.member_id == jb.member_id);
        assert_eq!(m.unwrap().metadata, b"other topics");
    }

    #[test]
    fn a_static_member_replaced_while_the_leader_assigns_rebalances() {
        let now = Instant::now();
        let (mut g, a, b) = static_pair(now);
        // A third static member: generation 3 is being assigned.
        let (mut rc, _) = g.join(static_req("", "ic"), now);
        let (mut ra, _) = g.join(static_req(&a, "ia"), now);
        let (mut rb, _) = g.join(static_req(&b, "ib"), now);
        for r in [&mut ra, &mut rb, &mut rc] {
            assert_eq!(joined(r).generation, 3);
        }
        assert_eq!(g.state, GroupState::CompletingRebalance);
        // "ib" restarts before the leader's SyncGroup: the plan the leader
        // is making names the old id, so the group starts over.
        let (mut rb2, _) = g.join(static_req("", "ib"), now);
        assert!(rb2.try_recv().is_err());
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn an_absent_static_member_keeps_its_place_through_a_rebalance() {
        let now = Instant::now();
        let (mut g, a, b) = static_pair(now);
        // Static members usually run with a session timeout longer than
        // the rebalance timeout, so a restart fits in it.
        let m = g.members.get_mut(&b).unwrap();
        m.session_timeout = Duration::from_secs(60);
        m.heartbeat_deadline = now + m.session_timeout;
        // "ic" arrives; "ib" is restarting and does not rejoin in time.
        let (mut rc, _) = g.join(static_req("", "ic"), now);
        let (mut ra, _) = g.join(static_req(&a, "ia"), now);
        assert!(
            ra.try_recv().is_err(),
            "waits for ib up to the rebalance timeout"
        );
        let later = now + Duration::from_secs(31);
        let _ = g.tick(later);
        let ja = joined(&mut ra);
        let jc = joined(&mut rc);
        assert_eq!((ja.generation, ja.leader.as_str()), (3, a.as_str()));
        assert_eq!(jc.generation, 3);
        assert_eq!(ja.members.len(), 3, "ib is still a member and gets a share");
        assert!(g.members.contains_key(&b));
        // Its session still runs out as usual.
        let _ = g.tick(now + Duration::from_secs(61));
        assert!(!g.members.contains_key(&b));
    }

    #[test]
    fn a_static_member_is_removed_by_its_instance_id() {
        let now = Instant::now();
        let (mut g, _a, b) = static_pair(now);
        assert_eq!(
            g.leave("someone-else", Some("ib"), now).unwrap_err().code,
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            g.leave("", Some("nobody"), now).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
        let _ = g.leave("", Some("ib"), now).unwrap();
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn two_members_rebalance_and_the_first_leads() {
        let now = Instant::now();
        let mut g = Group::new("g".into(), settings());
        let (a, mut ra) = first_join(&mut g, now);
        // Alone: the join completes at once (no initial delay here).
        let ja = joined(&mut ra);
        assert_eq!((ja.generation, ja.leader.as_str()), (1, a.as_str()));
        assert_eq!(ja.members.len(), 1);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let (mut sa, eff) = g.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"all"))], now);
        assert!(eff.persist.is_some());
        g.assignment_persisted(1, Ok(()), now);
        assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"all"));
        assert_eq!(g.state, GroupState::Stable);

        // B joins: A learns from its heartbeat, rejoins, both get generation 2.
        let (b, mut rb) = first_join(&mut g, now);
        assert!(rb.try_recv().is_err(), "waits for A");
        assert_eq!(
            g.heartbeat(&a, 1, now).unwrap_err().code,
            ErrorCode::RebalanceInProgress
        );
        let (mut ra, _) = g.join(req(&a, &["range"]), now);
        let ja = joined(&mut ra);
        let jb = joined(&mut rb);
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty(), "only the leader gets the members");
        // B syncs first and waits for the leader's assignment.
        let (mut sb, eff) = g.sync(&b, 2, vec![], now);
        assert!(eff.persist.is_none());
        assert!(sb.try_recv().is_err());
        let (mut sa, eff) = g.sync(
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            now,
        );
        assert_eq!(eff.persist.unwrap().members.len(), 2);
        g.assignment_persisted(2, Ok(()), now);
        assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"A"));
        assert_eq!(sb.try_recv().unwrap().unwrap(), Bytes::from_static(b"B"));
        g.heartbeat(&b, 2, now).unwrap();
        assert_eq!(
            g.heartbeat(&b, 1, now).unwrap_err().code,
            ErrorCode::IllegalGeneration
        );
        assert_eq!(
            g.heartbeat("nobody", 2, now).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
    }

    fn stable_pair(now: Instant) -> (Group, String, String) {
        let mut g = Group::new("g".into(), settings());
        let (a, _) = first_join(&mut g, now);
        let (_s, _e) = g.sync(&a, 1, vec![], now);
        g.assignment_persisted(1, Ok(()), now);
        let (b, mut rb) = first_join(&mut g, now);
        let (_ra, _) = g.join(req(&a, &["range"]), now);
        joined(&mut rb);
        let (_sa, _) = g.sync(&a, 2, vec![], now);
        g.assignment_persisted(2, Ok(()), now);
        assert_eq!(g.state, GroupState::Stable);
        (g, a, b)
    }

    #[test]
    fn missed_session_timeout_removes_the_member_and_rebalances() {
        let now = Instant::now();
        let (mut g, a, b) = stable_pair(now);
        let later = now + Duration::from_secs(8);
        g.heartbeat(&a, 2, later).unwrap();
        // B stops heartbeating; at 10 s its session expires.
        let _ = g.tick(now + Duration::from_secs(11));
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let (mut ra, _) = g.join(req(&a, &["range"]), now + Duration::from_secs(11));
        let ja = joined(&mut ra);
        assert_eq!(ja.generation, 3);
        assert_eq!(ja.members.len(), 1);
    }

    #[test]
    fn leave_rebalances_at_once_and_last_leave_empties_the_group() {
        let now = Instant::now();
        let (mut g, a, b) = stable_pair(now);
        let _ = g.leave(&b, None, now).unwrap();
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let (mut ra, _) = g.join(req(&a, &["range"]), now);
        assert_eq!(joined(&mut ra).generation, 3);
        let eff = g.leave(&a, None, now).unwrap();
        // Nobody left to rejoin: the join phase completes empty at once.
        assert_eq!(eff.persist.unwrap().members.len(), 0);
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(
            g.leave(&a, None, now).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
    }

    #[test]
    fn members_that_do_not_rejoin_in_time_are_dropped() {
        let now = Instant::now();
        let (mut g, a, b) = stable_pair(now);
        let (mut ra, _) = g.join(req(&a, &["range", "roundrobin"]), now);
        assert!(ra.try_recv().is_err(), "waits for B to rejoin");
        g.heartbeat(&b, 2, now).unwrap_err();
        let _ = g.tick(now + Duration::from_secs(31));
        let ja = joined(&mut ra);
        assert_eq!(ja.members.len(), 1);
        assert!(!g.members.contains_key(&b));
    }

    #[test]
    fn initial_delay_collects_members_before_the_first_generation() {
        let now = Instant::now();
        let mut g = Group::new(
            "g".into(),
            GroupSettings {
                initial_rebalance_delay: Duration::from_secs(3),
                ..Default::default()
            },
        );
        let (_a, mut ra) = first_join(&mut g, now);
        assert!(ra.try_recv().is_err());
        let (_b, mut rb) = first_join(&mut g, now + Duration::from_secs(2));
        // The second arrival pushes the check to 5 s.
        let _ = g.tick(now + Duration::from_secs(4));
        assert!(ra.try_recv().is_err());
        let _ = g.tick(now + Duration::from_secs(5));
        assert_eq!(joined(&mut ra).members.len(), 2);
        assert_eq!(joined(&mut rb).generation, 1);
    }

    #[test]
    fn protocol_is_chosen_by_vote_among_common_ones() {
        let now = Instant::now();
        let mut g = Group::new("g".into(), settings());
        let (a, _) = first_join(&mut g, now);
        let _ = g.sync(&a, 1, vec![], now);
        g.assignment_persisted(1, Ok(()), now);
        // "sticky" alone shares nothing with A's "range".
        let (mut rc, _) = g.join(req("", &["sticky"]), now);
        assert_eq!(
            rc.try_recv().unwrap().unwrap_err().code,
            ErrorCode::InconsistentGroupProtocol
        );
        let id = new_id(&mut g, &["roundrobin", "range"], now);
        let (mut rd, _) = g.join(req(&id, &["roundrobin", "range"]), now);
        let (mut ra, _) = g.join(req(&a, &["range", "roundrobin"]), now);
        let ja = joined(&mut ra);
        let jd = joined(&mut rd);
        assert_eq!(ja.protocol, jd.protocol);
        assert!(ja.protocol == "range" || ja.protocol == "roundrobin");
    }

    #[test]
    fn commits_are_fenced_by_generation_and_member() {
        let now = Instant::now();
        let (g, a, _b) = stable_pair(now);
        g.check_commit(&a, 2).unwrap();
        assert_eq!(
            g.check_commit(&a, 1).unwrap_err().code,
            ErrorCode::IllegalGeneration
        );
        assert_eq!(
            g.check_commit("x", 2).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
        assert_eq!(
            g.check_commit("", -1).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
        let empty = Group::new("e".into(), settings());
        empty.check_commit("", -1).unwrap();
    }

    #[test]
    fn commits_acknowledged_out_of_order_keep_the_last_written() {
        let at = |offset| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        let tp = |p| ("t".to_string(), p);
        let mut g = Group::new("g".into(), settings());
        g.write_floor = 3;
        // Submitted before the group was (re)created: a tombstone followed.
        g.apply_commit(3, [(tp(0), at(1))]);
        assert!(g.offsets.is_empty());
        // Write 5 is acknowledged before write 4, which must not undo it;
        // partition 1 only ever saw write 4.
        g.apply_commit(5, [(tp(0), at(50))]);
        g.apply_commit(4, [(tp(0), at(40)), (tp(1), at(41))]);
        assert_eq!(g.offsets[&tp(0)].offset, 50);
        assert_eq!(g.offsets[&tp(1)].offset, 41);
        g.apply_commit(6, [(tp(0), at(60))]);
        assert_eq!(g.offsets[&tp(0)].offset, 60);
    }

    #[test]
    fn a_group_being_deleted_refuses_joins_and_commits() {
        let now = Instant::now();
        let mut g = Group::new("g".into(), settings());
        g.check_commit("", -1).unwrap();
        g.state = GroupState::Dead;
        assert_eq!(
            g.check_commit("", -1).unwrap_err().code,
            ErrorCode::CoordinatorNotAvailable
        );
        let (mut rx, _) = g.join(req("", &["range"]), now);
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err().code,
            ErrorCode::CoordinatorNotAvailable
        );
    }

    #[test]
    fn restored_group_keeps_members_and_assignments() {
        let now = Instant::now();
        let (g, a, b) = stable_pair(now);
        let rec = g.snapshot();
        let mut r = Group::new("g".into(), settings());
        r.restore(rec.clone(), now);
        assert_eq!(r.state, GroupState::Stable);
        assert_eq!(r.generation, 2);
        r.heartbeat(&a, 2, now).unwrap();
        r.heartbeat(&b, 2, now).unwrap();
        assert_eq!(r.snapshot(), rec);
    }
}
