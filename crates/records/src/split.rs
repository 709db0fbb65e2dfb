//! Walking a buffer of concatenated batches, validating each.

use bytes::Bytes;

use crate::error::RecordsError;
use crate::header::{
    CRC_POS, HEADER_SIZE, LENGTH_POS, LOG_OVERHEAD, MAGIC_POS, MAGIC_V2, RecordBatchHeader,
    compute_crc, get_i32,
};

/// One validated batch inside a larger buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    pub header: RecordBatchHeader,
    /// Byte position of the batch inside the buffer that was split.
    pub position: usize,
    /// The whole batch, a zero-copy slice of the split buffer.
    pub bytes: Bytes,
}

/// Validates the batch at the start of `buf` (length, magic, CRC-32C,
/// record count) and returns its header. `position` is only used in errors.
///
/// A length that runs past the end of `buf` is reported as
/// [`RecordsError::Truncated`], so callers can tell a partial tail apart
/// from corruption.
pub fn validate_batch(buf: &[u8], position: usize) -> Result<RecordBatchHeader, RecordsError> {
    validate(buf, position, true)
}

/// [`validate_batch`] without the CRC: for a caller whose decoder checks the
/// CRC itself (one pass over the bytes, not two).
pub fn validate_frame(buf: &[u8], position: usize) -> Result<RecordBatchHeader, RecordsError> {
    validate(buf, position, false)
}

fn validate(buf: &[u8], position: usize, crc: bool) -> Result<RecordBatchHeader, RecordsError> {
    if buf.len() < LOG_OVERHEAD {
        return Err(RecordsError::Truncated {
            position,
            needed: LOG_OVERHEAD,
            available: buf.len(),
        });
    }
    let batch_length = get_i32(buf, LENGTH_POS);
    // The length counts everything after itself: at least the rest of the header.
    if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(RecordsError::CorruptMessage {
            position,
            reason: format!(
                "batch length {batch_length} is smaller than the minimum {}",
                HEADER_SIZE - LOG_OVERHEAD
            ),
        });
    }
    let total = batch_length as usize + LOG_OVERHEAD;
    if buf.len() < total {
        return Err(RecordsError::Truncated {
            position,
            needed: total,
            available: buf.len(),
        });
    }
    let batch = &buf[..total];
    let magic = batch[MAGIC_POS] as i8;
    if magic != MAGIC_V2 {
        return Err(RecordsError::UnsupportedMagic { position, magic });
    }
    // Before the fields it covers: a flipped bit reads as a CRC mismatch.
    let stored = get_i32(batch, CRC_POS) as u32;
    if crc && stored != compute_crc(batch) {
        return Err(RecordsError::CrcMismatch {
            position,
            stored,
            computed: compute_crc(batch),
        });
    }
    let header = RecordBatchHeader::parse(batch).expect("length checked above");
    if header.records_count < 0 {
        return Err(RecordsError::CorruptMessage {
            position,
            reason: format!("negative record count {}", header.records_count),
        });
    }
    if header.last_offset_delta < 0 {
        return Err(RecordsError::CorruptMessage {
            position,
            reason: format!("negative last offset delta {}", header.last_offset_delta),
        });
    }
    Ok(header)
}

/// Iterates over the validated batches of a byte slice, yielding
/// `(position, header)`. Stops after the first error.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Byte position just past the last batch yielded successfully.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(usize, RecordBatchHeader), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match validate_batch(&self.buf[self.pos..], self.pos) {
            Ok(header) => {
                let position = self.pos;
                self.pos += header.total_size();
                Some(Ok((position, header)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The headers of the whole batches in `buf`, without checking CRCs: for code
/// that reads batch metadata from bytes that are validated elsewhere (the log
/// validates every appended batch), so the hot path computes each CRC once.
/// Stops at the first partial or nonsensical length.
pub fn batch_headers(buf: &[u8]) -> impl Iterator<Item = RecordBatchHeader> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = RecordBatchHeader::parse(buf.get(pos..)?)?;
        let size = h.total_size();
        if h.batch_length < 0 || size < crate::HEADER_SIZE || pos + size > buf.len() {
            return None;
        }
        pos += size;
        Some(h)
    })
}

/// Splits `buf` into validated batches, zero-copy. Strict: a partial trailing
/// batch is an error, as it must be for a produce request or a log segment.
pub fn split_batches(buf: &Bytes) -> Result<Vec<BatchRef>, RecordsError> {
    BatchIter::new(buf)
        .map(|r| {
            r.map(|(position, header)| BatchRef {
                header,
                position,
                bytes: buf.slice(position..position + header.total_size()),
            })
        })
        .collect()
}
