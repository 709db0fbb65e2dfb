//! The service's RPCs against a coordinator over the in-memory metadata
//! store and an in-memory `__consumer_offsets` (see `coordinator::testing`).

use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_server::GroupCoordinator;
use sluice_types::{ApiError, ErrorCode};
use tonic::Request;

use super::CoordinatorService;
use crate::coordinator::Coordinator;
use crate::coordinator::testing::{TestCluster, eventually};
use crate::error::CoordinatorError;
use crate::records::RecordKey;

fn code(e: Option<&sluice_proto::common::Error>) -> ErrorCode {
    ApiError::from_proto(e).map_or(ErrorCode::None, |e| e.code)
}

async fn serving(cl: &TestCluster, id: i32) -> (Arc<Coordinator>, CoordinatorService) {
    let c = cl.start(TestCluster::config(id)).await;
    cl.set_owner(0, id, 1).await;
    eventually("partition 0 loads", || c.is_ready() && c.home("g").is_ok()).await;
    (
        c.clone(),
        CoordinatorService::new(c, sluice_server::access::Access::open()),
    )
}

fn join_req(group: &str, member_id: &str, session_ms: i32) -> pb::JoinGroupRequest {
    pb::JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 1000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: vec![pb::JoinGroupProtocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"topics"),
        }],
        client_id: "client".into(),
        client_host: "10.0.0.1".into(),
        ..Default::default()
    }
}

/// A one-member group, settled: (member id, generation).
async fn settled(svc: &CoordinatorService, session_ms: i32) -> (String, i32) {
    let first = svc
        .join_group(Request::new(join_req("g", "", session_ms)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(first.error.as_ref()), ErrorCode::MemberIdRequired);
    let id = first.member_id;
    let joined = svc
        .join_group(Request::new(join_req("g", &id, session_ms)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(joined.error.as_ref()), ErrorCode::None);
    assert_eq!(joined.leader, id);
    assert_eq!(joined.members.len(), 1);
    let synced = svc
        .sync_group(Request::new(pb::SyncGroupRequest {
            group_id: "g".into(),
            generation_id: joined.generation_id,
            member_id: id.clone(),
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            assignments: vec![pb::SyncGroupAssignment {
                member_id: id.clone(),
                assignment: Bytes::from_static(b"t-0"),
            }],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(synced.error.as_ref()), ErrorCode::None);
    assert_eq!(synced.assignment, Bytes::from_static(b"t-0"));
    (id, joined.generation_id)
}

fn commit_req(member_id: &str, generation: i32, offset: i64) -> pb::OffsetCommitRequest {
    pb::OffsetCommitRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        topics: vec![pb::OffsetCommitTopic {
            name: "t".into(),
            partitions: vec![pb::OffsetCommitPartition {
                partition: 0,
                committed_offset: offset,
                committed_leader_epoch: 3,
                metadata: "m".into(),
            }],
        }],
    }
}

async fn commit(svc: &CoordinatorService, req: pb::OffsetCommitRequest) -> ErrorCode {
    let resp = svc
        .offset_commit(Request::new(req))
        .await
        .unwrap()
        .into_inner();
    code(resp.topics[0].partitions[0].error.as_ref())
}

/// The committed offset of t-0, or the request's error.
async fn fetch(svc: &CoordinatorService, all_topics: bool) -> Result<i64, ErrorCode> {
    let topics = if all_topics {
        Vec::new()
    } else {
        vec![pb::OffsetFetchTopic {
            name: "t".into(),
            partitions: vec![0],
        }]
    };
    let resp = svc
        .offset_fetch(Request::new(pb::OffsetFetchRequest {
            group_id: "g".into(),
            topics,
        }))
        .await
        .unwrap()
        .into_inner();
    if resp.error.is_some() {
        return Err(code(resp.error.as_ref()));
    }
    Ok(resp
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset))
}

async fn describe(svc: &CoordinatorService) -> pb::DescribedGroup {
    svc.describe_groups(Request::new(pb::DescribeGroupsRequest {
        group_ids: vec!["g".into()],
    }))
    .await
    .unwrap()
    .into_inner()
    .groups
    .remove(0)
}

async fn delete(svc: &CoordinatorService) -> ErrorCode {
    let resp = svc
        .delete_groups(Request::new(pb::DeleteGroupsRequest {
            group_ids: vec!["g".into()],
        }))
        .await
        .unwrap()
        .into_inner();
    code(resp.results[0].error.as_ref())
}

#[tokio::test]
async fn a_group_joins_syncs_commits_and_is_deleted() {
    let cl = TestCluster::new(1).await;
    let (c, svc) = serving(&cl, 1).await;
    let (id, generation) = settled(&svc, 10_000).await;
    let hb = svc
        .heartbeat(Request::new(pb::HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: id.clone(),
            group_instance_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(hb.error.as_ref()), ErrorCode::None);

    assert_eq!(
        commit(&svc, commit_req(&id, generation, 42)).await,
        ErrorCode::None
    );
    assert_eq!(
        commit(&svc, commit_req(&id, generation + 1, 43)).await,
        ErrorCode::IllegalGeneration
    );
    assert_eq!(fetch(&svc, false).await, Ok(42));
    assert_eq!(fetch(&svc, true).await, Ok(42));

    let listed = svc
        .list_groups(Request::new(pb::ListGroupsRequest {
            states_filter: vec!["stable".into()],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state, "Stable");
    let d = describe(&svc).await;
    assert_eq!(
        (d.group_state.as_str(), d.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].client_host, "/10.0.0.1");
    assert_eq!(d.members[0].member_assignment, Bytes::from_static(b"t-0"));

    assert_eq!(delete(&svc).await, ErrorCode::NonEmptyGroup);
    let left = svc
        .leave_group(Request::new(pb::LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![pb::MemberIdentity {
                member_id: id.clone(),
                group_instance_id: None,
                reason: "done".into(),
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(left.members[0].error.as_ref()), ErrorCode::None);
    assert_eq!(describe(&svc).await.group_state, "Empty");
    assert_eq!(delete(&svc).await, ErrorCode::None);
    assert_eq!(delete(&svc).await, ErrorCode::GroupIdNotFound);
    assert_eq!(fetch(&svc, false).await, Ok(-1));
    assert_eq!(describe(&svc).await.group_state, "Dead");
    // The log ends with the tombstones, offsets first.
    let recs = cl.log.partition(0);
    let tail: Vec<_> = recs[recs.len() - 2..]
        .iter()
        .map(|r| {
            let key: RecordKey = serde_json::from_slice(r.key.as_deref().unwrap()).unwrap();
            (key, r.value.is_none())
        })
        .collect();
    assert_eq!(
        tail,
        [
            (
                RecordKey::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0
                },
                true
            ),
            (RecordKey::Group { group: "g".into() }, true)
        ]
    );
    c.close().await;
}

#[tokio::test]
async fn requests_for_groups_served_elsewhere_or_unnamed_are_refused() {
    let cl = TestCluster::new(1).await;
    let c = cl.start(TestCluster::config(1)).await;
    let svc = CoordinatorService::new(c.clone(), sluice_server::access::Access::open());
    let j = svc
        .join_group(Request::new(join_req("g", "m-1", 10_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(j.error.as_ref()), ErrorCode::NotCoordinator);
    assert_eq!((j.generation_id, j.member_id.as_str()), (-1, "m-1"));
    assert_eq!(
        commit(&svc, commit_req("", -1, 1)).await,
        ErrorCode::NotCoordinator
    );
    assert_eq!(fetch(&svc, false).await, Err(ErrorCode::NotCoordinator));
    assert_eq!(
        code(describe(&svc).await.error.as_ref()),
        ErrorCode::NotCoordinator
    );
    assert_eq!(delete(&svc).await, ErrorCode::NotCoordinator);

    let j = svc
        .join_group(Request::new(join_req("", "", 10_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(j.error.as_ref()), ErrorCode::InvalidGroupId);
    let hb = svc
        .heartbeat(Request::new(pb::HeartbeatRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(hb.error.as_ref()), ErrorCode::InvalidGroupId);
    let s = svc
        .sync_group(Request::new(pb::SyncGroupRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(s.error.as_ref()), ErrorCode::InvalidGroupId);
    let l = svc
        .leave_group(Request::new(pb::LeaveGroupRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(l.error.as_ref()), ErrorCode::InvalidGroupId);
    c.close().await;
}

#[tokio::test]
async fn committed_offsets_move_with_their_partition() {
    let cl = TestCluster::new(1).await;
    let (c1, svc1) = serving(&cl, 1).await;
    // A simple commit (no member, no generation), as a tool makes.
    assert_eq!(commit(&svc1, commit_req("", -1, 42)).await, ErrorCode::None);

    let c2 = cl.start(TestCluster::config(2)).await;
    let svc2 = CoordinatorService::new(c2.clone(), sluice_server::access::Access::open());
    cl.set_owner(0, 2, 2).await;
    eventually("coordinator 2 loads", || c2.home("g").is_ok()).await;
    assert_eq!(fetch(&svc2, false).await, Ok(42));
    eventually("coordinator 1 lets go", || c1.home("g").is_err()).await;
    assert_eq!(fetch(&svc1, false).await, Err(ErrorCode::NotCoordinator));
    c1.close().await;
    c2.close().await;
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_expired_and_the_group_written() {
    let cl = TestCluster::new(1).await;
    let (c, svc) = serving(&cl, 1).await;
    let (_id, generation) = settled(&svc, 200).await;
    assert_eq!(generation, 1);
    // The timer (every 100 ms) expires the session and writes the group.
    eventually("the session expires", || {
        c.with_group("g", false, |g, _| g.is_some_and(|g| g.members.is_empty()))
            .unwrap()
    })
    .await;
    let written = || {
        cl.log.partition(0).iter().rev().find_map(|r| {
            let key: RecordKey = serde_json::from_slice(r.key.as_deref()?).ok()?;
            (key == RecordKey::Group { group: "g".into() }).then(|| r.value.clone())
        })
    };
    eventually("the empty group is written", || {
        written().flatten().is_some_and(|v| {
            let rec: crate::records::GroupValue = serde_json::from_slice(&v).unwrap();
            rec.group.generation == 2 && rec.group.members.is_empty()
        })
    })
    .await;
    assert_eq!(describe(&svc).await.group_state, "Empty");
    c.close().await;
}

#[tokio::test]
async fn a_commit_or_delete_the_log_refuses_changes_nothing() {
    let cl = TestCluster::new(1).await;
    let (c, svc) = serving(&cl, 1).await;
    assert_eq!(commit(&svc, commit_req("", -1, 5)).await, ErrorCode::None);
    cl.log.fail_appends(Some(CoordinatorError::NoLiveBroker));
    assert_eq!(
        commit(&svc, commit_req("", -1, 6)).await,
        ErrorCode::CoordinatorNotAvailable
    );
    assert_eq!(
        fetch(&svc, false).await,
        Ok(5),
        "a failed commit is not applied"
    );
    assert_eq!(delete(&svc).await, ErrorCode::CoordinatorNotAvailable);
    // The group is usable again, not left half-deleted.
    assert_eq!(describe(&svc).await.group_state, "Empty");
    cl.log.fail_appends(None);
    assert_eq!(commit(&svc, commit_req("", -1, 7)).await, ErrorCode::None);
    assert_eq!(fetch(&svc, false).await, Ok(7));
    c.close().await;
}
