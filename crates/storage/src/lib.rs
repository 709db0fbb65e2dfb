//! The partition log storage engine: Kafka's on-disk layout, no gRPC, no etcd.
//!
//! One directory per partition replica, `<topic>-<partition>`, holding
//! segments `{base_offset:020}.log` of raw RecordBatch v2 bytes with their
//! `.index` and `.timeindex`, a `leader-epoch-checkpoint` and a
//! `partition.metadata`. Broker-level checkpoint files sit in each log dir.
//!
//! # Layout
//!
//! - [`config`]: [`LogConfig`], topic-level settings with Kafka's defaults.
//! - [`error`]: [`StorageError`], the one error type of this crate.
//! - [`index`]: the sparse offset index and time index (in-memory `Vec`
//!   mirrored to the file), and their floor search.
//! - [`segment`]: `LogSegment`, one `.log` file plus its indexes: append,
//!   positional reads, recovery scan, truncation.
//! - [`epoch`]: `LeaderEpochCache` (Kafka's LeaderEpochFileCache) for
//!   KIP-101 truncation.
//! - [`checkpoint`]: atomic text checkpoint files (recovery points, high
//!   watermarks, leader epochs).
//! - [`log`]: [`PartitionLog`], the public face: leader and follower appends,
//!   reads, rolling, retention, compaction, truncation, flush and crash recovery.
//! - [`cleaner`]: log compaction (`cleanup.policy=compact`): the key map,
//!   segment rewriting, and the crash-safe `.cleaned`/`.swap` replacement.
//! - [`manager`]: [`LogManager`], which places partitions on log dirs,
//!   reopens them at start, and writes broker-level checkpoints.

pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod epoch;
pub mod error;
pub mod index;
pub mod log;
pub mod manager;
pub mod segment;

pub use cleaner::{CleanedSegments, CompactionJob, CompactionStats};
pub use config::{CleanupPolicy, LogConfig};
pub use error::StorageError;
pub use log::{AppendInfo, PartitionLog, PendingFlush};
pub use manager::{LogManager, RecoveredLog, log_dir_name, parse_log_dir_name};
