//! Sluice's cluster metadata store: one trait, [`MetadataStore`], with two implementations
//! that pass the same test suite.
//!
//! - [`EtcdMetadataStore`] for clusters: every key lives under a per-cluster namespace
//!   prefix such as `/sluice/<cluster>/`.
//! - [`EmbeddedMetadataStore`] for single-process standalone mode and fast unit tests:
//!   in memory, or persisted under a directory.
//!
//! The model is etcd's: a revisioned key space with multi-key transactions ([`Txn`]),
//! prefix watches that can resume from a revision, leases that delete their keys when they
//! expire, and leader election where the winner's create revision is its epoch. A
//! controller fences each of its writes with [`Compare::leader_held`] so that a deposed
//! controller cannot write.
//!
//! # Layout
//!
//! - [`error`]: [`MetaError`], the crate's error type, and [`is_retriable`].
//! - [`types`]: keys and values, [`Txn`] with its [`Compare`]s and [`Op`]s, watch events,
//!   [`LeaderKey`]. Plain data, no I/O.
//! - [`store`]: the [`MetadataStore`] trait and [`LeaseKeeper`].
//! - [`election`]: etcd's election recipe written once over the trait's primitives and
//!   used by both implementations.
//! - [`etcd`]: [`EtcdMetadataStore`], on the `etcd-client` crate.
//! - [`embedded`]: [`EmbeddedMetadataStore`]; `embedded/state.rs` is the pure key-space
//!   state machine, `embedded/wal.rs` the append-only log and snapshot.
//! - `testsuite` (feature `testsuite`): the conformance suite every implementation must
//!   pass, and `testsuite::EtcdServer`, a throwaway etcd process for tests.

pub mod election;
pub mod embedded;
pub mod error;
pub mod etcd;
pub mod store;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod types;

pub use embedded::{EmbeddedMetadataStore, EmbeddedOptions};
pub use error::{MetaError, is_retriable};
pub use etcd::{EtcdMetadataStore, EtcdTls};
pub use store::{LeaseKeeper, MetadataStore, register_ephemeral};
pub use types::{
    CmpOp, Compare, EventKind, KeyValue, LeaderKey, LeaseId, Op, Txn, TxnResult, WatchEvent,
    WatchStream,
};
