//! Per-log configuration with Kafka's keys and defaults.

/// Topic-level log settings. Field docs name the Kafka key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes` (default 1 GiB): roll when the active segment would exceed it.
    pub segment_bytes: u64,
    /// `log.roll.ms` (default 7 days): roll when the active segment's first batch is older.
    pub segment_ms: i64,
    /// `log.retention.ms` (default 7 days); -1 = unlimited.
    pub retention_ms: i64,
    /// `log.retention.bytes` (default -1 = unlimited).
    pub retention_bytes: i64,
    /// `log.index.interval.bytes` (default 4096): log bytes between offset index entries.
    pub index_interval_bytes: u32,
    /// `message.max.bytes` (default 1048588): largest batch accepted from a producer.
    pub max_message_bytes: u32,
    /// `flush.messages`: fsync after this many messages; None = leave it to the OS, like Kafka.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when the last flush is older than this; None = never.
    pub flush_ms: Option<u64>,
}

const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_messages: None,
            flush_ms: None,
        }
    }
}
