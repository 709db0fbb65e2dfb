//! Classic members in a consumer-protocol group: KIP-848's online migration.
//! A group moving between protocols keeps every member; the ones speaking
//! the classic protocol (JoinGroup, SyncGroup, Heartbeat) are served by the
//! same target assignment and reconciliation as the others:
//! - JoinGroup is answered at once, with the member epoch as generation and
//!   no leader (the coordinator assigns); the partitions the member lists as
//!   owned are what it still holds (an eager member lists none: it gave them
//!   all up before rejoining).
//! - SyncGroup answers its current assignment.
//! - Heartbeat answers REBALANCE_IN_PROGRESS while its assignment is not its
//!   target, so it joins again and moves one step.
//!
//! Also the conversions: a classic group with members becomes a consumer
//! group when a consumer-protocol member joins (`upgrade`), and back when
//! the last consumer-protocol member leaves (`downgrade`), as
//! `group.consumer.migration.policy` allows.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::consumer_protocol;

use super::member::{self, ClassicInfo, ConsumerMember, MemberState};
use super::{Assignment, ConsumerGroup, Deadlines, TopicCounts};
use crate::error::CoordinatorError;

/// A classic JoinGroup, as a consumer-protocol group needs it.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
}

/// Whether a classic member rebalances cooperatively (KIP-429): it keeps
/// its partitions across a join and lists them as owned. Eager members give
/// everything up before joining, whatever their subscription lists (Sluice's
/// own eager client lists the partitions it gave up, for its sticky
/// assignor).
fn cooperative(protocols: &[(String, Bytes)]) -> bool {
    protocols.iter().any(|(n, _)| n == "cooperative-sticky")
}

/// A subscription's topics and owned partitions.
pub fn decode_subscription(
    group: &str,
    metadata: &[u8],
) -> Result<(BTreeSet<String>, Assignment), CoordinatorError> {
    let sub = consumer_protocol::decode_subscription(Bytes::copy_from_slice(metadata)).map_err(
        |reason| CoordinatorError::BadSubscription {
            group: group.to_string(),
            reason,
        },
    )?;
    let mut owned = Assignment::new();
    for (t, p) in sub.owned_partitions {
        owned.entry(t).or_default().insert(p);
    }
    Ok((sub.topics.into_iter().collect(), owned))
}

/// An assignment in Kafka's consumer protocol encoding (SyncGroup's).
pub fn encode_assignment(a: &Assignment) -> Bytes {
    consumer_protocol::encode_assignment(
        &a.iter()
            .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
            .collect(),
    )
}

/// A classic member's assignment (either encoding).
pub fn decode_assignment(group: &str, bytes: &[u8]) -> Result<Assignment, CoordinatorError> {
    let pairs =
        consumer_protocol::decode_assignment(Bytes::copy_from_slice(bytes)).map_err(|reason| {
            CoordinatorError::BadSubscription {
                group: group.to_string(),
                reason,
            }
        })?;
    let mut out = Assignment::new();
    for (t, p) in pairs {
        out.entry(t).or_default().insert(p);
    }
    Ok(out)
}

impl ConsumerGroup {
    fn classic_member(&self, id: &str) -> Result<&ConsumerMember, CoordinatorError> {
        match self.rec.members.get(id) {
            Some(m) if m.classic.is_some() => Ok(m),
            _ => Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: id.to_string(),
            }),
        }
    }

    /// Whether any member speaks the classic protocol.
    pub fn has_classic(&self) -> bool {
        self.rec.members.values().any(|m| m.classic.is_some())
    }

    /// Whether every member speaks the classic protocol.
    pub fn only_classic(&self) -> bool {
        !self.rec.members.is_empty() && self.rec.members.values().all(|m| m.classic.is_some())
    }

    /// A classic member's JoinGroup. Returns (member id, generation = its
    /// epoch, protocol) and whether the record changed.
    pub fn classic_join(
        &mut self,
        req: ClassicJoin,
        topics: &TopicCounts,
        now: Instant,
    ) -> Result<((String, i32, String), bool), CoordinatorError> {
        let Some((protocol, metadata)) = req.protocols.first().cloned() else {
            return Err(CoordinatorError::MissingProtocol {
                group: self.id.clone(),
            });
        };
        let (subscribed, mut owned) = decode_subscription(&self.id, &metadata)?;
        if !cooperative(&req.protocols) {
            owned.clear();
        }
        let id = if req.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        let mut bump = false;
        if let Some(instance) = &req.instance_id
            && let Some(old) = self
                .rec
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.member_id != id)
                .cloned()
        {
            if old.classic.is_none() && !old.left_static {
                return Err(CoordinatorError::UnreleasedInstance {
                    group: self.id.clone(),
                    instance: instance.clone(),
                    member: old.member_id,
                });
            }
            // KIP-345: the newest process with the instance id takes the
            // old one's place and partitions (the old one is fenced).
            let m = self.take_place(old, &id);
            self.put(m);
        } else if !req.member_id.is_empty() && !self.rec.members.contains_key(&id) {
            // Removed (its session ran out): its partitions may be another
            // member's by now; it must join as a new member.
            return Err(CoordinatorError::UnknownMember {
                group: self.id.clone(),
                member: id,
            });
        }
        let before = self.rec.members.get(&id).cloned();
        if before.is_none() && self.rec.members.len() >= self.settings.max_size {
            return Err(CoordinatorError::GroupMaxSize {
                group: self.id.clone(),
                max: self.settings.max_size,
            });
        }
        let mut m = before
            .clone()
            .unwrap_or_else(|| ConsumerMember::new(id.clone()));
        bump |= before.is_none() || m.subscribed_topics != subscribed;
        m.subscribed_topics = subscribed;
        m.subscribed_regex = None;
        m.instance_id = req.instance_id;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.rebalance_timeout_ms = req.rebalance_timeout.as_millis() as u64;
        m.left_static = false;
        m.classic = Some(ClassicInfo {
            session_timeout_ms: req.session_timeout.as_millis() as u64,
            protocols: req
                .protocols
                .iter()
                .map(|(n, b)| (n.clone(), b.to_vec()))
                .collect(),
        });
        self.put(m);
        bump |= self.check_topics(topics);
        if bump {
            self.rec.epoch += 1;
        }
        self.update_target(topics);
        let target = self.rec.target.get(&id).cloned().unwrap_or_default();
        let current = &self.rec.members[&id];
        // What it does not list as owned it has given up.
        let next = current.reconcile(self.rec.assignment_epoch, &target, Some(&owned), |t, p| {
            self.owner(t, p).is_some_and(|o| o != id)
        });
        // Still revoking after joining again: the deadline it got first stays.
        let kept = match self.deadlines.get(&id) {
            Some(d) if current.state == MemberState::UnrevokedPartitions => d.revocation,
            _ => None,
        };
        let revocation = (next.state == MemberState::UnrevokedPartitions)
            .then(|| kept.unwrap_or(now + Duration::from_millis(next.rebalance_timeout_ms)));
        self.deadlines.insert(
            id.clone(),
            Deadlines {
                session: now + req.session_timeout,
                revocation,
            },
        );
        let changed = bump || before.as_ref() != Some(&next);
        let epoch = next.epoch;
        self.put(next);
        Ok(((id, epoch, protocol), changed))
    }

    /// A classic member's SyncGroup: its current assignment.
    pub fn classic_sync(
        &self,
        member_id: &str,
        generation: i32,
    ) -> Result<Bytes, CoordinatorError> {
        let m = self.classic_member(member_id)?;
        if generation != m.epoch {
            return Err(CoordinatorError::IllegalGeneration {
                group: self.id.clone(),
                generation,
                current: m.epoch,
            });
        }
        // In the encoding its subscription came in (old Sluice clients
        // wrote protobuf).
        let kafka = m
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .is_none_or(|(_, b)| consumer_protocol::is_kafka_encoded(b));
        if kafka {
            return Ok(encode_assignment(&m.assigned));
        }
        Ok(consumer_protocol::encode_assignment_protobuf(
            &m.assigned
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
                .collect(),
        ))
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS while it has a
    /// step to take toward its target.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let m = self.classic_member(member_id)?;
        let session = Duration::from_millis(m.classic.as_ref().map_or(0, |c| c.session_timeout_ms));
        if generation != m.epoch {
            return Err(CoordinatorError::IllegalGeneration {
                group: self.id.clone(),
                generation,
                current: m.epoch,
            });
        }
        // A step to take: a new epoch, partitions to give up, or ones it
        // waits for that are free now (not while another still holds them).
        let target = self.rec.target.get(member_id);
        let waiting_is_over = m.state == MemberState::UnreleasedPartitions
            && target.is_some_and(|t| {
                member::flat(t).any(|(tp, p)| {
                    !m.assigned.get(tp).is_some_and(|ps| ps.contains(&p))
                        && self.owner(tp, p).is_none()
                })
            });
        let step = m.epoch != self.rec.assignment_epoch
            || m.state == MemberState::UnrevokedPartitions
            || waiting_is_over;
        let rejoin_within = Duration::from_millis(m.rebalance_timeout_ms);
        if let Some(d) = self.deadlines.get_mut(member_id) {
            d.session = now + session;
            if step {
                // It must join again within its rebalance timeout.
                d.revocation.get_or_insert(now + rejoin_within);
            }
        }
        if step {
            return Err(CoordinatorError::RebalanceInProgress {
                group: self.id.clone(),
            });
        }
        Ok(())
    }

    /// A classic member's LeaveGroup.
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        topics: &TopicCounts,
    ) -> Result<(), CoordinatorError> {
        self.classic_member(member_id)?;
        self.remove(member_id);
        self.rec.epoch += 1;
        self.update_target(topics);
        Ok(())
    }

    /// The members as a classic group takes them back (downgrade): id,
    /// instance id, client id, host, session and rebalance timeouts, the
    /// protocols, and the assignment in Kafka's encoding.
    pub fn classic_members(&self) -> Vec<(&ConsumerMember, &ClassicInfo, Bytes)> {
        self.rec
            .members
            .values()
            .filter_map(|m| {
                let c = m.classic.as_ref()?;
                Some((m, c, encode_assignment(&m.assigned)))
            })
            .collect()
    }
}

/// A classic member as the consumer-protocol group takes it over (upgrade):
/// it keeps its assignment and generation as its epoch.
pub fn member_from_classic(
    group: &str,
    m: ClassicJoin,
    protocol: &str,
    assignment: &[u8],
    generation: i32,
) -> Result<ConsumerMember, CoordinatorError> {
    let metadata = m
        .protocols
        .iter()
        .find(|(n, _)| n == protocol)
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let (subscribed, mut owned) = decode_subscription(group, &metadata)?;
    if !cooperative(&m.protocols) {
        owned.clear();
    }
    let assigned = decode_assignment(group, assignment)?;
    let mut out = ConsumerMember::new(m.member_id);
    out.instance_id = m.instance_id;
    out.client_id = m.client_id;
    out.client_host = m.client_host;
    out.subscribed_topics = subscribed;
    out.rebalance_timeout_ms = m.rebalance_timeout.as_millis() as u64;
    out.epoch = generation;
    out.previous_epoch = generation - 1;
    // What it lists as owned beyond its assignment it is still revoking
    // (cooperative members); the group keeps only what nobody else has.
    out.revoking = member::minus(&owned, &assigned);
    out.assigned = assigned;
    out.classic = Some(ClassicInfo {
        session_timeout_ms: m.session_timeout.as_millis() as u64,
        protocols: m
            .protocols
            .iter()
            .map(|(n, b)| (n.clone(), b.to_vec()))
            .collect(),
    });
    Ok(out)
}
