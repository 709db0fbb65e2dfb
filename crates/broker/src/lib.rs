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
//! - [`metadata`]: [`MetadataCache`], the broker's view of the cluster, fed by a
//!   watch on the metadata store.
//! - [`partition`]: [`Partition`], one local replica: its log, leader epoch and
//!   the (log end offset, high watermark) watch that long polls wait on.
//! - [`producer_state`]: idempotent-producer state per partition (dedup of
//!   retried batches, sequence gap detection), snapshotted beside the log.
//! - [`replica_manager`]: [`ReplicaManager`], every local replica: append, read,
//!   reconcile with metadata, retention, checkpoints.
//! - [`replication`]: follower fetchers (one per leader broker) and leader-side
//!   ISR shrink/expand through the controller.
//! - [`broker`]: [`Broker`], startup (registration under a lease, metadata
//!   watch, background tasks) and clean shutdown.
//! - [`service`]: the gRPC `Broker` service, one file per RPC family.

pub mod broker;
pub mod config;
pub mod metadata;
pub mod partition;
pub mod producer_state;
pub mod replica_manager;
pub mod replication;
pub mod service;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use metadata::MetadataCache;
pub use replica_manager::ReplicaManager;
pub use service::BrokerService;

/// The accepted-connection stream for a bound listener, with TCP_NODELAY set.
/// tonic applies `Server::tcp_nodelay` only to addresses it binds itself, so a
/// listener we bind (to learn its port) must set it here, or Nagle's algorithm
/// delays small responses by ~40 ms.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A gRPC server builder with the transport settings every Sluice service uses:
/// HTTP/2 windows large enough for multi-MiB batches and TCP_NODELAY, because
/// the defaults (64 KiB windows) cap throughput far below the disk's.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(64 << 20))
        .max_concurrent_streams(Some(1024))
        // Lets clients send a multi-MiB produce in few large frames instead of
        // 16 KiB ones (fewer syscalls and wake-ups per request).
        .max_frame_size(Some(1 << 20))
}
