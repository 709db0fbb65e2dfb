//! [`BrokerError`]: every error the broker raises, naming what happened and
//! carrying the ids involved, and its one conversion to the wire error.
//!
//! The stable code of each variant is chosen in [`BrokerError::code`] and
//! nowhere else; the message is the variant's `Display`. `From<BrokerError>`
//! gives the [`ApiError`] (per-partition errors in responses) and the
//! `tonic::Status` (whole-request failures); the Kafka face maps the same
//! code to Kafka's.
//!
//! Errors of other services are never re-raised as the broker's own:
//! [`BrokerError::Downstream`] wraps the controller's answer to a request the
//! broker made to serve a client (its availability codes become the client
//! request's own retriable code), [`BrokerError::Forwarded`] the answer to a
//! request relayed for a client (the answer is the client's, except that a
//! coordinator that could not be reached means "find the coordinator again").

use std::fmt;

use sluice_metastore::MetaError;
use sluice_proto::common;
use sluice_records::RecordsError;
use sluice_server::config::ConfigError;
use sluice_storage::StorageError;
use sluice_types::{ApiError, ErrorCode};

/// A request the broker makes to the active controller. Each names its
/// purpose in errors and has the code a client's request gets while the
/// controller cannot answer it (see [`BrokerError::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerCall {
    /// CreateTopics for topics a client named (`auto.create.topics.enable`).
    AutoCreateTopics,
    /// AllocateProducerIds, for InitProducerId.
    AllocateProducerIds,
    /// EnsureOffsetsTopic, on the first FindCoordinator.
    CreateOffsetsTopic,
    /// An admin request of a Kafka client, relayed.
    ForwardAdmin,
    /// AlterPartition: the leader's ISR shrinks or expands.
    AlterPartition,
}

impl ControllerCall {
    /// The call as context for its failure ("auto-creating topics: ...").
    fn doing(self) -> &'static str {
        match self {
            Self::AutoCreateTopics => "auto-creating topics",
            Self::AllocateProducerIds => "allocating producer ids",
            Self::CreateOffsetsTopic => "creating __consumer_offsets",
            Self::ForwardAdmin => "forwarding an admin request",
            Self::AlterPartition => "changing ISRs",
        }
    }
}

/// What the call is for, after "to" ("no active controller to ...").
impl fmt::Display for ControllerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AutoCreateTopics => "auto-create topics",
            Self::AllocateProducerIds => "allocate producer ids",
            Self::CreateOffsetsTopic => "create __consumer_offsets",
            Self::ForwardAdmin => "forward an admin request",
            Self::AlterPartition => "change ISRs",
        })
    }
}

/// Another service the broker talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The active controller.
    Controller,
    /// A group coordinator: the one owning `group`, or any (ListGroups).
    Coordinator { group: Option<String> },
    /// Another broker: a partition leader this one replicates from.
    Broker(i32),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Controller => f.write_str("controller"),
            Self::Coordinator { .. } => f.write_str("coordinator"),
            Self::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// Every error the broker raises. The code of each is in [`Self::code`].
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    // Which partition: unknown, elsewhere, or asked for in the wrong epoch.
    #[error("topic \"{topic}\" does not exist")]
    UnknownTopic { topic: String },
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    /// `reason` is the name check's, naming the topic.
    #[error("{reason}")]
    InvalidTopicName { topic: String, reason: String },
    #[error("broker {broker} does not host {topic}-{partition}")]
    NotHosted {
        topic: String,
        partition: i32,
        broker: i32,
    },
    #[error("broker {broker} is not the leader of {topic}-{partition} (leader is {leader})")]
    NotLeader {
        topic: String,
        partition: i32,
        broker: i32,
        leader: i32,
    },
    /// A ReplicaFetch from a broker the partition is not assigned to.
    #[error("broker {follower} is not a replica of {topic}-{partition}")]
    NotReplica {
        topic: String,
        partition: i32,
        follower: i32,
    },
    /// The client's leader epoch is older than this leader's (KIP-320).
    #[error("{topic}-{partition}: leader epoch {requested} is older than {current}")]
    FencedLeaderEpoch {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    /// The client's leader epoch is newer: this broker has not caught up.
    #[error("{topic}-{partition}: leader epoch {requested} is newer than {current}")]
    UnknownLeaderEpoch {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    /// Metadata: the partition's leader (-1: none) is not a live broker.
    #[error("{topic}-{partition} has no live leader")]
    NoLiveLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    #[error("{topic}-{partition} is being created")]
    PartitionBeingCreated { topic: String, partition: i32 },
    /// A ReplicaFetch from an older registration of `broker` (KIP-380).
    #[error(
        "broker {broker} fetched in registration epoch {epoch}; its current registration is {current}"
    )]
    StaleBrokerEpoch {
        broker: i32,
        epoch: i64,
        current: i64,
    },

    // Produce.
    #[error("acks must be 0, 1 or -1 (all), got {acks}")]
    InvalidRequiredAcks { acks: i32 },
    #[error("produce to {topic}-{partition} carries neither records nor record_batches")]
    EmptyProduce { topic: String, partition: i32 },
    /// The records of a produce request could not be made into a batch.
    #[error("{topic}-{partition}: {source}")]
    EncodeRecords {
        topic: String,
        partition: i32,
        source: RecordsError,
    },
    /// The replica's timer index of delayed records failed (its disk).
    #[error("{topic}-{partition}: timer index: {source}")]
    DelayIndex {
        topic: String,
        partition: i32,
        source: sluice_delay::DelayError,
    },
    /// A record's delay request is malformed or out of range: the whole
    /// batch is refused.
    #[error("{topic}-{partition}: {source}")]
    InvalidDelay {
        topic: String,
        partition: i32,
        source: sluice_delay::DelayError,
    },
    /// A cancellation of a delayed record that is not pending.
    #[error(
        "{topic}-{partition}: delay id {id} is not pending (already released, cancelled, or never a delayed record)"
    )]
    NotPendingDelay {
        topic: String,
        partition: i32,
        id: i64,
    },
    /// A control batch in a produce request: only the broker writes those
    /// (Kafka refuses them from clients too).
    #[error(
        "{topic}-{partition}: clients may not write control batches (or the reserved producer epoch -2 without a producer id); only the broker does"
    )]
    ControlBatchFromClient { topic: String, partition: i32 },
    /// A compressed batch that is corrupt or inflates past the limit.
    #[error("{topic}-{partition}: {source}")]
    InvalidBatch {
        topic: String,
        partition: i32,
        source: RecordsError,
    },
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`.
    #[error(
        "{topic}-{partition} has {} in-sync replicas, min.insync.replicas is {min_insync}",
        .isr.len()
    )]
    NotEnoughReplicas {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        min_insync: i32,
    },
    /// acks=all: the term this broker appended in (as leader in
    /// `leader_epoch`) ended before the high watermark covered the batch.
    #[error(
        "{topic}-{partition}: leadership moved while offsets {first_offset}..={last_offset} were replicating; retry on the new leader"
    )]
    LeadershipMoved {
        topic: String,
        partition: i32,
        leader_epoch: i32,
        first_offset: i64,
        last_offset: i64,
    },
    #[error(
        "{topic}-{partition}: replication of offsets {first_offset}..={last_offset} did not finish in time"
    )]
    ReplicationTimedOut {
        topic: String,
        partition: i32,
        first_offset: i64,
        last_offset: i64,
    },

    // Idempotent producers.
    #[error(
        "{topic}-{partition}: producer {producer_id} is unknown here and its first sequence is {sequence}, not 0"
    )]
    UnknownProducer {
        topic: String,
        partition: i32,
        producer_id: i64,
        sequence: i32,
    },
    #[error("{topic}-{partition}: producer {producer_id} epoch {epoch} is older than {current}")]
    InvalidProducerEpoch {
        topic: String,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "{topic}-{partition}: producer {producer_id} starts epoch {epoch} at sequence {sequence}, not 0"
    )]
    NewEpochSequence {
        topic: String,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    },
    #[error("{topic}-{partition}: producer {producer_id} sent sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        topic: String,
        partition: i32,
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("{topic}-{partition}: a request mixes already-written and new batches of one producer")]
    MixedDuplicateBatches { topic: String, partition: i32 },

    // Fetch, ListOffsets, DeleteRecords.
    #[error("max_bytes, min_bytes and max_wait_ms must not be negative")]
    InvalidFetchSize {
        max_bytes: i32,
        min_bytes: i32,
        max_wait_ms: i32,
    },
    #[error("unknown record format {format}")]
    UnknownRecordFormat { format: i32 },
    #[error("{topic}-{partition}: stored batch failed to decode: {source}")]
    CorruptStoredBatch {
        topic: String,
        partition: i32,
        source: RecordsError,
    },
    #[error("unknown offset spec {spec}")]
    UnknownOffsetSpec {
        topic: String,
        partition: i32,
        spec: i32,
    },
    #[error("OFFSET_SPEC_MAX_TIMESTAMP is not supported yet; use LATEST or a timestamp")]
    MaxTimestampUnsupported { topic: String, partition: i32 },
    #[error(
        "{topic}-{partition}: cannot delete records before {offset}: the high watermark is {high_watermark}"
    )]
    DeleteBeyondHighWatermark {
        topic: String,
        partition: i32,
        offset: i64,
        high_watermark: i64,
    },

    // The logs.
    /// The log of one partition failed; the code follows the storage error.
    #[error("{topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: i32,
        source: StorageError,
    },
    /// Writing the `checkpoint` file of every log dir failed (the storage
    /// error names the file).
    #[error("{source}")]
    Checkpoint {
        checkpoint: &'static str,
        source: StorageError,
    },
    #[error("open logs: {source}")]
    OpenLogs { source: StorageError },

    // Groups and their coordinators.
    #[error("the group id is empty")]
    EmptyGroupId,
    #[error("no live coordinator owns group {group}")]
    NoGroupCoordinator { group: String },
    #[error("__consumer_offsets does not exist yet")]
    NoOffsetsTopic,
    #[error(
        "no coordinator owns __consumer_offsets-{partition} yet (is a sluice-coordinator running?)"
    )]
    OffsetsPartitionUnowned { partition: i32 },
    #[error(
        "coordinator {coordinator} (owner of __consumer_offsets-{partition}) is not alive; waiting for the controller to move it"
    )]
    CoordinatorNotAlive { coordinator: i32, partition: i32 },

    // Other services.
    #[error("no active controller to {call}")]
    NoController { call: ControllerCall },
    #[error("cannot reach the controller at {url} to {call}: {source}")]
    ControllerUnreachable {
        call: ControllerCall,
        controller: i32,
        url: String,
        source: tonic::transport::Error,
    },
    #[error("bad {peer} endpoint {url}: {source}")]
    BadEndpoint {
        peer: Peer,
        url: String,
        source: tonic::transport::Error,
    },
    /// The controller's error (a status, or one in its response) for a
    /// request the broker made to serve a client. Its availability codes
    /// (see [`is_unavailable`]) mean nothing to the client: they become the
    /// call's own retriable code, with the controller's answer as context;
    /// what the client did wrong (an invalid name, a bad config) passes.
    #[error("{}", downstream_message(.call, .source))]
    Downstream {
        call: ControllerCall,
        source: ApiError,
    },
    /// The answer of `to` to a request relayed for a client: the client's
    /// answer, except that a coordinator that could not answer (a transport
    /// failure) is NOT_COORDINATOR, so the client finds it again.
    #[error("{}", .source.message)]
    Forwarded { to: Peer, source: ApiError },
    /// The caller may not (ACLs): TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED.
    #[error("{}", .0.message)]
    Denied(ApiError),

    // The broker's own life (startup); these never reach a client.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{action}: {source}")]
    MetadataStore {
        action: &'static str,
        source: MetaError,
    },
    #[error(
        "broker.id {broker} is already registered by a live broker; pick another broker.id or stop the other broker"
    )]
    AlreadyRegistered { broker: i32 },
    #[error("shut down while {during}")]
    ShutDown { during: &'static str },
    #[error("{task} task failed: {source}")]
    TaskFailed {
        task: &'static str,
        source: tokio::task::JoinError,
    },
}

/// The codes of a service that could not answer (or of the broker's own
/// standing with it), as opposed to an answer about the request.
fn is_unavailable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotController
            | ErrorCode::MetadataStoreUnavailable
            | ErrorCode::NetworkException
            | ErrorCode::RequestTimedOut
            | ErrorCode::UnknownServerError
            | ErrorCode::StaleBrokerEpoch
    )
}

/// A coordinator's codes that mean the request did not get through.
fn is_transport_failure(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NetworkException | ErrorCode::UnknownServerError | ErrorCode::RequestTimedOut
    )
}

fn downstream_message(call: &ControllerCall, source: &ApiError) -> String {
    if is_unavailable(source.code) {
        format!("{}: {source}", call.doing())
    } else {
        source.message.clone()
    }
}

impl BrokerError {
    /// The stable code of this error: the one place the broker chooses one.
    pub fn code(&self) -> ErrorCode {
        use BrokerError as E;
        match self {
            E::UnknownTopic { .. } | E::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            E::InvalidTopicName { .. } => ErrorCode::InvalidTopicException,
            E::NotHosted { .. }
            | E::NotLeader { .. }
            | E::NotReplica { .. }
            | E::LeadershipMoved { .. } => ErrorCode::NotLeaderOrFollower,
            E::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            E::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
            E::NoLiveLeader { .. } | E::PartitionBeingCreated { .. } => {
                ErrorCode::LeaderNotAvailable
            }
            E::StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
            E::InvalidRequiredAcks { .. } => ErrorCode::InvalidRequiredAcks,
            E::EmptyProduce { .. }
            | E::UnknownRecordFormat { .. }
            | E::UnknownOffsetSpec { .. } => ErrorCode::InvalidRequest,
            E::InvalidBatch {
                source: RecordsError::TooLarge { .. },
                ..
            } => ErrorCode::MessageTooLarge,
            E::EncodeRecords { .. } | E::InvalidBatch { .. } | E::CorruptStoredBatch { .. } => {
                ErrorCode::CorruptMessage
            }
            E::ControlBatchFromClient { .. } => ErrorCode::InvalidRecord,
            E::DelayIndex { .. } => ErrorCode::KafkaStorageError,
            E::InvalidDelay { .. } => ErrorCode::InvalidRecord,
            E::NotPendingDelay { .. } => ErrorCode::InvalidRequest,
            E::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            E::ReplicationTimedOut { .. } => ErrorCode::RequestTimedOut,
            E::UnknownProducer { .. }
            | E::NewEpochSequence { .. }
            | E::OutOfOrderSequence { .. }
            | E::MixedDuplicateBatches { .. } => ErrorCode::OutOfOrderSequenceNumber,
            E::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            E::InvalidFetchSize { .. } => ErrorCode::InvalidFetchSize,
            E::MaxTimestampUnsupported { .. } => ErrorCode::UnsupportedVersion,
            E::DeleteBeyondHighWatermark { .. } => ErrorCode::OffsetOutOfRange,
            E::Storage { source, .. } => match source {
                StorageError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
                StorageError::CorruptMessage(_) | StorageError::InvalidRecord { .. } => {
                    ErrorCode::CorruptMessage
                }
                StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                StorageError::Io { .. } => ErrorCode::KafkaStorageError,
                _ => ErrorCode::UnknownServerError,
            },
            E::Checkpoint { .. } | E::OpenLogs { .. } => ErrorCode::KafkaStorageError,
            E::EmptyGroupId => ErrorCode::InvalidGroupId,
            E::NoGroupCoordinator { .. }
            | E::NoOffsetsTopic
            | E::OffsetsPartitionUnowned { .. }
            | E::CoordinatorNotAlive { .. } => ErrorCode::CoordinatorNotAvailable,
            E::NoController { call } | E::ControllerUnreachable { call, .. } => {
                unavailable_controller(*call)
            }
            E::Downstream { call, source } if is_unavailable(source.code) => {
                unavailable_controller(*call)
            }
            E::Downstream { source, .. } => source.code,
            E::Forwarded {
                to: Peer::Coordinator { .. },
                source,
            } if is_transport_failure(source.code) => ErrorCode::NotCoordinator,
            E::Forwarded { source, .. } => source.code,
            E::Denied(e) => e.code,
            E::BadEndpoint { .. } | E::ShutDown { .. } | E::TaskFailed { .. } => {
                ErrorCode::UnknownServerError
            }
            E::Config(_) | E::AlreadyRegistered { .. } => ErrorCode::InvalidConfig,
            E::MetadataStore { .. } => ErrorCode::MetadataStoreUnavailable,
        }
    }

    /// The proto form, for per-entry errors in responses.
    pub fn to_proto(&self) -> common::Error {
        self.to_api().to_proto()
    }

    fn to_api(&self) -> ApiError {
        ApiError::new(self.code(), self.to_string())
    }

    /// A relayed request's failure status, decoded.
    pub(crate) fn forwarded(to: Peer, status: &tonic::Status) -> Self {
        Self::Forwarded {
            to,
            source: ApiError::from_status(status),
        }
    }
}

/// The code a client's request gets while the controller cannot serve
/// `call`: one its client retries (after refreshing metadata or finding
/// its coordinator again).
fn unavailable_controller(call: ControllerCall) -> ErrorCode {
    match call {
        ControllerCall::AutoCreateTopics => ErrorCode::LeaderNotAvailable,
        // Kafka's answer while its producer-id manager waits for the controller.
        ControllerCall::AllocateProducerIds => ErrorCode::CoordinatorLoadInProgress,
        ControllerCall::CreateOffsetsTopic => ErrorCode::CoordinatorNotAvailable,
        ControllerCall::ForwardAdmin | ControllerCall::AlterPartition => ErrorCode::NotController,
    }
}

/// The one conversion to the wire error: the variant's code, its message.
impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        e.to_api()
    }
}

impl From<BrokerError> for tonic::Status {
    fn from(e: BrokerError) -> Self {
        e.to_api().to_status()
    }
}

#[cfg(test)]
mod tests;
