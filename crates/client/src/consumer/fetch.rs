//! The consumer's fetch path: one Fetch per leader broker, run as a task that
//! also decodes the raw v2 batches (so decoding overlaps the application's
//! processing), and the bookkeeping that applies each result to the buffer
//! and the partitions' fetch offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_proto::broker::{FetchPartition, FetchRequest, FetchTopic, RecordFormat};
use sluice_types::{ApiError, ErrorCode};

use super::{Consumer, ConsumerRecord, isolation};
use crate::config::OffsetReset;
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

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

pub(super) struct FetchResult {
    broker: i32,
    tps: Vec<(TopicPartition, i64)>,
    outcome: std::result::Result<Vec<PartitionFetch>, ClientError>,
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
    /// Starts a Fetch for every leader broker that has fetchable partitions
    /// and no fetch in flight.
    pub(super) fn send_fetches(&mut self, max_wait: Duration) {
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
    pub(super) fn handle_fetch(&mut self, result: FetchResult) -> Result<()> {
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
        // A fetch that found only control batches still moves the position.
        self.skip_gaps();
        Ok(())
    }
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

    /// Decoding a fetched batch yields every record; prints the decode rate
    /// (moved here from the client's mock-broker tests: it needs no server).
    #[test]
    fn decode_fetched_yields_every_record() {
        let records: Vec<Record> = (0..1000)
            .map(|_| Record {
                value: Some(Bytes::from(vec![b'a'; 1024])),
                timestamp: 1,
                ..Default::default()
            })
            .collect();
        let b = encode_batch(&records, Default::default()).unwrap();
        let topic: Arc<str> = Arc::from("t");
        let t0 = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..50 {
            n += decode_fetched(&topic, 0, b.clone(), 0).unwrap().0.len();
        }
        assert_eq!(n, 50 * 1000);
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "decode: {:.0} rec/s, {:.1} MB/s",
            n as f64 / secs,
            n as f64 * 1024.0 / secs / 1048576.0
        );
        let t0 = std::time::Instant::now();
        for _ in 0..50 {
            assert_eq!(sluice_records::split_batches(&b).unwrap().len(), 1);
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "split+crc: {:.1} MB/s",
            50.0 * b.len() as f64 / secs / 1048576.0
        );
    }
}
