//! Idempotent-producer state of one partition (Kafka's ProducerStateManager):
//! per producer id, its epoch and the sequence ranges and offsets of its most
//! recent batches. The leader uses it to answer a retried batch with its
//! original offset instead of appending it twice, and to refuse sequence gaps.
//! The state is derived from the log (batch headers), so followers rebuild the
//! same state from what they replicate, and a restart rebuilds it from a
//! snapshot plus the log after it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::error::BrokerError;
use serde::{Deserialize, Serialize};
use sluice_records::RecordBatchHeader;

/// Batches remembered per producer and partition. Kafka keeps 5 (its limit of
/// in-flight requests); a Sluice request may carry several batches of one
/// partition, so more are kept.
const REMEMBERED_BATCHES: usize = 64;

pub const SNAPSHOT_FILE: &str = "producer-state.snapshot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// The log offset the state covers up to (exclusive).
    pub end_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not idempotent, or the next sequence: append it.
    Append,
    /// Already in the log: answer with its original first offset.
    Duplicate { first_offset: i64 },
}

fn last_seq(h: &RecordBatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as Kafka's do.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

impl ProducerStateManager {
    /// Empty state for a log that starts at `offset`.
    pub fn starting_at(offset: i64) -> Self {
        Self {
            producers: HashMap::new(),
            end_offset: offset,
        }
    }

    /// Checks one leader batch against the state (before offsets are assigned).
    pub fn check(
        &self,
        h: &RecordBatchHeader,
        topic: &str,
        partition: i32,
    ) -> Result<SeqCheck, BrokerError> {
        if h.producer_id < 0 {
            return Ok(SeqCheck::Append);
        }
        let first = h.base_sequence;
        let last = last_seq(h);
        let Some(entry) = self.producers.get(&h.producer_id) else {
            if first != 0 {
                return Err(BrokerError::UnknownProducer {
                    topic: topic.to_string(),
                    partition,
                    producer_id: h.producer_id,
                    sequence: first,
                });
            }
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                topic: topic.to_string(),
                partition,
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            if first != 0 {
                return Err(BrokerError::NewEpochSequence {
                    topic: topic.to_string(),
                    partition,
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    sequence: first,
                });
            }
            return Ok(SeqCheck::Append);
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(SeqCheck::Duplicate {
                first_offset: b.first_offset,
            });
        }
        let expected = entry.batches.back().map_or(0, |b| {
            if b.last_seq == i32::MAX {
                0
            } else {
                b.last_seq + 1
            }
        });
        if first != expected {
            return Err(BrokerError::OutOfOrderSequence {
                topic: topic.to_string(),
                partition,
                producer_id: h.producer_id,
                expected,
                got: first,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Checks the batches of one request in order: a later batch of the same
    /// producer follows the earlier ones of the request, not just the log.
    /// Returns the original first offset when the whole request is a duplicate.
    pub fn check_all(
        &self,
        headers: &[RecordBatchHeader],
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, BrokerError> {
        let mut pending: HashMap<i64, i32> = HashMap::new();
        let mut dup_first = None;
        let mut appends = 0;
        for h in headers {
            if h.producer_id < 0 {
                appends += 1;
                continue;
            }
            if let Some(last) = pending.get(&h.producer_id) {
                let expected = if *last == i32::MAX { 0 } else { last + 1 };
                if h.base_sequence != expected {
                    return Err(BrokerError::OutOfOrderSequence {
                        topic: topic.to_string(),
                        partition,
                        producer_id: h.producer_id,
                        expected,
                        got: h.base_sequence,
                    });
                }
                pending.insert(h.producer_id, last_seq(h));
                appends += 1;
                continue;
            }
            match self.check(h, topic, partition)? {
                SeqCheck::Append => {
                    pending.insert(h.producer_id, last_seq(h));
                    appends += 1;
                }
                SeqCheck::Duplicate { first_offset } => {
                    dup_first.get_or_insert(first_offset);
                }
            }
        }
        if dup_first.is_some() && appends > 0 {
            return Err(BrokerError::MixedDuplicateBatches {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(dup_first)
    }

    /// Records a batch that is now in the log (leader or follower).
    pub fn update(&mut self, h: &RecordBatchHeader) {
        self.end_offset = self.end_offset.max(h.next_offset());
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset: h.base_offset,
        });
        while entry.batches.len() > REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Writes the snapshot atomically (tmp file + rename).
    pub fn write_snapshot(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(self).expect("serializable"))?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
    }

    /// Reads the snapshot if there is a usable one.
    pub fn read_snapshot(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(SNAPSHOT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_types::ErrorCode;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, offset: i64) -> RecordBatchHeader {
        RecordBatchHeader {
            base_offset: offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn duplicates_get_their_original_offset_and_gaps_are_refused() {
        let mut s = ProducerStateManager::default();
        assert_eq!(
            s.check(&h(7, 0, 0, 3, 0), "t", 0).unwrap(),
            SeqCheck::Append
        );
        s.update(&h(7, 0, 0, 3, 10));
        assert_eq!(
            s.check(&h(7, 0, 3, 2, 0), "t", 0).unwrap(),
            SeqCheck::Append
        );
        s.update(&h(7, 0, 3, 2, 13));
        // A retry of either batch is a duplicate.
        assert_eq!(
            s.check(&h(7, 0, 0, 3, 0), "t", 0).unwrap(),
            SeqCheck::Duplicate { first_offset: 10 }
        );
        assert_eq!(
            s.check(&h(7, 0, 3, 2, 0), "t", 0).unwrap(),
            SeqCheck::Duplicate { first_offset: 13 }
        );
        // A gap.
        let e = s.check(&h(7, 0, 9, 1, 0), "t", 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::OutOfOrderSequenceNumber);
        assert!(
            matches!(
                e,
                BrokerError::OutOfOrderSequence {
                    producer_id: 7,
                    expected: 5,
                    got: 9,
                    ..
                }
            ),
            "{e:?}"
        );
        // A stale epoch.
        s.update(&h(7, 1, 0, 1, 15));
        let e = s.check(&h(7, 0, 5, 1, 0), "t", 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidProducerEpoch);
        assert_eq!(e.to_string(), "t-0: producer 7 epoch 0 is older than 1");
        // Non-idempotent batches always append.
        assert_eq!(
            s.check(&h(-1, -1, -1, 5, 0), "t", 0).unwrap(),
            SeqCheck::Append
        );
    }

    #[test]
    fn batches_of_one_request_follow_each_other() {
        let mut s = ProducerStateManager::default();
        s.update(&h(7, 0, 0, 3, 0));
        let req = [h(7, 0, 3, 2, 0), h(7, 0, 5, 4, 0)];
        assert_eq!(s.check_all(&req, "t", 0).unwrap(), None);
        let gap = [h(7, 0, 3, 2, 0), h(7, 0, 6, 4, 0)];
        let e = s.check_all(&gap, "t", 0).unwrap_err();
        assert!(
            matches!(
                e,
                BrokerError::OutOfOrderSequence {
                    producer_id: 7,
                    expected: 5,
                    got: 6,
                    ..
                }
            ),
            "{e:?}"
        );
        for b in [h(7, 0, 3, 2, 3), h(7, 0, 5, 4, 5)] {
            s.update(&b);
        }
        assert_eq!(s.check_all(&req, "t", 0).unwrap(), Some(3));
    }

    #[test]
    fn unknown_producer_must_start_at_zero() {
        let s = ProducerStateManager::default();
        let e = s.check(&h(9, 0, 4, 1, 0), "t", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t-0: producer 9 is unknown here and its first sequence is 4, not 0"
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::default();
        s.update(&h(7, 0, 0, 3, 10));
        s.write_snapshot(dir.path()).unwrap();
        let back = ProducerStateManager::read_snapshot(dir.path()).unwrap();
        assert_eq!(back.end_offset, 13);
        assert_eq!(
            back.check(&h(7, 0, 0, 3, 0), "t", 0).unwrap(),
            SeqCheck::Duplicate { first_offset: 10 }
        );
    }
}
