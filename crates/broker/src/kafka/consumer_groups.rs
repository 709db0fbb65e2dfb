//! The consumer protocol (KIP-848) on the Kafka face: ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe, forwarded to the group's coordinator like the
//! classic group APIs. Kafka names topics by id here; the coordinator works
//! in names, so this file translates both ways with the broker's metadata.

use std::net::SocketAddr;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use sluice_proto::coordinator as cpb;

use super::{api_code, code, message, str_bytes, topic_uuid};
use crate::BrokerService;
use crate::service::coordinators::Forward;
use sluice_server::access::Rights;

/// Kafka's ConsumerGroupDescribe `member_type` of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;
/// `authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

pub(super) async fn heartbeat(
    svc: &BrokerService,
    rights: &Rights,
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let group = req.group_id.to_string();
    // Names where this broker knows them; the coordinator looks up the rest
    // (a topic this broker has not heard of yet).
    let owned = req.topic_partitions.map(|tps| cpb::MemberAssignment {
        topics: tps
            .into_iter()
            .map(|tp| {
                let id = tp.topic_id.to_string();
                cpb::TopicPartitions {
                    topic: svc
                        .broker
                        .metadata
                        .topic_name_by_id(&id)
                        .unwrap_or_default(),
                    partitions: tp.partitions,
                    topic_id: id,
                }
            })
            .collect(),
    });
    let core = cpb::ConsumerGroupHeartbeatRequest {
        group_id: group.clone(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.map(|ts| cpb::TopicNames {
            names: ts.into_iter().map(|t| t.to_string()).collect(),
        }),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: client_id.to_string(),
        client_host: peer.ip().to_string(),
    };
    match Forward::new(svc, rights, &group)
        .consumer_group_heartbeat(core)
        .await
    {
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(api_code(&e))
            .with_error_message(Some(str_bytes(e.to_string())))
            .with_member_epoch(-1),
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code(r.error.as_ref()))
            .with_error_message(message(r.error.as_ref()))
            .with_member_id(Some(r.member_id).filter(|m| !m.is_empty()).map(str_bytes))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    with_ids(svc, a)
                        .map(|(id, _, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
            })),
    }
}

/// The topics of an assignment with their ids (the coordinator's; this
/// broker's metadata for an answer without one).
fn with_ids(
    svc: &BrokerService,
    a: cpb::MemberAssignment,
) -> impl Iterator<Item = (uuid::Uuid, String, Vec<i32>)> + '_ {
    a.topics.into_iter().filter_map(move |t| {
        let id = Some(t.topic_id).filter(|i| !i.is_empty()).or_else(|| {
            svc.broker
                .metadata
                .read(|v| v.topics.get(&t.topic).map(|x| x.record.topic_id.clone()))
        })?;
        Some((topic_uuid(&id), t.topic, t.partitions))
    })
}

pub(super) async fn describe(
    svc: &BrokerService,
    rights: &Rights,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let group = id.to_string();
        let core = cpb::ConsumerGroupDescribeRequest {
            group_ids: vec![group.clone()],
        };
        let answer = Forward::new(svc, rights, &group)
            .consumer_group_describe(core)
            .await;
        let out = DescribedGroup::default()
            .with_group_id(id)
            .with_authorized_operations(OPERATIONS_NOT_ASKED);
        groups.push(match answer {
            Err(e) => out
                .with_error_code(api_code(&e))
                .with_error_message(Some(str_bytes(e.to_string()))),
            Ok(r) => match r.groups.into_iter().next() {
                None => out,
                Some(g) if g.error.is_some() => out
                    .with_error_code(code(g.error.as_ref()))
                    .with_error_message(message(g.error.as_ref())),
                Some(g) => out
                    .with_group_state(str_bytes(g.group_state))
                    .with_group_epoch(g.group_epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes(g.assignor_name))
                    .with_members(g.members.into_iter().map(|m| member(svc, m)).collect()),
            },
        });
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn member(svc: &BrokerService, m: cpb::ConsumerGroupMember) -> Member {
    let assignment = |a: Option<cpb::MemberAssignment>| {
        DescribedAssignment::default().with_topic_partitions(
            with_ids(svc, a.unwrap_or_default())
                .map(|(id, name, partitions)| {
                    DescribedTopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
    };
    Member::default()
        .with_member_id(str_bytes(m.member_id))
        .with_instance_id(m.instance_id.map(str_bytes))
        .with_rack_id(m.rack_id.map(str_bytes))
        .with_member_epoch(m.member_epoch)
        .with_client_id(str_bytes(m.client_id))
        .with_client_host(str_bytes(m.client_host))
        .with_subscribed_topic_names(
            m.subscribed_topic_names
                .into_iter()
                .map(|t| TopicName(str_bytes(t)))
                .collect(),
        )
        .with_subscribed_topic_regex(m.subscribed_topic_regex.map(str_bytes))
        .with_assignment(assignment(m.assignment))
        .with_target_assignment(assignment(m.target_assignment))
        .with_member_type(MEMBER_TYPE_CONSUMER)
}
