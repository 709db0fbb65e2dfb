//! Group membership: JoinGroup, SyncGroup, Heartbeat and LeaveGroup. Join and
//! sync calls may park until the group's phase completes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::coordinator as pb;
use tonic::Request;

use super::{CoordinatorService, check_group_id, dropped, err_proto};
use crate::error::CoordinatorError;
use crate::group::{Effects, JoinOutcome, JoinRequest};

/// The caller's address as Kafka shows it (`/IP`), if known.
pub(super) fn client_host<T>(req: &Request<T>) -> String {
    sluice_tls::ConnInfo::remote_addr(req)
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default()
}

/// JoinGroup; `host` is the caller's address (a client host named in the
/// request wins).
pub(super) async fn join_group(
    svc: &CoordinatorService,
    req: pb::JoinGroupRequest,
    mut host: String,
) -> pb::JoinGroupResponse {
    if !req.client_host.is_empty() {
        host = format!("/{}", req.client_host);
    }
    let member_id = req.member_id.clone();
    match join(svc, req, host).await {
        Ok(r) => r,
        Err(e) => pb::JoinGroupResponse {
            error: err_proto(&e),
            generation_id: -1,
            member_id,
            ..Default::default()
        },
    }
}

async fn join(
    svc: &CoordinatorService,
    req: pb::JoinGroupRequest,
    host: String,
) -> Result<pb::JoinGroupResponse, CoordinatorError> {
    check_group_id(&req.group_id)?;
    let c = &svc.coordinator;
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
    if let Some(r) = super::migration::join(svc, &group, &join).await {
        return r;
    }
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
            error: err_proto(&CoordinatorError::MemberIdRequired {
                group: group.clone(),
                member: id.clone(),
            }),
            generation_id: -1,
            member_id: id,
            ..Default::default()
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(dropped(&group)),
    }
}

pub(super) async fn sync_group(
    svc: &CoordinatorService,
    req: pb::SyncGroupRequest,
) -> pb::SyncGroupResponse {
    let (protocol_type, protocol_name) = (req.protocol_type.clone(), req.protocol_name.clone());
    match sync(svc, req).await {
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
    }
}

async fn sync(
    svc: &CoordinatorService,
    req: pb::SyncGroupRequest,
) -> Result<Bytes, CoordinatorError> {
    check_group_id(&req.group_id)?;
    if let Some(r) = super::migration::sync(svc, &req).await {
        return r;
    }
    let c = &svc.coordinator;
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
        None => Err(CoordinatorError::NoMembers {
            group: group.clone(),
        }),
    })??;
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(dropped(&group)),
    }
}

pub(super) fn heartbeat(
    svc: &CoordinatorService,
    req: pb::HeartbeatRequest,
) -> pb::HeartbeatResponse {
    let res = check_group_id(&req.group_id).and_then(|()| {
        if let Some(r) = super::migration::heartbeat(svc, &req) {
            return r;
        }
        svc.coordinator
            .with_group(&req.group_id, false, |g, _| match g {
                Some(g) => g
                    .check_instance(&req.member_id, req.group_instance_id.as_deref())
                    .and_then(|()| g.heartbeat(&req.member_id, req.generation_id, Instant::now())),
                None => Err(CoordinatorError::NoMembers {
                    group: req.group_id.clone(),
                }),
            })
            .and_then(|r| r)
    });
    pb::HeartbeatResponse {
        error: res.err().as_ref().and_then(err_proto),
    }
}

pub(super) fn leave_group(
    svc: &CoordinatorService,
    req: pb::LeaveGroupRequest,
) -> pb::LeaveGroupResponse {
    let c = &svc.coordinator;
    let group = req.group_id.clone();
    let res = check_group_id(&group).and_then(|()| {
        c.with_group(&group, false, |mut g, home| {
            let mut out = Vec::new();
            for m in &req.members {
                let r = match g.as_deref_mut() {
                    Some(g) => match super::migration::leave(
                        svc,
                        g,
                        home,
                        &m.member_id,
                        m.group_instance_id.as_deref(),
                    ) {
                        Some(r) => r.map(|()| Effects::default()),
                        None => g.leave(&m.member_id, m.group_instance_id.as_deref(), Instant::now()),
                    },
                    None => Err(CoordinatorError::NoMembers {
                        group: group.clone(),
                    }),
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
    match res {
        Ok(members) => pb::LeaveGroupResponse {
            error: None,
            members,
        },
        Err(e) => pb::LeaveGroupResponse {
            error: err_proto(&e),
            members: Vec::new(),
        },
    }
}
