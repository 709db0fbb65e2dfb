//! What the sender puts on the wire: each batch's v2 encoding (kept for
//! retries, and carrying an idempotent producer's id, epoch and the
//! partition's next sequence numbers) and the Produce request that carries a
//! drain's batches, one entry per partition.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use sluice_proto::broker::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sluice_records::{Compression, EncodeOptions, RecordsError, encode_batch};

use crate::config::ClientConfig;
use crate::producer::Sequences;
use crate::producer::accumulator::ProducerBatch;
use crate::types::TopicPartition;

/// The batches' bytes for a send: the encoding kept from an earlier attempt
/// (a retry carries the same sequence numbers, so the broker recognizes a
/// duplicate), else a fresh encoding, which for an idempotent producer
/// (`identity`) takes the partition's next sequence numbers.
pub(super) fn encode_for_send(
    b: &mut ProducerBatch,
    identity: Option<(i64, i16)>,
    sequences: &parking_lot::Mutex<Sequences>,
    compression: Compression,
) -> Result<Bytes, RecordsError> {
    if let Some(e) = &b.encoded {
        return Ok(e.clone());
    }
    let opts = match identity {
        Some(fetched) => {
            // The identity and the sequence under one lock: a new identity
            // installed since `fetched` was read is the one used.
            let mut seqs = sequences.lock();
            let (producer_id, producer_epoch) = *seqs.owner.get_or_insert(fetched);
            EncodeOptions {
                producer_id,
                producer_epoch,
                base_sequence: next_sequence(&mut seqs.next, &b.tp, b.records.len()),
                compression,
                ..EncodeOptions::default()
            }
        }
        None => EncodeOptions {
            compression,
            ..EncodeOptions::default()
        },
    };
    let e = encode_batch(&b.records, opts)?;
    b.encoded = Some(e.clone());
    Ok(e)
}

/// Takes `count` sequence numbers of `tp`: returns the first and advances
/// the partition's next one, wrapping past `i32::MAX` to 0 as Kafka does.
pub(super) fn next_sequence(
    sequences: &mut HashMap<TopicPartition, i32>,
    tp: &TopicPartition,
    count: usize,
) -> i32 {
    let seq = sequences.entry(tp.clone()).or_insert(0);
    let base = *seq;
    *seq = ((*seq as i64 + count as i64) % (i32::MAX as i64 + 1)) as i32;
    base
}

/// The Produce request for `batches` (encoded as `encoded`, index for
/// index). One entry per partition: its batches back to back (drain keeps
/// them in order), appended by the broker in one all-or-nothing append.
pub(super) fn produce_request(
    config: &ClientConfig,
    batches: &[ProducerBatch],
    encoded: &[Bytes],
) -> ProduceRequest {
    let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut i = 0;
    while i < batches.len() {
        let tp = batches[i].tp.clone();
        let mut j = i + 1;
        while j < batches.len() && batches[j].tp == tp {
            j += 1;
        }
        let record_batches = if j - i == 1 {
            encoded[i].clone()
        } else {
            let mut buf =
                bytes::BytesMut::with_capacity(encoded[i..j].iter().map(|e| e.len()).sum());
            for e in &encoded[i..j] {
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
                // Delays travel per record, in headers.
                deliver_at_ms: None,
            });
        i = j;
    }
    ProduceRequest {
        acks: config.acks.as_i32(),
        timeout_ms: config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicProduceData { name, partitions })
            .collect(),
    }
}
