//! Shared vocabulary of every Sluice crate: stable error codes, validation rules,
//! the hashes that decide placement, and the metadata records kept in the
//! metadata store.
//!
//! # Layout
//! - [`error`]: [`ApiError`], a stable [`ErrorCode`] plus a message, and its
//!   conversions to and from gRPC statuses and proto `Error`s.
//! - [`names`]: topic-name and group-id validation, internal topic names.
//! - [`hash`]: Kafka's murmur2 (key partitioner) and Java `String.hashCode`
//!   (group to `__consumer_offsets` partition).
//! - [`meta`]: metadata records (topics, partitions, brokers) and their keys in
//!   the metadata store.
//! - [`now_ms`]: the wall clock in Kafka's unit.
//!
//! Config loading and the process runtime live in `sluice-server`, so a
//! client application does not pull in YAML and a log subscriber.

pub mod error;
pub mod hash;
pub mod meta;
pub mod names;

pub use error::{ApiError, ErrorCode};

/// Milliseconds since the Unix epoch (Kafka's timestamps and deadlines).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
