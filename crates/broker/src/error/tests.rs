//! The code of every variant, and what messages say.

use super::*;

/// Lists every variant once: `name` is an exhaustive match (a new
/// variant does not compile until it is listed here) and [`ALL`] the
/// names the table below must cover.
macro_rules! variants {
    ($($v:ident),* $(,)?) => {
        fn name(e: &BrokerError) -> &'static str {
            match e {
                $(BrokerError::$v { .. } => stringify!($v),)*
            }
        }
        const ALL: &[&str] = &[$(stringify!($v)),*];
    };
}

variants!(
    UnknownTopic,
    UnknownPartition,
    InvalidTopicName,
    NotHosted,
    NotLeader,
    NotReplica,
    FencedLeaderEpoch,
    UnknownLeaderEpoch,
    NoLiveLeader,
    PartitionBeingCreated,
    StaleBrokerEpoch,
    InvalidRequiredAcks,
    EmptyProduce,
    EncodeRecords,
    ControlBatchFromClient,
    DelayIndex,
    InvalidDelay,
    NotPendingDelay,
    InvalidBatch,
    NotEnoughReplicas,
    LeadershipMoved,
    ReplicationTimedOut,
    UnknownProducer,
    InvalidProducerEpoch,
    NewEpochSequence,
    OutOfOrderSequence,
    MixedDuplicateBatches,
    InvalidFetchSize,
    UnknownRecordFormat,
    CorruptStoredBatch,
    UnknownOffsetSpec,
    MaxTimestampUnsupported,
    DeleteBeyondHighWatermark,
    Storage,
    Checkpoint,
    OpenLogs,
    EmptyGroupId,
    NoGroupCoordinator,
    NoOffsetsTopic,
    OffsetsPartitionUnowned,
    CoordinatorNotAlive,
    NoController,
    ControllerUnreachable,
    BadEndpoint,
    Downstream,
    Forwarded,
    Denied,
    Config,
    MetadataStore,
    AlreadyRegistered,
    ShutDown,
    TaskFailed,
);

fn t() -> String {
    "orders".to_string()
}

fn transport_error() -> tonic::transport::Error {
    tonic::transport::Endpoint::from_shared("not a uri".to_string()).unwrap_err()
}

async fn join_error() -> tokio::task::JoinError {
    let task = tokio::spawn(std::future::pending::<()>());
    task.abort();
    task.await.unwrap_err()
}

fn io() -> StorageError {
    StorageError::Io {
        op: "write",
        path: "/data/orders-3/00000000000000000000.log".into(),
        source: std::io::Error::other("disk full"),
    }
}

fn api(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(code, message)
}

/// Every variant (and every code a variant can take) with its code.
#[tokio::test]
async fn every_variant_maps_to_its_code() {
    use BrokerError as E;
    use ErrorCode as C;
    let partition = 3;
    let records = || RecordsError::Truncated {
        position: 0,
        needed: 61,
        available: 12,
    };
    let coordinator = || Peer::Coordinator {
        group: Some("billing".into()),
    };
    #[rustfmt::skip]
    let table: Vec<(BrokerError, ErrorCode)> = vec![
        (E::UnknownTopic { topic: t() }, C::UnknownTopicOrPartition),
        (E::UnknownPartition { topic: t(), partition }, C::UnknownTopicOrPartition),
        (E::InvalidTopicName { topic: "a b".into(), reason: "invalid topic name \"a b\"".into() }, C::InvalidTopicException),
        (E::NotHosted { topic: t(), partition, broker: 1 }, C::NotLeaderOrFollower),
        (E::NotLeader { topic: t(), partition, broker: 1, leader: 2 }, C::NotLeaderOrFollower),
        (E::NotReplica { topic: t(), partition, follower: 4 }, C::NotLeaderOrFollower),
        (E::FencedLeaderEpoch { topic: t(), partition, requested: 5, current: 7 }, C::FencedLeaderEpoch),
        (E::UnknownLeaderEpoch { topic: t(), partition, requested: 9, current: 7 }, C::UnknownLeaderEpoch),
        (E::NoLiveLeader { topic: t(), partition, leader: 2 }, C::LeaderNotAvailable),
        (E::PartitionBeingCreated { topic: t(), partition }, C::LeaderNotAvailable),
        (E::StaleBrokerEpoch { broker: 2, epoch: 10, current: 12 }, C::StaleBrokerEpoch),
        (E::InvalidRequiredAcks { acks: 2 }, C::InvalidRequiredAcks),
        (E::EmptyProduce { topic: t(), partition }, C::InvalidRequest),
        (E::EncodeRecords { topic: t(), partition, source: RecordsError::Encode { reason: "x".into() } }, C::CorruptMessage),
        (E::ControlBatchFromClient { topic: t(), partition }, C::InvalidRecord),
        (E::NotPendingDelay { topic: t(), partition, id: 4 }, C::InvalidRequest),
        (E::InvalidDelay { topic: t(), partition, source: sluice_delay::DelayError::OutOfRange { asked_by: "h", delay_ms: 5, min_ms: 1000, max_ms: 2000 } }, C::InvalidRecord),
        (E::DelayIndex { topic: t(), partition, source: sluice_delay::DelayError::CorruptIndex { path: "x".into(), reason: "y".into() } }, C::KafkaStorageError),
        (E::InvalidBatch { topic: t(), partition, source: records() }, C::CorruptMessage),
        (E::InvalidBatch { topic: t(), partition, source: RecordsError::TooLarge { limit: 32 << 20 } }, C::MessageTooLarge),
        (E::NotEnoughReplicas { topic: t(), partition, isr: vec![1], min_insync: 2 }, C::NotEnoughReplicas),
        (E::LeadershipMoved { topic: t(), partition, leader_epoch: 7, first_offset: 10, last_offset: 19 }, C::NotLeaderOrFollower),
        (E::ReplicationTimedOut { topic: t(), partition, first_offset: 10, last_offset: 19 }, C::RequestTimedOut),
        (E::UnknownProducer { topic: t(), partition, producer_id: 42, sequence: 5 }, C::OutOfOrderSequenceNumber),
        (E::InvalidProducerEpoch { topic: t(), partition, producer_id: 42, epoch: 1, current: 3 }, C::InvalidProducerEpoch),
        (E::NewEpochSequence { topic: t(), partition, producer_id: 42, epoch: 4, sequence: 8 }, C::OutOfOrderSequenceNumber),
        (E::OutOfOrderSequence { topic: t(), partition, producer_id: 42, expected: 5, got: 9 }, C::OutOfOrderSequenceNumber),
        (E::MixedDuplicateBatches { topic: t(), partition }, C::OutOfOrderSequenceNumber),
        (E::InvalidFetchSize { max_bytes: -1, min_bytes: 1, max_wait_ms: 500 }, C::InvalidFetchSize),
        (E::UnknownRecordFormat { format: 9 }, C::InvalidRequest),
        (E::CorruptStoredBatch { topic: t(), partition, source: records() }, C::CorruptMessage),
        (E::UnknownOffsetSpec { topic: t(), partition, spec: 9 }, C::InvalidRequest),
        (E::MaxTimestampUnsupported { topic: t(), partition }, C::UnsupportedVersion),
        (E::DeleteBeyondHighWatermark { topic: t(), partition, offset: 90, high_watermark: 80 }, C::OffsetOutOfRange),
        (E::Storage { topic: t(), partition, source: io() }, C::KafkaStorageError),
        (E::Storage { topic: t(), partition, source: StorageError::MessageTooLarge { size: 2 << 20, max: 1 << 20 } }, C::MessageTooLarge),
        (E::Storage { topic: t(), partition, source: StorageError::CorruptMessage(records()) }, C::CorruptMessage),
        (E::Storage { topic: t(), partition, source: StorageError::InvalidRecord { reason: "x".into() } }, C::CorruptMessage),
        (E::Storage { topic: t(), partition, source: StorageError::OffsetOutOfRange { offset: 5, log_start: 10, log_end: 20 } }, C::OffsetOutOfRange),
        (E::Storage { topic: t(), partition, source: StorageError::NoLogDirs }, C::UnknownServerError),
        (E::Checkpoint { checkpoint: "high watermark", source: io() }, C::KafkaStorageError),
        (E::OpenLogs { source: io() }, C::KafkaStorageError),
        (E::EmptyGroupId, C::InvalidGroupId),
        (E::NoGroupCoordinator { group: "billing".into() }, C::CoordinatorNotAvailable),
        (E::NoOffsetsTopic, C::CoordinatorNotAvailable),
        (E::OffsetsPartitionUnowned { partition: 17 }, C::CoordinatorNotAvailable),
        (E::CoordinatorNotAlive { coordinator: 3, partition: 17 }, C::CoordinatorNotAvailable),
        (E::NoController { call: ControllerCall::AutoCreateTopics }, C::LeaderNotAvailable),
        (E::NoController { call: ControllerCall::AllocateProducerIds }, C::CoordinatorLoadInProgress),
        (E::NoController { call: ControllerCall::CreateOffsetsTopic }, C::CoordinatorNotAvailable),
        (E::NoController { call: ControllerCall::ForwardAdmin }, C::NotController),
        (E::NoController { call: ControllerCall::AlterPartition }, C::NotController),
        (E::ControllerUnreachable { call: ControllerCall::AllocateProducerIds, controller: 1, url: "http://c:9093".into(), source: transport_error() }, C::CoordinatorLoadInProgress),
        (E::BadEndpoint { peer: Peer::Broker(2), url: "not a uri".into(), source: transport_error() }, C::UnknownServerError),
        // The controller could not answer: the call's own retriable code.
        (E::Downstream { call: ControllerCall::AutoCreateTopics, source: api(C::NotController, "standby") }, C::LeaderNotAvailable),
        (E::Downstream { call: ControllerCall::AllocateProducerIds, source: api(C::MetadataStoreUnavailable, "etcd") }, C::CoordinatorLoadInProgress),
        (E::Downstream { call: ControllerCall::CreateOffsetsTopic, source: api(C::NetworkException, "reset") }, C::CoordinatorNotAvailable),
        (E::Downstream { call: ControllerCall::AutoCreateTopics, source: api(C::StaleBrokerEpoch, "old") }, C::LeaderNotAvailable),
        // It answered about the request: that passes.
        (E::Downstream { call: ControllerCall::AutoCreateTopics, source: api(C::InvalidReplicationFactor, "rf") }, C::InvalidReplicationFactor),
        (E::Forwarded { to: coordinator(), source: api(C::NetworkException, "reset") }, C::NotCoordinator),
        (E::Forwarded { to: coordinator(), source: api(C::UnknownServerError, "gone") }, C::NotCoordinator),
        (E::Forwarded { to: coordinator(), source: api(C::RequestTimedOut, "slow") }, C::NotCoordinator),
        (E::Forwarded { to: coordinator(), source: api(C::RebalanceInProgress, "rebalancing") }, C::RebalanceInProgress),
        (E::Forwarded { to: Peer::Controller, source: api(C::TopicAlreadyExists, "exists") }, C::TopicAlreadyExists),
        (E::Forwarded { to: Peer::Controller, source: api(C::NetworkException, "reset") }, C::NetworkException),
        (E::Denied(api(C::TopicAuthorizationFailed, "User:bob may not Write Topic \"t\"")), C::TopicAuthorizationFailed),
        (E::Config(ConfigError::invalid("broker.id", "must be >= 0")), C::InvalidConfig),
        (E::MetadataStore { action: "register the broker", source: MetaError::LeaseNotFound { lease: 7 } }, C::MetadataStoreUnavailable),
        (E::AlreadyRegistered { broker: 1 }, C::InvalidConfig),
        (E::ShutDown { during: "registering" }, C::UnknownServerError),
        (E::TaskFailed { task: "DeleteRecords", source: join_error().await }, C::UnknownServerError),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (e, code) in table {
        covered.insert(name(&e));
        let message = e.to_string();
        assert_eq!(e.code(), code, "{} ({message})", name(&e));
        let wire = ApiError::from(e);
        assert_eq!((wire.code, wire.message), (code, message));
    }
    let missing: Vec<_> = ALL.iter().filter(|v| !covered.contains(*v)).collect();
    assert!(missing.is_empty(), "variants without a row: {missing:?}");
}

#[test]
fn messages_name_the_ids() {
    let cases = [
        (
            BrokerError::NotLeader {
                topic: t(),
                partition: 3,
                broker: 1,
                leader: 2,
            },
            "broker 1 is not the leader of orders-3 (leader is 2)",
        ),
        (
            BrokerError::FencedLeaderEpoch {
                topic: t(),
                partition: 3,
                requested: 5,
                current: 7,
            },
            "orders-3: leader epoch 5 is older than 7",
        ),
        (
            BrokerError::OutOfOrderSequence {
                topic: t(),
                partition: 3,
                producer_id: 42,
                expected: 5,
                got: 9,
            },
            "orders-3: producer 42 sent sequence 9, expected 5",
        ),
        (
            BrokerError::InvalidProducerEpoch {
                topic: t(),
                partition: 3,
                producer_id: 42,
                epoch: 1,
                current: 3,
            },
            "orders-3: producer 42 epoch 1 is older than 3",
        ),
        (
            BrokerError::NotEnoughReplicas {
                topic: t(),
                partition: 3,
                isr: vec![1],
                min_insync: 2,
            },
            "orders-3 has 1 in-sync replicas, min.insync.replicas is 2",
        ),
        (
            BrokerError::LeadershipMoved {
                topic: t(),
                partition: 3,
                leader_epoch: 7,
                first_offset: 10,
                last_offset: 19,
            },
            "orders-3: leadership moved while offsets 10..=19 were replicating; retry on the new leader",
        ),
        (
            BrokerError::StaleBrokerEpoch {
                broker: 2,
                epoch: 10,
                current: 12,
            },
            "broker 2 fetched in registration epoch 10; its current registration is 12",
        ),
        (
            BrokerError::Storage {
                topic: t(),
                partition: 3,
                source: io(),
            },
            "orders-3: write /data/orders-3/00000000000000000000.log: disk full",
        ),
        (
            BrokerError::CoordinatorNotAlive {
                coordinator: 3,
                partition: 17,
            },
            "coordinator 3 (owner of __consumer_offsets-17) is not alive; waiting for the controller to move it",
        ),
        (
            BrokerError::NoController {
                call: ControllerCall::AllocateProducerIds,
            },
            "no active controller to allocate producer ids",
        ),
    ];
    for (e, message) in cases {
        assert_eq!(e.to_string(), message);
    }
}

#[test]
fn downstream_errors_are_wrapped_not_reraised() {
    // Unavailable: the call's code, the controller's answer as context.
    let e = BrokerError::Downstream {
        call: ControllerCall::AutoCreateTopics,
        source: api(ErrorCode::NotController, "controller 2 is a standby"),
    };
    let wire = ApiError::from(e);
    assert_eq!(wire.code, ErrorCode::LeaderNotAvailable);
    assert_eq!(
        wire.message,
        "auto-creating topics: NOT_CONTROLLER: controller 2 is a standby"
    );
    // An answer about the request passes with its own wording.
    let e = BrokerError::Downstream {
        call: ControllerCall::AutoCreateTopics,
        source: api(
            ErrorCode::InvalidReplicationFactor,
            "replication factor 3 exceeds 1 live broker",
        ),
    };
    assert_eq!(e.to_string(), "replication factor 3 exceeds 1 live broker");
    // A coordinator that did not answer: find it again; the wording stays.
    let status = tonic::Status::unavailable("connection refused");
    let e = BrokerError::forwarded(Peer::Coordinator { group: None }, &status);
    assert_eq!(e.code(), ErrorCode::NotCoordinator);
    assert_eq!(e.to_string(), "connection refused (Unavailable)");
}

#[test]
fn the_status_carries_the_code() {
    let status = tonic::Status::from(BrokerError::FencedLeaderEpoch {
        topic: t(),
        partition: 3,
        requested: 5,
        current: 7,
    });
    let back = ApiError::from_status(&status);
    assert_eq!(back.code, ErrorCode::FencedLeaderEpoch);
    assert_eq!(back.message, "orders-3: leader epoch 5 is older than 7");
    let proto = BrokerError::EmptyGroupId.to_proto();
    assert_eq!(proto.code, ErrorCode::InvalidGroupId as i32);
    assert_eq!(proto.message, "the group id is empty");
}
