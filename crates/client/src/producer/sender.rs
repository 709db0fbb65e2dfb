//! The sender task: drains ready batches and sends them, one Produce RPC per
//! leader broker at a time, up to `max.in.flight.requests.per.connection`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_proto::broker::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sluice_records::{EncodeOptions, encode_batch};
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::accumulator::ProducerBatch;
use super::{Inner, RecordMetadata};
use crate::cluster::UNKNOWN_TOPIC_WAIT;
use crate::config::Acks;
use crate::error::ClientError;
use crate::types::TopicPartition;

pub(crate) async fn run(inner: Arc<Inner>) {
    let config = inner.cluster.config.clone();
    let mut in_flight: HashMap<i32, Arc<Semaphore>> = HashMap::new();
    let active = Arc::new(AtomicUsize::new(0));
    // Partitions with a batch in flight. gRPC runs concurrent requests on
    // separate HTTP/2 streams that the broker may serve in any order, so a
    // second batch of the same partition waits until the first is answered
    // (Kafka's partition muting); otherwise records could land out of order.
    let muted: Arc<parking_lot::Mutex<HashSet<TopicPartition>>> = Arc::default();
    loop {
        let wake = inner.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();

        let now = Instant::now();
        let (expired, ready, closed, empty) = {
            let mut state = inner.state.lock();
            let expired = state.acc.expire(now, config.delivery_timeout);
            let ready = state.acc.ready(now);
            (expired, ready, state.acc.closed, state.acc.is_empty())
        };
        for b in expired {
            if b.encoded.is_some() && config.idempotence() {
                inner.reset_sequences();
            }
            let n = b.records.len();
            let err = ClientError::api(
                ErrorCode::RequestTimedOut,
                format!(
                    "{}: {n} record(s) expired after delivery.timeout.ms ({} ms)",
                    b.tp,
                    config.delivery_timeout.as_millis()
                ),
            );
            b.fail(err);
            inner.record_done(n);
        }
        if closed && empty && active.load(Ordering::Acquire) == 0 {
            break;
        }

        let mut by_broker: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut unknown: Vec<String> = Vec::new();
        for tp in ready.ready {
            if muted.lock().contains(&tp) {
                continue;
            }
            let leader = inner.cluster.leader(&tp.topic, tp.partition).leader;
            if leader < 0 || inner.cluster.broker_addr(leader).is_none() {
                if !unknown.contains(&tp.topic) {
                    unknown.push(tp.topic.clone());
                }
            } else {
                by_broker.entry(leader).or_default().push(tp);
            }
        }
        if !unknown.is_empty() {
            spawn_refresh(&inner, unknown.clone());
        }

        let mut sent = false;
        for (broker, tps) in by_broker {
            let sem = in_flight
                .entry(broker)
                .or_insert_with(|| Arc::new(Semaphore::new(config.max_in_flight)))
                .clone();
            let Ok(permit) = sem.try_acquire_owned() else {
                continue;
            };
            let batches = inner.state.lock().acc.drain(&tps, config.max_request_size);
            if batches.is_empty() {
                continue;
            }
            sent = true;
            active.fetch_add(1, Ordering::AcqRel);
            let sent_tps: Vec<TopicPartition> = batches.iter().map(|b| b.tp.clone()).collect();
            muted.lock().extend(sent_tps.iter().cloned());
            let inner = inner.clone();
            let active = active.clone();
            let muted = muted.clone();
            tokio::spawn(async move {
                send_request(&inner, broker, batches, permit).await;
                // Retries were re-enqueued at the front by now, so unmuting keeps order.
                let mut m = muted.lock();
                for tp in &sent_tps {
                    m.remove(tp);
                }
                drop(m);
                active.fetch_sub(1, Ordering::AcqRel);
                inner.wake.notify_one();
            });
        }
        if sent {
            // More may be ready (queues deeper than one batch): look again.
            tokio::task::yield_now().await;
            continue;
        }

        let mut next = ready.next_wakeup;
        if !unknown.is_empty() {
            let at = Instant::now() + config.retry_backoff;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = &mut wake => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => wake.await,
        }
    }
    // Closed: nothing left to send. Fail anything a racing send added.
    let rest = inner.state.lock().acc.drain_all();
    for b in rest {
        let n = b.records.len();
        b.fail(ClientError::ProducerClosed);
        inner.record_done(n);
    }
}

/// Refreshes metadata for `topics` in the background, one refresh at a time.
fn spawn_refresh(inner: &Arc<Inner>, topics: Vec<String>) {
    if inner.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        if let Err(e) = inner.cluster.refresh(&topics).await {
            tracing::debug!(error = %e, "producer metadata refresh failed");
        }
        inner.refreshing.store(false, Ordering::Release);
        inner.wake.notify_one();
    });
}

async fn send_request(
    inner: &Arc<Inner>,
    broker: i32,
    mut batches: Vec<ProducerBatch>,
    permit: OwnedSemaphorePermit,
) {
    let config = &inner.cluster.config;
    // Idempotence: batches carry the producer id and per-partition sequence
    // numbers, fixed at first encoding so a retry is recognized as a duplicate.
    let identity = if config.idempotence() {
        match inner.producer_identity().await {
            Ok(id) => Some(id),
            Err(e) => {
                let (mut refresh, mut retries) = (Vec::new(), Vec::new());
                for b in batches {
                    retry_or_fail(inner, b, e.clone(), false, &mut refresh, &mut retries);
                }
                requeue(inner, retries);
                drop(permit);
                return;
            }
        }
    } else {
        None
    };
    let mut keep = Vec::with_capacity(batches.len());
    let mut encoded_batches = Vec::with_capacity(batches.len());
    for mut b in batches.drain(..) {
        let opts = match identity {
            Some((producer_id, producer_epoch)) if b.encoded.is_none() => {
                let mut seqs = inner.sequences.lock();
                let seq = seqs.entry(b.tp.clone()).or_insert(0);
                let base_sequence = *seq;
                *seq = ((*seq as i64 + b.records.len() as i64) % (i32::MAX as i64 + 1)) as i32;
                EncodeOptions {
                    producer_id,
                    producer_epoch,
                    base_sequence,
                    compression: inner.cluster.config.compression_type,
                    ..EncodeOptions::default()
                }
            }
            _ => EncodeOptions {
                compression: inner.cluster.config.compression_type,
                ..EncodeOptions::default()
            },
        };
        let encoded = match b.encoded.clone() {
            Some(e) => e,
            None => match encode_batch(&b.records, opts) {
                Ok(e) => {
                    b.encoded = Some(e.clone());
                    e
                }
                Err(e) => {
                    let n = b.records.len();
                    let msg = format!("encode batch for {}: {e}", b.tp);
                    b.fail(ClientError::api(ErrorCode::CorruptMessage, msg));
                    inner.record_done(n);
                    continue;
                }
            },
        };
        encoded_batches.push(encoded);
        keep.push(b);
    }
    if keep.is_empty() {
        return;
    }
    // One entry per partition: its batches back to back (drain keeps them in
    // order), appended by the broker in one all-or-nothing append.
    let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut i = 0;
    while i < keep.len() {
        let tp = keep[i].tp.clone();
        let mut j = i + 1;
        while j < keep.len() && keep[j].tp == tp {
            j += 1;
        }
        let record_batches = if j - i == 1 {
            encoded_batches[i].clone()
        } else {
            let mut buf =
                bytes::BytesMut::with_capacity(encoded_batches[i..j].iter().map(|e| e.len()).sum());
            for e in &encoded_batches[i..j] {
                buf.extend_from_slice(e);
            }
            buf.freeze()
        };
        topics
            .entry(tp.topic.clone())
            .or_default()
            .push(PartitionProduceData {
                partition: tp.partition,
                records: Vec::new(),
                record_batches,
            });
        i = j;
    }
    let req = ProduceRequest {
        acks: config.acks.as_i32(),
        timeout_ms: config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicProduceData { name, partitions })
            .collect(),
    };
    let result = match inner.cluster.broker(broker) {
        Ok((addr, mut client)) => {
            let mut r = tonic::Request::new(req);
            r.set_timeout(config.request_timeout);
            match tokio::time::timeout(config.request_timeout, client.produce(r)).await {
                Ok(Ok(resp)) => Ok(resp.into_inner()),
                Ok(Err(status)) => Err(ClientError::from_status(&addr, &status)),
                Err(_) => Err(ClientError::api(
                    ErrorCode::RequestTimedOut,
                    format!("broker {addr}: produce timed out"),
                )),
            }
        }
        Err(e) => Err(e),
    };
    drop(permit);
    let mut refresh = Vec::new();
    let mut retries = Vec::new();
    match result {
        Ok(resp) => {
            // Offsets of later batches of a partition follow the earlier ones.
            let mut next_offset: HashMap<TopicPartition, i64> = HashMap::new();
            for b in keep {
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
                    retry_or_fail(inner, b, err, false, &mut refresh, &mut retries);
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
                        retry_or_fail(inner, b, e.into(), hinted, &mut refresh, &mut retries)
                    }
                    None => {
                        let base = *next_offset.entry(b.tp.clone()).or_insert(part.base_offset);
                        next_offset.insert(b.tp.clone(), base + b.records.len() as i64);
                        complete(inner, b, base, part.log_append_time_ms)
                    }
                }
            }
        }
        Err(e) => {
            for b in keep {
                retry_or_fail(inner, b, e.clone(), false, &mut refresh, &mut retries);
            }
        }
    }
    requeue(inner, retries);
    if !refresh.is_empty() {
        spawn_refresh(inner, refresh);
    }
}

fn complete(inner: &Inner, b: ProducerBatch, base_offset: i64, log_append_time: i64) {
    let n = b.records.len();
    let topic = b.tp.topic.clone();
    let partition = b.tp.partition;
    b.complete(|i, r| {
        Ok(RecordMetadata {
            topic: topic.clone(),
            partition,
            offset: if base_offset < 0 {
                -1
            } else {
                base_offset + i as i64
            },
            timestamp: if log_append_time > 0 {
                log_append_time
            } else {
                r.timestamp
            },
        })
    });
    inner.record_done(n);
}

/// Batches to put back, in send order. Re-enqueued together at the end with
/// [`requeue`], in reverse, because each goes to the front of its queue: one
/// by one in send order would reverse them and break sequence order.
type Retries = Vec<(ProducerBatch, Instant)>;

fn requeue(inner: &Inner, retries: Retries) {
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
fn retry_or_fail(
    inner: &Inner,
    mut b: ProducerBatch,
    err: ClientError,
    hinted: bool,
    refresh: &mut Vec<String>,
    retries: &mut Retries,
) {
    let config = &inner.cluster.config;
    b.attempts += 1;
    let now = Instant::now();
    let retry_at = if hinted {
        now
    } else {
        now + config.retry_backoff
    };
    // A topic just created may not have reached this broker yet.
    let young_unknown = err.code() == ErrorCode::UnknownTopicOrPartition
        && now.duration_since(b.created) < UNKNOWN_TOPIC_WAIT * 2;
    let retriable = err.is_retriable() || young_unknown;
    let in_time = b.created + config.delivery_timeout > retry_at + Duration::from_millis(1);
    if retriable && in_time && b.attempts <= config.retries {
        tracing::debug!(tp = %b.tp, error = %err, attempt = b.attempts, "retrying batch");
        if !hinted && !refresh.contains(&b.tp.topic) {
            refresh.push(b.tp.topic.clone());
        }
        retries.push((b, retry_at));
    } else {
        if b.encoded.is_some() && config.idempotence() {
            inner.reset_sequences();
        }
        let n = b.records.len();
        b.fail(err);
        inner.record_done(n);
    }
}
