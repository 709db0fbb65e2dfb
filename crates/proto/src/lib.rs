//! Generated gRPC code for the Sluice API in `proto/`.
//!
//! # Layout
//! - [`common`]: error codes, records, endpoints shared by every service.
//! - [`broker`]: the Broker service (Metadata, Produce, Fetch, ListOffsets,
//!   ReplicaFetch, FindCoordinator).
//! - [`controller`]: the Controller service (topic admin, AlterPartition, producer ids).
//! - [`coordinator`]: the GroupCoordinator service (consumer groups and offsets).
//!
//! Nothing here is written by hand except this file: the code is generated into
//! `OUT_DIR` by `build.rs`.

#![allow(clippy::all, missing_docs)]

/// Modules nest like the proto packages because generated code refers to other
/// packages by relative paths (`super::super::common::v1`).
pub mod sluice {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("sluice.common.v1");
        }
    }
    pub mod broker {
        pub mod v1 {
            tonic::include_proto!("sluice.broker.v1");
        }
    }
    pub mod controller {
        pub mod v1 {
            tonic::include_proto!("sluice.controller.v1");
        }
    }
    pub mod coordinator {
        pub mod v1 {
            tonic::include_proto!("sluice.coordinator.v1");
        }
    }
}

pub use sluice::broker::v1 as broker;
pub use sluice::common::v1 as common;
pub use sluice::controller::v1 as controller;
pub use sluice::coordinator::v1 as coordinator;

/// The encoded FileDescriptorSet of every Sluice proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sluice_descriptor.bin"));
