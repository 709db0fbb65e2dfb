//! ListOffsets (earliest, latest, by timestamp) through the core, and
//! OffsetForLeaderEpoch (consumers detecting a truncated log, KIP-320) from
//! the partition's leader-epoch cache.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use sluice_proto::broker::{self as pb, OffsetSpec};

use super::{api_code, code, codes};
use crate::{BrokerError, BrokerService};
use sluice_auth::Operation;
use sluice_server::access::Rights;

/// Kafka's special timestamps in ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Earliest offset on local storage (KIP-405): all of it, here.
const EARLIEST_LOCAL: i64 = -4;

pub(super) fn list_offsets(
    svc: &BrokerService,
    rights: &Rights,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let spec = match p.timestamp {
                LATEST => OffsetSpec::Latest,
                EARLIEST | EARLIEST_LOCAL => OffsetSpec::Earliest,
                MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
                ts if ts >= 0 => OffsetSpec::Timestamp,
                _ => {
                    partitions.push(
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes::INVALID_REQUEST),
                    );
                    continue;
                }
            };
            // The core checks leadership; the epoch fence is checked here first.
            if let Some(e) = fence(svc, &name, p.partition_index, p.current_leader_epoch) {
                partitions.push(
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(api_code(&e)),
                );
                continue;
            }
            let core = crate::service::list_offsets::list_offsets(
                svc,
                rights,
                pb::ListOffsetsRequest {
                    isolation_level: req.isolation_level as i32,
                    topics: vec![pb::ListOffsetsTopic {
                        name: name.clone(),
                        partitions: vec![pb::ListOffsetsPartition {
                            partition: p.partition_index,
                            spec: spec as i32,
                            timestamp_ms: p.timestamp.max(0),
                        }],
                    }],
                },
            );
            let r = core
                .topics
                .into_iter()
                .flat_map(|t| t.partitions)
                .next()
                .unwrap_or_default();
            let mut out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code(r.error.as_ref()))
                .with_timestamp(r.timestamp_ms)
                .with_offset(r.offset);
            if version >= 4 {
                out = out.with_leader_epoch(r.leader_epoch);
            }
            partitions.push(out);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The leader-epoch fence for a partition this broker hosts (None: passes,
/// or the core will answer the missing partition itself).
fn fence(svc: &BrokerService, topic: &str, partition: i32, epoch: i32) -> Option<BrokerError> {
    if epoch < 0 {
        return None;
    }
    svc.broker
        .replicas
        .get(topic, partition)
        .and_then(|p| p.check_leader(epoch).err())
}

pub(super) fn offset_for_leader_epoch(
    svc: &BrokerService,
    rights: &Rights,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.to_string();
            let denied = rights.topic(Operation::Describe, &name).err();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = match svc.broker.replicas.get(&name, p.partition) {
                        _ if let Some(e) = &denied => Err(e.code as i16),
                        None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
                        Some(part) => part
                            .end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch)
                            .map_err(|e| api_code(&e)),
                    };
                    match answer {
                        Ok((epoch, end)) => EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_leader_epoch(epoch)
                            .with_end_offset(end),
                        Err(code) => EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
