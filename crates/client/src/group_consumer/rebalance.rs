//! One rebalance, eager as in Kafka's classic protocol: give every owned
//! partition up (`on_partitions_revoked`), JoinGroup, the leader's
//! assignment (decode every member's subscription, run the assignor, encode
//! each share), SyncGroup, and taking the new partitions at their committed
//! offsets (`on_partitions_assigned`). The decoding, encoding and position
//! rules are pure functions, unit-tested below.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_proto::coordinator as pb;
use sluice_types::{ApiError, ErrorCode};
use tracing::{debug, info, warn};

use super::commit::{Committer, fetch_committed};
use super::membership::generation_over;
use super::{GroupConsumer, api, backoff, timed};
use crate::assignor::{self, Assignment, MemberSubscription};
use crate::consumer_protocol::{self, Subscription};
use crate::error::Result;
use crate::types::TopicPartition;

impl GroupConsumer {
    /// Gives up the current assignment, then joins and syncs until this
    /// member has a new one.
    pub(super) async fn rejoin(&mut self, deadline: Instant) -> Result<()> {
        self.revoke_assignment().await;
        loop {
            match self.join_and_sync().await {
                Ok(tps) => {
                    self.apply_assignment(tps).await?;
                    return Ok(());
                }
                Err(e)
                    if (e.is_retriable()
                        || generation_over(e.code())
                        || e.code() == ErrorCode::MemberIdRequired)
                        && Instant::now() < deadline =>
                {
                    debug!(group = %self.shared.group, error = %e, "rejoining");
                    if !generation_over(e.code()) && e.code() != ErrorCode::MemberIdRequired {
                        backoff(&self.shared.cluster).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Eager rebalancing: gives up every owned partition (auto-committing
    /// first, then calling `on_partitions_revoked` while the generation is
    /// still valid) and remembers them, with their generation, for the
    /// sticky assignor. Nothing happens when nothing is owned.
    pub(super) async fn revoke_assignment(&mut self) {
        let owned = self.inner.assignment();
        if owned.is_empty() {
            return;
        }
        if self.shared.cluster.config.enable_auto_commit
            && let Err(e) = self.commit_consumed().await
        {
            warn!(group = %self.shared.group, error = %e, "commit before rebalance failed");
        }
        if let Some(l) = self.listener.as_mut() {
            let mut committer = Committer {
                shared: self.shared.clone(),
            };
            l.on_partitions_revoked(&mut committer, &owned).await;
        }
        self.previous = (owned, self.shared.membership.lock().generation);
        self.inner.assign(Vec::new());
        self.consumed.clear();
    }

    async fn join_and_sync(&mut self) -> Result<Vec<TopicPartition>> {
        let cfg = self.shared.cluster.config.clone();
        let subscription = consumer_protocol::encode_subscription(&join_subscription(
            &self.subscription,
            &self.previous,
        ));
        let (member_id, sent_generation) = {
            let m = self.shared.membership.lock();
            (m.member_id.clone(), m.generation)
        };
        let mut c = self.shared.coordinator().await?;
        let r = c
            .join_group(timed(
                pb::JoinGroupRequest {
                    group_id: self.shared.group.clone(),
                    session_timeout_ms: cfg.session_timeout.as_millis() as i32,
                    rebalance_timeout_ms: cfg.max_poll_interval.as_millis() as i32,
                    member_id: member_id.clone(),
                    group_instance_id: cfg.group_instance_id.clone(),
                    protocol_type: "consumer".into(),
                    protocols: cfg
                        .partition_assignment_strategy
                        .iter()
                        .map(|name| pb::JoinGroupProtocol {
                            name: name.clone(),
                            metadata: subscription.clone(),
                        })
                        .collect(),
                    client_id: cfg.client_id.clone(),
                    reason: String::new(),
                    client_host: String::new(),
                },
                // The join may wait for every member, up to the rebalance timeout.
                cfg.max_poll_interval + Duration::from_secs(5),
            ))
            .await
            .map_err(|s| self.shared.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
            if e.code == ErrorCode::MemberIdRequired {
                self.shared
                    .membership
                    .lock()
                    .member_id_required(r.member_id);
                return Err(e.into());
            }
            self.shared.note(&e, (&member_id, sent_generation));
            return Err(e.into());
        }
        self.shared
            .membership
            .lock()
            .joined(r.member_id.clone(), r.generation_id);
        self.leader = r.leader == r.member_id;
        let assignments = if self.leader {
            self.assign(&r.protocol_name, &r.members).await?
        } else {
            Vec::new()
        };
        let s = c
            .sync_group(timed(
                pb::SyncGroupRequest {
                    group_id: self.shared.group.clone(),
                    generation_id: r.generation_id,
                    member_id: r.member_id.clone(),
                    group_instance_id: cfg.group_instance_id.clone(),
                    protocol_type: "consumer".into(),
                    protocol_name: r.protocol_name.clone(),
                    assignments,
                },
                cfg.request_timeout,
            ))
            .await
            .map_err(|s| self.shared.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(s.error.as_ref()) {
            self.shared.note(&e, (&r.member_id, r.generation_id));
            return Err(e.into());
        }
        let assigned = consumer_protocol::decode_assignment(s.assignment).map_err(|e| {
            api(
                ErrorCode::CorruptMessage,
                format!("undecodable assignment: {e}"),
            )
        })?;
        // Settled, unless something ended this very generation meanwhile.
        self.shared
            .membership
            .lock()
            .synced(&r.member_id, r.generation_id);
        let mut tps: Vec<TopicPartition> = assigned
            .into_iter()
            .map(|(topic, p)| TopicPartition::new(topic, p))
            .collect();
        tps.sort();
        info!(
            group = %self.shared.group,
            generation = r.generation_id,
            leader = self.leader,
            partitions = tps.len(),
            "joined the group"
        );
        Ok(tps)
    }

    /// The leader's part: run the chosen assignor over every member's
    /// subscription.
    async fn assign(
        &mut self,
        protocol: &str,
        members: &[pb::JoinGroupMember],
    ) -> Result<Vec<pb::SyncGroupAssignment>> {
        let assignor = assignor::by_name(protocol).ok_or_else(|| {
            api(
                ErrorCode::InconsistentGroupProtocol,
                format!("unknown assignor \"{protocol}\""),
            )
        })?;
        let (subs, topics) = member_subscriptions(members)?;
        self.shared.cluster.refresh(&topics).await?;
        let counts = self.partition_counts(&topics);
        self.assigned_counts = Some((topics, counts.clone()));
        self.last_metadata_check = Instant::now();
        let plan = assignor.assign(&counts, &subs);
        Ok(sync_assignments(members, &plan))
    }

    /// Takes the new partitions, positioned at their committed offsets (or
    /// `auto.offset.reset` where none is committed).
    pub(super) async fn apply_assignment(&mut self, tps: Vec<TopicPartition>) -> Result<()> {
        let committed = if tps.is_empty() {
            BTreeMap::new()
        } else {
            // Positions come from the committed offsets before the partitions
            // are taken: if they cannot be read, falling back to
            // auto.offset.reset (and auto-committing that) could skip
            // records, so give the assignment up and join again instead.
            match fetch_committed(&self.shared, &tps).await {
                Ok(c) => c,
                Err(e) => {
                    self.shared.membership.lock().rejoin = true;
                    return Err(e);
                }
            }
        };
        self.take_assignment(tps, &committed).await
    }

    /// Takes `tps`, each positioned at its offset in `committed` where one is
    /// committed (the rest start from `auto.offset.reset`), then calls
    /// `on_partitions_assigned`.
    pub(super) async fn take_assignment(
        &mut self,
        tps: Vec<TopicPartition>,
        committed: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        self.inner.assign(tps.clone());
        for (tp, o) in committed_positions(&tps, committed) {
            self.inner.seek(&tp, o)?;
        }
        self.last_auto_commit = Instant::now();
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&tps).await;
        }
        Ok(())
    }
}

/// The subscription sent in JoinGroup: the topics, plus the partitions given
/// up at the last rebalance and their generation so the sticky assignor can
/// keep them here.
pub(super) fn join_subscription(
    topics: &[String],
    previous: &(Vec<TopicPartition>, i32),
) -> Subscription {
    Subscription {
        topics: topics.to_vec(),
        owned_partitions: previous
            .0
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect(),
        generation_id: previous.1,
        rack_id: None,
    }
}

/// The leader's assignor input from JoinGroup's members, and every topic any
/// of them subscribes to (sorted, once each).
pub(super) fn member_subscriptions(
    members: &[pb::JoinGroupMember],
) -> Result<(Vec<MemberSubscription>, Vec<String>)> {
    let mut subs = Vec::with_capacity(members.len());
    let mut topics = BTreeSet::new();
    for m in members {
        let s = consumer_protocol::decode_subscription(m.metadata.clone()).map_err(|e| {
            api(
                ErrorCode::CorruptMessage,
                format!("undecodable subscription of {}: {e}", m.member_id),
            )
        })?;
        topics.extend(s.topics.iter().cloned());
        subs.push(MemberSubscription {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            topics: s.topics,
            owned_partitions: s.owned_partitions,
            generation_id: s.generation_id,
            rack_id: s.rack_id,
        });
    }
    Ok((subs, topics.into_iter().collect()))
}

/// SyncGroup's assignments: each member's share of `plan` (nothing when the
/// plan leaves it out), in the encoding its subscription came in, so a
/// Sluice consumer from before Kafka's encoding still reads its share during
/// a rolling upgrade.
pub(super) fn sync_assignments(
    members: &[pb::JoinGroupMember],
    plan: &Assignment,
) -> Vec<pb::SyncGroupAssignment> {
    members
        .iter()
        .map(|m| {
            let mine = plan.get(&m.member_id).cloned().unwrap_or_default();
            let assignment = if consumer_protocol::is_kafka_encoded(&m.metadata) {
                consumer_protocol::encode_assignment(&mine)
            } else {
                consumer_protocol::encode_assignment_protobuf(&mine)
            };
            pb::SyncGroupAssignment {
                member_id: m.member_id.clone(),
                assignment,
            }
        })
        .collect()
}

/// Where the new partitions start: their committed offset where one exists
/// (-1 means none); the others are left to `auto.offset.reset`.
pub(super) fn committed_positions(
    tps: &[TopicPartition],
    committed: &BTreeMap<TopicPartition, i64>,
) -> Vec<(TopicPartition, i64)> {
    tps.iter()
        .filter_map(|tp| {
            committed
                .get(tp)
                .filter(|o| **o >= 0)
                .map(|o| (tp.clone(), *o))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;

    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn kafka_member(id: &str, s: &Subscription) -> pb::JoinGroupMember {
        pb::JoinGroupMember {
            member_id: id.into(),
            group_instance_id: None,
            metadata: consumer_protocol::encode_subscription(s),
        }
    }

    /// A member that subscribed in Sluice's older protobuf encoding.
    fn protobuf_member(id: &str, topics: &[&str]) -> pb::JoinGroupMember {
        let s = pb::ConsumerProtocolSubscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            generation_id: -1,
            ..Default::default()
        };
        pb::JoinGroupMember {
            member_id: id.into(),
            group_instance_id: None,
            metadata: s.encode_to_vec().into(),
        }
    }

    #[test]
    fn join_subscription_offers_the_partitions_given_up() {
        let topics = vec!["t".to_string(), "u".to_string()];
        let s = join_subscription(&topics, &(vec![tp("t", 0), tp("u", 2)], 7));
        assert_eq!(s.topics, topics);
        assert_eq!(s.owned_partitions, vec![("t".into(), 0), ("u".into(), 2)]);
        assert_eq!(s.generation_id, 7);
        // What the leader decodes is what was offered.
        let decoded =
            consumer_protocol::decode_subscription(consumer_protocol::encode_subscription(&s))
                .unwrap();
        assert_eq!(decoded, s);

        // Before any rebalance: nothing owned, no generation.
        let first = join_subscription(&topics, &(Vec::new(), -1));
        assert!(first.owned_partitions.is_empty());
        assert_eq!(first.generation_id, -1);
    }

    #[test]
    fn member_subscriptions_reads_both_encodings() {
        let mut a = kafka_member(
            "a",
            &Subscription {
                topics: vec!["t".into(), "b".into()],
                owned_partitions: vec![("t".into(), 1)],
                generation_id: 3,
                rack_id: Some("r1".into()),
            },
        );
        a.group_instance_id = Some("i-a".into());
        let members = [a, protobuf_member("b", &["c", "t"])];
        let (subs, topics) = member_subscriptions(&members).unwrap();
        assert_eq!(topics, vec!["b", "c", "t"]);
        assert_eq!(
            subs[0],
            MemberSubscription {
                member_id: "a".into(),
                group_instance_id: Some("i-a".into()),
                topics: vec!["t".into(), "b".into()],
                owned_partitions: vec![("t".into(), 1)],
                generation_id: 3,
                rack_id: Some("r1".into()),
            }
        );
        assert_eq!(subs[1].member_id, "b");
        assert_eq!(subs[1].topics, vec!["c", "t"]);
        assert!(subs[1].owned_partitions.is_empty());
    }

    #[test]
    fn an_undecodable_subscription_names_the_member() {
        let members = [
            protobuf_member("good", &["t"]),
            pb::JoinGroupMember {
                member_id: "bad".into(),
                group_instance_id: None,
                // Kafka's encoding (leading 0), version 3, truncated body.
                metadata: Bytes::from_static(&[0, 3, 0xff]),
            },
        ];
        let e = member_subscriptions(&members).unwrap_err();
        assert_eq!(e.code(), ErrorCode::CorruptMessage);
        assert!(e.to_string().contains("bad"), "{e}");
    }

    #[test]
    fn sync_assignments_answer_each_member_in_its_own_encoding() {
        let members = [
            kafka_member("k", &Subscription::default()),
            protobuf_member("p", &["t"]),
            kafka_member("idle", &Subscription::default()),
        ];
        let mut plan = Assignment::new();
        plan.insert("k".into(), [("t".to_string(), vec![0, 2])].into());
        plan.insert("p".into(), [("t".to_string(), vec![1])].into());
        let out = sync_assignments(&members, &plan);
        let ids: Vec<&str> = out.iter().map(|a| a.member_id.as_str()).collect();
        assert_eq!(ids, ["k", "p", "idle"]);
        assert!(consumer_protocol::is_kafka_encoded(&out[0].assignment));
        assert!(!consumer_protocol::is_kafka_encoded(&out[1].assignment));
        let decode = |b: &Bytes| consumer_protocol::decode_assignment(b.clone()).unwrap();
        assert_eq!(
            decode(&out[0].assignment),
            vec![("t".to_string(), 0), ("t".to_string(), 2)]
        );
        assert_eq!(decode(&out[1].assignment), vec![("t".to_string(), 1)]);
        // Left out of the plan: an empty assignment, still in its encoding.
        assert!(consumer_protocol::is_kafka_encoded(&out[2].assignment));
        assert!(decode(&out[2].assignment).is_empty());
    }

    #[test]
    fn committed_positions_skip_partitions_without_a_commit() {
        let tps = [tp("t", 0), tp("t", 1), tp("t", 2)];
        let committed: BTreeMap<_, _> = [(tp("t", 0), 5), (tp("t", 1), -1), (tp("x", 9), 3)].into();
        assert_eq!(committed_positions(&tps, &committed), vec![(tp("t", 0), 5)]);
        // Offset 0 is a real commit (the partition was read to nothing).
        let committed: BTreeMap<_, _> = [(tp("t", 2), 0)].into();
        assert_eq!(committed_positions(&tps, &committed), vec![(tp("t", 2), 0)]);
    }
}
