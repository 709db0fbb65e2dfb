//! Produce: one append per partition per request, acks 0/1/all.

use std::time::Duration;

use bytes::BytesMut;
use sluice_proto::broker as pb;
use sluice_records::{EncodeOptions, Record, encode_batch};
use sluice_types::{ApiError, ErrorCode};
use tracing::instrument;

use super::BrokerService;
use crate::broker::now_ms;

#[instrument(skip_all, fields(acks = req.acks, topics = req.topics.len()))]
pub(super) async fn produce(
    svc: &BrokerService,
    req: pb::ProduceRequest,
) -> Result<pb::ProduceResponse, ApiError> {
    if !(-1..=1).contains(&req.acks) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequiredAcks,
            format!("acks must be 0, 1 or -1 (all), got {}", req.acks),
        ));
    }
    let broker = &svc.broker;
    if broker.config.auto_create_topics_enable {
        let missing: Vec<String> = broker.metadata.read(|v| {
            req.topics
                .iter()
                .filter(|t| !v.topics.contains_key(&t.name))
                .map(|t| t.name.clone())
                .collect()
        });
        if !missing.is_empty() {
            svc.auto_create_topics(&missing).await?;
        }
    }
    let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 300_000) as u64);
    let mut out = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let partition = p.partition;
            let res = append_one(svc, &topic.name, p, req.acks, timeout).await;
            parts.push(match res {
                Ok((base_offset, log_start_offset)) => pb::PartitionProduceResponse {
                    partition,
                    error: None,
                    base_offset,
                    log_start_offset,
                    log_append_time_ms: -1,
                    current_leader_id: -1,
                    current_leader_epoch: -1,
                },
                Err(e) => {
                    let (leader, epoch) = broker
                        .metadata
                        .read(|v| {
                            v.topics
                                .get(&topic.name)
                                .and_then(|t| t.partitions.get(&partition))
                                .map(|s| (s.leader, s.leader_epoch))
                        })
                        .unwrap_or((-1, -1));
                    pb::PartitionProduceResponse {
                        partition,
                        error: Some(e.to_proto()),
                        base_offset: -1,
                        log_start_offset: -1,
                        log_append_time_ms: -1,
                        current_leader_id: leader,
                        current_leader_epoch: epoch,
                    }
                }
            });
        }
        out.push(pb::TopicProduceResponse {
            name: topic.name,
            partitions: parts,
        });
    }
    Ok(pb::ProduceResponse { topics: out })
}

async fn append_one(
    svc: &BrokerService,
    topic: &str,
    data: pb::PartitionProduceData,
    acks: i32,
    timeout: Duration,
) -> Result<(i64, i64), ApiError> {
    let broker = &svc.broker;
    let Some(partition) = broker.replicas.get(topic, data.partition) else {
        return Err(broker.metadata.read(|v| match v.topics.get(topic) {
            None => ApiError::unknown_topic(topic),
            Some(t) if data.partition < 0 || data.partition >= t.record.num_partitions() => {
                ApiError::unknown_partition(topic, data.partition)
            }
            Some(_) => ApiError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "broker {} does not host {topic}-{}",
                    broker.config.broker_id, data.partition
                ),
            ),
        }));
    };
    let batches = if !data.record_batches.is_empty() {
        // One copy: offsets are rewritten in place in a buffer we own.
        BytesMut::from(&data.record_batches[..])
    } else if !data.records.is_empty() {
        let now = now_ms();
        let records: Vec<Record> = data
            .records
            .into_iter()
            .map(|r| Record {
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                timestamp: if r.timestamp_ms > 0 {
                    r.timestamp_ms
                } else {
                    now
                },
                offset: 0,
            })
            .collect();
        let encoded = encode_batch(&records, EncodeOptions::default()).map_err(|e| {
            ApiError::new(
                ErrorCode::CorruptMessage,
                format!("{topic}-{}: {e}", data.partition),
            )
        })?;
        encoded
            .try_into_mut()
            .unwrap_or_else(|b| BytesMut::from(&b[..]))
    } else {
        return Err(ApiError::invalid_request(format!(
            "produce to {topic}-{} carries neither records nor record_batches",
            data.partition
        )));
    };
    let min_insync = broker.metadata.read(|v| {
        v.topics
            .get(topic)
            .and_then(|t| t.record.configs.get("min.insync.replicas"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(broker.config.min_insync_replicas)
    });
    let info = partition.append_as_leader(batches, acks, min_insync)?;
    if acks == -1 {
        // Wait for the high watermark to cover the batch (immediate while this
        // broker is the only in-sync replica).
        let mut rx = partition.subscribe();
        let target = info.last_offset + 1;
        let waited = tokio::time::timeout(timeout, rx.wait_for(|o| o.hw >= target)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return Err(ApiError::new(
                ErrorCode::RequestTimedOut,
                format!(
                    "{topic}-{}: replication of offsets {}..={} did not finish within {} ms",
                    data.partition,
                    info.first_offset,
                    info.last_offset,
                    timeout.as_millis()
                ),
            ));
        }
    }
    Ok((info.first_offset, partition.offsets().log_start))
}
