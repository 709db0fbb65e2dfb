//! The broker's second face: Kafka's binary protocol, so librdkafka, the Java
//! client, kafka-python and kcat work against Sluice unchanged.
//!
//! It is a translation, never a second implementation: every handler turns
//! the Kafka request into the request core's types (the `sluice.broker.v1`
//! messages that the gRPC face serves too), calls the same core function the
//! gRPC service calls, and turns the answer back. Group APIs are forwarded to
//! the coordinator that owns the group, over its gRPC API; admin APIs to the
//! active controller, as the broker's own gRPC calls are.
//!
//! # Layout
//! - [`frame`]: size-prefixed frames to requests (pure, property-tested) and
//!   responses to frames.
//! - [`versions`]: the APIs and version ranges served (ApiVersions' table).
//! - `connection`: one connection's read/handle/write loop.
//! - `dispatch`: API key to handler; `session`: the connection's identity
//!   (certificate or SASL); `acls`: the front door (the access table's
//!   cluster-level rights) and the ACL and SCRAM credential APIs.
//! - `metadata`, `produce`, `fetch`, `offsets` (ListOffsets,
//!   OffsetForLeaderEpoch), `groups` (FindCoordinator and the group APIs),
//!   `admin` (topics, partitions, configs, cluster, producer ids), `log_dirs`
//!   (DescribeLogDirs, DeleteRecords): one file per API family, each a
//!   translation onto the core.
//!
//! Node ids: Kafka clients see brokers only. FindCoordinator names the broker
//! leading the group's `__consumer_offsets` partition (Kafka's choice too);
//! whichever broker receives a group request forwards it to the coordinator
//! service that owns the group. Metadata names the answering broker as the
//! "controller", as KRaft brokers do, and admin requests sent there are
//! forwarded to the active controller.

mod acls;
mod admin;
mod connection;
mod consumer_groups;
mod dispatch;
mod fetch;
pub mod frame;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod produce;
mod session;
pub mod versions;

use kafka_protocol::protocol::StrBytes;
use sluice_proto::common;
use sluice_server::demux::KafkaIncoming;
use sluice_types::ErrorCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::{BrokerError, BrokerService};

/// The memory all Kafka connections of a broker may hold in large requests
/// (over 1 MiB) read but not yet answered, in KiB (Kafka's
/// `queued.max.request.bytes`, which it leaves unbounded by default; 512 MiB
/// here). A request larger than this takes all of it.
const BUDGET_KIB: u32 = 512 << 10;

/// Serves Kafka connections from `incoming` until `stop` fires, then gives
/// open connections [`sluice_server::DRAIN_TIMEOUT`] to finish the request
/// they are handling, and drops the rest.
pub async fn serve(svc: BrokerService, mut incoming: KafkaIncoming, stop: CancellationToken) {
    let budget = Arc::new(Semaphore::new(BUDGET_KIB as usize));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            c = incoming.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        metrics::counter!("sluice_broker_kafka_connections_total").increment(1);
        connections.spawn(connection::serve(
            svc.clone(),
            stream,
            peer,
            budget.clone(),
            stop.clone(),
        ));
    }
    let drained = tokio::time::timeout(sluice_server::DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "Kafka connections still busy after the drain timeout; closing them"
        );
        connections.abort_all();
    }
    info!("Kafka listener stopped");
}

/// Kafka's error code for an optional core error (0 when none).
fn code(e: Option<&common::Error>) -> i16 {
    e.map_or(0, |e| kafka_code(e.code))
}

/// Kafka's error code for a core error.
fn api_code(e: &BrokerError) -> i16 {
    kafka_code(e.code() as i32)
}

/// Sluice's codes are Kafka's, except its own (1000 and up), which Kafka
/// clients do not know and would treat as fatal: a metadata store outage is
/// retriable (REQUEST_TIMED_OUT), a missing feature UNSUPPORTED_VERSION.
fn kafka_code(code: i32) -> i16 {
    match ErrorCode::try_from(code) {
        Ok(ErrorCode::MetadataStoreUnavailable) => 7,
        Ok(ErrorCode::NotImplemented) => 35,
        _ if code >= 1000 => -1,
        _ => code as i16,
    }
}

/// Kafka's message for an optional core error.
fn message(e: Option<&common::Error>) -> Option<StrBytes> {
    e.filter(|e| e.code != ErrorCode::None as i32)
        .map(|e| StrBytes::from_string(e.message.clone()))
}

/// Where the brokers `ids` are (each once): (id, host, port, rack), for the
/// KIP-951 node endpoints of Produce and Fetch answers.
fn endpoints(
    svc: &BrokerService,
    mut ids: Vec<i32>,
) -> Vec<(i32, StrBytes, i32, Option<StrBytes>)> {
    ids.sort_unstable();
    ids.dedup();
    svc.broker.metadata.read(|v| {
        ids.iter()
            .filter_map(|id| v.brokers.get(id))
            .map(|b| {
                let rack = b.rack.clone().map(str_bytes);
                (b.broker_id, str_bytes(b.host.clone()), b.port, rack)
            })
            .collect()
    })
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A topic id as Kafka sends it (nil when the id is not a UUID).
fn topic_uuid(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

/// Kafka error codes that Sluice's core does not produce.
mod codes {
    /// The request is not valid for this broker (transactions, for one).
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
}

/// Why transactional requests are refused, where the response has a message.
const NO_TRANSACTIONS: &str =
    "transactions are not supported by Sluice yet (idempotent producers are)";
