//! [`Consumer`]: reads assigned partitions (no consumer groups yet).
//!
//! `poll` sends one Fetch per leader broker carrying all of that broker's
//! assigned partitions, long-polling for up to `min(timeout, fetch.max.wait.ms)`.
//! Fetches run as tasks that also decode the raw v2 batches, so decoding
//! overlaps with the application's processing; while buffered records stay
//! below a bound, `poll` starts the next fetch before returning (prefetch).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::broker::{
    FetchPartition, FetchRequest, FetchTopic, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsTopic, OffsetSpec, RecordFormat,
};
use sluice_types::{ApiError, ErrorCode};
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::{ClientConfig, IsolationLevel, OffsetReset};
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

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

struct PartitionFetch {
    tp: TopicPartition,
    fetch_offset: i64,
    outcome: std::result::Result<Fetched, ClientError>,
}

struct Fetched {
    records: Vec<ConsumerRecord>,
    next_offset: i64,
    high_watermark: i64,
}

struct FetchResult {
    broker: i32,
    tps: Vec<(TopicPartition, i64)>,
    outcome: std::result::Result<Vec<PartitionFetch>, ClientError>,
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

/// Decodes fetched v2 batches: drops a trailing partial batch, control
/// batches, and records before `fetch_offset` (a batch may start before it).
/// Returns the records and the offset to fetch next.
pub fn decode_fetched(
    topic: &Arc<str>,
    partition: i32,
    batches: Bytes,
    fetch_offset: i64,
) -> std::result::Result<(Vec<ConsumerRecord>, i64), sluice_records::RecordsError> {
    let decoded = sluice_records::decode_batches(batches)?;
    let mut next = fetch_offset;
    let mut out = Vec::with_capacity(decoded.iter().map(|b| b.records.len()).sum());
    for b in decoded {
        next = next.max(b.header.next_offset());
        if b.header.is_control() {
            continue;
        }
        for r in b.records {
            if r.offset < fetch_offset {
                continue;
            }
            out.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
    }
    Ok((out, next))
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
                let topic: Arc<str> = Arc::from(tp.topic.as_str());
                (
                    tp,
                    PartitionState {
                        topic,
                        position: None,
                        fetch_offset: None,
                        fetching: false,
                        high_watermark: -1,
                        buffered: 0,
                    },
                )
            })
            .collect();
        self.needs_metadata = true;
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

    /// Seeks `tps` (empty: every assigned partition) to their log start.
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_by_spec(tps, OffsetSpec::Earliest, 0).await
    }

    /// Seeks `tps` (empty: every assigned partition) to their end.
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_by_spec(tps, OffsetSpec::Latest, 0).await
    }

    /// Seeks every assigned partition to the first offset with a timestamp at
    /// or after `timestamp_ms`, or to its end when there is none.
    pub async fn seek_to_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        let tps = self.assignment();
        let found = self
            .list_offsets(&tps, OffsetSpec::Timestamp, timestamp_ms)
            .await?;
        let missing: Vec<TopicPartition> = tps
            .iter()
            .filter(|tp| found.get(*tp).is_none_or(|o| *o < 0))
            .cloned()
            .collect();
        let ends = if missing.is_empty() {
            HashMap::new()
        } else {
            self.list_offsets(&missing, OffsetSpec::Latest, 0).await?
        };
        for tp in &tps {
            let o = match found.get(tp) {
                Some(o) if *o >= 0 => *o,
                _ => ends.get(tp).copied().unwrap_or(0),
            };
            self.seek(tp, o)?;
        }
        Ok(())
    }

    async fn seek_by_spec(
        &mut self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        ts: i64,
    ) -> Result<()> {
        let tps = if tps.is_empty() {
            self.assignment()
        } else {
            tps.to_vec()
        };
        let offsets = self.list_offsets(&tps, spec, ts).await?;
        for tp in &tps {
            let o = offsets.get(tp).copied().unwrap_or(0);
            self.seek(tp, o)?;
        }
        Ok(())
    }

    /// Kafka's `offsetsForTimes`: per partition, the first offset whose
    /// timestamp is at or after `timestamp_ms`; -1 where there is none.
    pub async fn offsets_for_times(
        &self,
        tps: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Timestamp, timestamp_ms)
            .await
    }

    /// The log start offsets of `tps`.
    pub async fn beginning_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Earliest, 0).await
    }

    /// The end offsets (high watermarks) of `tps`.
    pub async fn end_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Latest, 0).await
    }

    /// ListOffsets against each partition's leader, retrying retriable
    /// errors with metadata refreshes until `request.timeout.ms`.
    async fn list_offsets(
        &self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let config = &self.cluster.config;
        let deadline = Instant::now() + config.request_timeout;
        let mut out = HashMap::new();
        let mut todo: Vec<TopicPartition> = tps.to_vec();
        let topics: Vec<String> = {
            let mut t: Vec<String> = tps.iter().map(|tp| tp.topic.clone()).collect();
            t.sort();
            t.dedup();
            t
        };
        if topics.iter().any(|t| self.cluster.topic(t).is_none()) {
            self.cluster.refresh(&topics).await?;
        }
        loop {
            let mut by_broker: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut last_err: Option<ClientError> = None;
            let mut retry: Vec<TopicPartition> = Vec::new();
            for tp in std::mem::take(&mut todo) {
                let leader = self.cluster.leader(&tp.topic, tp.partition).leader;
                if leader < 0 {
                    last_err = Some(ClientError::api(
                        ErrorCode::LeaderNotAvailable,
                        format!("{tp} has no leader"),
                    ));
                    retry.push(tp);
                    continue;
                }
                by_broker.entry(leader).or_default().push(tp);
            }
            for (broker, tps) in by_broker {
                let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
                for tp in &tps {
                    topics
                        .entry(tp.topic.clone())
                        .or_default()
                        .push(ListOffsetsPartition {
                            partition: tp.partition,
                            spec: spec as i32,
                            timestamp_ms,
                        });
                }
                let req = ListOffsetsRequest {
                    isolation_level: isolation(config.isolation_level),
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| ListOffsetsTopic { name, partitions })
                        .collect(),
                };
                let resp = match self.cluster.broker(broker) {
                    Ok((addr, mut c)) => {
                        match tokio::time::timeout(config.request_timeout, c.list_offsets(req))
                            .await
                        {
                            Ok(Ok(r)) => Ok(r.into_inner()),
                            Ok(Err(s)) => Err(ClientError::from_status(&addr, &s)),
                            Err(_) => Err(ClientError::api(
                                ErrorCode::RequestTimedOut,
                                format!("broker {addr}: list offsets timed out"),
                            )),
                        }
                    }
                    Err(e) => Err(e),
                };
                match resp {
                    Err(e) if e.is_retriable() => {
                        last_err = Some(e);
                        retry.extend(tps);
                    }
                    Err(e) => return Err(e),
                    Ok(resp) => {
                        for tp in tps {
                            let p = resp
                                .topics
                                .iter()
                                .find(|t| t.name == tp.topic)
                                .and_then(|t| {
                                    t.partitions.iter().find(|p| p.partition == tp.partition)
                                });
                            match p {
                                None => {
                                    last_err = Some(ClientError::api(
                                        ErrorCode::UnknownServerError,
                                        format!("the broker did not answer for {tp}"),
                                    ));
                                    retry.push(tp);
                                }
                                Some(p) => match ApiError::from_proto(p.error.as_ref()) {
                                    None => {
                                        out.insert(tp, p.offset);
                                    }
                                    Some(e) if e.is_retriable() => {
                                        last_err = Some(e.into());
                                        retry.push(tp);
                                    }
                                    Some(e) => return Err(e.into()),
                                },
                            }
                        }
                    }
                }
            }
            if retry.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(last_err.unwrap_or_else(|| {
                    ClientError::api(ErrorCode::RequestTimedOut, "list offsets timed out")
                }));
            }
            tokio::time::sleep(config.retry_backoff).await;
            self.cluster.refresh(&topics).await?;
            todo = retry;
        }
    }

    /// Resolves unset positions with `auto.offset.reset`.
    async fn reset_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.cluster.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                return Err(ClientError::api(
                    ErrorCode::OffsetOutOfRange,
                    format!(
                        "no position for {} and auto.offset.reset is none",
                        missing[0]
                    ),
                ));
            }
        };
        let offsets = self.list_offsets(&missing, spec, 0).await?;
        for tp in &missing {
            let o = offsets.get(tp).copied().unwrap_or(0);
            self.seek(tp, o)?;
        }
        Ok(())
    }

    /// Starts a Fetch for every leader broker that has fetchable partitions
    /// and no fetch in flight.
    fn send_fetches(&mut self, max_wait: Duration) {
        let config = self.cluster.config.clone();
        let mut by_broker: BTreeMap<i32, Vec<(TopicPartition, i64, Arc<str>)>> = BTreeMap::new();
        for (tp, s) in &self.assignment {
            let (Some(offset), false) = (s.fetch_offset, s.fetching) else {
                continue;
            };
            let leader = self.cluster.leader(&tp.topic, tp.partition).leader;
            if leader < 0 || self.cluster.broker_addr(leader).is_none() {
                self.needs_metadata = true;
                continue;
            }
            if self.brokers_in_flight.contains(&leader) {
                continue;
            }
            by_broker
                .entry(leader)
                .or_default()
                .push((tp.clone(), offset, s.topic.clone()));
        }
        for (broker, parts) in by_broker {
            let Ok((addr, mut client)) = self.cluster.broker(broker) else {
                self.needs_metadata = true;
                continue;
            };
            for (tp, _, _) in &parts {
                if let Some(s) = self.assignment.get_mut(tp) {
                    s.fetching = true;
                }
            }
            self.brokers_in_flight.insert(broker);
            let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
            for (tp, offset, _) in &parts {
                topics
                    .entry(tp.topic.clone())
                    .or_default()
                    .push(FetchPartition {
                        partition: tp.partition,
                        fetch_offset: *offset,
                        partition_max_bytes: config.max_partition_fetch_bytes,
                        current_leader_epoch: -1,
                    });
            }
            let req = FetchRequest {
                max_wait_ms: max_wait.as_millis().min(i32::MAX as u128) as i32,
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
                isolation_level: isolation(config.isolation_level),
                format: RecordFormat::RecordBatches as i32,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| FetchTopic { name, partitions })
                    .collect(),
            };
            let timeout = config.request_timeout + max_wait;
            self.in_flight.spawn(async move {
                let tps: Vec<(TopicPartition, i64)> =
                    parts.iter().map(|(tp, o, _)| (tp.clone(), *o)).collect();
                let resp = match tokio::time::timeout(timeout, client.fetch(req)).await {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(s)) => Err(ClientError::from_status(&addr, &s)),
                    Err(_) => Err(ClientError::api(
                        ErrorCode::RequestTimedOut,
                        format!("broker {addr}: fetch timed out"),
                    )),
                };
                let outcome = resp.map(|resp| {
                    let mut by_tp: HashMap<(&str, i32), _> = HashMap::new();
                    for t in &resp.topics {
                        for p in &t.partitions {
                            by_tp.insert((t.name.as_str(), p.partition), p);
                        }
                    }
                    parts
                        .iter()
                        .map(|(tp, offset, topic)| {
                            let outcome = match by_tp.get(&(tp.topic.as_str(), tp.partition)) {
                                None => Ok(Fetched {
                                    records: Vec::new(),
                                    next_offset: *offset,
                                    high_watermark: -1,
                                }),
                                Some(p) => match ApiError::from_proto(p.error.as_ref()) {
                                    Some(e) => Err(e.into()),
                                    None => decode_partition(topic, tp.partition, p, *offset),
                                },
                            };
                            PartitionFetch {
                                tp: tp.clone(),
                                fetch_offset: *offset,
                                outcome,
                            }
                        })
                        .collect()
                });
                FetchResult {
                    broker,
                    tps,
                    outcome,
                }
            });
        }
    }

    /// Applies one fetch result to the buffer and positions.
    fn handle_fetch(&mut self, result: FetchResult) -> Result<()> {
        self.brokers_in_flight.remove(&result.broker);
        for (tp, _) in &result.tps {
            if let Some(s) = self.assignment.get_mut(tp) {
                s.fetching = false;
            }
        }
        let parts = match result.outcome {
            Ok(p) => p,
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "fetch failed; refreshing metadata");
                self.needs_metadata = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for pf in parts {
            let reset = self.cluster.config.auto_offset_reset;
            let Some(s) = self.assignment.get_mut(&pf.tp) else {
                continue;
            };
            if s.fetch_offset != Some(pf.fetch_offset) {
                // A seek happened while the fetch was in flight.
                continue;
            }
            match pf.outcome {
                Ok(f) => {
                    s.fetch_offset = Some(f.next_offset);
                    if f.high_watermark >= 0 {
                        s.high_watermark = f.high_watermark;
                    }
                    s.buffered += f.records.len();
                    self.buffer.extend(f.records);
                }
                Err(e) if e.code() == ErrorCode::OffsetOutOfRange && reset != OffsetReset::None => {
                    tracing::info!(tp = %pf.tp, offset = pf.fetch_offset, "offset out of range; resetting");
                    s.position = None;
                    s.fetch_offset = None;
                }
                Err(e) if e.is_retriable() || e.code() == ErrorCode::UnknownTopicOrPartition => {
                    self.needs_metadata = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
        // Partitions whose buffered records are all returned: the position
        // may jump past gaps (control batches, compaction).
        for s in self.assignment.values_mut() {
            if let (Some(pos), Some(fetch)) = (s.position, s.fetch_offset)
                && pos < fetch
                && s.buffered == 0
            {
                s.position = Some(fetch);
            }
        }
        out
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

fn decode_partition(
    topic: &Arc<str>,
    partition: i32,
    p: &sluice_proto::broker::FetchPartitionResponse,
    fetch_offset: i64,
) -> std::result::Result<Fetched, ClientError> {
    let (records, next_offset) = if !p.record_batches.is_empty() {
        decode_fetched(topic, partition, p.record_batches.clone(), fetch_offset).map_err(|e| {
            ClientError::Corrupt {
                topic: topic.to_string(),
                partition,
                reason: e.to_string(),
            }
        })?
    } else {
        // The structured form (a broker may answer RECORD_FORMAT_RECORDS).
        let mut next = fetch_offset;
        let records = p
            .records
            .iter()
            .filter(|r| r.offset >= fetch_offset)
            .map(|r| {
                next = next.max(r.offset + 1);
                ConsumerRecord {
                    topic: topic.clone(),
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp_ms,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| (h.key.clone(), h.value.clone()))
                        .collect(),
                }
            })
            .collect();
        (records, next)
    };
    Ok(Fetched {
        records,
        next_offset,
        high_watermark: p.high_watermark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_records::{EncodeOptions, Record, encode_batch};

    fn batch(base: i64, n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{}", base + i as i64))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp: 1_000 + i as i64,
                offset: 0,
            })
            .collect();
        encode_batch(
            &records,
            EncodeOptions {
                base_offset: base,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn skips_records_before_the_fetch_offset() {
        let mut buf = batch(10, 5).to_vec();
        buf.extend_from_slice(&batch(15, 3));
        let topic: Arc<str> = Arc::from("t");
        let (records, next) = decode_fetched(&topic, 2, Bytes::from(buf), 12).unwrap();
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![12, 13, 14, 15, 16, 17]);
        assert_eq!(next, 18);
        assert_eq!(records[0].value.as_deref(), Some(&b"v12"[..]));
        assert_eq!(records[0].key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(records[0].partition, 2);
        assert_eq!(records[0].timestamp, 1_002);
        assert_eq!(records[0].headers.len(), 1);
    }

    #[test]
    fn ignores_a_trailing_partial_batch() {
        let mut buf = batch(0, 4).to_vec();
        let second = batch(4, 4);
        buf.extend_from_slice(&second[..second.len() - 7]);
        let topic: Arc<str> = Arc::from("t");
        let (records, next) = decode_fetched(&topic, 0, Bytes::from(buf), 0).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(next, 4);
    }

    #[test]
    fn empty_response_keeps_the_offset() {
        let topic: Arc<str> = Arc::from("t");
        let (records, next) = decode_fetched(&topic, 0, Bytes::new(), 42).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 42);
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let mut buf = batch(0, 2).to_vec();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let topic: Arc<str> = Arc::from("t");
        assert!(decode_fetched(&topic, 0, Bytes::from(buf), 0).is_err());
    }
}
