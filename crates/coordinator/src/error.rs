//! [`CoordinatorError`]: everything the group coordinator refuses or fails
//! at, with the ids involved, and the one place it becomes a wire error
//! (`impl From<CoordinatorError> for ApiError`).
//!
//! The stable code of each variant is chosen in [`CoordinatorError::code`]
//! and nowhere else; the message is the variant's `Display`. Failures of the
//! brokers' clients on `__consumer_offsets` are never re-raised with the
//! brokers' code: [`CoordinatorError::OffsetsLog`] keeps the client error as
//! its cause and answers with the coordinator's own code (a member retries
//! on COORDINATOR_NOT_AVAILABLE; NOT_ENOUGH_REPLICAS would mean nothing to
//! it).

use std::fmt;
use std::sync::Arc;

use sluice_client::ClientError;
use sluice_metastore::MetaError;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use sluice_types::{ApiError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinatorError {
    // Where the group lives.
    #[error("this coordinator does not serve group \"{group}\": {why}; find the coordinator again")]
    NotCoordinator { group: String, why: NotServed },
    /// A parked JoinGroup/SyncGroup whose group went away without an answer.
    #[error("group \"{group}\" was unloaded from this coordinator; find the coordinator again")]
    GroupUnloaded { group: String },
    #[error("{CONSUMER_OFFSETS_TOPIC} partition {partition} (group \"{group}\") is still loading")]
    LoadInProgress { group: String, partition: i32 },

    // Membership.
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("join group \"{group}\" again with member id {member}")]
    MemberIdRequired { group: String, member: String },
    #[error(
        "member {member} was replaced by a newer consumer with group.instance.id \"{instance}\"; two consumers share that id"
    )]
    FencedInstance {
        group: String,
        instance: String,
        member: String,
    },
    #[error("member {member} is not in group {group}")]
    UnknownMember { group: String, member: String },
    #[error("no member of group {group} has group.instance.id \"{instance}\"")]
    UnknownInstance { group: String, instance: String },
    #[error("group \"{group}\" has no members")]
    NoMembers { group: String },
    /// A parked call of a member that left (or was removed).
    #[error("member {member} left group {group}")]
    MemberLeft { group: String, member: String },
    /// A parked call of a member whose session expired.
    #[error("member {member} of group {group}: session timed out")]
    SessionExpired { group: String, member: String },
    #[error("generation {generation} is not group {group}'s current generation {current}")]
    IllegalGeneration {
        group: String,
        generation: i32,
        current: i32,
    },
    #[error("group {group} is rebalancing; join again")]
    RebalanceInProgress { group: String },
    /// A parked SyncGroup whose assignment a new rebalance made void.
    #[error("group {group} is rebalancing again")]
    RebalanceRestarted { group: String },
    /// A parked JoinGroup replaced by the same member's newer one.
    #[error("JoinGroup of member {member} to group {group} superseded by a newer JoinGroup")]
    JoinSuperseded { group: String, member: String },
    #[error("group {group} is completing a rebalance")]
    CompletingRebalance { group: String },
    #[error(
        "session.timeout.ms {requested_ms} is outside group.min.session.timeout.ms {min_ms} .. group.max.session.timeout.ms {max_ms}"
    )]
    InvalidSessionTimeout {
        requested_ms: u64,
        min_ms: u64,
        max_ms: u64,
    },
    #[error("JoinGroup to group {group} needs a protocol type and at least one protocol")]
    MissingProtocol { group: String },
    #[error(
        "group {group} uses protocol type \"{protocol_type}\" with assignors the new member does not support"
    )]
    InconsistentProtocol {
        group: String,
        protocol_type: String,
    },

    // The consumer group protocol (KIP-848).
    #[error(
        "member {member} of group {group} sent epoch {epoch} but its epoch is {current}; give up every partition and join again with epoch 0"
    )]
    FencedMemberEpoch {
        group: String,
        member: String,
        epoch: i32,
        current: i32,
    },
    #[error(
        "member {member} of group {group} committed with epoch {epoch} but its epoch is {current}; heartbeat for the new epoch first"
    )]
    StaleMemberEpoch {
        group: String,
        member: String,
        epoch: i32,
        current: i32,
    },
    #[error(
        "group.instance.id \"{instance}\" of group {group} is still held by member {member}; it must leave first"
    )]
    UnreleasedInstance {
        group: String,
        instance: String,
        member: String,
    },
    #[error("server assignor \"{name}\" is not one of this coordinator's: {known}")]
    UnsupportedAssignor { name: String, known: String },
    #[error("subscribed topic regex \"{regex}\" is not valid: {reason}")]
    InvalidRegex { regex: String, reason: String },
    #[error("group {group} has reached group.consumer.max.size ({max} members)")]
    GroupMaxSize { group: String, max: usize },
    #[error("invalid ConsumerGroupHeartbeat: {0}")]
    InvalidHeartbeat(String),
    #[error("a member of group {group} sent a subscription that cannot be read: {reason}")]
    BadSubscription { group: String, reason: String },
    /// A classic request to a group using the consumer protocol, or the
    /// reverse, while it has members: converting it would split the group.
    #[error(
        "group {group} has members using the {uses} protocol; a {asked} member cannot join it until they leave"
    )]
    OtherProtocol {
        group: String,
        uses: &'static str,
        asked: &'static str,
    },

    // Offsets and deletion.
    /// A "simple" commit (no member, no generation) to a group with members.
    #[error("group {group} has active members; commit as one of them")]
    SimpleCommitToActiveGroup { group: String },
    /// A join or commit while the group's tombstones are being written.
    #[error("group {group} is being deleted")]
    GroupBeingDeleted { group: String },
    #[error("group \"{group}\" does not exist")]
    GroupNotFound { group: String },
    #[error("group \"{group}\" is already being deleted")]
    AlreadyBeingDeleted { group: String },
    #[error("group \"{group}\" has {members} active member(s); stop them first")]
    NonEmptyGroup { group: String, members: usize },

    // Writing and reading `__consumer_offsets`.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    #[error(
        "writing to {CONSUMER_OFFSETS_TOPIC}-{partition} took over offsets.commit.timeout.ms ({timeout_ms} ms)"
    )]
    CommitTimeout { partition: i32, timeout_ms: u64 },
    #[error(
        "cannot confirm ownership of {CONSUMER_OFFSETS_TOPIC}-{partition} in the metadata store: {source}"
    )]
    ConfirmOwnership {
        partition: i32,
        source: Arc<MetaError>,
    },
    #[error("cannot find the live brokers in the metadata store: {source}")]
    FindBrokers { source: Arc<MetaError> },
    #[error("no live broker yet")]
    NoLiveBroker,
    /// The internal producer or consumer failed; `source` is the brokers'
    /// answer (or the client's own error), kept as the cause only.
    #[error("cannot {op}: {source}")]
    OffsetsLog { op: LogOp, source: ClientError },
    #[error(
        "reading {CONSUMER_OFFSETS_TOPIC}-{partition} up to offset {marker} took over {secs} s"
    )]
    LoadTimeout {
        partition: i32,
        marker: i64,
        secs: u64,
    },
}

/// Why a group is not served here (the `why` of
/// [`CoordinatorError::NotCoordinator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServed {
    /// No `__consumer_offsets` partition is owned (or its count is unknown).
    NoPartitions,
    /// The group's partition belongs to another coordinator.
    NotOwned { partition: i32 },
    /// The partition was given up between the lookup and the call.
    OwnershipChanged,
    /// The partition was reloaded or given up while a write was in flight.
    ChangedDuringWrite,
    /// The partition now belongs to another owner, or to us in another epoch.
    Moved { partition: i32 },
    /// The coordinator stopped and dropped its groups.
    ShuttingDown,
    /// The registration lease was lost; every group was dropped.
    LeaseLost,
}

impl fmt::Display for NotServed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPartitions => write!(f, "it owns no {CONSUMER_OFFSETS_TOPIC} partition"),
            Self::NotOwned { partition } => {
                write!(
                    f,
                    "it does not own {CONSUMER_OFFSETS_TOPIC} partition {partition}"
                )
            }
            Self::OwnershipChanged => f.write_str("ownership changed"),
            Self::ChangedDuringWrite => f.write_str("ownership changed during the write"),
            Self::Moved { partition } => {
                write!(
                    f,
                    "its {CONSUMER_OFFSETS_TOPIC} partition {partition} moved"
                )
            }
            Self::ShuttingDown => f.write_str("the coordinator is shutting down"),
            Self::LeaseLost => f.write_str("the coordinator lost its registration lease"),
        }
    }
}

/// What the coordinator was doing on `__consumer_offsets` when its client
/// failed (the `op` of [`CoordinatorError::OffsetsLog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOp {
    /// Creating the internal producer or consumer.
    Open,
    /// Writing records (offsets, group records, tombstones, owner markers).
    Write { partition: i32 },
    /// Reading the partition to load its groups.
    Load { partition: i32 },
}

/// "verb object", after "cannot".
impl fmt::Display for LogOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => write!(f, "open the {CONSUMER_OFFSETS_TOPIC} clients"),
            Self::Write { partition } => {
                write!(f, "write to {CONSUMER_OFFSETS_TOPIC}-{partition}")
            }
            Self::Load { partition } => write!(f, "load {CONSUMER_OFFSETS_TOPIC}-{partition}"),
        }
    }
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl CoordinatorError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        use CoordinatorError::*;
        match self {
            NotCoordinator { .. } | GroupUnloaded { .. } => ErrorCode::NotCoordinator,
            LoadInProgress { .. } | LoadTimeout { .. } => ErrorCode::CoordinatorLoadInProgress,
            InvalidGroupId => ErrorCode::InvalidGroupId,
            MemberIdRequired { .. } => ErrorCode::MemberIdRequired,
            FencedInstance { .. } => ErrorCode::FencedInstanceId,
            UnknownMember { .. }
            | UnknownInstance { .. }
            | NoMembers { .. }
            | MemberLeft { .. }
            | SessionExpired { .. }
            | SimpleCommitToActiveGroup { .. } => ErrorCode::UnknownMemberId,
            IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            RebalanceInProgress { .. }
            | RebalanceRestarted { .. }
            | JoinSuperseded { .. }
            | CompletingRebalance { .. } => ErrorCode::RebalanceInProgress,
            InvalidSessionTimeout { .. } => ErrorCode::InvalidSessionTimeout,
            MissingProtocol { .. } | InconsistentProtocol { .. } | BadSubscription { .. } => {
                ErrorCode::InconsistentGroupProtocol
            }
            GroupNotFound { .. } | AlreadyBeingDeleted { .. } => ErrorCode::GroupIdNotFound,
            FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
            UnreleasedInstance { .. } => ErrorCode::UnreleasedInstanceId,
            UnsupportedAssignor { .. } => ErrorCode::UnsupportedAssignor,
            InvalidRegex { .. } => ErrorCode::InvalidRegularExpression,
            GroupMaxSize { .. } => ErrorCode::GroupMaxSizeReached,
            InvalidHeartbeat(_) => ErrorCode::InvalidRequest,
            // Kafka's codes: a consumer heartbeat to a classic group is
            // GROUP_ID_NOT_FOUND, a JoinGroup to a consumer group
            // INCONSISTENT_GROUP_PROTOCOL.
            OtherProtocol { asked, .. } if *asked == "consumer" => ErrorCode::GroupIdNotFound,
            OtherProtocol { .. } => ErrorCode::InconsistentGroupProtocol,
            NonEmptyGroup { .. } => ErrorCode::NonEmptyGroup,
            GroupBeingDeleted { .. }
            | ShuttingDown
            | CommitTimeout { .. }
            | ConfirmOwnership { .. }
            | FindBrokers { .. }
            | NoLiveBroker => ErrorCode::CoordinatorNotAvailable,
            // The brokers' code stays in the message: a load is retried
            // while the partition answers LOAD_IN_PROGRESS, anything else
            // means "retry later".
            OffsetsLog {
                op: LogOp::Load { .. },
                ..
            } => ErrorCode::CoordinatorLoadInProgress,
            OffsetsLog { .. } => ErrorCode::CoordinatorNotAvailable,
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
impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error() -> Arc<MetaError> {
        Arc::new(MetaError::Closed)
    }

    #[test]
    fn codes_and_messages_name_the_ids() {
        use CoordinatorError::*;
        let g = || "g".to_string();
        let cases = [
            (
                NotCoordinator {
                    group: g(),
                    why: NotServed::NotOwned { partition: 7 },
                },
                ErrorCode::NotCoordinator,
                "this coordinator does not serve group \"g\": it does not own __consumer_offsets partition 7; find the coordinator again",
            ),
            (
                NotCoordinator {
                    group: g(),
                    why: NotServed::Moved { partition: 7 },
                },
                ErrorCode::NotCoordinator,
                "this coordinator does not serve group \"g\": its __consumer_offsets partition 7 moved; find the coordinator again",
            ),
            (
                NotCoordinator {
                    group: g(),
                    why: NotServed::LeaseLost,
                },
                ErrorCode::NotCoordinator,
                "this coordinator does not serve group \"g\": the coordinator lost its registration lease; find the coordinator again",
            ),
            (
                GroupUnloaded { group: g() },
                ErrorCode::NotCoordinator,
                "group \"g\" was unloaded from this coordinator; find the coordinator again",
            ),
            (
                LoadInProgress {
                    group: g(),
                    partition: 7,
                },
                ErrorCode::CoordinatorLoadInProgress,
                "__consumer_offsets partition 7 (group \"g\") is still loading",
            ),
            (
                InvalidGroupId,
                ErrorCode::InvalidGroupId,
                "the group id is empty",
            ),
            (
                MemberIdRequired {
                    group: g(),
                    member: "c-1".into(),
                },
                ErrorCode::MemberIdRequired,
                "join group \"g\" again with member id c-1",
            ),
            (
                FencedInstance {
                    group: g(),
                    instance: "i".into(),
                    member: "c-1".into(),
                },
                ErrorCode::FencedInstanceId,
                "member c-1 was replaced by a newer consumer with group.instance.id \"i\"; two consumers share that id",
            ),
            (
                UnknownMember {
                    group: g(),
                    member: "c-1".into(),
                },
                ErrorCode::UnknownMemberId,
                "member c-1 is not in group g",
            ),
            (
                UnknownInstance {
                    group: g(),
                    instance: "i".into(),
                },
                ErrorCode::UnknownMemberId,
                "no member of group g has group.instance.id \"i\"",
            ),
            (
                NoMembers { group: g() },
                ErrorCode::UnknownMemberId,
                "group \"g\" has no members",
            ),
            (
                MemberLeft {
                    group: g(),
                    member: "c-1".into(),
                },
                ErrorCode::UnknownMemberId,
                "member c-1 left group g",
            ),
            (
                SessionExpired {
                    group: g(),
                    member: "c-1".into(),
                },
                ErrorCode::UnknownMemberId,
                "member c-1 of group g: session timed out",
            ),
            (
                SimpleCommitToActiveGroup { group: g() },
                ErrorCode::UnknownMemberId,
                "group g has active members; commit as one of them",
            ),
            (
                IllegalGeneration {
                    group: g(),
                    generation: 3,
                    current: 4,
                },
                ErrorCode::IllegalGeneration,
                "generation 3 is not group g's current generation 4",
            ),
            (
                RebalanceInProgress { group: g() },
                ErrorCode::RebalanceInProgress,
                "group g is rebalancing; join again",
            ),
            (
                RebalanceRestarted { group: g() },
                ErrorCode::RebalanceInProgress,
                "group g is rebalancing again",
            ),
            (
                JoinSuperseded {
                    group: g(),
                    member: "c-1".into(),
                },
                ErrorCode::RebalanceInProgress,
                "JoinGroup of member c-1 to group g superseded by a newer JoinGroup",
            ),
            (
                CompletingRebalance { group: g() },
                ErrorCode::RebalanceInProgress,
                "group g is completing a rebalance",
            ),
            (
                InvalidSessionTimeout {
                    requested_ms: 10,
                    min_ms: 6000,
                    max_ms: 1_800_000,
                },
                ErrorCode::InvalidSessionTimeout,
                "session.timeout.ms 10 is outside group.min.session.timeout.ms 6000 .. group.max.session.timeout.ms 1800000",
            ),
            (
                MissingProtocol { group: g() },
                ErrorCode::InconsistentGroupProtocol,
                "JoinGroup to group g needs a protocol type and at least one protocol",
            ),
            (
                InconsistentProtocol {
                    group: g(),
                    protocol_type: "consumer".into(),
                },
                ErrorCode::InconsistentGroupProtocol,
                "group g uses protocol type \"consumer\" with assignors the new member does not support",
            ),
            (
                GroupBeingDeleted { group: g() },
                ErrorCode::CoordinatorNotAvailable,
                "group g is being deleted",
            ),
            (
                GroupNotFound { group: g() },
                ErrorCode::GroupIdNotFound,
                "group \"g\" does not exist",
            ),
            (
                AlreadyBeingDeleted { group: g() },
                ErrorCode::GroupIdNotFound,
                "group \"g\" is already being deleted",
            ),
            (
                NonEmptyGroup {
                    group: g(),
                    members: 2,
                },
                ErrorCode::NonEmptyGroup,
                "group \"g\" has 2 active member(s); stop them first",
            ),
            (
                ShuttingDown,
                ErrorCode::CoordinatorNotAvailable,
                "the coordinator is shutting down",
            ),
            (
                CommitTimeout {
                    partition: 7,
                    timeout_ms: 5000,
                },
                ErrorCode::CoordinatorNotAvailable,
                "writing to __consumer_offsets-7 took over offsets.commit.timeout.ms (5000 ms)",
            ),
            (
                ConfirmOwnership {
                    partition: 7,
                    source: store_error(),
                },
                ErrorCode::CoordinatorNotAvailable,
                "cannot confirm ownership of __consumer_offsets-7 in the metadata store: metadata store is closed",
            ),
            (
                FindBrokers {
                    source: store_error(),
                },
                ErrorCode::CoordinatorNotAvailable,
                "cannot find the live brokers in the metadata store: metadata store is closed",
            ),
            (
                NoLiveBroker,
                ErrorCode::CoordinatorNotAvailable,
                "no live broker yet",
            ),
            (
                LoadTimeout {
                    partition: 7,
                    marker: 42,
                    secs: 60,
                },
                ErrorCode::CoordinatorLoadInProgress,
                "reading __consumer_offsets-7 up to offset 42 took over 60 s",
            ),
        ];
        for (e, code, message) in cases {
            let proto = e.to_proto();
            let wire = ApiError::from(e);
            assert_eq!((wire.code, wire.message.as_str()), (code, message));
            assert_eq!((proto.code, proto.message), (code as i32, message.into()));
        }
    }

    /// The brokers' answer to the internal producer or consumer is the cause,
    /// never the coordinator's own code.
    #[test]
    fn client_errors_of_the_offsets_log_are_not_forwarded() {
        let client = |code| ClientError::Api(ApiError::new(code, "from the broker"));
        let cases = [
            (
                LogOp::Write { partition: 7 },
                ErrorCode::NotLeaderOrFollower,
                ErrorCode::CoordinatorNotAvailable,
                "cannot write to __consumer_offsets-7: NOT_LEADER_OR_FOLLOWER: from the broker",
            ),
            // Even a coordinator code from downstream is not passed on as ours.
            (
                LogOp::Write { partition: 7 },
                ErrorCode::NotCoordinator,
                ErrorCode::CoordinatorNotAvailable,
                "cannot write to __consumer_offsets-7: NOT_COORDINATOR: from the broker",
            ),
            (
                LogOp::Load { partition: 7 },
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::CoordinatorLoadInProgress,
                "cannot load __consumer_offsets-7: UNKNOWN_TOPIC_OR_PARTITION: from the broker",
            ),
            (
                LogOp::Open,
                ErrorCode::InvalidConfig,
                ErrorCode::CoordinatorNotAvailable,
                "cannot open the __consumer_offsets clients: INVALID_CONFIG: from the broker",
            ),
        ];
        for (op, downstream, code, message) in cases {
            let e = CoordinatorError::OffsetsLog {
                op,
                source: client(downstream),
            };
            assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
            let wire = ApiError::from(e);
            assert_eq!((wire.code, wire.message.as_str()), (code, message));
        }
    }

    #[test]
    fn whole_request_failures_become_a_status_with_the_code() {
        let status = tonic::Status::from(CoordinatorError::InvalidGroupId);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            ApiError::from_status(&status),
            ApiError::new(ErrorCode::InvalidGroupId, "the group id is empty")
        );
    }
}
