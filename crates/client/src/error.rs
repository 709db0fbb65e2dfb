//! [`ClientError`], the one error type of the client library.

use sluice_types::{ApiError, ErrorCode};

/// Why a client call failed.
///
/// Every variant has a stable [`ErrorCode`] ([`ClientError::code`]) and
/// displays as `CODE_NAME: message`, the form the CLI prints.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// An error with a stable code, from the server or raised by the client
    /// with the server's vocabulary (for example `UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("{0}")]
    Api(#[from] ApiError),
    /// A client property is unknown or has a bad value.
    #[error("INVALID_CONFIG: property \"{property}\": {reason}")]
    Config { property: String, reason: String },
    /// A fetched record batch could not be decoded.
    #[error("CORRUPT_MESSAGE: {topic}-{partition}: {reason}")]
    Corrupt {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// The producer was closed before the record could be sent.
    #[error("INVALID_REQUEST: the producer is closed")]
    ProducerClosed,
}

impl ClientError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Api(e) => e.code,
            ClientError::Config { .. } => ErrorCode::InvalidConfig,
            ClientError::Corrupt { .. } => ErrorCode::CorruptMessage,
            ClientError::ProducerClosed => ErrorCode::InvalidRequest,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        sluice_types::error::is_retriable(self.code())
    }

    pub(crate) fn api(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError::Api(ApiError::new(code, message))
    }

    pub(crate) fn config(property: &str, reason: impl Into<String>) -> Self {
        ClientError::Config {
            property: property.to_string(),
            reason: reason.into(),
        }
    }

    /// A gRPC failure talking to `endpoint`. Statuses carrying a Sluice code
    /// keep it; transport failures (connection refused, reset) become
    /// retriable `LEADER_NOT_AVAILABLE` naming the endpoint.
    pub(crate) fn from_status(endpoint: &str, status: &tonic::Status) -> Self {
        if let Some(reason) = sluice_tls::tls_failure(status) {
            return ClientError::Api(ApiError::new(
                ErrorCode::SslHandshakeFailed,
                format!("{endpoint}: {reason}"),
            ));
        }
        let mut e = ApiError::from_status(status);
        if status
            .metadata()
            .get(sluice_types::error::ERROR_CODE_HEADER)
            .is_none()
        {
            e.message = if status.code() == tonic::Code::Unavailable {
                format!("cannot reach {endpoint}: {}", status.message())
            } else {
                format!("{endpoint}: {}", e.message)
            };
        }
        ClientError::Api(e)
    }
}

/// Result alias of the client library.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
