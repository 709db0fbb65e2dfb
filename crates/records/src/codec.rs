//! Structured records: encoding with `kafka_protocol::records::RecordBatchEncoder`
//! and decoding with `RecordBatchDecoder`.
//!
//! Known limitation inherited from `kafka-protocol`: record headers travel
//! through an `IndexMap`, so duplicate header keys within one record collapse
//! into one entry (first position, last value).

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::RecordsError;
use crate::header::{MAGIC_V2, RecordBatchHeader};
use crate::split::BatchIter;

/// One record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Absolute offset. Ignored by [`encode_batch`], which numbers records
    /// `base_offset + index`.
    pub offset: i64,
}

/// Batch-level fields for [`encode_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    pub base_offset: i64,
    /// -1 when the client does not know it; the leader overwrites it.
    pub partition_leader_epoch: i32,
    /// -1 for a non-idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the first record; -1 for a non-idempotent producer.
    pub base_sequence: i32,
    pub transactional: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

/// A decoded batch: its header plus its records with absolute offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub header: RecordBatchHeader,
    pub records: Vec<Record>,
}

/// Encodes `records` as one uncompressed v2 batch. Record `i` gets offset
/// `base_offset + i`; the base timestamp is the smallest record timestamp and
/// each record stores its delta from it. An empty slice encodes to empty bytes.
pub fn encode_batch(records: &[Record], opts: EncodeOptions) -> Result<Bytes, RecordsError> {
    if records.is_empty() {
        return Ok(Bytes::new());
    }
    let kp: Vec<kafka_protocol::records::Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = kafka_protocol::indexmap::IndexMap::with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers.insert(StrBytes::from_string(k.clone()), v.clone());
            }
            kafka_protocol::records::Record {
                transactional: opts.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: opts.partition_leader_epoch,
                producer_id: opts.producer_id,
                producer_epoch: opts.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: opts.base_offset + i as i64,
                // The encoder splits batches where `offset - sequence` changes,
                // so sequences must advance with offsets even when unused (-1).
                sequence: opts.base_sequence.wrapping_add(i as i32),
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        kp.iter(),
        &RecordEncodeOptions {
            version: MAGIC_V2,
            compression: Compression::None,
        },
    )
    .map_err(|e| RecordsError::Encode {
        reason: e.to_string(),
    })?;
    Ok(buf.freeze())
}

/// Decodes every whole batch in `buf`. A partial batch at the end (as a
/// fetch response may carry) is ignored; any other damage is an error.
pub fn decode_batches(buf: Bytes) -> Result<Vec<DecodedBatch>, RecordsError> {
    let mut out = Vec::new();
    for item in BatchIter::new(&buf) {
        let (position, header) = match item {
            Ok(v) => v,
            Err(e) if e.is_truncated() => break,
            Err(e) => return Err(e),
        };
        let mut slice = buf.slice(position..position + header.total_size());
        let set = RecordBatchDecoder::decode(&mut slice).map_err(|e| RecordsError::Decode {
            base_offset: header.base_offset,
            reason: e.to_string(),
        })?;
        let log_append = header.timestamp_type() == TimestampType::LogAppend;
        let records = set
            .records
            .into_iter()
            .map(|r| Record {
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                // With LogAppendTime every record carries the broker's time.
                timestamp: if log_append {
                    header.max_timestamp
                } else {
                    r.timestamp
                },
                offset: r.offset,
            })
            .collect();
        out.push(DecodedBatch { header, records });
    }
    Ok(out)
}

/// [`decode_batches`], flattened to records. Control batches are skipped,
/// as a consumer does.
pub fn decode_records(buf: Bytes) -> Result<Vec<Record>, RecordsError> {
    Ok(decode_batches(buf)?
        .into_iter()
        .filter(|b| !b.header.is_control())
        .flat_map(|b| b.records)
        .collect())
}
