//! FindCoordinator and the classic group APIs. Kafka clients send group
//! requests to the broker FindCoordinator names; this broker forwards each
//! one over gRPC to the coordinator service that owns the group's
//! `__consumer_offsets` partition, so Kafka clients and Sluice's own clients
//! share one group state (members, generation, offsets).

use std::net::SocketAddr;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_proto::broker as pb;
use sluice_proto::coordinator as cpb;
use sluice_types::ErrorCode;
use sluice_types::hash::group_offsets_partition;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;

use super::{NO_TRANSACTIONS, api_code, code, codes, message, str_bytes};
use crate::metadata::ClusterView;
use crate::service::coordinators::Forward;
use crate::{BrokerError, BrokerService};
use sluice_server::access::Rights;

/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;

pub(super) async fn find_coordinator(
    svc: &BrokerService,
    rights: &Rights,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let answers: Vec<Coordinator> = if req.key_type != KEY_GROUP {
        keys.iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(str_bytes(k.clone()))
                    .with_node_id(BrokerId(-1))
                    .with_error_code(codes::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(NO_TRANSACTIONS)))
            })
            .collect()
    } else {
        let core = crate::service::find_coordinator::find_coordinator(
            svc,
            rights,
            pb::FindCoordinatorRequest {
                key_type: pb::CoordinatorKeyType::Group as i32,
                keys: keys.clone(),
            },
        )
        .await;
        svc.broker.metadata.read(|v| {
            core.coordinators
                .into_iter()
                .map(|c| {
                    let out = Coordinator::default().with_key(str_bytes(c.key.clone()));
                    if c.error.is_some() {
                        return out
                            .with_node_id(BrokerId(-1))
                            .with_error_code(code(c.error.as_ref()))
                            .with_error_message(message(c.error.as_ref()));
                    }
                    match group_node(v, c.offsets_partition) {
                        Some(b) => out
                            .with_node_id(BrokerId(b.broker_id))
                            .with_host(str_bytes(b.host.clone()))
                            .with_port(b.port),
                        None => out
                            .with_node_id(BrokerId(-1))
                            .with_error_code(codes::COORDINATOR_NOT_AVAILABLE),
                    }
                })
                .collect()
        })
    };
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let one = answers.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

/// The broker Kafka clients are sent to for the groups of `__consumer_offsets`
/// partition `p`: its leader, as in Kafka, or else the lowest live broker.
/// ListGroups answers with the same rule, so each group is listed by one
/// broker.
fn group_node(v: &ClusterView, p: i32) -> Option<&sluice_types::meta::BrokerRegistration> {
    v.topics
        .get(CONSUMER_OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(&p))
        .and_then(|s| v.brokers.get(&s.leader))
        .or_else(|| v.brokers.values().next())
}

fn group_error<T>(e: BrokerError, f: impl FnOnce(i16) -> T) -> T {
    f(api_code(&e))
}

pub(super) async fn join(
    svc: &BrokerService,
    rights: &Rights,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let group = req.group_id.to_string();
    let mut core = cpb::JoinGroupRequest {
        group_id: group.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 had one timeout for both.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| cpb::JoinGroupProtocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        client_id: client_id.to_string(),
        reason: req
            .reason
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: peer.ip().to_string(),
    };
    let mut resp = Forward::new(svc, rights, &group)
        .join_group(core.clone())
        .await;
    // Before v4 clients knew no MEMBER_ID_REQUIRED (KIP-394): join again
    // with the id the coordinator handed out, on their behalf.
    if version < 4
        && let Ok(r) = &resp
        && r.error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::MemberIdRequired as i32)
    {
        core.member_id = r.member_id.clone();
        resp = Forward::new(svc, rights, &group).join_group(core).await;
    }
    match resp {
        Err(e) => group_error(e, |c| {
            JoinGroupResponse::default()
                .with_error_code(c)
                .with_generation_id(-1)
        }),
        Ok(r) => JoinGroupResponse::default()
            .with_error_code(code(r.error.as_ref()))
            .with_generation_id(r.generation_id)
            .with_protocol_type(Some(str_bytes(r.protocol_type)))
            .with_protocol_name(Some(str_bytes(r.protocol_name)))
            .with_leader(str_bytes(r.leader))
            .with_member_id(str_bytes(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(str_bytes))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
    }
}

pub(super) async fn sync(
    svc: &BrokerService,
    rights: &Rights,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let group = req.group_id.to_string();
    let core = cpb::SyncGroupRequest {
        group_id: group.clone(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: opt(&req.protocol_type),
        protocol_name: opt(&req.protocol_name),
        assignments: req
            .assignments
            .iter()
            .map(|a| cpb::SyncGroupAssignment {
                member_id: a.member_id.to_string(),
                assignment: a.assignment.clone(),
            })
            .collect(),
    };
    match Forward::new(svc, rights, &group).sync_group(core).await {
        Err(e) => group_error(e, |c| SyncGroupResponse::default().with_error_code(c)),
        Ok(r) => SyncGroupResponse::default()
            .with_error_code(code(r.error.as_ref()))
            .with_protocol_type(Some(str_bytes(r.protocol_type)))
            .with_protocol_name(Some(str_bytes(r.protocol_name)))
            .with_assignment(r.assignment),
    }
}

fn opt(s: &Option<StrBytes>) -> String {
    s.as_ref().map(|s| s.to_string()).unwrap_or_default()
}

pub(super) async fn heartbeat(
    svc: &BrokerService,
    rights: &Rights,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let group = req.group_id.to_string();
    let core = cpb::HeartbeatRequest {
        group_id: group.clone(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    match Forward::new(svc, rights, &group).heartbeat(core).await {
        Err(e) => group_error(e, |c| HeartbeatResponse::default().with_error_code(c)),
        Ok(r) => HeartbeatResponse::default().with_error_code(code(r.error.as_ref())),
    }
}

pub(super) async fn leave(
    svc: &BrokerService,
    rights: &Rights,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.to_string();
    // v0-2 name one member; v3+ a batch (KIP-345).
    let members = if version >= 3 {
        req.members
            .iter()
            .map(|m| cpb::MemberIdentity {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                reason: m.reason.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            })
            .collect()
    } else {
        vec![cpb::MemberIdentity {
            member_id: req.member_id.to_string(),
            ..Default::default()
        }]
    };
    let core = cpb::LeaveGroupRequest {
        group_id: group.clone(),
        members,
    };
    match Forward::new(svc, rights, &group).leave_group(core).await {
        Err(e) => group_error(e, |c| LeaveGroupResponse::default().with_error_code(c)),
        Ok(r) => {
            let mut out = LeaveGroupResponse::default().with_error_code(code(r.error.as_ref()));
            if version >= 3 {
                out = out.with_members(
                    r.members
                        .into_iter()
                        .map(|m| {
                            MemberResponse::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                .with_error_code(code(m.error.as_ref()))
                        })
                        .collect(),
                );
            } else if out.error_code == 0 {
                // One member: its own error is the answer.
                out.error_code = r.members.first().map_or(0, |m| code(m.error.as_ref()));
            }
            out
        }
    }
}

pub(super) async fn offset_commit(
    svc: &BrokerService,
    rights: &Rights,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let core = cpb::OffsetCommitRequest {
        group_id: group.clone(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        topics: req
            .topics
            .iter()
            .map(|t| cpb::OffsetCommitTopic {
                name: t.name.to_string(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| cpb::OffsetCommitPartition {
                        partition: p.partition_index,
                        committed_offset: p.committed_offset,
                        committed_leader_epoch: p.committed_leader_epoch,
                        metadata: opt(&p.committed_metadata),
                    })
                    .collect(),
            })
            .collect(),
    };
    let resp = Forward::new(svc, rights, &group).offset_commit(core).await;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let answered = resp
                .as_ref()
                .ok()
                .and_then(|r| r.topics.iter().find(|rt| rt.name == t.name.as_str()));
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let error_code = match (&resp, answered) {
                                (Err(e), _) => api_code(e),
                                (Ok(_), Some(rt)) => rt
                                    .partitions
                                    .iter()
                                    .find(|rp| rp.partition == p.partition_index)
                                    .map_or(0, |rp| code(rp.error.as_ref())),
                                (Ok(_), None) => 0,
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error_code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub(super) async fn offset_fetch(
    svc: &BrokerService,
    rights: &Rights,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let (error_code, topics) = fetch_one(svc, rights, g.group_id.to_string(), topics).await;
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(error_code)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|t| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t.name)))
                                    .with_partitions(
                                        t.partitions
                                            .into_iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p.partition)
                                                    .with_committed_offset(p.committed_offset)
                                                    .with_committed_leader_epoch(
                                                        p.committed_leader_epoch,
                                                    )
                                                    .with_metadata(Some(str_bytes(p.metadata)))
                                                    .with_error_code(code(p.error.as_ref()))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let (error_code, topics) = fetch_one(svc, rights, req.group_id.to_string(), topics).await;
    OffsetFetchResponse::default()
        .with_error_code(error_code)
        .with_topics(
            topics
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t.name)))
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p.partition)
                                        .with_committed_offset(p.committed_offset)
                                        .with_committed_leader_epoch(p.committed_leader_epoch)
                                        .with_metadata(Some(str_bytes(p.metadata)))
                                        .with_error_code(code(p.error.as_ref()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// One group's committed offsets: (group error, topics). `topics` None asks
/// for every committed partition.
async fn fetch_one(
    svc: &BrokerService,
    rights: &Rights,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, Vec<cpb::OffsetFetchTopicResponse>) {
    let core = cpb::OffsetFetchRequest {
        group_id: group.clone(),
        topics: topics
            .unwrap_or_default()
            .into_iter()
            .map(|(name, partitions)| cpb::OffsetFetchTopic { name, partitions })
            .collect(),
    };
    match Forward::new(svc, rights, &group).offset_fetch(core).await {
        Err(e) => (api_code(&e), Vec::new()),
        Ok(r) => (code(r.error.as_ref()), r.topics),
    }
}

/// ListGroups: the groups this broker is the Kafka-side coordinator of (see
/// [`group_node`]), gathered from every coordinator service.
pub(super) async fn list(
    svc: &BrokerService,
    rights: &Rights,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let (groups, error) = crate::service::coordinators::list_all(svc, rights, states).await;
    let me = svc.broker.config.broker_id;
    let mine: Vec<ListedGroup> = svc.broker.metadata.read(|v| {
        let n = v
            .topics
            .get(CONSUMER_OFFSETS_TOPIC)
            .map_or(0, |t| t.record.num_partitions());
        groups
            .into_iter()
            .filter(|g| {
                n > 0
                    && group_node(v, group_offsets_partition(&g.group_id, n))
                        .is_some_and(|b| b.broker_id == me)
            })
            .filter(|g| types.is_empty() || types.contains(&g.group_type))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(str_bytes(g.group_id).into())
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_group_state(str_bytes(g.group_state))
                    .with_group_type(str_bytes(g.group_type))
            })
            .collect()
    });
    ListGroupsResponse::default()
        .with_error_code(error.map_or(0, |e| api_code(&e)))
        .with_groups(mine)
}

pub(super) async fn describe(
    svc: &BrokerService,
    rights: &Rights,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut out = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let group = g.to_string();
        let resp = Forward::new(svc, rights, &group)
            .describe_groups(cpb::DescribeGroupsRequest {
                group_ids: vec![group.clone()],
            })
            .await;
        let described = match resp {
            Err(e) => DescribedGroup::default()
                .with_group_id(g.clone())
                .with_error_code(api_code(&e)),
            Ok(r) => match r.groups.into_iter().next() {
                None => DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_group_state(str_bytes("Dead")),
                Some(d) => DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_error_code(code(d.error.as_ref()))
                    // No error_message: it exists from v6 and we serve 0-5.
                    .with_group_state(str_bytes(d.group_state))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol_data))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.member_metadata)
                                    .with_member_assignment(m.member_assignment)
                            })
                            .collect(),
                    ),
            },
        };
        out.push(described);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub(super) async fn delete(
    svc: &BrokerService,
    rights: &Rights,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in &req.groups_names {
        let group = g.to_string();
        let resp = Forward::new(svc, rights, &group)
            .delete_groups(cpb::DeleteGroupsRequest {
                group_ids: vec![group.clone()],
            })
            .await;
        let error_code = match resp {
            Err(e) => api_code(&e),
            Ok(r) => r
                .results
                .first()
                .map_or(codes::NOT_COORDINATOR, |d| code(d.error.as_ref())),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(error_code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
