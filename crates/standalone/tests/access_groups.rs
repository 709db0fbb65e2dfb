//! Group access on the gRPC face of a node with ACLs on: what a
//! consumer-protocol member needs beside Read on its group.

use std::time::{Duration, Instant};

use sluice_auth::{Operation, ResourceType};
use sluice_client::{ErrorCode, NewTopic};
use sluice_proto::coordinator as gpb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;

mod secured;
use secured::{acl, admin, channel, node, setup_user};

/// A consumer-protocol member needs Describe on the topics it subscribes to
/// (Kafka's rule), beside Read on the group.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_protocol_subscription_needs_describe_on_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let a = admin(&node);
    a.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let bob = setup_user(&node, "bob").await;
    a.create_acls(&[acl(ResourceType::Group, "g", "User:bob", Operation::Read)])
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| r.unwrap());
    // Standalone serves every service on one address.
    let mut groups = GroupCoordinatorClient::new(channel(&node, &bob));
    let join = || gpb::ConsumerGroupHeartbeatRequest {
        group_id: "g".into(),
        member_id: "bob-1".into(),
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(gpb::TopicNames {
            names: vec!["t".into()],
        }),
        owned: Some(Default::default()),
        ..Default::default()
    };
    let r = groups
        .consumer_group_heartbeat(join())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.error.map(|e| e.code),
        Some(ErrorCode::TopicAuthorizationFailed as i32)
    );
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
    // FindCoordinator creates __consumer_offsets and waits for its load.
    a.describe_consumer_group("g").await.unwrap();
    let start = Instant::now();
    loop {
        let r = groups
            .consumer_group_heartbeat(join())
            .await
            .unwrap()
            .into_inner();
        if r.error.is_none() {
            assert_eq!(r.member_epoch, 1);
            assert_eq!(r.assignment.unwrap().topics[0].partitions, [0]);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", r.error);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await.unwrap();
}
