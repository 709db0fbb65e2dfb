//! The gRPC `GroupCoordinator` service over a [`Coordinator`].
//!
//! Errors travel in the response's `error` fields (per group, member or
//! partition, as in Kafka); the gRPC status is OK unless the request itself
//! is malformed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_server::{
    GroupCoordinator, GroupCoordinatorServer,
};
use sluice_types::{ApiError, ErrorCode};
use tonic::{Request, Response, Status};

use crate::coordinator::{Coordinator, now_ms};
use crate::group::{CommittedOffset, GroupState, JoinOutcome, JoinRequest};
use crate::records::{self, OffsetValue, RecordKey};

#[derive(Clone)]
pub struct CoordinatorService {
    coordinator: Arc<Coordinator>,
}

impl CoordinatorService {
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    pub fn into_server(self) -> GroupCoordinatorServer<Self> {
        GroupCoordinatorServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn client_host<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default()
}

fn check_group_id(group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidGroupId,
            "the group id is empty",
        ));
    }
    Ok(())
}

fn dropped(group: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotCoordinator,
        format!("group \"{group}\" was unloaded from this coordinator; find the coordinator again"),
    )
}

impl CoordinatorService {
    async fn do_join(
        &self,
        req: pb::JoinGroupRequest,
        host: String,
    ) -> Result<pb::JoinGroupResponse, ApiError> {
        check_group_id(&req.group_id)?;
        let c = &self.coordinator;
        let group = req.group_id.clone();
        let join = JoinRequest {
            member_id: req.member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: host,
            session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
            protocol_type: req.protocol_type,
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
        };
        let rx = c.with_group(&group, true, |g, home| {
            let (rx, eff) = g.expect("created").join(join, Instant::now());
            c.apply(&group, home, eff, None);
            rx
        })?;
        match rx.await {
            Ok(Ok(JoinOutcome::Joined(r))) => Ok(pb::JoinGroupResponse {
                error: None,
                generation_id: r.generation,
                protocol_type: r.protocol_type,
                protocol_name: r.protocol,
                leader: r.leader,
                member_id: r.member_id,
                members: r
                    .members
                    .into_iter()
                    .map(
                        |(member_id, group_instance_id, metadata)| pb::JoinGroupMember {
                            member_id,
                            group_instance_id,
                            metadata,
                        },
                    )
                    .collect(),
            }),
            Ok(Ok(JoinOutcome::MemberIdRequired(id))) => Ok(pb::JoinGroupResponse {
                error: Some(
                    ApiError::new(
                        ErrorCode::MemberIdRequired,
                        format!("join group \"{group}\" again with member id {id}"),
                    )
                    .to_proto(),
                ),
                generation_id: -1,
                member_id: id,
                ..Default::default()
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(dropped(&group)),
        }
    }

    async fn do_sync(&self, req: pb::SyncGroupRequest) -> Result<Bytes, ApiError> {
        check_group_id(&req.group_id)?;
        let c = &self.coordinator;
        let group = req.group_id.clone();
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id, a.assignment))
            .collect();
        let generation = req.generation_id;
        let rx = c.with_group(&group, false, |g, home| match g {
            Some(g) => {
                g.check_instance(&req.member_id, req.group_instance_id.as_deref())?;
                let (rx, eff) = g.sync(&req.member_id, generation, assignments, Instant::now());
                c.apply(&group, home, eff, Some(generation));
                Ok(rx)
            }
            None => Err(ApiError::new(
                ErrorCode::UnknownMemberId,
                format!("group \"{group}\" has no members"),
            )),
        })??;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(dropped(&group)),
        }
    }

    async fn commit(&self, req: pb::OffsetCommitRequest) -> Result<(), ApiError> {
        check_group_id(&req.group_id)?;
        let c = &self.coordinator;
        let group = req.group_id.clone();
        let simple = req.generation_id < 0 && req.member_id.is_empty();
        let now = now_ms();
        let offsets: Vec<((String, i32), CommittedOffset)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.clone(), p.partition),
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.metadata.clone(),
                            commit_timestamp_ms: now,
                        },
                    )
                })
            })
            .collect();
        // Checked and submitted under the group lock, so commits reach the
        // log in the order they were accepted.
        let (home, submitted) = c.with_group(&group, simple, |g, home| {
            let Some(g) = g else {
                return Err(ApiError::new(
                    ErrorCode::UnknownMemberId,
                    format!("member {} is not in group \"{group}\"", req.member_id),
                ));
            };
            g.check_instance(&req.member_id, req.group_instance_id.as_deref())?;
            g.check_commit(&req.member_id, req.generation_id)?;
            g.commit_submitted(offsets.iter().map(|(tp, _)| tp.clone()));
            let recs = offsets
                .iter()
                .map(|((topic, partition), o)| {
                    (
                        RecordKey::Offset {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        Some(records::encode(&OffsetValue {
                            offset: o.clone(),
                            owner_epoch: home.epoch,
                        })),
                    )
                })
                .collect();
            Ok((home, c.submit(home, recs)))
        })??;
        let write = submitted.number;
        let confirmed = c.confirm(&group, home, submitted).await;
        // A group deleted meanwhile stays deleted: its tombstones came later.
        c.with_group(&group, false, |g, _| {
            if let Some(g) = g {
                g.commit_finished(offsets.iter().map(|(tp, _)| tp));
                if confirmed.is_ok() {
                    g.apply_commit(write, offsets);
                }
            }
        })?;
        confirmed
    }
}

fn err_proto(e: &ApiError) -> Option<sluice_proto::common::Error> {
    Some(e.to_proto())
}

#[tonic::async_trait]
impl GroupCoordinator for CoordinatorService {
    async fn join_group(
        &self,
        request: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        let mut host = client_host(&request);
        let req = request.into_inner();
        if !req.client_host.is_empty() {
            host = format!("/{}", req.client_host);
        }
        let member_id = req.member_id.clone();
        Ok(Response::new(match self.do_join(req, host).await {
            Ok(r) => r,
            Err(e) => pb::JoinGroupResponse {
                error: err_proto(&e),
                generation_id: -1,
                member_id,
                ..Default::default()
            },
        }))
    }

    async fn sync_group(
        &self,
        request: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        let req = request.into_inner();
        let (protocol_type, protocol_name) = (req.protocol_type.clone(), req.protocol_name.clone());
        Ok(Response::new(match self.do_sync(req).await {
            Ok(assignment) => pb::SyncGroupResponse {
                error: None,
                protocol_type,
                protocol_name,
                assignment,
            },
            Err(e) => pb::SyncGroupResponse {
                error: err_proto(&e),
                ..Default::default()
            },
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let res = check_group_id(&req.group_id).and_then(|()| {
            self.coordinator
                .with_group(&req.group_id, false, |g, _| match g {
                    Some(g) => g
                        .check_instance(&req.member_id, req.group_instance_id.as_deref())
                        .and_then(|()| {
                            g.heartbeat(&req.member_id, req.generation_id, Instant::now())
                        }),
                    None => Err(ApiError::new(
                        ErrorCode::UnknownMemberId,
                        format!("group \"{}\" has no members", req.group_id),
                    )),
                })
                .and_then(|r| r)
        });
        Ok(Response::new(pb::HeartbeatResponse {
            error: res.err().as_ref().and_then(err_proto),
        }))
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        let req = request.into_inner();
        let c = &self.coordinator;
        let group = req.group_id.clone();
        let res = check_group_id(&group).and_then(|()| {
            c.with_group(&group, false, |mut g, home| {
                let mut out = Vec::new();
                for m in &req.members {
                    let r = match g.as_deref_mut() {
                        Some(g) => g.leave(
                            &m.member_id,
                            m.group_instance_id.as_deref(),
                            Instant::now(),
                        ),
                        None => Err(ApiError::new(
                            ErrorCode::UnknownMemberId,
                            format!("group \"{group}\" has no members"),
                        )),
                    };
                    if !m.reason.is_empty() {
                        tracing::info!(group = %group, member = %m.member_id, reason = %m.reason, "member leaving");
                    }
                    out.push(pb::LeaveGroupMemberResponse {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        error: match r {
                            Ok(eff) => {
                                c.apply(&group, home, eff, None);
                                None
                            }
                            Err(e) => err_proto(&e),
                        },
                    });
                }
                out
            })
        });
        Ok(Response::new(match res {
            Ok(members) => pb::LeaveGroupResponse {
                error: None,
                members,
            },
            Err(e) => pb::LeaveGroupResponse {
                error: err_proto(&e),
                members: Vec::new(),
            },
        }))
    }

    async fn offset_commit(
        &self,
        request: Request<pb::OffsetCommitRequest>,
    ) -> Result<Response<pb::OffsetCommitResponse>, Status> {
        let req = request.into_inner();
        let topics = req.topics.clone();
        let error = self.commit(req).await.err();
        Ok(Response::new(pb::OffsetCommitResponse {
            topics: topics
                .into_iter()
                .map(|t| pb::OffsetCommitTopicResponse {
                    name: t.name,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| pb::OffsetCommitPartitionResponse {
                            partition: p.partition,
                            error: error.as_ref().and_then(err_proto),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn offset_fetch(
        &self,
        request: Request<pb::OffsetFetchRequest>,
    ) -> Result<Response<pb::OffsetFetchResponse>, Status> {
        let req = request.into_inner();
        let res = check_group_id(&req.group_id).and_then(|()| {
            self.coordinator.with_group(&req.group_id, false, |g, _| {
                g.map(|g| g.offsets.clone()).unwrap_or_default()
            })
        });
        let offsets = match res {
            Ok(o) => o,
            Err(e) => {
                return Ok(Response::new(pb::OffsetFetchResponse {
                    error: err_proto(&e),
                    topics: Vec::new(),
                }));
            }
        };
        let part = |topic: &str, p: i32| {
            let o = offsets.get(&(topic.to_string(), p));
            pb::OffsetFetchPartitionResponse {
                partition: p,
                committed_offset: o.map_or(-1, |o| o.offset),
                committed_leader_epoch: o.map_or(-1, |o| o.leader_epoch),
                metadata: o.map(|o| o.metadata.clone()).unwrap_or_default(),
                error: None,
            }
        };
        let topics = if req.topics.is_empty() {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in offsets.keys() {
                by_topic.entry(t).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| pb::OffsetFetchTopicResponse {
                    name: t.to_string(),
                    partitions: ps.into_iter().map(|p| part(t, p)).collect(),
                })
                .collect()
        } else {
            req.topics
                .iter()
                .map(|t| pb::OffsetFetchTopicResponse {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| part(&t.name, *p)).collect(),
                })
                .collect()
        };
        Ok(Response::new(pb::OffsetFetchResponse {
            error: None,
            topics,
        }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let filter = request.into_inner().states_filter;
        let mut groups = Vec::new();
        self.coordinator.for_each_group(|g| {
            let state = g.state.name();
            if filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(state)) {
                groups.push(pb::ListedGroup {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                    group_state: state.into(),
                });
            }
        });
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(Response::new(pb::ListGroupsResponse {
            error: None,
            groups,
        }))
    }

    async fn describe_groups(
        &self,
        request: Request<pb::DescribeGroupsRequest>,
    ) -> Result<Response<pb::DescribeGroupsResponse>, Status> {
        let ids = request.into_inner().group_ids;
        let groups = ids
            .into_iter()
            .map(|id| {
                let res = self.coordinator.with_group(&id, false, |g, _| match g {
                    Some(g) => {
                        let protocol = g.protocol.clone().unwrap_or_default();
                        pb::DescribedGroup {
                            error: None,
                            group_id: id.clone(),
                            group_state: g.state.name().into(),
                            protocol_type: g.protocol_type.clone().unwrap_or_default(),
                            protocol_data: protocol.clone(),
                            generation_id: g.generation,
                            members: g
                                .members
                                .values()
                                .map(|m| pb::DescribedGroupMember {
                                    member_id: m.id.clone(),
                                    group_instance_id: m.instance_id.clone(),
                                    client_id: m.client_id.clone(),
                                    client_host: m.client_host.clone(),
                                    member_metadata: m
                                        .protocols
                                        .iter()
                                        .find(|(n, _)| *n == protocol)
                                        .map(|(_, b)| b.clone())
                                        .unwrap_or_default(),
                                    member_assignment: m.assignment.clone(),
                                })
                                .collect(),
                        }
                    }
                    // Kafka describes an unknown group as Dead with no members.
                    None => pb::DescribedGroup {
                        group_id: id.clone(),
                        group_state: GroupState::Dead.name().into(),
                        ..Default::default()
                    },
                });
                res.unwrap_or_else(|e| pb::DescribedGroup {
                    error: err_proto(&e),
                    group_id: id,
                    ..Default::default()
                })
            })
            .collect();
        Ok(Response::new(pb::DescribeGroupsResponse { groups }))
    }

    async fn delete_groups(
        &self,
        request: Request<pb::DeleteGroupsRequest>,
    ) -> Result<Response<pb::DeleteGroupsResponse>, Status> {
        let ids = request.into_inner().group_ids;
        let c = &self.coordinator;
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let res = async {
                let (home, submitted) = c.with_group(&id, false, |g, home| match g {
                    None => Err(ApiError::new(
                        ErrorCode::GroupIdNotFound,
                        format!("group \"{id}\" does not exist"),
                    )),
                    Some(g) if !g.members.is_empty() => Err(ApiError::new(
                        ErrorCode::NonEmptyGroup,
                        format!(
                            "group \"{id}\" has {} active member(s); stop them first",
                            g.members.len()
                        ),
                    )),
                    Some(g) if g.state == GroupState::Dead => Err(ApiError::new(
                        ErrorCode::GroupIdNotFound,
                        format!("group \"{id}\" is already being deleted"),
                    )),
                    Some(g) => {
                        // Dead until the tombstones are written: joins and
                        // commits in between are refused instead of being
                        // dropped (or coming back after a failover).
                        g.state = GroupState::Dead;
                        let mut keys: Vec<(RecordKey, Option<Vec<u8>>)> = g
                            .offset_keys()
                            .map(|(t, p)| {
                                (
                                    RecordKey::Offset {
                                        group: id.clone(),
                                        topic: t.clone(),
                                        partition: *p,
                                    },
                                    None,
                                )
                            })
                            .collect();
                        keys.push((RecordKey::Group { group: id.clone() }, None));
                        Ok((home, c.submit(home, keys)))
                    }
                })??;
                if let Err(e) = c.confirm(&id, home, submitted).await {
                    let _ = c.with_group(&id, false, |g, _| {
                        if let Some(g) = g
                            && g.state == GroupState::Dead
                        {
                            g.state = GroupState::Empty;
                        }
                    });
                    return Err(e);
                }
                c.forget_group(&id, home);
                Ok::<_, ApiError>(())
            }
            .await;
            results.push(pb::DeletableGroupResult {
                group_id: id,
                error: res.err().as_ref().and_then(err_proto),
            });
        }
        Ok(Response::new(pb::DeleteGroupsResponse { results }))
    }
}
