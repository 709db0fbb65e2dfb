//! The Sluice controller: the only writer of cluster metadata.
//!
//! Several controllers may run; one wins the election in the metadata store and
//! the others wait. Every write the active controller makes is a transaction
//! fenced by its election key, so a deposed controller cannot write.
//!
//! # Layout
//! - [`config`]: [`ControllerConfig`], Kafka's key names and defaults.
//! - [`placement`]: replica placement (pure: spread replicas and leaders evenly).
//! - [`election`]: leader election and ISR shrink on broker liveness (pure).
//! - [`topic_config`]: validation of per-topic configuration overrides.
//! - [`controller`]: [`Controller`], the election loop, partition leadership
//!   and ISR changes, producer ids; `controller::topic_admin` the topic
//!   operations (create/delete topics, add partitions, alter configs);
//!   `controller::partition_writes` the leadership and ISR passes, written in
//!   chunked transactions (etcd's `--max-txn-ops`); `controller::alter_partition`
//!   brokers' ISR changes.
//! - `crash_watch`: revokes the lease of a registered process that is gone
//!   (its connection broke and its port refuses connections).
//! - [`service`]: the gRPC `Controller` service, one file per RPC family.
//! - [`run`]: a controller's whole life on a `sluice_server::Host`, shared by
//!   `sluice-controller` and `sluice standalone`.
//! - [`error`]: [`ControllerError`], what the controller refuses, with the ids
//!   involved, and its one conversion to the wire error.

pub mod config;
pub mod controller;
mod crash_watch;
pub mod election;
pub mod error;
pub mod offsets_owners;
pub mod placement;
pub mod run;
pub mod service;
pub mod topic_config;

pub use config::ControllerConfig;
pub use controller::Controller;
pub use error::ControllerError;
pub use run::run;
pub use service::ControllerService;
