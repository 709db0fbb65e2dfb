//! The fixed 61-byte RecordBatch v2 header.
//!
//! ```text
//! base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic i8 |
//! crc u32 | attributes i16 | last_offset_delta i32 | base_timestamp i64 |
//! max_timestamp i64 | producer_id i64 | producer_epoch i16 | base_sequence i32 |
//! records_count i32 | records...
//! ```
//!
//! `batch_length` counts the bytes after itself, so a batch occupies
//! `batch_length + LOG_OVERHEAD` bytes. The CRC covers attributes..end, which
//! is why the broker can rewrite the base offset and leader epoch without
//! recomputing it.

pub use kafka_protocol::records::{Compression, TimestampType};

/// Size of the v2 batch header, including base offset and length.
pub const HEADER_SIZE: usize = 61;
/// Bytes before and including the length field (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// The leading bytes a leader rewrites in every batch it appends (base
/// offset, length, partition leader epoch): all outside the CRC.
pub const STAMP_SIZE: usize = 16;
/// The only supported magic byte.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_POS: usize = 0;
pub(crate) const LENGTH_POS: usize = 8;
pub(crate) const LEADER_EPOCH_POS: usize = 12;
pub(crate) const MAGIC_POS: usize = 16;
pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
pub(crate) const MAX_TIMESTAMP_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
pub(crate) const RECORDS_COUNT_POS: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// The parsed header of one v2 batch. Parsing does not validate; see
/// [`crate::validate_batch`] for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

pub(crate) fn get_i64(b: &[u8], pos: usize) -> i64 {
    i64::from_be_bytes(b[pos..pos + 8].try_into().expect("8 bytes"))
}
pub(crate) fn get_i32(b: &[u8], pos: usize) -> i32 {
    i32::from_be_bytes(b[pos..pos + 4].try_into().expect("4 bytes"))
}
fn get_i16(b: &[u8], pos: usize) -> i16 {
    i16::from_be_bytes(b[pos..pos + 2].try_into().expect("2 bytes"))
}

impl RecordBatchHeader {
    /// Reads the header from the first [`HEADER_SIZE`] bytes of `buf`;
    /// `None` if `buf` is shorter than that.
    pub fn parse(buf: &[u8]) -> Option<RecordBatchHeader> {
        if buf.len() < HEADER_SIZE {
            return None;
        }
        Some(RecordBatchHeader {
            base_offset: get_i64(buf, BASE_OFFSET_POS),
            batch_length: get_i32(buf, LENGTH_POS),
            partition_leader_epoch: get_i32(buf, LEADER_EPOCH_POS),
            magic: buf[MAGIC_POS] as i8,
            crc: get_i32(buf, CRC_POS) as u32,
            attributes: get_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: get_i32(buf, LAST_OFFSET_DELTA_POS),
            base_timestamp: get_i64(buf, BASE_TIMESTAMP_POS),
            max_timestamp: get_i64(buf, MAX_TIMESTAMP_POS),
            producer_id: get_i64(buf, PRODUCER_ID_POS),
            producer_epoch: get_i16(buf, PRODUCER_EPOCH_POS),
            base_sequence: get_i32(buf, BASE_SEQUENCE_POS),
            records_count: get_i32(buf, RECORDS_COUNT_POS),
        })
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset following the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Bytes the whole batch occupies, `batch_length + 12`.
    pub fn total_size(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// The compression codec; `None` for an unknown codec id.
    pub fn compression(&self) -> Option<Compression> {
        match self.attributes & COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppend
        } else {
            TimestampType::Creation
        }
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
}

/// CRC-32C over attributes..end of a whole batch (`batch` starts at the base
/// offset and holds exactly one batch).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS..])
}

/// Recomputes and stores the CRC after a change to a CRC-covered field.
pub fn recompute_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the base offset. Not covered by the CRC, so the CRC stays valid;
/// record offsets are deltas, so every record moves with it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch. Not covered by the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `timestamp` as its max timestamp,
/// as a broker with `message.timestamp.type=LogAppendTime` does. Both fields
/// are CRC-covered, so the CRC is recomputed; `batch` must hold exactly one
/// whole batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = get_i16(batch, ATTRIBUTES_POS) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&timestamp.to_be_bytes());
    recompute_crc(batch);
}
