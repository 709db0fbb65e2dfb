//! ReplicaFetch: followers pull from the leader. One request carries every
//! partition a follower replicates from this leader (Kafka's
//! ReplicaFetcherThread). The follower's fetch offset is its log end offset,
//! which moves the high watermark; the request long-polls like a consumer Fetch.

use std::time::Duration;

use bytes::Bytes;
use sluice_proto::broker as pb;
use tokio::time::Instant;
use tracing::instrument;

use super::BrokerService;
use crate::error::BrokerError;
use crate::partition::{FollowerRegistration, ReplicaRead};

#[instrument(skip_all, fields(follower = req.replica_id))]
pub(super) async fn replica_fetch(
    svc: &BrokerService,
    req: pb::ReplicaFetchRequest,
) -> Result<pb::ReplicaFetchResponse, BrokerError> {
    // KIP-380: a fetch from an older registration than this leader knows is
    // a stale incarnation (paused or restarted since); one this leader does
    // not know yet (its metadata lags) is served and counted only as the
    // incarnation already counted (see FollowerRegistration).
    let known = svc
        .broker
        .metadata
        .read(|v| v.brokers.get(&req.replica_id).map(|b| b.epoch));
    if let Some(current) = known
        && req.replica_epoch < current
    {
        return Err(BrokerError::StaleBrokerEpoch {
            broker: req.replica_id,
            epoch: req.replica_epoch,
            current,
        });
    }
    let registration = if known == Some(req.replica_epoch) {
        FollowerRegistration::Current(req.replica_epoch)
    } else {
        FollowerRegistration::Unconfirmed(req.replica_epoch)
    };
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.clamp(0, 30_000) as u64);
    let mut receivers: Vec<_> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(|p| svc.broker.replicas.get(&t.name, p.partition))
                .map(|p| p.subscribe())
                .collect::<Vec<_>>()
        })
        .collect();
    loop {
        for r in &mut receivers {
            r.borrow_and_update();
        }
        let (resp, bytes, urgent) = read_all(svc, &req, registration);
        if bytes > 0 || urgent || Instant::now() >= deadline || receivers.is_empty() {
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

/// Reads every partition; `urgent` when an answer must not wait (an error, a
/// divergence, or a high watermark the follower has not seen yet).
fn read_all(
    svc: &BrokerService,
    req: &pb::ReplicaFetchRequest,
    registration: FollowerRegistration,
) -> (pb::ReplicaFetchResponse, usize, bool) {
    let mut total = 0;
    let mut urgent = false;
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        16 << 20
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut out = pb::ReplicaFetchPartitionResponse {
                partition: p.partition,
                high_watermark: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            let Some(partition) = svc.broker.replicas.get(&t.name, p.partition) else {
                urgent = true;
                out.error = Some(
                    BrokerError::NotHosted {
                        topic: t.name.clone(),
                        partition: p.partition,
                        broker: svc.broker.config.broker_id,
                    }
                    .to_proto(),
                );
                partitions.push(out);
                continue;
            };
            let limit = if p.partition_max_bytes > 0 {
                p.partition_max_bytes as usize
            } else {
                1 << 20
            }
            .min(max_bytes.saturating_sub(total))
            .max(1);
            match partition.read_for_follower(
                req.replica_id,
                registration,
                p.fetch_offset,
                p.last_fetched_epoch,
                p.current_leader_epoch,
                limit,
            ) {
                Ok(ReplicaRead::Data {
                    batches,
                    hw,
                    log_start,
                }) => {
                    total += batches.len();
                    metrics::counter!("sluice_broker_replication_out_bytes_total")
                        .increment(batches.len() as u64);
                    out.high_watermark = hw;
                    out.log_start_offset = log_start;
                    out.record_batches = batches;
                }
                Ok(ReplicaRead::Diverging {
                    epoch,
                    end_offset,
                    hw,
                    log_start,
                }) => {
                    urgent = true;
                    out.high_watermark = hw;
                    out.log_start_offset = log_start;
                    out.record_batches = Bytes::new();
                    out.diverging_epoch = Some(pb::EpochEndOffset { epoch, end_offset });
                }
                Err(e) => {
                    urgent = true;
                    // With OFFSET_OUT_OF_RANGE the follower restarts its log
                    // at the leader's start, so say where that is.
                    let o = partition.offsets();
                    out.high_watermark = o.hw;
                    out.log_start_offset = o.log_start;
                    out.error = Some(e.to_proto());
                }
            }
            partitions.push(out);
        }
        topics.push(pb::ReplicaFetchTopicResponse {
            name: t.name.clone(),
            partitions,
        });
    }
    (pb::ReplicaFetchResponse { topics }, total, urgent)
}
