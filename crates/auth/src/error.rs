//! [`AuthError`]: a principal, rule or ACL that cannot be read.

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
}

impl AuthError {
    pub(crate) fn acl(field: &'static str, message: impl Into<String>) -> Self {
        AuthError::Acl {
            field,
            message: message.into(),
        }
    }
}
