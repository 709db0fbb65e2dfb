//! Fetch with long polling: answers as soon as `min_bytes` are readable or
//! `max_wait_ms` passes, woken by each partition's offsets watch (Kafka's
//! DelayedFetch), never by a sleep loop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::broker::{self as pb, RecordFormat};
use sluice_proto::common;
use sluice_records::decode_batches;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::instrument;

use sluice_auth::Operation;
use sluice_server::access::Rights;
use sluice_server::quota::QuotaKind;
use sluice_types::ApiError;

use super::BrokerService;
use crate::error::BrokerError;
use crate::partition::{LogOffsets, Partition};

const DEFAULT_MAX_BYTES: usize = 50 << 20;
const DEFAULT_PARTITION_MAX_BYTES: usize = 1 << 20;

#[instrument(skip_all, fields(topics = req.topics.len(), max_wait_ms = req.max_wait_ms))]
pub(crate) async fn fetch(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::FetchRequest,
) -> Result<pb::FetchResponse, BrokerError> {
    if req.max_bytes < 0 || req.min_bytes < 0 || req.max_wait_ms < 0 {
        return Err(BrokerError::InvalidFetchSize {
            max_bytes: req.max_bytes,
            min_bytes: req.min_bytes,
            max_wait_ms: req.max_wait_ms,
        });
    }
    let format = RecordFormat::try_from(req.format)
        .map_err(|_| BrokerError::UnknownRecordFormat { format: req.format })?;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms as u64);
    let min_bytes = req.min_bytes.max(1) as usize;
    let max_bytes = if req.max_bytes == 0 {
        DEFAULT_MAX_BYTES
    } else {
        req.max_bytes as usize
    };
    // Resolve partitions once; subscribe before reading so no append between the
    // read and the wait can be missed.
    let targets: Vec<Target> = req
        .topics
        .iter()
        .map(|t| {
            let denied = rights.topic(Operation::Read, &t.name).err();
            (
                t.name.clone(),
                t.partitions
                    .iter()
                    .map(|p| match &denied {
                        Some(e) => (*p, Err(e.clone())),
                        None => (*p, Ok(svc.broker.replicas.get(&t.name, p.partition))),
                    })
                    .collect(),
            )
        })
        .collect();
    let mut receivers: Vec<watch::Receiver<LogOffsets>> = targets
        .iter()
        .flat_map(|(_, ps)| {
            ps.iter()
                .filter_map(|(_, p)| p.as_ref().ok()?.as_ref().map(|p| p.subscribe()))
        })
        .collect();
    loop {
        for r in &mut receivers {
            r.borrow_and_update();
        }
        let (resp, bytes, errors) = read_all(svc, &targets, max_bytes, format)?;
        if bytes >= min_bytes || errors || Instant::now() >= deadline || receivers.is_empty() {
            let mut resp = resp;
            let throttle = rights.quota(QuotaKind::Fetch, || {
                prost::Message::encoded_len(&resp) as f64
            });
            resp.throttle_time_ms = throttle.as_millis().min(i32::MAX as u128) as i32;
            super::count_errors(
                "Fetch",
                resp.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error.as_ref()),
            );
            return Ok(resp);
        }
        let changed =
            futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A requested topic with its partitions, resolved to local replicas (or
/// refused to the caller).
type Target = (
    String,
    Vec<(pb::FetchPartition, Result<Option<Arc<Partition>>, ApiError>)>,
);
type Targets = [Target];

fn read_all(
    svc: &BrokerService,
    targets: &Targets,
    max_bytes: usize,
    format: RecordFormat,
) -> Result<(pb::FetchResponse, usize, bool), BrokerError> {
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(targets.len());
    for (name, parts) in targets {
        let mut out = Vec::with_capacity(parts.len());
        for (req, partition) in parts {
            let mut resp = pb::FetchPartitionResponse {
                partition: req.partition,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let result = match partition {
                Err(e) => Err(BrokerError::Denied(e.clone())),
                Ok(None) => Err(unknown(svc, name, req.partition)),
                Ok(Some(p)) => {
                    let limit = if req.partition_max_bytes > 0 {
                        req.partition_max_bytes as usize
                    } else {
                        DEFAULT_PARTITION_MAX_BYTES
                    }
                    .min(max_bytes.saturating_sub(total));
                    // The first data of a response may exceed the limits, so a
                    // consumer always progresses past a large batch.
                    let min_one = total == 0;
                    match p.check_leader(req.current_leader_epoch) {
                        Err(e) => Err(e),
                        Ok(()) if limit == 0 && !min_one => Ok((Bytes::new(), p.offsets())),
                        Ok(()) => p.read(req.fetch_offset, limit, min_one, true),
                    }
                }
            };
            match result {
                Ok((data, offsets)) => {
                    resp.high_watermark = offsets.hw;
                    resp.last_stable_offset = offsets.hw;
                    resp.log_start_offset = offsets.log_start;
                    total += data.len();
                    if !data.is_empty() {
                        metrics::counter!("sluice_broker_topic_out_bytes_total", "topic" => name.to_string())
                            .increment(data.len() as u64);
                    }
                    resp.next_fetch_offset = sluice_records::batch_headers(&data)
                        .last()
                        .map_or(req.fetch_offset, |h| h.next_offset());
                    match format {
                        RecordFormat::RecordBatches => resp.record_batches = data,
                        RecordFormat::Records => {
                            resp.records = decode(name, req, data)?;
                        }
                    }
                }
                Err(e) => {
                    any_error = true;
                    if let Ok(Some(p)) = partition {
                        let o = p.offsets();
                        resp.high_watermark = o.hw;
                        resp.last_stable_offset = o.hw;
                        resp.log_start_offset = o.log_start;
                    }
                    resp.error = Some(e.to_proto());
                }
            }
            out.push(resp);
        }
        topics.push(pb::FetchTopicResponse {
            name: name.clone(),
            partitions: out,
        });
    }
    Ok((
        pb::FetchResponse {
            topics,
            throttle_time_ms: 0,
        },
        total,
        any_error,
    ))
}

fn unknown(svc: &BrokerService, topic: &str, partition: i32) -> BrokerError {
    super::not_hosted(&svc.broker, topic, partition)
}

/// Decodes stored batches into proto records for clients that asked for them,
/// dropping records before the fetch offset (a batch may start earlier).
fn decode(
    topic: &str,
    req: &pb::FetchPartition,
    data: Bytes,
) -> Result<Vec<common::Record>, BrokerError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let batches = decode_batches(data).map_err(|source| BrokerError::CorruptStoredBatch {
        topic: topic.to_string(),
        partition: req.partition,
        source,
    })?;
    Ok(batches
        .into_iter()
        .flat_map(|b| b.records)
        .filter(|r| r.offset >= req.fetch_offset)
        .map(|r| common::Record {
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(key, value)| common::RecordHeader { key, value })
                .collect(),
            timestamp_ms: r.timestamp,
            offset: r.offset,
        })
        .collect())
}
