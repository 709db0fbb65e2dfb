//! The Sluice client library: [`Producer`], [`Consumer`] and [`Admin`] on the
//! gRPC stubs of `sluice-proto`.
//!
//! Properties use Kafka's names ([`ClientConfig`]); errors carry Sluice's
//! stable codes ([`ClientError::code`]) and display as `CODE_NAME: message`.
//!
//! # Layout
//! - [`config`] - [`ClientConfig`], parsed from Kafka `key=value` properties.
//! - [`error`] - [`ClientError`], wrapping the server's [`sluice_types::ApiError`].
//! - [`cluster`] - bootstrap, the metadata cache (brokers, partition leaders,
//!   controller) and one lazily connected tonic channel per broker.
//! - [`admin`] - [`Admin`]: create/delete topics, add partitions, list and
//!   describe topics, describe the cluster (through the active controller).
//! - [`producer`] - [`Producer`]: partitioner (murmur2 / sticky), record
//!   accumulator (batches per partition), and the sender task (one Produce per
//!   broker per drain, raw v2 batches).
//! - [`consumer`] - [`Consumer`]: assign/seek/poll with long-poll fetches of raw
//!   v2 batches, decoded off the poll path.
//! - [`group_consumer`] - [`GroupConsumer`]: `subscribe`/`poll`/`commit` in a
//!   consumer group (join/sync, heartbeats, assignors from [`assignor`]).
//! - [`dead_letter`] - retry and dead-letter topics: the headers,
//!   [`GroupConsumer::nack`]'s routing, and redriving a dead-letter topic.
//! - [`consumer_protocol`] - member subscriptions and assignments in Kafka's
//!   encoding, so Sluice and Kafka-client consumers can share one group.
//! - [`types`] - [`TopicPartition`].

pub mod admin;
pub mod assignor;
pub mod cluster;
pub mod config;
pub mod consumer;
pub mod consumer_protocol;
pub mod dead_letter;
pub mod delayed_admin;
pub mod error;
pub mod group_admin;
pub mod group_consumer;
pub mod log_dirs;
pub mod producer;
pub mod security_admin;
pub mod types;

pub use admin::{
    Admin, BrokerInfo, ClusterDescription, CoordinatorInfo, CreatedTopic, NewTopic,
    PartitionDescription, TopicDescription, TopicListing,
};
pub use config::{
    Acks, ClientConfig, GroupProtocol, IGNORED_PROPERTIES, IsolationLevel, OffsetReset,
    PartitionerKind,
};
pub use consumer::{Consumer, ConsumerRecord};
pub use delayed_admin::DelayedPartition;
pub use error::{ClientError, Result};
pub use group_admin::{ConsumerMemberState, GroupDescription, GroupListing, MemberDescription};
pub use group_consumer::{Committer, GroupConsumer, Nacked, RebalanceListener};
pub use log_dirs::{BrokerLogDirs, LogDirDescription, ReplicaSize};
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
pub use sluice_types::{ApiError, ErrorCode};
pub use types::TopicPartition;
