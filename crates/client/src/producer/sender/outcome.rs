//! What a Produce answer (or a failed request) does to each batch: complete
//! its records with their offsets, retry it (the retry rule, and putting
//! retries back in send order so sequence numbers stay in order), or fail it
//! for good, giving an idempotent producer's identity up when the batch had
//! spent sequence numbers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_proto::broker::ProduceResponse;
use sluice_types::{ApiError, ErrorCode};

use crate::cluster::UNKNOWN_TOPIC_WAIT;
use crate::config::{Acks, ClientConfig};
use crate::error::ClientError;
use crate::producer::Inner;
use crate::producer::accumulator::ProducerBatch;
use crate::producer::completions::Outcome;
use crate::types::TopicPartition;

/// Completes, retries or fails each sent batch from the broker's answer.
pub(super) fn handle_response(
    inner: &Inner,
    batches: Vec<ProducerBatch>,
    resp: &ProduceResponse,
    refresh: &mut Vec<String>,
    retries: &mut Retries,
) {
    let config = &inner.cluster.config;
    // Offsets of later batches of a partition follow the earlier ones.
    let mut next_offset: HashMap<TopicPartition, i64> = HashMap::new();
    for b in batches {
        let part = resp
            .topics
            .iter()
            .find(|t| t.name == b.tp.topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == b.tp.partition));
        if config.acks == Acks::None {
            complete(inner, b, -1, -1);
            continue;
        }
        let Some(part) = part else {
            let err = ClientError::api(
                ErrorCode::UnknownServerError,
                format!("the broker did not answer for {}", b.tp),
            );
            retry_or_fail(inner, b, err, false, refresh, retries);
            continue;
        };
        match ApiError::from_proto(part.error.as_ref()) {
            Some(e) => {
                let hinted = e.code == ErrorCode::NotLeaderOrFollower
                    && inner.cluster.learn_leader(
                        &b.tp,
                        part.current_leader_id,
                        part.current_leader_epoch,
                    );
                retry_or_fail(inner, b, e.into(), hinted, refresh, retries)
            }
            None => {
                let base = *next_offset.entry(b.tp.clone()).or_insert(part.base_offset);
                next_offset.insert(b.tp.clone(), base + b.records.len() as i64);
                complete(inner, b, base, part.log_append_time_ms)
            }
        }
    }
}

fn complete(inner: &Inner, b: ProducerBatch, base_offset: i64, log_append_time: i64) {
    let outcome = Outcome::Sent {
        base_offset,
        log_append_time,
    };
    inner.completions.push(inner, b, outcome);
}

/// Batches to put back, in send order. Re-enqueued together at the end with
/// [`requeue`], in reverse, because each goes to the front of its queue: one
/// by one in send order would reverse them and break sequence order.
pub(super) type Retries = Vec<(ProducerBatch, Instant)>;

pub(super) fn requeue(inner: &Inner, retries: Retries) {
    if retries.is_empty() {
        return;
    }
    let mut state = inner.state.lock();
    for (b, at) in retries.into_iter().rev() {
        state.acc.reenqueue(b, at);
    }
}

/// `hinted`: the answer named a newer leader, now in the cache (KIP-951), so
/// the retry goes at once and needs no metadata refresh.
pub(super) fn retry_or_fail(
    inner: &Inner,
    mut b: ProducerBatch,
    err: ClientError,
    hinted: bool,
    refresh: &mut Vec<String>,
    retries: &mut Retries,
) {
    b.attempts += 1;
    let decision = retry_decision(
        &inner.cluster.config,
        &err,
        hinted,
        b.created,
        b.attempts,
        Instant::now(),
    );
    match decision {
        Retry::At(retry_at) => {
            tracing::debug!(tp = %b.tp, error = %err, attempt = b.attempts, "retrying batch");
            if !hinted && !refresh.contains(&b.tp.topic) {
                refresh.push(b.tp.topic.clone());
            }
            retries.push((b, retry_at));
        }
        Retry::Fail => fail_for_good(inner, b, err),
    }
}

/// What happens to a batch whose send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Send it again, not before this instant.
    At(Instant),
    /// Fail its records.
    Fail,
}

/// The retry rule: a retriable error (or UNKNOWN_TOPIC_OR_PARTITION for a
/// batch younger than twice [`UNKNOWN_TOPIC_WAIT`]: a topic just created may
/// not have reached this broker yet) is retried after `retry.backoff.ms`
/// (at once when `hinted`: the answer named the new leader), as long as the
/// retry starts within `delivery.timeout.ms` of the batch's creation and
/// `attempts` (including the one that just failed) stays within `retries`.
pub(super) fn retry_decision(
    config: &ClientConfig,
    err: &ClientError,
    hinted: bool,
    created: Instant,
    attempts: u32,
    now: Instant,
) -> Retry {
    let retry_at = if hinted {
        now
    } else {
        now + config.retry_backoff
    };
    let young_unknown = err.code() == ErrorCode::UnknownTopicOrPartition
        && now.duration_since(created) < UNKNOWN_TOPIC_WAIT * 2;
    let retriable = err.is_retriable() || young_unknown;
    let in_time = created + config.delivery_timeout > retry_at + Duration::from_millis(1);
    if retriable && in_time && attempts <= config.retries {
        Retry::At(retry_at)
    } else {
        Retry::Fail
    }
}

/// The error a batch fails with when it outlived `delivery.timeout.ms`
/// before it could be sent.
pub(super) fn expired_error(b: &ProducerBatch, delivery_timeout: Duration) -> ClientError {
    ClientError::api(
        ErrorCode::RequestTimedOut,
        format!(
            "{}: {} record(s) expired after delivery.timeout.ms ({} ms)",
            b.tp,
            b.records.len(),
            delivery_timeout.as_millis()
        ),
    )
}

/// Fails every record of `b`. A batch that was encoded with sequence numbers
/// by an idempotent producer takes its sequences with it, so the producer
/// gives its identity up ([`Inner::reset_sequences`]).
pub(super) fn fail_for_good(inner: &Inner, b: ProducerBatch, err: ClientError) {
    if let Some(encoded) = &b.encoded
        && inner.cluster.config.idempotence()
    {
        let producer_id = sluice_records::RecordBatchHeader::parse(encoded).map(|h| h.producer_id);
        inner.reset_sequences(producer_id);
    }
    inner.completions.push(inner, b, Outcome::Failed(err));
}
