//! The Sluice group coordinator: Kafka's classic consumer-group protocol, the
//! consumer protocol (KIP-848, server-side assignment), and
//! committed offsets stored in `__consumer_offsets`.
//!
//! # Layout
//! - [`group`]: one group's state machine (join, sync, heartbeat, leave,
//!   timers, commit fencing), without I/O.
//! - [`consumer_group`]: the consumer protocol (KIP-848) of a group:
//!   server-side assignors, reconciliation, epochs, without I/O.
//! - [`records`]: what is written to `__consumer_offsets` and how a new owner
//!   replays it (with fencing of deposed owners by ownership epoch).
//! - [`coordinator`]: registration, partition ownership, loading, writing,
//!   timers.
//! - [`service`]: the gRPC `GroupCoordinator` service.
//! - [`error`]: [`CoordinatorError`], everything the coordinator refuses or
//!   fails at, and its one conversion to the wire error.
//! - [`config`]: the coordinator settings, [`CoordinatorConfig`].
//! - [`run`]: a coordinator's whole life on a `sluice_server::Host`, shared
//!   by `sluice-coordinator` and `sluice standalone`.

pub mod config;
pub mod consumer_group;
pub mod coordinator;
pub mod error;
pub mod group;
pub mod records;
pub mod run;
pub mod service;

pub use config::CoordinatorConfig;
pub use coordinator::Coordinator;
pub use error::CoordinatorError;
pub use run::run;
pub use service::CoordinatorService;
