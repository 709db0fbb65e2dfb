//! [`ControllerError`]: everything the controller refuses or fails at, with
//! the ids involved, and the one place it becomes a wire error
//! (`impl From<ControllerError> for ApiError`).

use sluice_metastore::MetaError;
use sluice_types::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller {controller_id} is not the active controller")]
    NotController { controller_id: i32 },
    #[error("this controller lost its leadership during the write; nothing was written")]
    LostLeadership,
    #[error("metadata store: {0}")]
    MetadataStore(#[from] MetaError),
    #[error("corrupt metadata record {key}: {source}")]
    CorruptRecord {
        key: String,
        source: serde_json::Error,
    },
    /// A conditional write lost to a concurrent change of `what`.
    #[error("{what} changed concurrently; retry")]
    Raced { what: String },
    /// A read-modify-write lost too many times in a row.
    #[error("{what} kept changing concurrently; retry")]
    Contended { what: String },

    #[error("topic \"{topic}\" does not exist")]
    UnknownTopic { topic: String },
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("topic \"{topic}\" already exists")]
    TopicExists { topic: String },
    /// A name the shared validation (`sluice_types::names`) refused.
    #[error("{0}")]
    InvalidName(ApiError),
    #[error("topic names starting with \"__\" are reserved for internal topics: \"{topic}\"")]
    ReservedName { topic: String },
    #[error("internal topic \"{topic}\" cannot be deleted")]
    InternalTopic { topic: String },
    #[error(
        "topic \"{topic}\" collides with existing topic \"{existing}\": '.' and '_' may not be the only difference"
    )]
    CollidingName { topic: String, existing: String },
    #[error("number of partitions must be at least 1, got {partitions}")]
    TooFewPartitions { partitions: i32 },
    #[error("topic \"{topic}\" has {current} partitions; the new count {requested} must be higher")]
    PartitionCountNotHigher {
        topic: String,
        current: i32,
        requested: i32,
    },
    #[error("replication factor must be at least 1, got {replication_factor}")]
    ReplicationFactorTooSmall { replication_factor: i32 },
    #[error("replication factor {replication_factor} exceeds {live} live broker{}", if *live == 1 { "" } else { "s" })]
    ReplicationFactorAboveLiveBrokers {
        replication_factor: i32,
        live: usize,
    },
    #[error("{reason}")]
    InvalidAssignment { reason: String },

    #[error("unknown topic config `{key}`")]
    UnknownConfig { key: String },
    #[error("invalid value {value:?} for topic config `{key}`: expected {expected}")]
    InvalidConfigValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("`{key}` is not a list; APPEND and SUBTRACT apply to {lists}")]
    NotAList { key: String, lists: String },
    #[error("`{key}` needs a value for this operation")]
    ConfigNeedsValue { key: String },

    #[error("broker {broker} is not the leader of {topic}-{partition} (leader is {leader})")]
    NotLeader {
        topic: String,
        partition: i32,
        broker: i32,
        leader: i32,
    },
    #[error("{topic}-{partition}: leader epoch {requested} is not the current {current}")]
    FencedLeaderEpoch {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    #[error("{topic}-{partition}: partition epoch {requested} is not the current {current}")]
    StalePartitionEpoch {
        topic: String,
        partition: i32,
        requested: i32,
        current: i32,
    },
    #[error("broker {broker} sent registration epoch {sent}; {}", current.map_or("it is not registered".to_string(), |c| format!("its current registration is {c}")))]
    StaleBrokerEpoch {
        broker: i32,
        sent: i64,
        current: Option<i64>,
    },
    #[error("{topic}-{partition}: broker {broker} fetched in registration epoch {fetched_in}, its current registration is {}", current.map_or("none".to_string(), |c| c.to_string()))]
    IneligibleReplica {
        topic: String,
        partition: i32,
        broker: i32,
        fetched_in: i64,
        current: Option<i64>,
    },
    #[error(
        "{topic}-{partition}: ISR {isr:?} must contain the leader and only replicas of {replicas:?}"
    )]
    InvalidIsr {
        topic: String,
        partition: i32,
        isr: Vec<i32>,
        replicas: Vec<i32>,
    },
    #[error("no live broker to host {topic} yet")]
    NoBrokerForOffsets { topic: String },
    #[error("could not allocate producer ids: too much contention")]
    ProducerIdContention,
    /// A malformed request (the message names the field).
    #[error("{0}")]
    InvalidRequest(String),
    /// The caller may not (ACLs).
    #[error("{0}")]
    Denied(ApiError),
    /// An ACL binding or filter that does not parse or validate.
    #[error("{0}")]
    InvalidAcl(sluice_auth::AuthError),
    /// A SCRAM credential refused as given.
    #[error("{0}")]
    UnacceptableCredential(String),
    #[error("user {user:?} has no {mechanism} credential")]
    NoCredential { user: String, mechanism: String },
    #[error("no token {id:?} (revoked already, or never created)")]
    NoToken { id: String },
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

impl ControllerError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        use ControllerError::*;
        match self {
            NotController { .. } | LostLeadership => ErrorCode::NotController,
            MetadataStore(e) if sluice_metastore::is_retriable(e) => {
                ErrorCode::MetadataStoreUnavailable
            }
            MetadataStore(_) | CorruptRecord { .. } => ErrorCode::UnknownServerError,
            Raced { .. } | StalePartitionEpoch { .. } => ErrorCode::InvalidUpdateVersion,
            Contended { .. } | ProducerIdContention => ErrorCode::RequestTimedOut,
            UnknownTopic { .. } | UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            TopicExists { .. } => ErrorCode::TopicAlreadyExists,
            InvalidName(e) => e.code,
            ReservedName { .. } | InternalTopic { .. } | CollidingName { .. } => {
                ErrorCode::InvalidTopicException
            }
            TooFewPartitions { .. } | PartitionCountNotHigher { .. } => {
                ErrorCode::InvalidPartitions
            }
            ReplicationFactorTooSmall { .. } | ReplicationFactorAboveLiveBrokers { .. } => {
                ErrorCode::InvalidReplicationFactor
            }
            InvalidAssignment { .. } => ErrorCode::InvalidReplicaAssignment,
            UnknownConfig { .. }
            | InvalidConfigValue { .. }
            | NotAList { .. }
            | ConfigNeedsValue { .. } => ErrorCode::InvalidConfig,
            NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
            FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
            IneligibleReplica { .. } => ErrorCode::IneligibleReplica,
            InvalidIsr { .. } | InvalidRequest(_) | InvalidAcl(_) => ErrorCode::InvalidRequest,
            Denied(e) => e.code,
            UnacceptableCredential(_) => ErrorCode::UnacceptableCredential,
            NoCredential { .. } | NoToken { .. } => ErrorCode::ResourceNotFound,
            NoBrokerForOffsets { .. } => ErrorCode::CoordinatorNotAvailable,
        }
    }

    /// The per-entry proto error of a response.
    pub fn to_proto(&self) -> sluice_proto::common::Error {
        sluice_proto::common::Error {
            code: self.code() as i32,
            message: self.to_string(),
        }
    }
}

/// The one conversion to the wire error.
impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<ControllerError> for tonic::Status {
    fn from(e: ControllerError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_name_the_ids() {
        let cases = [
            (
                ControllerError::NotLeader {
                    topic: "t".into(),
                    partition: 3,
                    broker: 2,
                    leader: 1,
                },
                ErrorCode::NotLeaderOrFollower,
                "broker 2 is not the leader of t-3 (leader is 1)",
            ),
            (
                ControllerError::StaleBrokerEpoch {
                    broker: 2,
                    sent: 5,
                    current: Some(9),
                },
                ErrorCode::StaleBrokerEpoch,
                "broker 2 sent registration epoch 5; its current registration is 9",
            ),
            (
                ControllerError::StaleBrokerEpoch {
                    broker: 2,
                    sent: 5,
                    current: None,
                },
                ErrorCode::StaleBrokerEpoch,
                "broker 2 sent registration epoch 5; it is not registered",
            ),
            (
                ControllerError::ReplicationFactorAboveLiveBrokers {
                    replication_factor: 2,
                    live: 1,
                },
                ErrorCode::InvalidReplicationFactor,
                "replication factor 2 exceeds 1 live broker",
            ),
            (
                ControllerError::UnknownTopic { topic: "x".into() },
                ErrorCode::UnknownTopicOrPartition,
                "topic \"x\" does not exist",
            ),
            (
                ControllerError::Raced {
                    what: "topic \"x\"".into(),
                },
                ErrorCode::InvalidUpdateVersion,
                "topic \"x\" changed concurrently; retry",
            ),
        ];
        for (e, code, message) in cases {
            let wire = ApiError::from(e);
            assert_eq!((wire.code, wire.message.as_str()), (code, message));
        }
    }
}
