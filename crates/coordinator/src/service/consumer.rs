//! The consumer protocol (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. A heartbeat that changes the group is answered
//! only once the group record is in `__consumer_offsets`: a member never
//! acts on an assignment a coordinator failover could forget.

use std::time::Instant;

use sluice_auth::Operation;
use sluice_client::consumer_protocol::{self, Subscription};
use sluice_proto::coordinator as pb;
use sluice_server::access::Rights;

use super::{CoordinatorService, check_group_id, err_proto};
use crate::consumer_group::{Assignment, ConsumerGroup, Heartbeat, MemberState, TopicCounts};
use crate::error::CoordinatorError;

/// ConsumerGroupHeartbeat; `host` is the caller's address (a client host
/// named in the request wins).
pub(super) async fn heartbeat(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::ConsumerGroupHeartbeatRequest,
    host: String,
) -> pb::ConsumerGroupHeartbeatResponse {
    // Kafka: subscribing needs Describe on every topic named.
    let names = req.subscribed_topic_names.iter().flat_map(|t| &t.names);
    if let Some(e) = names
        .filter_map(|t| rights.topic(Operation::Describe, t).err())
        .next()
    {
        return pb::ConsumerGroupHeartbeatResponse {
            error: Some(e.to_proto()),
            member_epoch: -1,
            ..Default::default()
        };
    }
    match beat(svc, req, host).await {
        Ok(r) => r,
        Err(e) => pb::ConsumerGroupHeartbeatResponse {
            error: err_proto(&e),
            member_epoch: -1,
            ..Default::default()
        },
    }
}

async fn beat(
    svc: &CoordinatorService,
    req: pb::ConsumerGroupHeartbeatRequest,
    mut host: String,
) -> Result<pb::ConsumerGroupHeartbeatResponse, CoordinatorError> {
    check_group_id(&req.group_id)?;
    let c = &svc.coordinator;
    let topics = c.topics();
    if topics.version == 0 {
        // Until the topics are read an assignment would revoke everything.
        return Err(CoordinatorError::LoadInProgress {
            group: req.group_id.clone(),
            partition: c.home(&req.group_id)?.partition,
        });
    }
    if !req.client_host.is_empty() {
        host = format!("/{}", req.client_host);
    }
    let group = req.group_id;
    let hb = Heartbeat {
        member_id: req.member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id,
        rack_id: req.rack_id,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.map(|t| t.names),
        subscribed_topic_regex: req.subscribed_topic_regex,
        server_assignor: req.server_assignor,
        owned: req.owned.map(|a| from_proto(a, &topics)),
        client_id: req.client_id,
        client_host: host,
    };
    let (answer, write) = c.with_group(&group, true, |g, home| {
        let g = g.expect("created");
        let now = Instant::now();
        // A classic group with members moves online only for a join, and
        // back as it was if the join is refused.
        let classic = (!g.is_consumer() && g.member_count() > 0).then(|| g.snapshot());
        if classic.is_some() && hb.member_epoch != 0 {
            return Err(CoordinatorError::OtherProtocol {
                group: group.clone(),
                uses: "classic",
                asked: "consumer",
            });
        }
        let answered = g.as_consumer(now).and_then(|cg| {
            cg.heartbeat(hb, &topics, now)
                .map(|r| (r, cg.unconfirmed()))
        });
        let ((answer, changed), unconfirmed) = match answered {
            Ok(r) => r,
            Err(e) => {
                if let Some(rec) = classic {
                    g.restore(rec, now);
                }
                return Err(e);
            }
        };
        // Written again while an earlier write is unconfirmed: this answer
        // may carry what only that write holds.
        let write = changed || unconfirmed;
        // The last consumer-protocol member left a group of classic ones.
        let write = g.maybe_downgrade(now) || write;
        // Submitted under the lock, so records reach the log in the order
        // the group changed.
        let write = write.then(|| {
            let submitted = c.submit_group(&group, home, g.snapshot());
            if let Some(cg) = g.consumer.as_mut() {
                cg.write_submitted(submitted.number);
            }
            (home, submitted)
        });
        Ok::<_, CoordinatorError>((answer, write))
    })??;
    if let Some((home, submitted)) = write {
        let number = submitted.number;
        c.confirm(&group, home, submitted).await?;
        let _ = c.with_group(&group, false, |g, _| {
            if let Some(cg) = g.and_then(|g| g.consumer.as_mut()) {
                cg.write_confirmed(number);
            }
        });
    }
    Ok(pb::ConsumerGroupHeartbeatResponse {
        error: None,
        member_id: answer.member_id,
        member_epoch: answer.member_epoch,
        heartbeat_interval_ms: answer.heartbeat_interval_ms,
        assignment: answer.assignment.as_ref().map(|a| to_proto(a, &topics)),
    })
}

pub(super) fn describe(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::ConsumerGroupDescribeRequest,
) -> pb::ConsumerGroupDescribeResponse {
    let topics = svc.coordinator.topics();
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            if let Err(e) = rights.group(Operation::Describe, &id) {
                return pb::DescribedConsumerGroup {
                    error: Some(e.to_proto()),
                    group_id: id,
                    ..Default::default()
                };
            }
            let res = svc.coordinator.with_group(&id, false, |g, _| {
                match g.and_then(|g| g.consumer.as_ref()) {
                    Some(c) => Ok(described(c, &topics)),
                    None => Err(CoordinatorError::GroupNotFound { group: id.clone() }),
                }
            });
            res.and_then(|r| r)
                .unwrap_or_else(|e| pb::DescribedConsumerGroup {
                    error: err_proto(&e),
                    group_id: id,
                    ..Default::default()
                })
        })
        .collect();
    pb::ConsumerGroupDescribeResponse { groups }
}

fn described(c: &ConsumerGroup, topics: &TopicCounts) -> pb::DescribedConsumerGroup {
    pb::DescribedConsumerGroup {
        error: None,
        group_id: c.id.clone(),
        group_state: c.state_name().into(),
        group_epoch: c.rec.epoch,
        assignment_epoch: c.rec.assignment_epoch,
        assignor_name: c.rec.assignor.clone(),
        members: c
            .rec
            .members
            .values()
            .map(|m| pb::ConsumerGroupMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: if m.left_static { -2 } else { m.epoch },
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_topics.iter().cloned().collect(),
                subscribed_topic_regex: m.subscribed_regex.clone(),
                assignment: Some(to_proto(&m.assigned, topics)),
                target_assignment: Some(to_proto(
                    c.rec.target.get(&m.member_id).unwrap_or(&Assignment::new()),
                    topics,
                )),
                member_state: match m.state {
                    MemberState::Stable => "stable",
                    MemberState::UnrevokedPartitions => "unrevoked_partitions",
                    MemberState::UnreleasedPartitions => "unreleased_partitions",
                }
                .into(),
            })
            .collect(),
    }
}

/// A consumer-protocol group as DescribeGroups shows groups: assignments and
/// subscriptions in Kafka's consumer protocol encoding, so tools reading
/// classic groups read these too.
pub(super) fn as_described_group(g: &crate::group::Group) -> pb::DescribedGroup {
    let c = g.consumer.as_ref().expect("a consumer-protocol group");
    pb::DescribedGroup {
        error: None,
        group_id: g.id.clone(),
        group_state: g.state_name().into(),
        protocol_type: "consumer".into(),
        protocol_data: c.rec.assignor.clone(),
        generation_id: c.rec.epoch,
        group_type: "consumer".into(),
        members: c
            .rec
            .members
            .values()
            .map(|m| pb::DescribedGroupMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_metadata: consumer_protocol::encode_subscription(&Subscription {
                    topics: m.subscribed_topics.iter().cloned().collect(),
                    owned_partitions: Vec::new(),
                    generation_id: m.epoch,
                    rack_id: m.rack_id.clone(),
                }),
                member_assignment: consumer_protocol::encode_assignment(
                    &m.assigned
                        .iter()
                        .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
                        .collect(),
                ),
            })
            .collect(),
    }
}

/// An assignment with each topic's name and id.
fn to_proto(a: &Assignment, topics: &TopicCounts) -> pb::MemberAssignment {
    pb::MemberAssignment {
        topics: a
            .iter()
            .map(|(t, ps)| pb::TopicPartitions {
                topic: t.clone(),
                partitions: ps.iter().copied().collect(),
                topic_id: topics.ids.get(t).cloned().unwrap_or_default(),
            })
            .collect(),
    }
}

/// An assignment as the group compares them: no empty topics; a topic
/// named by id alone is looked up (one deleted since is owned no more).
fn from_proto(a: pb::MemberAssignment, topics: &TopicCounts) -> Assignment {
    let mut out = Assignment::new();
    for t in a.topics {
        let name = if t.topic.is_empty() {
            match topics.names.get(&t.topic_id) {
                Some(n) => n.clone(),
                None => continue,
            }
        } else {
            t.topic
        };
        if t.partitions.is_empty() {
            continue;
        }
        out.entry(name).or_default().extend(t.partitions);
    }
    out
}
