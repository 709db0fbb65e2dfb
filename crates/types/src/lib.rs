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
//! - [`config`]: YAML config loading with errors that name the bad key.
//! - [`runtime`]: logging setup and the Ctrl-C / SIGTERM shutdown token.

pub mod config;
pub mod error;
pub mod hash;
pub mod meta;
pub mod names;
pub mod runtime;

pub use error::{ApiError, ErrorCode};
