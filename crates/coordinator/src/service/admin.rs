//! Group administration: ListGroups, DescribeGroups and DeleteGroups (which
//! tombstones a group's offsets and record before forgetting it).

use sluice_proto::coordinator as pb;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::{CoordinatorService, err_proto};
use crate::error::CoordinatorError;
use crate::group::GroupState;
use crate::records::RecordKey;

pub(super) fn list_groups(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::ListGroupsRequest,
) -> pb::ListGroupsResponse {
    let filter = req.states_filter;
    // Kafka: Describe on the cluster lists every group, else only the
    // groups the caller may describe.
    let all = rights.has_cluster(Operation::Describe);
    let mut groups = Vec::new();
    svc.coordinator.for_each_group(|g| {
        let state = g.state_name();
        if !all && !rights.sees_group(&g.id) {
            return;
        }
        if filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(state)) {
            groups.push(pb::ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                group_state: state.into(),
                group_type: g.group_type().into(),
            });
        }
    });
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    pb::ListGroupsResponse {
        error: None,
        groups,
    }
}

pub(super) fn describe_groups(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::DescribeGroupsRequest,
) -> pb::DescribeGroupsResponse {
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            if let Err(e) = rights.group(Operation::Describe, &id) {
                return pb::DescribedGroup {
                    error: Some(e.to_proto()),
                    group_id: id,
                    ..Default::default()
                };
            }
            let res = svc.coordinator.with_group(&id, false, |g, _| match g {
                Some(g) if g.consumer.is_some() => super::consumer::as_described_group(g),
                Some(g) => {
                    let protocol = g.protocol.clone().unwrap_or_default();
                    pb::DescribedGroup {
                        error: None,
                        group_id: id.clone(),
                        group_state: g.state.name().into(),
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        protocol_data: protocol.clone(),
                        generation_id: g.generation,
                        group_type: g.group_type().into(),
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
    pb::DescribeGroupsResponse { groups }
}

pub(super) async fn delete_groups(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::DeleteGroupsRequest,
) -> pb::DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let error = match rights.group(Operation::Delete, &id) {
            Err(e) => Some(e.to_proto()),
            Ok(()) => delete_group(svc, &id)
                .await
                .err()
                .as_ref()
                .and_then(err_proto),
        };
        results.push(pb::DeletableGroupResult {
            group_id: id,
            error,
        });
    }
    pb::DeleteGroupsResponse { results }
}

async fn delete_group(svc: &CoordinatorService, id: &str) -> Result<(), CoordinatorError> {
    let c = &svc.coordinator;
    let (home, submitted) = c.with_group(id, false, |g, home| match g {
        None => Err(CoordinatorError::GroupNotFound {
            group: id.to_string(),
        }),
        Some(g) if g.member_count() > 0 => Err(CoordinatorError::NonEmptyGroup {
            group: id.to_string(),
            members: g.member_count(),
        }),
        Some(g) if g.state == GroupState::Dead => Err(CoordinatorError::AlreadyBeingDeleted {
            group: id.to_string(),
        }),
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
                            group: id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                        },
                        None,
                    )
                })
                .collect();
            keys.push((
                RecordKey::Group {
                    group: id.to_string(),
                },
                None,
            ));
            Ok((home, c.submit(home, keys)))
        }
    })??;
    if let Err(e) = c.confirm(id, home, submitted).await {
        let _ = c.with_group(id, false, |g, _| {
            if let Some(g) = g
                && g.state == GroupState::Dead
            {
                g.state = GroupState::Empty;
            }
        });
        return Err(e);
    }
    c.forget_group(id, home);
    Ok(())
}
