//! The Sluice broker: hosts partition replicas on local disk and serves
//! Produce, Fetch, ListOffsets and Metadata.
//!
//! The broker learns cluster metadata by watching the metadata store (topics,
//! partition leaders, live brokers, the active controller) and reconciles its
//! local replicas with it: it creates logs for partitions assigned to it and
//! deletes logs of deleted topics.
//!
//! # Layout
//! - [`config`]: [`BrokerConfig`], Kafka's key names and defaults.
//! - [`error`]: [`BrokerError`], every error the broker raises with the ids
//!   involved, and its one conversion to the wire error (code and message).
//! - [`metadata`]: [`MetadataCache`], the broker's view of the cluster, fed by a
//!   watch on the metadata store.
//! - [`partition`]: [`Partition`], one local replica: its log, leader epoch and
//!   the (log end offset, high watermark) watch that long polls wait on
//!   (`partition::follower`: the follower side of it; `partition::delays`:
//!   its timer index of delayed records, their rewrite at produce and their
//!   release).
//! - `delayed`: the task that releases due delayed records on the
//!   partitions this broker leads.
//! - [`producer_state`]: idempotent-producer state per partition (dedup of
//!   retried batches, sequence gap detection), snapshotted beside the log.
//! - [`replica_manager`]: [`ReplicaManager`], every local replica: append, read,
//!   reconcile with metadata, retention, checkpoints.
//! - [`replication`]: follower fetchers (one per leader broker) and leader-side
//!   ISR shrink/expand through the controller.
//! - [`broker`]: [`Broker`], startup (registration under a lease, metadata
//!   watch, background tasks) and clean shutdown.
//! - [`service`]: the request core and the gRPC `Broker` service over it, one
//!   file per RPC family.
//! - [`kafka`]: Kafka's binary protocol, a translation onto the same core.
//! - [`run`]: a broker's whole life on a `sluice_server::Host`, shared by
//!   `sluice-broker` and `sluice standalone`.

pub mod broker;
pub mod config;
mod delayed;
pub mod error;
pub mod kafka;
pub mod metadata;
pub mod partition;
pub mod producer_state;
pub mod replica_manager;
pub mod replication;
pub mod run;
pub mod service;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::BrokerError;
pub use metadata::MetadataCache;
pub use replica_manager::ReplicaManager;
pub use run::run;
pub use service::BrokerService;
