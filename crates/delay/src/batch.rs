//! Batches in and out of a partition with delays: how the produce path
//! rewrites a producer's batch that asks for delays ([`plan`]), the batch a
//! release appends ([`release_batch`]), and what an appended batch means to
//! the timer index ([`scan`]).

use bytes::Bytes;
use sluice_records::{
    Compression, EncodeOptions, HEADER_SIZE, Layout, Record, RecordBatchHeader, decode_batches,
    encode_batch, encode_batch_with, walk,
};

use crate::envelope::{
    CANCEL_TYPE, DELAYED_TYPE, Envelope, ID_HEADER, PLACEHOLDER_TYPE, control_key, control_type,
    released_id,
};
use crate::error::DelayError;
use crate::request::{DELIVER_AFTER_HEADER, DELIVER_AT_HEADER, DelayLimits, due_time};

/// A topic's delay settings, as the produce path applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `delivery.delay.ms`: the delay of records that name none (0: none).
    pub default_ms: i64,
    pub limits: DelayLimits,
}

/// What to append for one producer batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No delay asked for: append the batch as it came.
    Keep,
    /// Append these batches, in order, instead.
    Rewrite(Vec<Bytes>),
}

/// Whether a record header name is a delay request.
pub fn is_delay_header(name: &[u8]) -> bool {
    name == DELIVER_AT_HEADER.as_bytes() || name == DELIVER_AFTER_HEADER.as_bytes()
}

/// Whether any record of one whole batch names a delay (decompressing it,
/// at most to `limit` bytes, when compressed). The produce path has a
/// cheaper way for compressed batches: its decompressing check reports it
/// (`sluice_records::check_compressed_for`).
pub fn asks_for_delay(batch: &[u8], limit: usize) -> Result<bool, DelayError> {
    let header = RecordBatchHeader::parse(batch).ok_or_else(|| corrupt("not a batch"))?;
    let found = if header.compression() == Some(Compression::None) {
        walk::any_header_name(&batch[HEADER_SIZE..header.total_size()], is_delay_header)
    } else {
        sluice_records::check_compressed_for(batch, limit, is_delay_header)
    };
    found.map_err(|e| corrupt(&e.to_string()))
}

/// Plans one whole producer batch (after the producer-state duplicate check:
/// a retried batch must be answered as a duplicate before it is rewritten,
/// or its immediate part would be appended twice). `asks`: whether a record
/// names a delay ([`asks_for_delay`]).
///
/// - No record asks for a delay (and no topic default): [`Plan::Keep`].
/// - Every record does: one control batch of [`Envelope`]s, with the
///   producer's id, epoch, sequences and offset span, so the producer state
///   sees exactly the batch that came.
/// - Some do: the others first, as a batch without a producer id, then the
///   control batch, where a place holder stands for each of them (it stays
///   dense, as the log requires, and keeps the producer's whole sequence
///   range), in one append.
///
/// A record's bad delay refuses the whole batch.
pub fn plan(batch: &[u8], asks: bool, now_ms: i64, policy: Policy) -> Result<Plan, DelayError> {
    let header = RecordBatchHeader::parse(batch).ok_or_else(|| corrupt("not a batch"))?;
    if header.is_control() {
        return Err(DelayError::BadHeader {
            header: "control batch",
            reason: "producers may not send control batches".into(),
        });
    }
    if !asks && policy.default_ms <= 0 {
        return Ok(Plan::Keep);
    }
    let batch = Bytes::copy_from_slice(&batch[..header.total_size().min(batch.len())]);
    let decoded = decode_batches(batch).map_err(|e| corrupt(&e.to_string()))?;
    let [decoded] = &decoded[..] else {
        return Err(corrupt("expected exactly one batch"));
    };
    let mut immediate = Vec::new();
    let mut control = Vec::with_capacity(decoded.records.len());
    for (i, r) in decoded.records.iter().enumerate() {
        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref()));
        let due = due_time(headers, now_ms, policy.default_ms, policy.limits).map_err(|e| {
            DelayError::InRecord {
                index: i,
                source: Box::new(e),
            }
        })?;
        let (control_type, value) = match due {
            None => {
                immediate.push(r.clone());
                (PLACEHOLDER_TYPE, None)
            }
            Some(due_ms) => {
                let envelope = Envelope {
                    due_ms,
                    produced_ms: now_ms,
                    origin_id: -1,
                    record: r.clone(),
                };
                (DELAYED_TYPE, Some(envelope.encode()))
            }
        };
        control.push(Record {
            key: Some(Bytes::copy_from_slice(&control_key(control_type))),
            value,
            headers: Vec::new(),
            timestamp: r.timestamp,
            offset: 0,
        });
    }
    if immediate.len() == control.len() {
        return Ok(Plan::Keep);
    }
    let compression = header.compression().unwrap_or(Compression::None);
    let mut out = Vec::with_capacity(2);
    if !immediate.is_empty() {
        let opts = EncodeOptions {
            compression,
            ..EncodeOptions::default()
        };
        out.push(encode_batch(&immediate, opts).map_err(|e| corrupt(&e.to_string()))?);
    }
    let opts = EncodeOptions {
        base_offset: 0,
        partition_leader_epoch: header.partition_leader_epoch,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        transactional: header.is_transactional(),
        compression,
    };
    let layout = Layout { control: true };
    out.push(encode_batch_with(&control, opts, layout).map_err(|e| corrupt(&e.to_string()))?);
    Ok(Plan::Rewrite(out))
}

/// The batch a release appends: each pending record (with its delay id) as
/// the record it stood for, uncompressed and without a producer id so that
/// [`scan`] recognises it cheaply.
pub fn release_batch(released: &[(i64, Envelope)]) -> Result<Bytes, DelayError> {
    let records: Vec<Record> = released.iter().map(|(id, e)| e.released(*id)).collect();
    encode_batch(&records, EncodeOptions::default()).map_err(|e| corrupt(&e.to_string()))
}

/// A cancellation of the pending record `id`, as a control batch.
pub fn cancel_batch(id: i64, now_ms: i64) -> Result<Bytes, DelayError> {
    let record = Record {
        key: Some(Bytes::copy_from_slice(&control_key(CANCEL_TYPE))),
        value: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
        headers: Vec::new(),
        timestamp: now_ms,
        offset: 0,
    };
    let layout = Layout { control: true };
    encode_batch_with(&[record], EncodeOptions::default(), layout)
        .map_err(|e| corrupt(&e.to_string()))
}

/// What an appended batch tells the timer index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A pending record at `offset`, due at `due_ms`.
    Delayed { offset: i64, due_ms: i64 },
    /// The pending record `id` was released by the record at `at`.
    Released { id: i64, at: i64 },
    /// The pending record `id` was cancelled by the record at `at`.
    Cancelled { id: i64, at: i64 },
}

/// What one whole appended batch (with its base offset assigned) means to
/// the index. `releases_possible`: whether this partition has had pending
/// records (a normal batch is only looked into then, and only if it could be
/// a release batch: uncompressed, no producer id, and its first header is
/// the delay id).
pub fn scan(batch: &Bytes, releases_possible: bool) -> Result<Vec<Seen>, DelayError> {
    let header = RecordBatchHeader::parse(batch).ok_or_else(|| corrupt("not a batch"))?;
    if !header.is_control() {
        let candidate = releases_possible
            && header.producer_id < 0
            && header.compression() == Some(Compression::None)
            && walk::first_header_name(&batch[HEADER_SIZE..header.total_size()])
                == Some(ID_HEADER.as_bytes());
        if !candidate {
            return Ok(Vec::new());
        }
    }
    let decoded = decode_batches(batch.clone()).map_err(|e| corrupt(&e.to_string()))?;
    let mut out = Vec::new();
    for b in &decoded {
        for r in &b.records {
            if !b.header.is_control() {
                if let Some(id) = released_id(r) {
                    out.push(Seen::Released { id, at: r.offset });
                }
                continue;
            }
            let key = r.key.as_deref().unwrap_or_default();
            let value = r.value.clone().unwrap_or_default();
            match control_type(key) {
                Some(DELAYED_TYPE) => {
                    let e = Envelope::decode(&value)?;
                    out.push(Seen::Delayed {
                        offset: r.offset,
                        due_ms: e.due_ms,
                    });
                }
                Some(CANCEL_TYPE) => {
                    let id: [u8; 8] = value[..]
                        .try_into()
                        .map_err(|_| corrupt("a cancellation without a delay id"))?;
                    out.push(Seen::Cancelled {
                        id: i64::from_be_bytes(id),
                        at: r.offset,
                    });
                }
                // Place holders, Kafka's transaction markers, anything
                // else: nothing pending.
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The pending record stored at `offset` in `batch` (read back from the log
/// for a release or a cancellation).
pub fn envelope_at(batch: &Bytes, offset: i64) -> Result<Option<Envelope>, DelayError> {
    Ok(envelopes_in(batch)?
        .into_iter()
        .find(|(o, _)| *o == offset)
        .map(|(_, e)| e))
}

/// Every pending record in `data` (whole batches read from the log), with
/// its offset.
pub fn envelopes_in(data: &Bytes) -> Result<Vec<(i64, Envelope)>, DelayError> {
    let decoded = decode_batches(data.clone()).map_err(|e| corrupt(&e.to_string()))?;
    let mut out = Vec::new();
    for b in decoded.iter().filter(|b| b.header.is_control()) {
        for r in &b.records {
            if control_type(r.key.as_deref().unwrap_or_default()) == Some(DELAYED_TYPE) {
                out.push((
                    r.offset,
                    Envelope::decode(&r.value.clone().unwrap_or_default())?,
                ));
            }
        }
    }
    Ok(out)
}

fn corrupt(reason: &str) -> DelayError {
    DelayError::CorruptEnvelope {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
