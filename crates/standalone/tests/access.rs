//! Access control on the gRPC face of a real node (SASL_PLAINTEXT listener,
//! ACLs on, `User:admin` a super user): every method in the access table
//! refused to a user without ACLs, with Kafka's code and nothing changed;
//! listings that reveal nothing; passwords and tokens (a revoked token ends
//! an open Fetch long poll); ACL changes applied within a second. The Kafka
//! face's side is tests/kafka/test_sasl_acl.py.

use std::time::{Duration, Instant};

use sluice_auth::{Operation, ResourceType};
use sluice_client::security_admin::AclFilter;
use sluice_client::{Admin, ClientConfig, ErrorCode, NewTopic, Producer, ProducerRecord};
use sluice_proto::broker as bpb;
use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::controller as cpb;
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_proto::coordinator as gpb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_standalone::Standalone;
use sluice_types::ApiError;

mod secured;
use secured::{acl, admin, channel, config, node, setup_user};

/// The first error code an answer carries (the status's, or the first
/// per-entry error), NONE when there is none.
fn first(status: Result<Vec<Option<sluice_proto::common::Error>>, tonic::Status>) -> ErrorCode {
    match status {
        Err(s) => ApiError::from_status(&s).code,
        Ok(errors) => errors
            .into_iter()
            .flatten()
            .find(|e| e.code != 0)
            .and_then(|e| ErrorCode::try_from(e.code).ok())
            .unwrap_or(ErrorCode::None),
    }
}

/// The end offset of partition 0 of `topic`, as admin reads it.
async fn end_offset(node: &Standalone, topic: &str) -> i64 {
    let mut b = BrokerClient::new(channel(node, &config(node, "admin", "admin-secret")));
    let r = b
        .list_offsets(bpb::ListOffsetsRequest {
            topics: vec![bpb::ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![bpb::ListOffsetsPartition {
                    partition: 0,
                    spec: bpb::OffsetSpec::Latest as i32,
                    timestamp_ms: 0,
                }],
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = &r.topics[0].partitions[0];
    assert!(p.error.is_none(), "{:?}", p.error);
    p.offset
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_is_refused_to_a_user_without_acls_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let a = admin(&node);
    a.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let nobody = setup_user(&node, "nobody").await;
    let ch = channel(&node, &nobody);
    let mut broker = BrokerClient::new(ch.clone());
    let mut controller = ControllerClient::new(ch.clone());
    let mut groups = GroupCoordinatorClient::new(ch);
    let topic = |name: &str| name.to_string();
    use ErrorCode::{
        ClusterAuthorizationFailed as C, GroupAuthorizationFailed as G,
        TopicAuthorizationFailed as T,
    };
    let mut cases: Vec<(&str, ErrorCode, ErrorCode)> = Vec::new();
    macro_rules! case {
        ($name:literal, $want:expr, $call:expr, |$r:ident| $errs:expr) => {{
            let got = first($call.await.map(|r| {
                let $r = r.into_inner();
                $errs
            }));
            cases.push(($name, $want, got));
        }};
    }
    case!(
        "Broker/Metadata",
        T,
        broker.metadata(bpb::MetadataRequest {
            topics: vec![topic("t")],
            ..Default::default()
        }),
        |r| r.topics.into_iter().map(|t| t.error).collect()
    );
    case!(
        "Broker/Produce",
        T,
        broker.produce(bpb::ProduceRequest {
            acks: -1,
            timeout_ms: 1000,
            topics: vec![bpb::TopicProduceData {
                name: topic("t"),
                partitions: vec![bpb::PartitionProduceData {
                    partition: 0,
                    records: vec![Default::default()],
                    ..Default::default()
                }]
            }]
        }),
        |r| r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.error)
            .collect()
    );
    case!(
        "Broker/Fetch",
        T,
        broker.fetch(bpb::FetchRequest {
            max_wait_ms: 10,
            topics: vec![bpb::FetchTopic {
                name: topic("t"),
                partitions: vec![Default::default()]
            }],
            ..Default::default()
        }),
        |r| r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.error)
            .collect()
    );
    case!(
        "Broker/ListOffsets",
        T,
        broker.list_offsets(bpb::ListOffsetsRequest {
            topics: vec![bpb::ListOffsetsTopic {
                name: topic("t"),
                partitions: vec![Default::default()]
            }],
            ..Default::default()
        }),
        |r| r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.error)
            .collect()
    );
    case!(
        "Broker/ReplicaFetch",
        C,
        broker.replica_fetch(bpb::ReplicaFetchRequest {
            replica_id: 1,
            ..Default::default()
        }),
        |_r| vec![]
    );
    case!(
        "Broker/FindCoordinator",
        G,
        broker.find_coordinator(bpb::FindCoordinatorRequest {
            keys: vec!["g".into()],
            ..Default::default()
        }),
        |r| r.coordinators.into_iter().map(|c| c.error).collect()
    );
    case!(
        "Broker/InitProducerId",
        C,
        broker.init_producer_id(bpb::InitProducerIdRequest::default()),
        |r| vec![r.error]
    );
    case!(
        "Broker/DescribeLogDirs",
        C,
        broker.describe_log_dirs(bpb::DescribeLogDirsRequest::default()),
        |r| r.log_dirs.into_iter().map(|d| d.error).collect()
    );
    case!(
        "Broker/DeleteRecords",
        T,
        broker.delete_records(bpb::DeleteRecordsRequest {
            topics: vec![bpb::DeleteRecordsTopic {
                name: topic("t"),
                partitions: vec![Default::default()]
            }],
            timeout_ms: 1000
        }),
        |r| r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.error)
            .collect()
    );
    case!(
        "Broker/DescribeDelayed",
        T,
        broker.describe_delayed(bpb::DescribeDelayedRequest {
            topics: vec![topic("t")]
        }),
        |_r| vec![]
    );
    case!(
        "Broker/CancelDelayed",
        T,
        broker.cancel_delayed(bpb::CancelDelayedRequest {
            topic: topic("t"),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "Controller/CreateTopics",
        T,
        controller.create_topics(cpb::CreateTopicsRequest {
            topics: vec![cpb::CreatableTopic {
                name: topic("new"),
                num_partitions: 1,
                replication_factor: 1,
                ..Default::default()
            }],
            ..Default::default()
        }),
        |r| r.topics.into_iter().map(|t| t.error).collect()
    );
    case!(
        "Controller/DeleteTopics",
        T,
        controller.delete_topics(cpb::DeleteTopicsRequest {
            names: vec![topic("t")],
            ..Default::default()
        }),
        |r| r.topics.into_iter().map(|t| t.error).collect()
    );
    case!(
        "Controller/CreatePartitions",
        T,
        controller.create_partitions(cpb::CreatePartitionsRequest {
            topics: vec![cpb::CreatePartitionsTopic {
                name: topic("t"),
                count: 3,
                ..Default::default()
            }],
            ..Default::default()
        }),
        |r| r.topics.into_iter().map(|t| t.error).collect()
    );
    case!(
        "Controller/DescribeCluster",
        ErrorCode::None,
        controller.describe_cluster(cpb::DescribeClusterRequest::default()),
        |_r| vec![]
    );
    case!(
        "Controller/AlterConfigs",
        T,
        controller.alter_configs(cpb::AlterConfigsRequest {
            resources: vec![cpb::AlterConfigsResource {
                resource_type: cpb::ConfigResourceType::Topic as i32,
                resource_name: topic("t"),
                configs: vec![cpb::AlterableConfig {
                    name: "retention.ms".into(),
                    value: Some("1".into()),
                    ..Default::default()
                }]
            }],
            ..Default::default()
        }),
        |r| r.results.into_iter().map(|x| x.error).collect()
    );
    case!(
        "Controller/AlterPartition",
        C,
        controller.alter_partition(cpb::AlterPartitionRequest {
            broker_id: 1,
            ..Default::default()
        }),
        |_r| vec![]
    );
    case!(
        "Controller/AllocateProducerIds",
        C,
        controller.allocate_producer_ids(cpb::AllocateProducerIdsRequest {
            broker_id: 1,
            broker_epoch: 1
        }),
        |r| vec![r.error]
    );
    case!(
        "Controller/EnsureOffsetsTopic",
        C,
        controller.ensure_offsets_topic(cpb::EnsureOffsetsTopicRequest::default()),
        |r| vec![r.error]
    );
    case!(
        "Controller/CreateAcls",
        C,
        controller.create_acls(cpb::CreateAclsRequest::default()),
        |r| r.results.into_iter().map(Some).collect()
    );
    case!(
        "Controller/DescribeAcls",
        C,
        controller.describe_acls(cpb::DescribeAclsRequest::default()),
        |_r| vec![]
    );
    case!(
        "Controller/DeleteAcls",
        C,
        controller.delete_acls(cpb::DeleteAclsRequest {
            filters: vec![AclFilter::default()]
        }),
        |r| r.results.into_iter().map(|x| x.error).collect()
    );
    case!(
        "Controller/AlterUserScramCredentials",
        C,
        controller.alter_user_scram_credentials(cpb::AlterUserScramCredentialsRequest {
            deletions: vec![cpb::ScramCredentialDeletion {
                user: "admin".into(),
                mechanism: "SCRAM-SHA-256".into()
            }],
            ..Default::default()
        }),
        |r| r.results.into_iter().map(|x| x.error).collect()
    );
    case!(
        "Controller/DescribeUserScramCredentials",
        C,
        controller
            .describe_user_scram_credentials(cpb::DescribeUserScramCredentialsRequest::default()),
        |_r| vec![]
    );
    case!(
        "Controller/CreateToken",
        C,
        controller.create_token(cpb::CreateTokenRequest {
            principal: "User:admin".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "Controller/RevokeToken",
        C,
        controller.revoke_token(cpb::RevokeTokenRequest {
            token_id: "0123456789abcdef".into()
        }),
        |r| vec![r.error]
    );
    case!(
        "Controller/DescribeTokens",
        C,
        controller.describe_tokens(cpb::DescribeTokensRequest {}),
        |_r| vec![]
    );
    case!(
        "Controller/AlterClientQuotas",
        C,
        controller.alter_client_quotas(cpb::AlterClientQuotasRequest {
            alterations: vec![cpb::QuotaAlteration {
                entity: Some(cpb::QuotaEntity {
                    entity_type: "user".into(),
                    name: "nobody".into(),
                }),
                key: "producer_byte_rate".into(),
                value: Some(1e12),
            }],
        }),
        |r| r.results.into_iter().map(Some).collect()
    );
    case!(
        "Controller/DescribeClientQuotas",
        C,
        controller.describe_client_quotas(cpb::DescribeClientQuotasRequest {}),
        |_r| vec![]
    );
    case!(
        "GroupCoordinator/JoinGroup",
        G,
        groups.join_group(gpb::JoinGroupRequest {
            group_id: "g".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/SyncGroup",
        G,
        groups.sync_group(gpb::SyncGroupRequest {
            group_id: "g".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/Heartbeat",
        G,
        groups.heartbeat(gpb::HeartbeatRequest {
            group_id: "g".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/LeaveGroup",
        G,
        groups.leave_group(gpb::LeaveGroupRequest {
            group_id: "g".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/OffsetCommit",
        G,
        groups.offset_commit(gpb::OffsetCommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            ..Default::default()
        }),
        |r| r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.error)
            .collect()
    );
    case!(
        "GroupCoordinator/OffsetFetch",
        G,
        groups.offset_fetch(gpb::OffsetFetchRequest {
            group_id: "g".into(),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/DescribeGroups",
        G,
        groups.describe_groups(gpb::DescribeGroupsRequest {
            group_ids: vec!["g".into()]
        }),
        |r| r.groups.into_iter().map(|g| g.error).collect()
    );
    case!(
        "GroupCoordinator/DeleteGroups",
        G,
        groups.delete_groups(gpb::DeleteGroupsRequest {
            group_ids: vec!["g".into()]
        }),
        |r| r.results.into_iter().map(|g| g.error).collect()
    );
    case!(
        "GroupCoordinator/ConsumerGroupHeartbeat",
        G,
        groups.consumer_group_heartbeat(gpb::ConsumerGroupHeartbeatRequest {
            group_id: "g".into(),
            rebalance_timeout_ms: 10_000,
            subscribed_topic_names: Some(gpb::TopicNames {
                names: vec!["t".into()]
            }),
            owned: Some(Default::default()),
            ..Default::default()
        }),
        |r| vec![r.error]
    );
    case!(
        "GroupCoordinator/ConsumerGroupDescribe",
        G,
        groups.consumer_group_describe(gpb::ConsumerGroupDescribeRequest {
            group_ids: vec!["g".into()]
        }),
        |r| r.groups.into_iter().map(|g| g.error).collect()
    );
    // ListGroups lists only what the caller may describe: nothing here.
    let listed = groups
        .list_groups(gpb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.groups.is_empty(), "{:?}", listed.groups);
    cases.push(("GroupCoordinator/ListGroups", G, G));

    for (name, want, got) in &cases {
        assert_eq!(got, want, "{name}: expected {want:?}, got {got:?}");
    }
    // Every method in the table has a case above: a new one needs its own.
    for (name, _) in sluice_auth::table::GRPC {
        assert!(
            cases.iter().any(|(n, _, _)| n == name),
            "no denial case for {name}"
        );
    }

    // Nothing changed: t has no records and one partition, "new" was not
    // created, admin's credential, ACLs and tokens are as they were.
    let d = a.describe_topics(&["t".to_string()]).await.unwrap();
    assert_eq!(d[0].partitions.len(), 1);
    let listed = a.list_topics(false).await.unwrap();
    assert!(!listed.iter().any(|t| t.name == "new"));
    assert_eq!(end_offset(&node, "t").await, 0);
    assert!(
        a.describe_acls(AclFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(a.describe_tokens().await.unwrap().is_empty());
    assert!(a.describe_quotas().await.unwrap().is_empty());
    let users = a.describe_users(&["admin".to_string()]).await.unwrap();
    assert_eq!(users[0].credentials.len(), 1);
    // Listings reveal nothing: all topics shows none, and a topic that does
    // not exist is refused exactly like one that does.
    let nobody_admin = Admin::new(nobody.clone()).unwrap();
    assert!(nobody_admin.list_topics(false).await.unwrap().is_empty());
    for name in ["t", "missing"] {
        let e = nobody_admin
            .describe_topics(&[name.to_string()])
            .await
            .unwrap_err();
        assert_eq!(e.code(), T, "{name}: {e}");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_and_tokens_say_who_calls_and_a_revoked_token_ends_a_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let a = admin(&node);
    a.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    // A wrong password and an unknown user: refused alike.
    for (user, pw) in [("admin", "wrong"), ("ghost", "x")] {
        let e = Admin::new(config(&node, user, pw))
            .unwrap()
            .describe_cluster()
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::SaslAuthenticationFailed, "{user}: {e}");
    }
    a.create_acls(&[acl(ResourceType::Topic, "t", "User:alice", Operation::All)])
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| r.unwrap());
    let token = a.create_token("User:alice", None, "test").await.unwrap();
    let with_token = ClientConfig::new(&node.addr.to_string())
        .with("security.protocol", "SASL_PLAINTEXT")
        .unwrap()
        .with("sluice.token", &token.token)
        .unwrap();
    // The token acts as alice: her topic yes, the cluster no.
    let p = Producer::new(with_token.clone()).unwrap();
    p.send(ProducerRecord::new("t", "x"))
        .await
        .unwrap()
        .await
        .unwrap();
    p.close().await;
    let e = Admin::new(with_token.clone())
        .unwrap()
        .describe_acls(AclFilter::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ClusterAuthorizationFailed, "{e}");
    // An open Fetch long poll (30 s, no data coming) ends when the token is
    // revoked, with SASL_AUTHENTICATION_FAILED.
    let mut broker = BrokerClient::new(channel(&node, &with_token));
    let poll = tokio::spawn(async move {
        broker
            .fetch(bpb::FetchRequest {
                max_wait_ms: 30_000,
                min_bytes: 1 << 20,
                topics: vec![bpb::FetchTopic {
                    name: "t".into(),
                    partitions: vec![bpb::FetchPartition {
                        partition: 0,
                        fetch_offset: 1,
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revoked_at = Instant::now();
    a.revoke_token(&token.id).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll ended")
        .unwrap();
    let e = ended.unwrap_err();
    assert_eq!(
        ApiError::from_status(&e).code,
        ErrorCode::SaslAuthenticationFailed,
        "{e}"
    );
    eprintln!(
        "long poll ended {:?} after the revocation",
        revoked_at.elapsed()
    );
    let e = Admin::new(with_token)
        .unwrap()
        .list_topics(false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::SaslAuthenticationFailed, "{e}");
    // An expired token is refused like a revoked one.
    let short = a
        .create_token("User:alice", Some(Duration::from_millis(1)), "")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = ClientConfig::new(&node.addr.to_string())
        .with("security.protocol", "SASL_PLAINTEXT")
        .unwrap()
        .with("sluice.token", &short.token)
        .unwrap();
    let e = Admin::new(expired)
        .unwrap()
        .list_topics(false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::SaslAuthenticationFailed, "{e}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acl_change_applies_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let a = admin(&node);
    a.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let bob = setup_user(&node, "bob").await;
    let bob_admin = Admin::new(bob).unwrap();
    let sees = |admin: &Admin| {
        let admin = admin.clone();
        async move {
            admin
                .list_topics(false)
                .await
                .unwrap()
                .iter()
                .any(|t| t.name == "t")
        }
    };
    assert!(!sees(&bob_admin).await);
    let granted = Instant::now();
    a.create_acls(&[acl(
        ResourceType::Topic,
        "t",
        "User:bob",
        Operation::Describe,
    )])
    .await
    .unwrap()
    .into_iter()
    .for_each(|r| r.unwrap());
    while !sees(&bob_admin).await {
        assert!(
            granted.elapsed() < Duration::from_secs(1),
            "not applied within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let removed = Instant::now();
    let gone = a
        .delete_acls(vec![AclFilter {
            principal: Some("User:bob".into()),
            ..Default::default()
        }])
        .await
        .unwrap();
    assert_eq!(gone[0].as_ref().unwrap().len(), 1);
    while sees(&bob_admin).await {
        assert!(
            removed.elapsed() < Duration::from_secs(1),
            "not removed within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await.unwrap();
}
