//! The Sluice group coordinator: Kafka's classic consumer-group protocol and
//! committed offsets stored in `__consumer_offsets`.
//!
//! This release ships the API contract only: every RPC answers gRPC
//! UNIMPLEMENTED with the stable code NOT_IMPLEMENTED and a message saying so,
//! so clients get a clear answer instead of a transport error. The group state
//! machine, assignors and offset storage arrive with the consumer-group release.
//!
//! # Layout
//! - [`service`]: the gRPC `GroupCoordinator` service.

pub mod group;
pub mod service;

pub use service::CoordinatorService;
