//! The error type of the record codec.

/// Why a buffer of record batches was rejected.
///
/// `position` is the byte position of the offending batch inside the buffer
/// the caller handed in, so storage recovery can truncate exactly there.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordsError {
    /// The buffer ends before the batch does. A fetch response may legally
    /// end like this; a producer request or a log segment may not.
    #[error("truncated record batch at position {position}: need {needed} bytes, have {available}")]
    Truncated {
        position: usize,
        needed: usize,
        available: usize,
    },
    /// The batch header is structurally invalid (length, record count, ...).
    #[error("corrupt record batch at position {position}: {reason}")]
    CorruptMessage { position: usize, reason: String },
    /// Only magic 2 (RecordBatch v2) is supported.
    #[error("unsupported record batch magic {magic} at position {position}")]
    UnsupportedMagic { position: usize, magic: i8 },
    /// The CRC-32C over attributes..end does not match the stored one.
    #[error(
        "record batch CRC mismatch at position {position}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    CrcMismatch {
        position: usize,
        stored: u32,
        computed: u32,
    },
    /// A compressed batch inflates past the allowed size (Kafka's
    /// RECORD_TOO_LARGE).
    #[error("the compressed records inflate past {limit} bytes")]
    TooLarge { limit: usize },
    /// `kafka-protocol` refused to encode the records.
    #[error("encode record batch: {reason}")]
    Encode { reason: String },
    /// `kafka-protocol` refused to decode a batch that passed validation
    /// (bad varints, compression codec not compiled in, ...).
    #[error("decode record batch with base offset {base_offset}: {reason}")]
    Decode { base_offset: i64, reason: String },
}

impl RecordsError {
    /// True when the error only says the buffer ended early.
    pub fn is_truncated(&self) -> bool {
        matches!(self, RecordsError::Truncated { .. })
    }

    /// Byte position of the offending batch, when known.
    pub fn position(&self) -> Option<usize> {
        match self {
            RecordsError::Truncated { position, .. }
            | RecordsError::CorruptMessage { position, .. }
            | RecordsError::UnsupportedMagic { position, .. }
            | RecordsError::CrcMismatch { position, .. } => Some(*position),
            RecordsError::TooLarge { .. }
            | RecordsError::Encode { .. }
            | RecordsError::Decode { .. } => None,
        }
    }
}
