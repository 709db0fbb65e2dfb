//! The sender task: drains ready batches and sends them, one Produce RPC per
//! leader broker at a time, up to `max.in.flight.requests.per.connection`.
//!
//! # Layout
//! - this file: the task's loop (expiry, draining, partition muting, in-flight
//!   limits) and one request's round trip.
//! - `request`: what goes on the wire: a batch's encoding with the sequence
//!   numbers of an idempotent producer, and the Produce request's layout.
//! - `outcome`: what an answer does to each batch: complete it with offsets,
//!   retry it (the retry rule, re-enqueueing in order) or fail it for good
//!   (giving the producer identity up when sequences were spent).
//! - `tests`: the last two, unit-tested without a broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sluice_types::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Inner;
use super::accumulator::ProducerBatch;
use super::completions::Outcome;
use crate::error::ClientError;
use crate::types::TopicPartition;

mod outcome;
mod request;
#[cfg(test)]
mod tests;

use outcome::{expired_error, fail_for_good, handle_response, requeue, retry_or_fail};
use request::{encode_for_send, produce_request};

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
            let err = expired_error(&b, config.delivery_timeout);
            fail_for_good(&inner, b, err);
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
        inner
            .completions
            .push(&inner, b, Outcome::Failed(ClientError::ProducerClosed));
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
        let encoded =
            match encode_for_send(&mut b, identity, &inner.sequences, config.compression_type) {
                Ok(e) => e,
                Err(e) => {
                    let msg = format!("encode batch for {}: {e}", b.tp);
                    let err = ClientError::api(ErrorCode::CorruptMessage, msg);
                    inner.completions.push(inner, b, Outcome::Failed(err));
                    continue;
                }
            };
        encoded_batches.push(encoded);
        keep.push(b);
    }
    if keep.is_empty() {
        return;
    }
    let req = produce_request(config, &keep, &encoded_batches);
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
        Ok(resp) => handle_response(inner, keep, &resp, &mut refresh, &mut retries),
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
