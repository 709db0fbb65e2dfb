//! [`TlsError`]: what went wrong building a TLS configuration, naming the
//! config key and the file.

/// A TLS configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A setting is missing or has a value we do not take.
    #[error("invalid config key `{key}`: {message}")]
    Setting { key: String, message: String },
    /// A file named by a setting cannot be read.
    #[error("`{key}`: cannot read {path}: {source}")]
    Read {
        key: String,
        path: String,
        source: std::io::Error,
    },
    /// A file is read but holds no usable PEM of the kind the key wants.
    #[error("`{key}`: {path}: {message}")]
    Pem {
        key: String,
        path: String,
        message: String,
    },
    /// rustls refused the certificates or keys.
    #[error("{what}: {message}")]
    Rustls { what: String, message: String },
}

impl TlsError {
    pub fn setting(key: &str, message: impl Into<String>) -> Self {
        TlsError::Setting {
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn rustls(what: &str, e: impl std::fmt::Display) -> Self {
        TlsError::Rustls {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}
