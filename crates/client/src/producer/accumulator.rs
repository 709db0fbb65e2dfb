//! The record accumulator: per-partition queues of batches waiting to be sent.
//!
//! Pure bookkeeping (no I/O), so the batching rules are unit-tested: a batch
//! takes records until `batch.size`; a partition is ready when its head batch
//! is full, has lingered `linger.ms`, a flush or close is under way, or a
//! retry's backoff has passed. The sender drains at most one batch per
//! partition per request and stops adding partitions at `max.request.size`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_records::Record;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::producer::RecordMetadata;
use crate::types::TopicPartition;

/// Bytes a v2 batch header takes.
pub const BATCH_OVERHEAD: usize = 61;

/// The estimated encoded size of one record in a v2 batch.
pub fn estimate_record_size(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(String, Option<Bytes>)],
) -> usize {
    // length, attributes, timestamp and offset deltas, key and value lengths:
    // varints, 12 bytes is generous for small deltas.
    let mut n = 12 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + 2;
    for (k, v) in headers {
        n += 4 + k.len() + v.as_ref().map_or(0, |v| v.len());
    }
    n
}

/// The delivery channel of one record.
pub enum Delivery {
    /// Awaited through a [`super::DeliveryFuture`].
    Future(oneshot::Sender<Result<RecordMetadata, ClientError>>),
    /// Called on the sender task: no per-record channel or task wake-up, for
    /// high-rate producers (see [`super::Producer::send_with_callback`]).
    Callback(Box<dyn FnOnce(Result<RecordMetadata, ClientError>) + Send>),
}

impl Delivery {
    pub fn deliver(self, result: Result<RecordMetadata, ClientError>) {
        match self {
            // The receiver may have been dropped: nobody waits for this record.
            Delivery::Future(tx) => {
                let _ = tx.send(result);
            }
            Delivery::Callback(cb) => cb(result),
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Future(_) => "Delivery::Future",
            Delivery::Callback(_) => "Delivery::Callback",
        })
    }
}

/// Records of one partition sent together.
pub struct ProducerBatch {
    pub tp: TopicPartition,
    pub records: Vec<Record>,
    pub deliveries: Vec<Delivery>,
    /// Estimated encoded size.
    pub bytes: usize,
    pub created: Instant,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before this instant (retry backoff).
    pub retry_at: Option<Instant>,
    /// The encoded batch, kept for retries.
    pub encoded: Option<Bytes>,
    /// `buffer.memory` held by these records, released when the batch is done.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl ProducerBatch {
    fn new(tp: TopicPartition, now: Instant) -> Self {
        ProducerBatch {
            tp,
            records: Vec::new(),
            deliveries: Vec::new(),
            bytes: BATCH_OVERHEAD,
            created: now,
            attempts: 0,
            retry_at: None,
            encoded: None,
            permit: None,
        }
    }

    /// Completes every record of the batch with `result(index)`.
    pub fn complete(
        self,
        mut result: impl FnMut(usize, &Record) -> Result<RecordMetadata, ClientError>,
    ) {
        for (i, (d, r)) in self
            .deliveries
            .into_iter()
            .zip(self.records.iter())
            .enumerate()
        {
            d.deliver(result(i, r));
        }
    }

    /// Fails every record of the batch with `err`.
    pub fn fail(self, err: ClientError) {
        self.complete(|_, _| Err(err.clone()));
    }
}

/// What [`Accumulator::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The record started a new batch.
    pub new_batch: bool,
    /// The batch the record went into is now full.
    pub batch_full: bool,
}

/// What [`Accumulator::ready`] found.
#[derive(Debug, Default)]
pub struct ReadyCheck {
    /// Partitions with a batch to send now.
    pub ready: Vec<TopicPartition>,
    /// When the next lingering batch becomes ready.
    pub next_wakeup: Option<Instant>,
}

/// Per-partition batch queues.
pub struct Accumulator {
    batch_size: usize,
    linger: Duration,
    queues: HashMap<TopicPartition, VecDeque<ProducerBatch>>,
    /// Flushes in progress: every batch is ready at once.
    pub flushing: usize,
    /// Closing: every batch is ready at once; no new records.
    pub closed: bool,
}

impl Accumulator {
    pub fn new(batch_size: usize, linger: Duration) -> Self {
        Accumulator {
            batch_size,
            linger,
            queues: HashMap::new(),
            flushing: 0,
            closed: false,
        }
    }

    /// Whether `tp` has an open batch that a record of `size` bytes would not
    /// fit in (so appending would start a new batch there).
    pub fn open_batch_is_full_for(&self, tp: &TopicPartition, size: usize) -> bool {
        self.queues.get(tp).and_then(|q| q.back()).is_some_and(|b| {
            b.attempts == 0
                && b.encoded.is_none()
                && b.bytes > 0
                && b.bytes + size > self.batch_size
        })
    }

    /// Appends a record to the last batch of its partition, or a new one
    /// when that batch has no room (or is a retry). A record larger than
    /// `batch.size` gets a batch of its own.
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        record: Record,
        size: usize,
        delivery: Delivery,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
    ) -> AppendOutcome {
        let queue = match self.queues.get_mut(tp) {
            Some(q) => q,
            None => self.queues.entry(tp.clone()).or_default(),
        };
        let fits = queue.back().is_some_and(|b| {
            b.attempts == 0 && b.encoded.is_none() && b.bytes + size <= self.batch_size
        });
        let new_batch = !fits;
        if new_batch {
            queue.push_back(ProducerBatch::new(tp.clone(), now));
        }
        let batch = queue.back_mut().expect("a batch was just ensured");
        batch.records.push(record);
        batch.deliveries.push(delivery);
        batch.bytes += size;
        match (&mut batch.permit, permit) {
            (Some(held), Some(p)) => held.merge(p),
            (slot @ None, p) => *slot = p,
            (Some(_), None) => {}
        }
        AppendOutcome {
            new_batch,
            batch_full: batch.bytes >= self.batch_size,
        }
    }

    /// Puts a batch back at the head of its queue to retry after `retry_at`.
    pub fn reenqueue(&mut self, mut batch: ProducerBatch, retry_at: Instant) {
        batch.retry_at = Some(retry_at);
        self.queues
            .entry(batch.tp.clone())
            .or_default()
            .push_front(batch);
    }

    /// Partitions whose head batch can be sent now.
    pub fn ready(&self, now: Instant) -> ReadyCheck {
        let mut out = ReadyCheck::default();
        let urgent = self.flushing > 0 || self.closed;
        for (tp, q) in &self.queues {
            let Some(head) = q.front() else { continue };
            if let Some(at) = head.retry_at
                && at > now
            {
                out.next_wakeup = Some(out.next_wakeup.map_or(at, |w| w.min(at)));
                continue;
            }
            let due = head.created + self.linger;
            if urgent
                || head.retry_at.is_some()
                || q.len() > 1
                || head.bytes >= self.batch_size
                || due <= now
            {
                out.ready.push(tp.clone());
            } else {
                out.next_wakeup = Some(out.next_wakeup.map_or(due, |w| w.min(due)));
            }
        }
        out
    }

    /// Takes the ready batches of each partition in `tps` (which must be ready),
    /// in order, stopping before the request would exceed `max_request_size`
    /// (the first batch is always taken). Several batches of one partition may
    /// go in one request: only one request per partition is in flight (gRPC does
    /// not order concurrent requests), so this is how a partition pipelines.
    /// A batch being retried travels alone, so its retry cannot merge with
    /// batches appended after it.
    pub fn drain(&mut self, tps: &[TopicPartition], max_request_size: usize) -> Vec<ProducerBatch> {
        let mut out = Vec::new();
        let mut total = 0usize;
        'tps: for tp in tps {
            let Some(q) = self.queues.get_mut(tp) else {
                continue;
            };
            let mut taken = 0;
            while let Some(head) = q.front() {
                let retry = head.attempts > 0;
                if taken > 0
                    && (retry || out.last().is_some_and(|b: &ProducerBatch| b.attempts > 0))
                {
                    break;
                }
                // An open batch still filling (the queue's tail) waits for linger.
                if taken > 0
                    && q.len() == 1
                    && head.bytes < self.batch_size
                    && !(self.flushing > 0 || self.closed)
                {
                    break;
                }
                if !out.is_empty() && total + head.bytes > max_request_size {
                    if q.is_empty() {
                        self.queues.remove(tp);
                    }
                    break 'tps;
                }
                total += head.bytes;
                out.push(q.pop_front().expect("head exists"));
                taken += 1;
            }
            if q.is_empty() {
                self.queues.remove(tp);
            }
        }
        out
    }

    /// Removes batches created before `now - delivery_timeout`.
    pub fn expire(&mut self, now: Instant, delivery_timeout: Duration) -> Vec<ProducerBatch> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            while q
                .front()
                .is_some_and(|b| b.created + delivery_timeout <= now)
            {
                out.extend(q.pop_front());
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        out
    }

    /// Takes every batch (used when the producer stops for good).
    pub fn drain_all(&mut self) -> Vec<ProducerBatch> {
        self.queues.drain().flat_map(|(_, q)| q).collect()
    }

    /// Whether no batch is queued.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> Record {
        Record {
            value: Some(Bytes::from(vec![b'x'; n])),
            ..Default::default()
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn append(acc: &mut Accumulator, p: i32, n: usize, now: Instant) -> AppendOutcome {
        let (tx, _rx) = oneshot::channel();
        let size = estimate_record_size(None, Some(&vec![0; n]), &[]);
        acc.append(&tp(p), rec(n), size, Delivery::Future(tx), None, now)
    }

    #[test]
    fn batches_fill_to_batch_size() {
        let now = Instant::now();
        let mut acc = Accumulator::new(1000, Duration::from_millis(5));
        let first = append(&mut acc, 0, 100, now);
        assert!(first.new_batch && !first.batch_full);
        let mut outcomes = Vec::new();
        for _ in 0..10 {
            outcomes.push(append(&mut acc, 0, 100, now));
        }
        // 61 + k * (100 + 14) <= 1000 holds for k <= 8.
        assert_eq!(outcomes.iter().filter(|o| o.new_batch).count(), 1);
        let drained = acc.drain(&[tp(0)], usize::MAX);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].records.len(), 8);
        assert!(drained[0].bytes <= 1000);
    }

    #[test]
    fn an_open_batch_without_room_is_reported_before_the_append() {
        let now = Instant::now();
        let mut acc = Accumulator::new(1000, Duration::from_millis(5));
        let size = estimate_record_size(None, Some(&[0; 100]), &[]);
        assert!(!acc.open_batch_is_full_for(&tp(0), size), "no batch yet");
        for _ in 0..8 {
            append(&mut acc, 0, 100, now);
        }
        // Eight records leave no room for a ninth, though the batch is not
        // "full" by batch.size: the sticky partitioner must move on here.
        assert!(acc.open_batch_is_full_for(&tp(0), size));
        assert!(!acc.open_batch_is_full_for(&tp(1), size));
    }

    #[test]
    fn oversized_record_gets_its_own_batch() {
        let now = Instant::now();
        let mut acc = Accumulator::new(100, Duration::ZERO);
        append(&mut acc, 0, 10, now);
        let o = append(&mut acc, 0, 500, now);
        assert!(o.new_batch && o.batch_full);
        let o = append(&mut acc, 0, 10, now);
        assert!(o.new_batch);
    }

    #[test]
    fn linger_full_flush_and_close_make_ready() {
        let t0 = Instant::now();
        let linger = Duration::from_millis(5);
        let mut acc = Accumulator::new(1000, linger);
        append(&mut acc, 0, 10, t0);
        let r = acc.ready(t0);
        assert!(r.ready.is_empty());
        assert_eq!(r.next_wakeup, Some(t0 + linger));
        assert_eq!(acc.ready(t0 + linger).ready, vec![tp(0)]);
        acc.flushing = 1;
        assert_eq!(acc.ready(t0).ready, vec![tp(0)]);
        acc.flushing = 0;
        acc.closed = true;
        assert_eq!(acc.ready(t0).ready, vec![tp(0)]);
        acc.closed = false;
        // A full batch is ready before its linger passes.
        append(&mut acc, 1, 990, t0);
        assert_eq!(acc.ready(t0).ready, vec![tp(1)]);
    }

    #[test]
    fn drain_takes_a_partitions_full_batches_in_order_but_not_its_filling_tail() {
        let now = Instant::now();
        let mut acc = Accumulator::new(300, Duration::from_secs(60));
        // Three full batches (two 100-byte records each) and a partial tail.
        for _ in 0..7 {
            append(&mut acc, 0, 100, now);
        }
        let drained = acc.drain(&[tp(0)], usize::MAX);
        assert_eq!(drained.len(), 3, "full batches go together");
        assert!(drained.iter().all(|b| b.records.len() == 2));
        // The tail stays for linger.
        assert!(!acc.is_empty());
        // A retried batch travels alone, ahead of newer ones.
        let mut retry = drained.into_iter().next().unwrap();
        retry.attempts = 1;
        acc.reenqueue(retry, now);
        for _ in 0..4 {
            append(&mut acc, 0, 100, now);
        }
        let next = acc.drain(&[tp(0)], usize::MAX);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].attempts, 1);
    }

    #[test]
    fn drain_respects_max_request_size() {
        let now = Instant::now();
        let mut acc = Accumulator::new(10_000, Duration::ZERO);
        for p in 0..4 {
            append(&mut acc, p, 400, now);
        }
        let tps: Vec<_> = (0..4).map(tp).collect();
        // Each batch is ~475 bytes: two fit in 1000.
        let first = acc.drain(&tps, 1000);
        assert_eq!(first.len(), 2);
        // One batch per partition per request, and the first always goes.
        let second = acc.drain(&tps, 1);
        assert_eq!(second.len(), 1);
        assert_eq!(acc.drain(&tps, usize::MAX).len(), 1);
        assert!(acc.is_empty());
    }

    #[test]
    fn retries_wait_for_backoff_and_go_first() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(1000, Duration::from_millis(1));
        append(&mut acc, 0, 10, t0);
        let mut b = acc.drain(&[tp(0)], usize::MAX).pop().unwrap();
        b.attempts = 1;
        append(&mut acc, 0, 20, t0);
        acc.reenqueue(b, t0 + Duration::from_millis(100));
        let r = acc.ready(t0 + Duration::from_millis(50));
        assert!(r.ready.is_empty());
        assert_eq!(r.next_wakeup, Some(t0 + Duration::from_millis(100)));
        assert_eq!(
            acc.ready(t0 + Duration::from_millis(100)).ready,
            vec![tp(0)]
        );
        let again = acc.drain(&[tp(0)], usize::MAX).pop().unwrap();
        assert_eq!(again.attempts, 1);
        // New records never join a retried batch.
        let o = append(&mut acc, 0, 10, t0);
        assert!(!o.new_batch, "joins the batch queued behind the retry");
    }

    #[test]
    fn expired_batches_are_removed() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(1000, Duration::from_millis(1));
        append(&mut acc, 0, 10, t0);
        append(&mut acc, 1, 10, t0 + Duration::from_secs(5));
        let expired = acc.expire(t0 + Duration::from_secs(10), Duration::from_secs(8));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].tp, tp(0));
        assert!(!acc.is_empty());
    }

    #[tokio::test]
    async fn completion_reaches_every_record() {
        let now = Instant::now();
        let mut acc = Accumulator::new(1000, Duration::ZERO);
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel();
            acc.append(&tp(0), rec(1), 20, Delivery::Future(tx), None, now);
            rxs.push(rx);
        }
        let b = acc.drain(&[tp(0)], usize::MAX).pop().unwrap();
        b.complete(|i, _| {
            Ok(RecordMetadata {
                topic: "t".into(),
                partition: 0,
                offset: 10 + i as i64,
                timestamp: 0,
            })
        });
        for (i, rx) in rxs.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap().unwrap().offset, 10 + i as i64);
        }
    }
}
