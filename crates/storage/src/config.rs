//! Per-log configuration with Kafka's keys and defaults.

/// `cleanup.policy`: what happens to old log data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete` (Kafka's default): whole segments go by time and size retention.
    #[default]
    Delete,
    /// `compact`: only the latest record per key is kept; retention deletes nothing.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Parses Kafka's list syntax (`compact`, `delete`, `compact,delete`, in
    /// any order, spaces allowed); `None` for anything else.
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let (mut compact, mut delete) = (false, false);
        for part in s.split(',').map(str::trim) {
            match part {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }

    /// Time and size retention apply.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// The log cleaner compacts the log.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// Topic-level log settings. Field docs name the Kafka key.
#[derive(Debug, Clone, PartialEq)]
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
    /// `cleanup.policy` (default delete).
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` (default 1 day): how long the cleaner keeps a
    /// tombstone (a keyed record with a null value), counted from its batch's
    /// max timestamp, so consumers can see the delete.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` (default 0.5): the cleaner skips a log
    /// while less than this share of its cleanable bytes is new since the last pass.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (default 0): segments holding records younger
    /// than this are not compacted yet.
    pub min_compaction_lag_ms: i64,
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
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_policy_parses_kafka_lists() {
        assert_eq!(CleanupPolicy::parse("delete"), Some(CleanupPolicy::Delete));
        assert_eq!(
            CleanupPolicy::parse("compact"),
            Some(CleanupPolicy::Compact)
        );
        for s in ["compact,delete", "delete,compact", "compact, delete"] {
            assert_eq!(
                CleanupPolicy::parse(s),
                Some(CleanupPolicy::CompactDelete),
                "{s}"
            );
        }
        for s in ["", "sometimes", "compact,", "compact;delete"] {
            assert_eq!(CleanupPolicy::parse(s), None, "{s}");
        }
        assert!(CleanupPolicy::Compact.compacts() && !CleanupPolicy::Compact.deletes());
        assert!(CleanupPolicy::CompactDelete.compacts() && CleanupPolicy::CompactDelete.deletes());
        assert!(!CleanupPolicy::Delete.compacts() && CleanupPolicy::Delete.deletes());
    }
}
