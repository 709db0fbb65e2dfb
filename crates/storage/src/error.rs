//! The error type of the storage engine.

use std::path::PathBuf;

use sluice_records::RecordsError;

/// Everything the partition log can fail with. Variants carry the ids
/// involved (offsets, sizes, paths) so callers can map them to Kafka codes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch failed validation (length, magic, CRC).
    #[error("corrupt message: {0}")]
    CorruptMessage(#[from] RecordsError),
    /// A single batch exceeds `max_message_bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A structurally valid batch that the log refuses (INVALID_RECORD).
    #[error("invalid record batch: {reason}")]
    InvalidRecord { reason: String },
    /// A follower append that starts below the log end offset.
    #[error("follower append starts at offset {actual}, below the log end offset {expected}")]
    OffsetMismatch { expected: i64, actual: i64 },
    #[error("invalid checkpoint file {}: {reason}", path.display())]
    InvalidCheckpoint { path: PathBuf, reason: String },
    #[error("log for {topic}-{partition} already exists")]
    LogExists { topic: String, partition: i32 },
    #[error("invalid topic name {topic:?}")]
    InvalidTopic { topic: String },
    #[error("no log directory configured")]
    NoLogDirs,
}

/// Shorthand for mapping an `io::Error` with its operation and path.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io { op, path, source }
}
