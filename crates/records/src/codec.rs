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

use crate::compression::{DecompressError, decompress};
use crate::error::RecordsError;

/// What the log cleaner lets one stored batch inflate to.
const RETAIN_DECOMPRESSED_LIMIT: usize = 1 << 30;
use crate::header::{HEADER_SIZE, MAGIC_V2, RecordBatchHeader};
use crate::split::{validate_batch, validate_frame};

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
    /// The records section's codec (the producer's `compression.type`).
    pub compression: Compression,
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
            compression: Compression::None,
        }
    }
}

/// A decoded batch: its header plus its records with absolute offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub header: RecordBatchHeader,
    pub records: Vec<Record>,
}

/// Encodes `records` as one v2 batch, compressed with `opts.compression`. Record `i` gets offset
/// `base_offset + i`; the base timestamp is the smallest record timestamp and
/// each record stores its delta from it. An empty slice encodes to empty bytes.
pub fn encode_batch(records: &[Record], opts: EncodeOptions) -> Result<Bytes, RecordsError> {
    encode_batch_with(records, opts, Layout::default())
}

/// How [`encode_batch_with`] lays records out beyond [`EncodeOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// A control batch (attribute bit 5): consumers skip it.
    pub control: bool,
}

/// [`encode_batch`] with a [`Layout`].
pub fn encode_batch_with(
    records: &[Record],
    opts: EncodeOptions,
    layout: Layout,
) -> Result<Bytes, RecordsError> {
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
                control: layout.control,
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
    // Sized up front (a little over): growing it as records are written
    // reallocated and copied the batch several times.
    let uncompressed = HEADER_SIZE
        + records
            .iter()
            .map(|r| {
                24 + r.key.as_ref().map_or(0, |k| k.len())
                    + r.value.as_ref().map_or(0, |v| v.len())
                    + r.headers
                        .iter()
                        .map(|(k, v)| 10 + k.len() + v.as_ref().map_or(0, |v| v.len()))
                        .sum::<usize>()
            })
            .sum::<usize>();
    let hint = if opts.compression == Compression::None {
        uncompressed
    } else {
        uncompressed / 4
    };
    let mut buf = BytesMut::with_capacity(hint);
    RecordBatchEncoder::encode(
        &mut buf,
        kp.iter(),
        &RecordEncodeOptions {
            version: MAGIC_V2,
            compression: opts.compression,
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
    let mut position = 0;
    while position < buf.len() {
        // The decoder checks the CRC: the frame is checked here without it,
        // so each byte is summed once.
        let header = match validate_frame(&buf[position..], position) {
            Ok(h) => h,
            Err(e) if e.is_truncated() => break,
            // A CRC mismatch is the better answer when there is one.
            Err(e) => {
                return Err(validate_batch(&buf[position..], position)
                    .err()
                    .unwrap_or(e));
            }
        };
        let batch = buf.slice(position..position + header.total_size());
        let set = RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| {
            // The precise error (a CRC mismatch, most likely) when there is one.
            validate_batch(&batch, position)
                .err()
                .unwrap_or(RecordsError::Decode {
                    base_offset: header.base_offset,
                    reason: e.to_string(),
                })
        })?;
        position += header.total_size();
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

/// Rewrites one whole v2 batch keeping only the records for
/// which `keep` returns true, as Kafka's log cleaner does. Every header field
/// stays: base offset and last offset delta (so the batch keeps its offset
/// range and a producer's last sequence survives even when the last record
/// goes), base timestamp, leader epoch, attributes, producer id and epoch,
/// base sequence. Each kept record's bytes are copied unchanged, since its
/// offset and timestamp deltas are relative to those fields; copying rather
/// than re-encoding also keeps what `kafka-protocol` would lose (duplicate
/// header keys); a compressed batch is decompressed, filtered the same way
/// and compressed again with its own codec. Recomputed: record count,
/// length, CRC, and for CreateTime
/// batches the max timestamp (the largest kept one; unchanged when nothing is
/// kept, as Kafka's empty batches keep it).
///
/// Returns `None` when every record is kept. A batch with no records left is
/// valid (Kafka keeps such batches for producer state).
pub fn retain_records(
    batch: &Bytes,
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Option<Bytes>, RecordsError> {
    use crate::header::{
        HEADER_SIZE, LENGTH_POS, LOG_OVERHEAD, MAX_TIMESTAMP_POS, RECORDS_COUNT_POS, recompute_crc,
    };

    let header = crate::split::validate_batch(batch, 0)?;
    let corrupt = |reason: String| RecordsError::CorruptMessage {
        position: 0,
        reason,
    };
    if header.total_size() != batch.len() {
        return Err(corrupt(format!(
            "expected exactly one batch of {} bytes, got {} bytes",
            header.total_size(),
            batch.len()
        )));
    }
    let compression = header.compression().ok_or_else(|| RecordsError::Decode {
        base_offset: header.base_offset,
        reason: format!("unknown compression in attributes {}", header.attributes),
    })?;
    let codec_err = |e: anyhow::Error| RecordsError::Decode {
        base_offset: header.base_offset,
        reason: e.to_string(),
    };
    let records = decode_batches(batch.clone())?
        .pop()
        .map(|b| b.records)
        .unwrap_or_default();
    if records.len() != header.records_count as usize {
        return Err(corrupt(format!(
            "header counts {} records, decoded {}",
            header.records_count,
            records.len()
        )));
    }
    let kept: Vec<bool> = records.iter().map(&mut keep).collect();
    if kept.iter().all(|k| *k) {
        return Ok(None);
    }
    // The records section, decompressed: kept records are copied as they are
    // and compressed again with the batch's own codec.
    // Stored batches passed the produce-time cap; this one only guards
    // against data written before it existed.
    let section = decompress(
        compression,
        batch.slice(HEADER_SIZE..),
        RETAIN_DECOMPRESSED_LIMIT,
    )
    .map_err(|e| codec_err(e.into()))?;
    let mut kept_section = BytesMut::with_capacity(section.len());
    // Each record is a varint length followed by that many bytes.
    let mut rest = &section[..];
    let mut count = 0i32;
    let mut max_timestamp = None;
    for (record, keep) in records.iter().zip(kept) {
        let framed = next_record(&mut rest).map_err(corrupt)?;
        if keep {
            kept_section.extend_from_slice(framed);
            count += 1;
            max_timestamp = max_timestamp.max(Some(record.timestamp));
        }
    }
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last record",
            rest.len()
        )));
    }
    let mut out = BytesMut::with_capacity(HEADER_SIZE + kept_section.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    compress(compression, &kept_section, &mut out).map_err(codec_err)?;
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&length.to_be_bytes());
    out[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    if header.timestamp_type() == TimestampType::Creation
        && let Some(ts) = max_timestamp
    {
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&ts.to_be_bytes());
    }
    recompute_crc(&mut out);
    Ok(Some(out.freeze()))
}

/// Kafka's LogValidator check for a compressed batch: the records section
/// decompresses and frames exactly `records_count` records. A leader runs it
/// before appending, so a batch that no consumer or log cleaner could read is
/// refused instead of stored. Uncompressed batches pass (the log checks their
/// header and CRC).
///
/// The section may inflate to at most `limit` bytes (a compression bomb is
/// refused with [`RecordsError::TooLarge`] before it fills memory).
pub fn check_compressed(batch: &[u8], limit: usize) -> Result<(), RecordsError> {
    check_compressed_for(batch, limit, |_| false).map(|_| ())
}

/// [`check_compressed`], also telling whether `wanted` holds for the name of
/// any record header on the way (the produce path's look for delay
/// requests, without a second decompression). Uncompressed batches answer
/// false: walk those with [`crate::walk::any_header_name`].
pub fn check_compressed_for(
    batch: &[u8],
    limit: usize,
    mut wanted: impl FnMut(&[u8]) -> bool,
) -> Result<bool, RecordsError> {
    use crate::header::HEADER_SIZE;
    let corrupt = |reason: String| RecordsError::CorruptMessage {
        position: 0,
        reason,
    };
    let header = RecordBatchHeader::parse(batch)
        .filter(|h| h.total_size() <= batch.len() && h.total_size() >= HEADER_SIZE)
        .ok_or_else(|| corrupt("not a whole record batch".to_string()))?;
    let compression = header.compression().ok_or_else(|| {
        corrupt(format!(
            "unknown compression in attributes {}",
            header.attributes
        ))
    })?;
    if compression == Compression::None {
        return Ok(false);
    }
    let body = Bytes::copy_from_slice(&batch[HEADER_SIZE..header.total_size()]);
    let section = decompress(compression, body, limit).map_err(|e| match e {
        DecompressError::TooLarge { limit } => RecordsError::TooLarge { limit },
        e => corrupt(format!("{compression:?} records do not decompress: {e}")),
    })?;
    let mut rest = &section[..];
    let mut count = 0i64;
    let mut found = false;
    while !rest.is_empty() {
        let record =
            next_record(&mut rest).map_err(|e| corrupt(format!("after decompression: {e}")))?;
        if !found {
            found = crate::walk::any_header_name(record, &mut wanted)?;
        }
        count += 1;
    }
    if count != i64::from(header.records_count) {
        return Err(corrupt(format!(
            "header counts {} records, the compressed section holds {count}",
            header.records_count
        )));
    }
    Ok(found)
}

/// Appends `section` to `out`, compressed.
fn compress(compression: Compression, section: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let put = |b: &mut BytesMut| {
        b.extend_from_slice(section);
        Ok(())
    };
    match compression {
        Compression::None => put(out),
        Compression::Gzip => Gzip::compress(out, put),
        Compression::Snappy => Snappy::compress(out, put),
        Compression::Lz4 => Lz4::compress(out, put),
        Compression::Zstd => Zstd::compress(out, put),
    }
}

/// Takes one record off the front of a records section: its length prefix
/// and body, as stored.
fn next_record<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let start = *rest;
    let len = read_varint(rest).ok_or("bad record length varint")?;
    let total = (start.len() - rest.len()) + len.max(0) as usize;
    if len < 0 || total > start.len() {
        return Err(format!("record length {len} runs past the batch"));
    }
    *rest = &start[total..];
    Ok(&start[..total])
}

/// Reads a zigzag varint (the record length prefix). `kafka-protocol` keeps
/// its varint decoder crate-private, and only this framing is needed here: the
/// record bodies themselves are decoded by `kafka-protocol`.
fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let mut raw = 0u32;
    for i in 0..5 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    None
}
