//! Classic requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) from the
//! classic members of a group on the consumer protocol (online migration).
//! Each returns `None` when the group is not such a group, and the classic
//! path answers. As for ConsumerGroupHeartbeat, an answer that depends on a
//! change waits until the group record is in the log.

use std::time::Instant;

use bytes::Bytes;
use sluice_proto::coordinator as pb;

use super::CoordinatorService;
use crate::consumer_group::{ClassicJoin, TopicCounts};
use crate::coordinator::{GroupHome, Submitted};
use crate::error::CoordinatorError;
use crate::group::{Group, JoinRequest};

/// Queues the group record when `changed` or an earlier write is
/// unconfirmed; the caller waits for it with [`confirmed`].
fn write_if(
    svc: &CoordinatorService,
    g: &mut Group,
    home: GroupHome,
    changed: bool,
) -> Option<(GroupHome, Submitted)> {
    let unconfirmed = g.consumer.as_ref().is_some_and(|c| c.unconfirmed());
    if !changed && !unconfirmed {
        return None;
    }
    let submitted = svc.coordinator.submit_group(&g.id, home, g.snapshot());
    if let Some(c) = g.consumer.as_mut() {
        c.write_submitted(submitted.number);
    }
    Some((home, submitted))
}

async fn confirmed(
    svc: &CoordinatorService,
    group: &str,
    write: Option<(GroupHome, Submitted)>,
) -> Result<(), CoordinatorError> {
    let Some((home, submitted)) = write else {
        return Ok(());
    };
    let number = submitted.number;
    let c = &svc.coordinator;
    c.confirm(group, home, submitted).await?;
    let _ = c.with_group(group, false, |g, _| {
        if let Some(cg) = g.and_then(|g| g.consumer.as_mut()) {
            cg.write_confirmed(number);
        }
    });
    Ok(())
}

pub(super) async fn join(
    svc: &CoordinatorService,
    group: &str,
    req: &JoinRequest,
) -> Option<Result<pb::JoinGroupResponse, CoordinatorError>> {
    let c = &svc.coordinator;
    let topics = c.topics();
    let res = c
        .with_group(group, false, |g, home| {
            let g = g.filter(|g| g.serves_classic_members())?;
            if let Err(e) = check_join(svc, g, home, &topics, req) {
                return Some(Err(e));
            }
            let cg = g.consumer.as_mut().expect("serves classic members");
            let join = ClassicJoin {
                member_id: req.member_id.clone(),
                instance_id: req.group_instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols.clone(),
            };
            Some(
                cg.classic_join(join, &topics, Instant::now())
                    .map(|(answer, changed)| {
                        let write = write_if(svc, g, home, changed);
                        (answer, write)
                    }),
            )
        })
        .map_err(Some)
        .and_then(|r| r.map(|r| r.map_err(Some)).unwrap_or(Err(None)));
    let ((member_id, generation, protocol), write) = match res {
        Ok(r) => r,
        Err(None) => return None,
        Err(Some(e)) => return Some(Err(e)),
    };
    if let Err(e) = confirmed(svc, group, write).await {
        return Some(Err(e));
    }
    Some(Ok(pb::JoinGroupResponse {
        error: None,
        generation_id: generation,
        protocol_type: "consumer".into(),
        protocol_name: protocol,
        // The coordinator assigns: no member runs an assignor.
        leader: String::new(),
        member_id,
        members: Vec::new(),
    }))
}

pub(super) async fn sync(
    svc: &CoordinatorService,
    req: &pb::SyncGroupRequest,
) -> Option<Result<Bytes, CoordinatorError>> {
    let c = &svc.coordinator;
    let res = c.with_group(&req.group_id, false, |g, home| {
        let g = g.filter(|g| g.serves_classic_members())?;
        let cg = g.consumer.as_ref().expect("serves classic members");
        Some(
            cg.classic_sync(&req.member_id, req.generation_id)
                .map(|assignment| (assignment, write_if(svc, g, home, false))),
        )
    });
    let (assignment, write) = match res {
        Ok(None) => return None,
        Ok(Some(Ok(r))) => r,
        Ok(Some(Err(e))) | Err(e) => return Some(Err(e)),
    };
    Some(
        confirmed(svc, &req.group_id, write)
            .await
            .map(|()| assignment),
    )
}

pub(super) fn heartbeat(
    svc: &CoordinatorService,
    req: &pb::HeartbeatRequest,
) -> Option<Result<(), CoordinatorError>> {
    let res = svc.coordinator.with_group(&req.group_id, false, |g, _| {
        let g = g.filter(|g| g.serves_classic_members())?;
        let cg = g.consumer.as_mut().expect("serves classic members");
        Some(cg.classic_heartbeat(&req.member_id, req.generation_id, Instant::now()))
    });
    match res {
        Ok(r) => r,
        Err(e) => Some(Err(e)),
    }
}

/// What the classic path checks of a JoinGroup, and that the topics are
/// known (an assignment from none would revoke everything).
fn check_join(
    svc: &CoordinatorService,
    g: &Group,
    home: GroupHome,
    topics: &TopicCounts,
    req: &JoinRequest,
) -> Result<(), CoordinatorError> {
    if topics.version == 0 {
        return Err(CoordinatorError::LoadInProgress {
            group: g.id.clone(),
            partition: home.partition,
        });
    }
    let cfg = &svc.coordinator.config;
    let ms = req.session_timeout.as_millis() as u64;
    if ms < cfg.group_min_session_timeout_ms || ms > cfg.group_max_session_timeout_ms {
        return Err(CoordinatorError::InvalidSessionTimeout {
            requested_ms: ms,
            min_ms: cfg.group_min_session_timeout_ms,
            max_ms: cfg.group_max_session_timeout_ms,
        });
    }
    if req.protocol_type != "consumer" || req.protocols.is_empty() {
        return Err(CoordinatorError::InconsistentProtocol {
            group: g.id.clone(),
            protocol_type: "consumer".into(),
        });
    }
    Ok(())
}

/// LeaveGroup of one classic member (by member id, or by instance id as an
/// admin removes a static member); the group may become classic again.
pub(super) fn leave(
    svc: &CoordinatorService,
    g: &mut Group,
    home: GroupHome,
    member_id: &str,
    instance: Option<&str>,
) -> Option<Result<(), CoordinatorError>> {
    if !g.serves_classic_members() {
        return None;
    }
    let topics = svc.coordinator.topics();
    if topics.version == 0 {
        return Some(Err(CoordinatorError::LoadInProgress {
            group: g.id.clone(),
            partition: home.partition,
        }));
    }
    let cg = g.consumer.as_mut().expect("serves classic members");
    let member_id = match instance.filter(|_| member_id.is_empty()) {
        Some(i) => match cg
            .rec
            .members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(i))
        {
            Some(m) => m.member_id.clone(),
            None => {
                return Some(Err(CoordinatorError::UnknownInstance {
                    group: g.id.clone(),
                    instance: i.to_string(),
                }));
            }
        },
        None => member_id.to_string(),
    };
    if let Err(e) = cg.classic_leave(&member_id, &topics) {
        return Some(Err(e));
    }
    g.maybe_downgrade(Instant::now());
    svc.coordinator
        .persist_group(g.id.clone(), home, g.snapshot(), None);
    Some(Ok(()))
}
