//! [`ConsoleError`]: what a page could not do, shown as a page with the
//! reason (and the cluster's stable error code), never a stack trace.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use sluice_client::{ClientError, ErrorCode};

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The cluster said no (or could not be reached).
    #[error("{0}")]
    Cluster(#[from] ClientError),
    /// A form field or query parameter is not usable.
    #[error("{field}: {reason}")]
    BadInput { field: &'static str, reason: String },
    /// A change asked of a console started with `--read-only`.
    #[error("this console is read-only: changes are turned off")]
    ReadOnly,
    #[error("{0} not found")]
    NotFound(String),
    /// Refused by the guard (a cross-site change, a foreign host name).
    #[error("{0}")]
    Forbidden(String),
    /// The console could not listen.
    #[error("console cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl ConsoleError {
    pub(crate) fn bad(field: &'static str, reason: impl Into<String>) -> Self {
        ConsoleError::BadInput {
            field,
            reason: reason.into(),
        }
    }

    /// The HTTP status a browser gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::BadInput { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::ReadOnly | ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Cluster(e) => match e.code() {
                ErrorCode::UnknownTopicOrPartition | ErrorCode::GroupIdNotFound => {
                    StatusCode::NOT_FOUND
                }
                ErrorCode::TopicAlreadyExists | ErrorCode::NonEmptyGroup => StatusCode::CONFLICT,
                c if sluice_types::error::is_retriable(c) => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::UnknownServerError | ErrorCode::CorruptMessage => {
                    StatusCode::BAD_GATEWAY
                }
                // The cluster refused what was asked: the request's fault.
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::layout::error_page(status, &self.to_string());
        (status, Html(body.into_string())).into_response()
    }
}

pub type Result<T, E = ConsoleError> = std::result::Result<T, E>;
