//! [`Producer`]: batching, routing and delivery of records.
//!
//! `send` routes a record to a partition, waits for `buffer.memory` room if
//! needed, appends it to the [`accumulator`] and returns a [`DeliveryFuture`]
//! at once. One sender task drains ready batches, groups them by partition
//! leader, and sends one Produce RPC per broker carrying one encoded v2 batch
//! per partition, with up to `max.in.flight.requests.per.connection` RPCs in
//! flight per broker. Retriable errors refresh metadata and retry the batch
//! after `retry.backoff.ms` until `delivery.timeout.ms`.

pub mod accumulator;
mod completions;
pub mod partitioner;
mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_records::Record;
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;
use accumulator::{Accumulator, Delivery, estimate_record_size};
use partitioner::Partitioner;

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: chosen by the partitioner.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Delayed delivery: the broker holds the record and appends it to its
    /// partition after `delay` (1 s up to the topic's `delivery.delay.max.ms`).
    /// Sets the `sluice.deliver.after.ms` header.
    pub fn deliver_after(self, delay: std::time::Duration) -> Self {
        self.with_header(
            "sluice.deliver.after.ms",
            delay.as_millis().min(i64::MAX as u128).to_string(),
        )
    }

    /// Delayed delivery at `at_ms` (ms since the Unix epoch), by the
    /// `sluice.deliver.at.ms` header.
    pub fn deliver_at(self, at_ms: i64) -> Self {
        self.with_header("sluice.deliver.at.ms", at_ms.to_string())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Shared by every record of a batch (one allocation per batch, not per record).
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    /// -1 with `acks=0`.
    pub offset: i64,
    /// The record's timestamp (the broker's with LogAppendTime).
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged (or has failed for good).
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

/// State under one lock: routing and batching happen together so the
/// sticky partition switches exactly when its batch fills.
pub(crate) struct State {
    pub acc: Accumulator,
    pub partitioner: Partitioner,
}

pub(crate) struct Inner {
    pub cluster: Arc<Cluster>,
    // parking_lot: held only for in-memory bookkeeping, never across `.await`.
    pub state: parking_lot::Mutex<State>,
    /// Wakes the sender: new batch, full batch, flush, close, response.
    pub wake: Notify,
    /// `buffer.memory`, in bytes.
    pub memory: Arc<Semaphore>,
    /// Records appended and not yet completed.
    pub pending: AtomicUsize,
    /// Signalled when `pending` drops to zero.
    pub idle: Notify,
    pub closed: AtomicBool,
    /// A metadata refresh is running.
    pub refreshing: AtomicBool,
    /// Idempotence: the identity a broker gave (InitProducerId). A tokio
    /// mutex: fetching it awaits a broker, and concurrent batches wait for
    /// that one answer.
    pub identity: tokio::sync::Mutex<Identity>,
    /// Set by [`Inner::reset_sequences`]: the next batch gives the identity up.
    pub renew_identity: AtomicBool,
    /// Idempotence: the next sequence number per partition.
    pub sequences: parking_lot::Mutex<Sequences>,
    /// Results on their way to the application's callbacks.
    pub completions: completions::Completions,
}

/// The identity sequence numbers are taken under and the next sequence per
/// partition: one lock, so (producer id, epoch, sequence) are always taken
/// together and a new identity starts every partition at 0 at once.
#[derive(Debug, Default)]
pub(crate) struct Sequences {
    pub owner: Option<(i64, i16)>,
    pub next: std::collections::HashMap<TopicPartition, i32>,
}

/// An idempotent producer's identity.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    /// The producer id and epoch in use; `None` until the first batch.
    current: Option<(i64, i16)>,
    /// The one given up, sent with the next InitProducerId (KIP-360).
    retired: Option<(i64, i16)>,
}

impl Inner {
    /// The producer id and epoch of an idempotent producer: InitProducerId on
    /// any broker, once, and again after [`Inner::reset_sequences`].
    pub(crate) async fn producer_identity(&self) -> Result<(i64, i16)> {
        let mut identity = self.identity.lock().await;
        if self.renew_identity.swap(false, Ordering::AcqRel)
            && let Some(old) = identity.current.take()
        {
            identity.retired = Some(old);
        }
        if let Some(id) = identity.current {
            return Ok(id);
        }
        let retired = identity.retired;
        let request = sluice_proto::broker::InitProducerIdRequest {
            transactional_id: None,
            producer_id: retired.map(|r| r.0),
            producer_epoch: retired.map(|r| i32::from(r.1)),
        };
        let mut last = None;
        for addr in &self.cluster.config.bootstrap_servers {
            let mut client = self.cluster.broker_at(addr)?;
            match client.init_producer_id(request.clone()).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
                        last = Some(ClientError::from(e));
                        continue;
                    }
                    let id = (r.producer_id, r.producer_epoch as i16);
                    if retired.is_some() {
                        tracing::info!(
                            producer_id = id.0,
                            producer_epoch = id.1,
                            "new producer identity"
                        );
                    }
                    identity.current = Some(id);
                    identity.retired = None;
                    let mut seqs = self.sequences.lock();
                    seqs.owner = Some(id);
                    seqs.next.clear();
                    return Ok(id);
                }
                Err(s) => last = Some(ClientError::from_status(addr, &s)),
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::api(
                ErrorCode::LeaderNotAvailable,
                "no broker gave a producer id",
            )
        }))
    }

    /// A batch that carried sequence numbers failed for good (or the
    /// identity was fenced): the broker will never see those sequences, so
    /// later batches would be refused as a gap. Give the identity up: the
    /// next batch asks a broker for a new one (KIP-360) and every partition's
    /// sequence starts again at 0. The broker, not this client, decides the
    /// new identity.
    ///
    /// `failed` is the producer id the failed batch carried: a batch of an
    /// identity already given up says nothing about the current one.
    pub(crate) fn reset_sequences(&self, failed: Option<i64>) {
        let owner = self.sequences.lock().owner.map(|o| o.0);
        if failed.is_some_and(|f| owner.is_some_and(|o| o != f)) {
            return;
        }
        self.renew_identity.store(true, Ordering::Release);
        tracing::warn!(
            "a batch with sequence numbers failed; asking for a new producer identity (sequences restart at 0)"
        );
    }

    pub(crate) fn record_done(&self, n: usize) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }
}

/// The producer. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct Producer {
    inner: Arc<Inner>,
    sender: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub(crate) use sluice_types::now_ms;

impl Producer {
    /// Creates a producer and starts its sender task (needs a tokio runtime).
    /// Connects lazily: the first `send` fetches metadata.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let cluster = Cluster::new(config)?;
        let c = &cluster.config;
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let memory = c.buffer_memory.min(Semaphore::MAX_PERMITS);
        let inner = Arc::new(Inner {
            state: parking_lot::Mutex::new(State {
                acc: Accumulator::new(c.batch_size, c.linger),
                partitioner: Partitioner::new(c.partitioner, seed),
            }),
            wake: Notify::new(),
            memory: Arc::new(Semaphore::new(memory)),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
            identity: tokio::sync::Mutex::new(Identity::default()),
            renew_identity: AtomicBool::new(false),
            sequences: parking_lot::Mutex::new(Sequences::default()),
            completions: completions::Completions::new(),
            cluster,
        });
        tokio::spawn(completions::run(Arc::downgrade(&inner)));
        let handle = tokio::spawn(sender::run(inner.clone()));
        Ok(Producer {
            inner,
            sender: parking_lot::Mutex::new(Some(handle)),
        })
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cluster.config
    }

    /// Buffers a record and returns its delivery future. Waits only when
    /// `buffer.memory` is full or the topic's metadata is not known yet.
    /// Fails at once for a topic that does not exist (`UNKNOWN_TOPIC_OR_PARTITION`,
    /// after about a second of metadata retries), a partition out of range,
    /// or a record larger than `max.request.size` (`MESSAGE_TOO_LARGE`).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(record, Delivery::Future(tx)).await?;
        Ok(DeliveryFuture { rx })
    }

    /// Like [`Producer::send`], but calls `callback` with the result instead of
    /// returning a future (Kafka's `send(record, callback)`). Callbacks run
    /// one at a time on the producer's callback task, a partition's in send
    /// order, so they must be quick. Cheaper per record
    /// than a future: use it for high rates.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.enqueue(record, Delivery::Callback(Box::new(callback)))
            .await
    }

    async fn enqueue(&self, record: ProducerRecord, delivery: Delivery) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::ProducerClosed);
        }
        let cluster = &self.inner.cluster;
        let config = &cluster.config;
        let num_partitions = cluster.partition_count(&record.topic).await?;
        if let Some(p) = record.partition
            && !(0..num_partitions).contains(&p)
        {
            return Err(ApiError::unknown_partition(&record.topic, p).into());
        }
        let size = estimate_record_size(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        if size + accumulator::BATCH_OVERHEAD > config.max_request_size
            || size > config.buffer_memory
        {
            return Err(ClientError::api(
                ErrorCode::MessageTooLarge,
                format!(
                    "the record is {size} bytes, above max.request.size ({}) or buffer.memory ({})",
                    config.max_request_size, config.buffer_memory
                ),
            ));
        }
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let permit = match self.inner.memory.clone().try_acquire_many_owned(permits) {
            Ok(p) => p,
            Err(_) => self
                .inner
                .memory
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| ClientError::ProducerClosed)?,
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            ..
        } = record;
        let wake = {
            let mut state = self.inner.state.lock();
            let (partition, sticky) = match partition {
                Some(p) => (p, false),
                None => state
                    .partitioner
                    .partition(&topic, key.as_deref(), num_partitions),
            };
            let mut tp = TopicPartition::new(topic, partition);
            // KIP-480: when the sticky partition's batch has no room for this
            // record, move on before appending (sizes rarely divide
            // batch.size exactly, so "full" alone would never trigger).
            if sticky && state.acc.open_batch_is_full_for(&tp, size) {
                state
                    .partitioner
                    .on_batch_full(&tp.topic, partition, num_partitions);
                tp.partition = state
                    .partitioner
                    .partition(&tp.topic, key.as_deref(), num_partitions)
                    .0;
            }
            let rec = Record {
                key,
                value,
                headers,
                timestamp,
                offset: 0,
            };
            self.inner.pending.fetch_add(1, Ordering::AcqRel);
            let outcome = state
                .acc
                .append(&tp, rec, size, delivery, Some(permit), Instant::now());
            if outcome.batch_full && sticky {
                state
                    .partitioner
                    .on_batch_full(&tp.topic, tp.partition, num_partitions);
            }
            outcome.new_batch || outcome.batch_full
        };
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Sends every buffered record now and waits until all are acknowledged
    /// or failed.
    pub async fn flush(&self) {
        self.inner.state.lock().acc.flushing += 1;
        self.inner.wake.notify_one();
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        self.inner.state.lock().acc.flushing -= 1;
    }

    /// Flushes, then stops the sender task. Later `send`s fail with
    /// [`ClientError::ProducerClosed`].
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::Release);
        self.inner.state.lock().acc.closed = true;
        self.inner.wake.notify_one();
        let handle = self.sender.lock().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for Producer {
    /// Without `close`, the sender still delivers what is buffered, then stops.
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.state.lock().acc.closed = true;
        self.inner.wake.notify_one();
    }
}
