//! The group coordinator on a real standalone node, through its raw gRPC API:
//! FindCoordinator, the join/sync protocol, heartbeats, commits fenced by
//! generation, and committed offsets surviving a restart (replayed from
//! `__consumer_offsets`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::broker::{CoordinatorKeyType, FindCoordinatorRequest};
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_proto::coordinator::{self as pb};
use sluice_standalone::{Standalone, StandaloneOptions};
use sluice_types::{ApiError, ErrorCode};
use tonic::transport::Channel;

async fn start(dir: &Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut o = StandaloneOptions::new(dir, addr);
    o.coordinator.group_initial_rebalance_delay_ms = 0;
    o.controller.offsets_topic_num_partitions = 4;
    Standalone::start(o).await.unwrap()
}

fn code(e: &Option<sluice_proto::common::Error>) -> Option<ErrorCode> {
    ApiError::from_proto(e.as_ref()).map(|e| e.code)
}

async fn coordinator(node: &Standalone, group: &str) -> GroupCoordinatorClient<Channel> {
    let mut broker = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    // The first lookup creates __consumer_offsets; the load may still be
    // under way, so look until the owner answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let c = broker
            .find_coordinator(FindCoordinatorRequest {
                key_type: CoordinatorKeyType::Group as i32,
                keys: vec![group.into()],
            })
            .await
            .unwrap()
            .into_inner()
            .coordinators
            .remove(0);
        if c.error.is_none() {
            assert_eq!(c.port as u16, node.addr.port());
            let mut client =
                GroupCoordinatorClient::connect(format!("http://{}:{}", c.host, c.port))
                    .await
                    .unwrap();
            let probe = client
                .offset_fetch(pb::OffsetFetchRequest {
                    group_id: group.into(),
                    topics: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            if code(&probe.error).is_none() {
                return client;
            }
            assert_eq!(
                code(&probe.error),
                Some(ErrorCode::CoordinatorLoadInProgress)
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no coordinator: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn join_req(group: &str, member: &str) -> pb::JoinGroupRequest {
    pb::JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 6000,
        rebalance_timeout_ms: 10_000,
        member_id: member.into(),
        protocol_type: "consumer".into(),
        protocols: vec![pb::JoinGroupProtocol {
            name: "range".into(),
            metadata: bytes::Bytes::from_static(b"sub"),
        }],
        client_id: "test".into(),
        ..Default::default()
    }
}

fn commit_req(group: &str, member: &str, generation: i32, offset: i64) -> pb::OffsetCommitRequest {
    pb::OffsetCommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![pb::OffsetCommitTopic {
            name: "t".into(),
            partitions: vec![pb::OffsetCommitPartition {
                partition: 0,
                committed_offset: offset,
                committed_leader_epoch: -1,
                metadata: "m".into(),
            }],
        }],
    }
}

async fn fetched(c: &mut GroupCoordinatorClient<Channel>, group: &str) -> i64 {
    let r = c
        .offset_fetch(pb::OffsetFetchRequest {
            group_id: group.into(),
            topics: vec![pb::OffsetFetchTopic {
                name: "t".into(),
                partitions: vec![0],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), None);
    r.topics[0].partitions[0].committed_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sync_commit_and_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = coordinator(&node, "g1").await;

    // KIP-394: the first join hands out a member id.
    let r = c.join_group(join_req("g1", "")).await.unwrap().into_inner();
    assert_eq!(code(&r.error), Some(ErrorCode::MemberIdRequired));
    let member = r.member_id;
    assert!(member.starts_with("test-"), "{member}");
    let r = c
        .join_group(join_req("g1", &member))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), None, "{r:?}");
    assert_eq!((r.generation_id, r.leader.as_str()), (1, member.as_str()));
    assert_eq!(r.members.len(), 1);
    let s = c
        .sync_group(pb::SyncGroupRequest {
            group_id: "g1".into(),
            generation_id: 1,
            member_id: member.clone(),
            assignments: vec![pb::SyncGroupAssignment {
                member_id: member.clone(),
                assignment: bytes::Bytes::from_static(b"t-0"),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&s.error), None);
    assert_eq!(&s.assignment[..], b"t-0");
    let hb = c
        .heartbeat(pb::HeartbeatRequest {
            group_id: "g1".into(),
            generation_id: 1,
            member_id: member.clone(),
            group_instance_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&hb.error), None);

    // Commits are fenced by generation and member.
    let bad = c
        .offset_commit(commit_req("g1", &member, 7, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        code(&bad.topics[0].partitions[0].error),
        Some(ErrorCode::IllegalGeneration)
    );
    let bad = c
        .offset_commit(commit_req("g1", "who", 1, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        code(&bad.topics[0].partitions[0].error),
        Some(ErrorCode::UnknownMemberId)
    );
    let ok = c
        .offset_commit(commit_req("g1", &member, 1, 42))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&ok.topics[0].partitions[0].error), None);
    assert_eq!(fetched(&mut c, "g1").await, 42);

    let d = c
        .describe_groups(pb::DescribeGroupsRequest {
            group_ids: vec!["g1".into(), "nobody".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.groups[0].group_state, "Stable");
    assert_eq!(d.groups[0].members.len(), 1);
    assert_eq!(d.groups[0].members[0].client_host, "/127.0.0.1");
    assert_eq!(d.groups[1].group_state, "Dead");

    // A non-empty group cannot be deleted.
    let del = c
        .delete_groups(pb::DeleteGroupsRequest {
            group_ids: vec!["g1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&del.results[0].error), Some(ErrorCode::NonEmptyGroup));

    // An empty group takes "simple" commits (generation -1, no member).
    let simple = c
        .offset_commit(commit_req("g2", "", -1, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&simple.topics[0].partitions[0].error), None);

    node.shutdown().await.unwrap();
    let node = start(dir.path()).await;
    let mut c = coordinator(&node, "g1").await;
    assert_eq!(
        fetched(&mut c, "g1").await,
        42,
        "replayed from __consumer_offsets"
    );
    assert_eq!(fetched(&mut c, "g2").await, 9);
    // The member came back with the group record; it can leave, and then the
    // group can be deleted with its offsets.
    let l = c
        .leave_group(pb::LeaveGroupRequest {
            group_id: "g1".into(),
            members: vec![pb::MemberIdentity {
                member_id: member.clone(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&l.members[0].error), None, "{l:?}");
    let del = c
        .delete_groups(pb::DeleteGroupsRequest {
            group_ids: vec!["g1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&del.results[0].error), None);
    assert_eq!(fetched(&mut c, "g1").await, -1);
    let listed = c
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, ["g2"]);
    node.shutdown().await.unwrap();
}

/// Concurrent commits of the same partitions: whatever order they land in the
/// log, the coordinator must answer OffsetFetch with the value the log ends
/// with, or a restart (or a coordinator move) silently rewinds or skips the
/// group's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_read_back_as_the_log_replays_them() {
    const GROUPS: usize = 24;
    const RACERS: i64 = 6;
    const PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let group = |i: usize| format!("race-{i}");
    let commit = |g: String, offset: i64| pb::OffsetCommitRequest {
        group_id: g,
        generation_id: -1,
        topics: vec![pb::OffsetCommitTopic {
            name: "t".into(),
            partitions: (0..PARTITIONS)
                .map(|partition| pb::OffsetCommitPartition {
                    partition,
                    committed_offset: offset,
                    committed_leader_epoch: -1,
                    metadata: String::new(),
                })
                .collect(),
        }],
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for i in 0..GROUPS {
        let c = coordinator(&node, &group(i)).await;
        for k in 0..RACERS {
            let (mut c, req) = (c.clone(), commit(group(i), 100 + k));
            tasks.push(tokio::spawn(async move {
                let r = c.offset_commit(req).await.unwrap().into_inner();
                for p in &r.topics[0].partitions {
                    assert_eq!(code(&p.error), None, "{r:?}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read_all = |node: &Standalone| {
        let addr = node.addr;
        async move {
            let mut out = Vec::new();
            for i in 0..GROUPS {
                let mut c = GroupCoordinatorClient::connect(format!("http://{addr}"))
                    .await
                    .unwrap();
                let r = c
                    .offset_fetch(pb::OffsetFetchRequest {
                        group_id: group(i),
                        topics: vec![pb::OffsetFetchTopic {
                            name: "t".into(),
                            partitions: (0..PARTITIONS).collect(),
                        }],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(code(&r.error), None);
                let offsets: Vec<i64> = r.topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.committed_offset)
                    .collect();
                // One commit carries every partition, so they all agree.
                assert!(offsets.iter().all(|o| *o == offsets[0]), "{offsets:?}");
                assert!((100..100 + RACERS).contains(&offsets[0]), "{offsets:?}");
                out.push(offsets[0]);
            }
            out
        }
    };
    let served = read_all(&node).await;
    node.shutdown().await.unwrap();
    let node = start(dir.path()).await;
    // Wait for every group's partition to be loaded again.
    for i in 0..GROUPS {
        coordinator(&node, &group(i)).await;
    }
    let replayed = read_all(&node).await;
    assert_eq!(served, replayed, "served before the restart vs replayed");
    node.shutdown().await.unwrap();
}
