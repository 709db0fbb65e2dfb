//! JoinGroup and the join phase: starting a rebalance, completing it when
//! everyone has rejoined (or the rebalance timeout passes), the protocol
//! vote, and static members (KIP-345) taking over their old place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Effects, Group, GroupState, JoinOutcome, JoinReply, JoinRequest, JoinResult, Member};
use crate::error::CoordinatorError;

/// Where a JoinGroup's answer goes.
type JoinWaiter = oneshot::Sender<Result<JoinOutcome, CoordinatorError>>;

impl Group {
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

    fn try_join(
        &mut self,
        mut req: JoinRequest,
        tx: JoinWaiter,
        now: Instant,
    ) -> Result<Effects, (JoinWaiter, CoordinatorError)> {
        if self.state == GroupState::Dead {
            return Err((
                tx,
                CoordinatorError::GroupBeingDeleted {
                    group: self.id.clone(),
                },
            ));
        }
        if let Some(c) = &self.consumer {
            if self.serves_classic_members() {
                // The group moved to the consumer protocol since this
                // request was routed: join again.
                return Err((
                    tx,
                    CoordinatorError::RebalanceInProgress {
                        group: self.id.clone(),
                    },
                ));
            }
            if !c.is_empty() {
                return Err((
                    tx,
                    CoordinatorError::OtherProtocol {
                        group: self.id.clone(),
                        uses: "consumer",
                        asked: "classic",
                    },
                ));
            }
            // Empty: the group changes protocol (KIP-848), keeping offsets.
            self.consumer = None;
            self.protocol_type = None;
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err((
                tx,
                CoordinatorError::MissingProtocol {
                    group: self.id.clone(),
                },
            ));
        }
        let s = &self.settings;
        if req.session_timeout < s.min_session_timeout
            || req.session_timeout > s.max_session_timeout
        {
            return Err((
                tx,
                CoordinatorError::InvalidSessionTimeout {
                    requested_ms: req.session_timeout.as_millis() as u64,
                    min_ms: s.min_session_timeout.as_millis() as u64,
                    max_ms: s.max_session_timeout.as_millis() as u64,
                },
            ));
        }
        if !self.supports(&req) {
            return Err((
                tx,
                CoordinatorError::InconsistentProtocol {
                    group: self.id.clone(),
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                },
            ));
        }
        if let Some(instance) = req.group_instance_id.clone() {
            // KIP-345: a static member is known by its group.instance.id.
            match self.static_member(&instance).map(str::to_string) {
                Some(current) if !req.member_id.is_empty() && req.member_id != current => {
                    return Err((tx, self.fenced(&instance, &req.member_id)));
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
            return Err((tx, self.unknown_member(&req.member_id)));
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
            let _ = old.send(Err(CoordinatorError::JoinSuperseded {
                group: self.id.clone(),
                member: req.member_id.clone(),
            }));
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

    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being computed is void; members must rejoin.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(Err(CoordinatorError::RebalanceRestarted {
                        group: self.id.clone(),
                    }));
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
    pub(super) fn try_complete_join(&mut self, now: Instant) -> Effects {
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
        self.downgraded.clear();
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
    pub(super) fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Refuses a call from a static member whose instance id now belongs to
    /// another member id (a newer incarnation replaced it).
    pub fn check_instance(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        match instance.and_then(|i| self.static_member(i).map(|m| (i, m))) {
            Some((i, current)) if current != member_id => Err(self.fenced(i, member_id)),
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
        let fenced = self.fenced(&instance, old);
        if let Some(tx) = m.join_waiter.take() {
            let _ = tx.send(Err(fenced.clone()));
        }
        if let Some(tx) = m.sync_waiter.take() {
            let _ = tx.send(Err(fenced));
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
}
