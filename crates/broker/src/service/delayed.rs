//! DescribeDelayed and CancelDelayed: the admin side of delayed delivery
//! (`sluice delayed`), on the blocking pool (both walk timer indexes on disk).

use sluice_proto::broker as pb;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::BrokerService;
use crate::broker::now_ms;
use crate::error::BrokerError;

fn describe(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::DescribeDelayedRequest,
) -> Result<pb::DescribeDelayedResponse, BrokerError> {
    // Named topics must be describable; "all" shows what the caller sees.
    for t in &req.topics {
        rights
            .topic(Operation::Describe, t)
            .map_err(BrokerError::Denied)?;
    }
    let now = now_ms();
    let mut partitions = Vec::new();
    for p in svc.broker.replicas.all() {
        if !req.topics.is_empty() && !req.topics.contains(&p.topic) {
            continue;
        }
        if req.topics.is_empty() && !rights.sees_topic(&p.topic) {
            continue;
        }
        let s = match p.delays_summary(now) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "cannot read the timer index");
                continue;
            }
        };
        let [minute, hour, day, later] = s.due_within.map(|n| n as i64);
        partitions.push(pb::DelayedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            pending: s.pending as i64,
            next_due_ms: s.next_due_ms,
            last_due_ms: s.last_due_ms,
            due_within_minute: minute,
            due_within_hour: hour,
            due_within_day: day,
            due_later: later,
        });
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(pb::DescribeDelayedResponse { partitions })
}

fn cancel(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::CancelDelayedRequest,
) -> pb::CancelDelayedResponse {
    let broker = &svc.broker;
    let result = match rights.topic(Operation::Write, &req.topic) {
        Err(e) => Err(BrokerError::Denied(e)),
        Ok(()) => match broker.replicas.get(&req.topic, req.partition) {
            None => Err(super::not_hosted(broker, &req.topic, req.partition)),
            Some(p) => p.cancel_delayed(req.id, now_ms()),
        },
    };
    if result.is_ok() {
        tracing::info!(topic = %req.topic, partition = req.partition, id = req.id, "delayed record cancelled");
    }
    pb::CancelDelayedResponse {
        error: result.err().map(|e| e.to_proto()),
    }
}

pub(crate) async fn describe_blocking(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::DescribeDelayedRequest,
) -> Result<pb::DescribeDelayedResponse, BrokerError> {
    let svc = svc.clone();
    let rights = rights.clone();
    tokio::task::spawn_blocking(move || describe(&svc, &rights, req))
        .await
        .map_err(|source| BrokerError::TaskFailed {
            task: "DescribeDelayed",
            source,
        })?
}

pub(crate) async fn cancel_blocking(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::CancelDelayedRequest,
) -> Result<pb::CancelDelayedResponse, BrokerError> {
    let svc = svc.clone();
    let rights = rights.clone();
    tokio::task::spawn_blocking(move || cancel(&svc, &rights, req))
        .await
        .map_err(|source| BrokerError::TaskFailed {
            task: "CancelDelayed",
            source,
        })
}
