//! Kafka RecordBatch v2 codec.
//!
//! The broker validates producer batches and assigns offsets without decoding
//! individual records; clients encode batches to produce and decode fetched
//! batches. Encoding and decoding of the varint record bodies is delegated to
//! the `kafka-protocol` crate (see DESIGN.md, "Storage"); the fixed 61-byte
//! header is read and patched here directly because that is the hot path.
//!
//! # Layout
//!
//! - [`error`]: [`RecordsError`], the one error type of this crate.
//! - [`header`]: the 61-byte v2 batch header: field offsets, the parsed
//!   [`RecordBatchHeader`], and in-place mutation (`set_base_offset`, ...).
//! - [`split`]: walking a buffer batch by batch with full validation
//!   (length, magic, CRC-32C): [`split_batches`], [`BatchIter`], [`BatchRef`].
//! - [`codec`]: the crate's own [`Record`] type, [`encode_batch`] and
//!   [`decode_batches`], built on `kafka_protocol::records`, and
//!   [`retain_records`], the log cleaner's in-place filter of one batch.
//! - [`compression`]: decompression with a cap on what a batch inflates to.
//! - [`walk`]: header names of records read in place, without decoding
//!   (the produce path's look for delay requests).

pub mod codec;
pub mod compression;
pub mod error;
pub mod header;
pub mod split;
pub mod walk;

pub use codec::{
    DecodedBatch, EncodeOptions, Layout, Record, check_compressed, check_compressed_for,
    decode_batches, decode_records, encode_batch, encode_batch_with, retain_records,
};
pub use error::RecordsError;
pub use header::{
    Compression, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, RecordBatchHeader, STAMP_SIZE, TimestampType,
    compute_crc, recompute_crc, set_base_offset, set_log_append_time, set_partition_leader_epoch,
};
pub use split::{
    BatchIter, BatchRef, batch_headers, split_batches, validate_batch, validate_frame,
};

#[cfg(test)]
mod tests;
