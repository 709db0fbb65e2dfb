//! [`Consumer`]: reads assigned partitions (Kafka's `assign`; group
//! membership is [`crate::GroupConsumer`]'s).
//!
//! `poll` sends one Fetch per leader broker carrying all of that broker's
//! assigned partitions, long-polling for up to `min(timeout, fetch.max.wait.ms)`.
//! Fetches run as tasks that also decode the raw v2 batches, so decoding
//! overlaps with the application's processing; while buffered records stay
//! below a bound, `poll` starts the next fetch before returning (prefetch).
//!
//! # Layout
//! - this file: [`Consumer`] itself: assignment, seeks, positions and `poll`,
//!   which hands out buffered records and drives the fetches.
//! - `fetch`: the Fetch requests (one task per leader broker), decoding their
//!   raw v2 batches ([`decode_fetched`]) and applying the results.
//! - `offsets`: ListOffsets lookups: seeking to the beginning, end or a
//!   timestamp, and `auto.offset.reset` for partitions without a position.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_types::ErrorCode;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::{ClientConfig, IsolationLevel};
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

mod fetch;
mod offsets;

use fetch::FetchResult;
pub use fetch::decode_fetched;

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared between the records of one partition.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

struct PartitionState {
    topic: Arc<str>,
    /// The next offset `poll` returns.
    position: Option<i64>,
    /// The next offset to fetch (ahead of `position` by what is buffered).
    fetch_offset: Option<i64>,
    fetching: bool,
    high_watermark: i64,
    /// Records of this partition in the consumer's buffer.
    buffered: usize,
}

impl PartitionState {
    fn new(tp: &TopicPartition) -> Self {
        Self {
            topic: Arc::from(tp.topic.as_str()),
            position: None,
            fetch_offset: None,
            fetching: false,
            high_watermark: -1,
            buffered: 0,
        }
    }
}

/// The consumer. Not shared: `poll`, `assign` and `seek` take `&mut self`.
pub struct Consumer {
    cluster: Arc<Cluster>,
    assignment: BTreeMap<TopicPartition, PartitionState>,
    buffer: VecDeque<ConsumerRecord>,
    in_flight: JoinSet<FetchResult>,
    brokers_in_flight: HashSet<i32>,
    needs_metadata: bool,
}

impl Consumer {
    /// A consumer with nothing assigned; connects lazily.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Ok(Consumer {
            cluster: Cluster::new(config)?,
            assignment: BTreeMap::new(),
            buffer: VecDeque::new(),
            in_flight: JoinSet::new(),
            brokers_in_flight: HashSet::new(),
            needs_metadata: true,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cluster.config
    }

    /// The metadata and connections this consumer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Replaces the assignment. Positions start unset: the first `poll`
    /// applies `auto.offset.reset` unless a `seek` comes first.
    pub fn assign(&mut self, tps: Vec<TopicPartition>) {
        self.in_flight.abort_all();
        self.in_flight.detach_all();
        self.in_flight = JoinSet::new();
        self.brokers_in_flight.clear();
        self.buffer.clear();
        self.assignment = tps
            .into_iter()
            .map(|tp| {
                let state = PartitionState::new(&tp);
                (tp, state)
            })
            .collect();
        self.needs_metadata = true;
    }

    /// Adds partitions to the assignment (positions unset, as [`Self::assign`]
    /// leaves them); the partitions already assigned keep their positions,
    /// buffered records and fetches.
    pub fn incremental_assign(&mut self, tps: Vec<TopicPartition>) {
        for tp in tps {
            let state = PartitionState::new(&tp);
            self.assignment.entry(tp).or_insert(state);
        }
        self.needs_metadata = true;
    }

    /// Removes partitions from the assignment, dropping their buffered
    /// records; the others are untouched. A fetch already in flight for a
    /// removed partition is ignored when it answers.
    pub fn incremental_unassign(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.assignment.remove(tp);
        }
        let removed: HashSet<(&str, i32)> = tps
            .iter()
            .map(|tp| (tp.topic.as_str(), tp.partition))
            .collect();
        self.buffer
            .retain(|r| !removed.contains(&(&*r.topic, r.partition)));
    }

    /// Assigns every partition of `topic` (fails with
    /// `UNKNOWN_TOPIC_OR_PARTITION` when it does not exist).
    pub async fn assign_all(&mut self, topic: &str) -> Result<Vec<TopicPartition>> {
        let n = self.cluster.partition_count(topic).await?;
        let tps: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new(topic, p)).collect();
        self.assign(tps.clone());
        Ok(tps)
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.keys().cloned().collect()
    }

    fn state_mut(&mut self, tp: &TopicPartition) -> Result<&mut PartitionState> {
        self.assignment.get_mut(tp).ok_or_else(|| {
            ClientError::api(
                ErrorCode::InvalidRequest,
                format!("partition {tp} is not assigned to this consumer"),
            )
        })
    }

    /// Sets the next offset `poll` returns for `tp`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let s = self.state_mut(tp)?;
        s.position = Some(offset);
        s.fetch_offset = Some(offset);
        s.buffered = 0;
        self.buffer
            .retain(|r| !(r.partition == tp.partition && *r.topic == *tp.topic));
        Ok(())
    }

    /// The next offset `poll` returns for `tp`, if known yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.assignment.get(tp).and_then(|s| s.position)
    }

    /// The last high watermark a fetch reported for `tp` (-1 before any).
    pub fn high_watermark(&self, tp: &TopicPartition) -> i64 {
        self.assignment.get(tp).map_or(-1, |s| s.high_watermark)
    }

    fn take_records(&mut self) -> Vec<ConsumerRecord> {
        let n = self.buffer.len().min(self.cluster.config.max_poll_records);
        let out: Vec<ConsumerRecord> = self.buffer.drain(..n).collect();
        // Records of one partition are contiguous runs in offset order: one
        // position update per run.
        let mut i = 0;
        while i < out.len() {
            let (topic, partition) = (&out[i].topic, out[i].partition);
            let mut j = i;
            while j + 1 < out.len()
                && out[j + 1].partition == partition
                && out[j + 1].topic == *topic
            {
                j += 1;
            }
            let tp = TopicPartition::new(&**topic, partition);
            if let Some(s) = self.assignment.get_mut(&tp) {
                s.position = Some(out[j].offset + 1);
                s.buffered = s.buffered.saturating_sub(j + 1 - i);
            }
            i = j + 1;
        }
        self.skip_gaps();
        out
    }

    /// Partitions with nothing buffered: the position jumps to the next
    /// fetch offset, past gaps (control batches, compaction) a fetch moved
    /// over without returning records.
    pub(super) fn skip_gaps(&mut self) {
        for s in self.assignment.values_mut() {
            if let (Some(pos), Some(fetch)) = (s.position, s.fetch_offset)
                && pos < fetch
                && s.buffered == 0
            {
                s.position = Some(fetch);
            }
        }
    }

    /// Waits up to `timeout` for records and returns at most
    /// `max.poll.records` of them (the rest stay buffered for the next call).
    /// An empty result means nothing arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        let config = self.cluster.config.clone();
        let prefetch_below = config.max_poll_records.saturating_mul(8).max(2048);
        loop {
            if self.needs_metadata && !self.assignment.is_empty() {
                let mut topics: Vec<String> =
                    self.assignment.keys().map(|tp| tp.topic.clone()).collect();
                topics.dedup();
                match self.cluster.refresh(&topics).await {
                    Ok(()) => self.needs_metadata = false,
                    Err(e) if e.is_retriable() => {}
                    Err(e) => return Err(e),
                }
            }
            self.reset_positions().await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.buffer.is_empty() {
                let out = self.take_records();
                if self.buffer.len() < prefetch_below {
                    self.send_fetches(config.fetch_max_wait);
                }
                return Ok(out);
            }
            self.send_fetches(remaining.min(config.fetch_max_wait));
            if self.in_flight.is_empty() {
                if remaining.is_zero() {
                    return Ok(Vec::new());
                }
                // No leader known for anything: back off, then refresh.
                self.needs_metadata = true;
                tokio::time::sleep(config.retry_backoff.min(remaining)).await;
                continue;
            }
            let next = tokio::time::timeout(remaining, self.in_flight.join_next()).await;
            match next {
                Err(_) => return Ok(Vec::new()),
                Ok(None) => {}
                Ok(Some(Err(join))) => {
                    return Err(ClientError::api(
                        ErrorCode::UnknownServerError,
                        format!("fetch task failed: {join}"),
                    ));
                }
                Ok(Some(Ok(result))) => {
                    self.handle_fetch(result)?;
                    // Take whatever else has already arrived.
                    while let Some(Ok(r)) = self.in_flight.try_join_next() {
                        self.handle_fetch(r)?;
                    }
                    if self.buffer.is_empty() && self.needs_metadata && !remaining.is_zero() {
                        tokio::time::sleep(config.retry_backoff.min(remaining)).await;
                    }
                }
            }
            if self.buffer.is_empty() && Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }
}

fn isolation(level: IsolationLevel) -> i32 {
    (match level {
        IsolationLevel::ReadUncommitted => sluice_proto::broker::IsolationLevel::ReadUncommitted,
        IsolationLevel::ReadCommitted => sluice_proto::broker::IsolationLevel::ReadCommitted,
    }) as i32
}
