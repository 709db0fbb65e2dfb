//! [`DelayError`]: what a delay request or a pending record can get wrong.

/// Errors of this crate. Request errors are the producer's (the broker
/// answers them as `INVALID_RECORD` and stores nothing); the others are
/// damaged data or the disk.
#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    #[error("header {header}: {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
    #[error(
        "{asked_by}: a delay of {delay_ms} ms is out of range: it must be between {min_ms} ms and {max_ms} ms"
    )]
    OutOfRange {
        /// The header that asked for it, or the topic's `delivery.delay.ms`.
        asked_by: &'static str,
        delay_ms: i64,
        min_ms: i64,
        max_ms: i64,
    },
    #[error("record {index} of the batch: {source}")]
    InRecord {
        index: usize,
        source: Box<DelayError>,
    },
    #[error("both {at} and {after} are set: use one")]
    BothHeaders {
        at: &'static str,
        after: &'static str,
    },
    #[error("pending record envelope: {reason}")]
    CorruptEnvelope { reason: String },
    #[error("timer index {path}: {reason}")]
    CorruptIndex { path: String, reason: String },
    #[error("timer index {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DelayError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DelayError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
