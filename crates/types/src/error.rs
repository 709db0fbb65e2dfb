//! Stable error codes and their travel over gRPC.
//!
//! A whole-request failure travels as a `tonic::Status` whose message starts
//! with the code name and whose metadata carries `sluice-error-code` and
//! `sluice-error-name`, so a client in any language can read it. Per-partition
//! failures travel in the proto `Error` message.

use std::fmt;

use sluice_proto::common;
pub use sluice_proto::common::ErrorCode;

/// gRPC metadata key holding the numeric [`ErrorCode`].
pub const ERROR_CODE_HEADER: &str = "sluice-error-code";
/// gRPC metadata key holding the [`ErrorCode`] name.
pub const ERROR_NAME_HEADER: &str = "sluice-error-name";

/// An error with a stable code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str_name(), self.message)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn unknown_topic(topic: &str) -> Self {
        Self::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic \"{topic}\" does not exist"),
        )
    }

    pub fn unknown_partition(topic: &str, partition: i32) -> Self {
        Self::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("partition {topic}-{partition} does not exist"),
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownServerError, message)
    }

    /// Whether a client should refresh metadata and retry.
    pub fn is_retriable(&self) -> bool {
        is_retriable(self.code)
    }

    /// The proto form, for per-entry errors in responses.
    pub fn to_proto(&self) -> common::Error {
        common::Error {
            code: self.code as i32,
            message: self.message.clone(),
        }
    }

    /// Reads a per-entry proto error; `None` when it means success.
    pub fn from_proto(e: Option<&common::Error>) -> Option<Self> {
        let e = e?;
        let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::UnknownServerError);
        if code == ErrorCode::None {
            return None;
        }
        Some(Self::new(code, e.message.clone()))
    }

    /// Reads an error carried in a gRPC status (ours or the transport's).
    pub fn from_status(status: &tonic::Status) -> Self {
        if let Some(code) = status
            .metadata()
            .get(ERROR_CODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .and_then(|v| ErrorCode::try_from(v).ok())
        {
            let prefix = format!("{}: ", code.as_str_name());
            let message = status
                .message()
                .strip_prefix(&prefix)
                .unwrap_or(status.message());
            return Self::new(code, message);
        }
        let code = match status.code() {
            tonic::Code::Unimplemented => ErrorCode::NotImplemented,
            tonic::Code::InvalidArgument => ErrorCode::InvalidRequest,
            tonic::Code::DeadlineExceeded => ErrorCode::RequestTimedOut,
            // Transport failures: the peer died or the connection broke.
            tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
            | tonic::Code::Internal => ErrorCode::NetworkException,
            tonic::Code::NotFound => ErrorCode::UnknownTopicOrPartition,
            tonic::Code::PermissionDenied => ErrorCode::ClusterAuthorizationFailed,
            tonic::Code::Unauthenticated => ErrorCode::SaslAuthenticationFailed,
            _ => ErrorCode::UnknownServerError,
        };
        Self::new(code, format!("{} ({:?})", status.message(), status.code()))
    }

    /// The gRPC status for a whole-request failure.
    pub fn to_status(&self) -> tonic::Status {
        let grpc = match self.code {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidTopicException
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidRequiredAcks
            | ErrorCode::MessageTooLarge
            | ErrorCode::CorruptMessage
            | ErrorCode::InvalidRecord
            | ErrorCode::InvalidGroupId => tonic::Code::InvalidArgument,
            ErrorCode::UnknownTopicOrPartition | ErrorCode::GroupIdNotFound => {
                tonic::Code::NotFound
            }
            ErrorCode::TopicAlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::OffsetOutOfRange => tonic::Code::OutOfRange,
            ErrorCode::NotImplemented => tonic::Code::Unimplemented,
            ErrorCode::RequestTimedOut => tonic::Code::DeadlineExceeded,
            ErrorCode::TopicAuthorizationFailed
            | ErrorCode::GroupAuthorizationFailed
            | ErrorCode::ClusterAuthorizationFailed => tonic::Code::PermissionDenied,
            ErrorCode::SaslAuthenticationFailed => tonic::Code::Unauthenticated,
            c if is_retriable(c) => tonic::Code::Unavailable,
            ErrorCode::UnknownServerError => tonic::Code::Internal,
            _ => tonic::Code::FailedPrecondition,
        };
        let mut status = tonic::Status::new(grpc, self.to_string());
        let md = status.metadata_mut();
        md.insert(
            ERROR_CODE_HEADER,
            (self.code as i32).to_string().parse().expect("digits"),
        );
        md.insert(
            ERROR_NAME_HEADER,
            self.code.as_str_name().parse().expect("ascii name"),
        );
        status
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

/// The codes a client retries after refreshing metadata or rediscovering a
/// coordinator. Everything else is surfaced to the application.
pub fn is_retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::LeaderNotAvailable
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::RequestTimedOut
            | ErrorCode::NetworkException
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotCoordinator
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::KafkaStorageError
            | ErrorCode::NotController
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::OffsetNotAvailable
            | ErrorCode::MetadataStoreUnavailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_and_message() {
        let e = ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            "replication factor 2 exceeds 1 live broker",
        );
        let status = e.to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "INVALID_REPLICATION_FACTOR: replication factor 2 exceeds 1 live broker"
        );
        assert_eq!(ApiError::from_status(&status), e);
    }

    #[test]
    fn proto_none_means_success() {
        assert_eq!(ApiError::from_proto(None), None);
        let ok = common::Error {
            code: 0,
            message: String::new(),
        };
        assert_eq!(ApiError::from_proto(Some(&ok)), None);
        let e = ApiError::unknown_topic("t");
        assert_eq!(ApiError::from_proto(Some(&e.to_proto())), Some(e));
    }

    #[test]
    fn transport_errors_map_to_codes() {
        let s = tonic::Status::unimplemented("later");
        assert_eq!(ApiError::from_status(&s).code, ErrorCode::NotImplemented);
        // A connection that broke mid-request is retriable.
        let s = tonic::Status::unknown("transport error");
        let e = ApiError::from_status(&s);
        assert_eq!(e.code, ErrorCode::NetworkException);
        assert!(e.is_retriable());
    }
}
