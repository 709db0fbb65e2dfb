//! [`AuthError`]: a principal, rule or ACL that cannot be read, or a SASL
//! exchange or credential that fails.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A value of a config key (`ssl.principal.mapping.rules`, `super.users`).
    #[error("invalid config key `{key}`: {message}")]
    Config { key: String, message: String },
    /// A part of an ACL binding (principal, operation, resource ...).
    #[error("invalid ACL {field}: {message}")]
    Acl {
        field: &'static str,
        message: String,
    },
    /// A client certificate whose subject cannot be read.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// A SASL exchange that failed (malformed, out of order, or bad
    /// credentials); the message names the mechanism, e.g. `SCRAM: ...`.
    #[error("{0}")]
    Sasl(String),
    /// A SCRAM credential that cannot be created (iterations out of range,
    /// empty password).
    #[error("invalid SCRAM credential: {0}")]
    Credential(String),
}

impl AuthError {
    pub(crate) fn acl(field: &'static str, message: impl Into<String>) -> Self {
        AuthError::Acl {
            field,
            message: message.into(),
        }
    }
}
