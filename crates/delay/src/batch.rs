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
    CANCEL_TYPE, DELAYED_TYPE, Envelope, PLACEHOLDER_TYPE, control_key, control_type, released_id,
};
use crate::error::DelayError;
use crate::request::{DELIVER_AFTER_HEADER, DELIVER_AT_HEADER, DelayLimits, due_time};

/// A topic's delay settings, as the produce path applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `delivery.delay.ms`: the delay of records that name none (0: none).
    pub default_ms: i64,
    /// What set `default_ms`, for errors: the topic config, or the
    /// request's `deliver_at_ms`.
    pub default_from: &'static str,
    pub limits: DelayLimits,
    /// Why this topic takes no delays, if it does not (a compacted topic:
    /// compaction would drop released records and keep the pending ones).
    pub refused: Option<&'static str>,
    /// A delay the request asked for that is out of range (the delay, and
    /// what asked): refused after the duplicate check, like a bad header.
    pub out_of_range: Option<(i64, &'static str)>,
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
    if let Some(why) = policy.refused {
        return Err(DelayError::BadHeader {
            header: "delayed delivery",
            reason: format!("not available on this topic: {why}"),
        });
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
        let due = due_time(
            headers,
            now_ms,
            (policy.default_ms, policy.default_from),
            policy.limits,
        )
        .map_err(|e| DelayError::InRecord {
            index: i,
            source: Box::new(e),
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

/// The producer epoch of a release batch (with no producer id): no client
/// writes it (the produce path refuses it), so a release cannot be forged by
/// a record that merely carries a `sluice.delay.id` header.
pub const RELEASE_EPOCH: i16 = -2;

/// Whether a batch header is that of a release batch.
pub fn is_release(h: &RecordBatchHeader) -> bool {
    !h.is_control()
        && h.producer_id < 0
        && h.producer_epoch == RELEASE_EPOCH
        && h.compression() == Some(Compression::None)
}

/// The batch a release appends: each pending record (with its delay id) as
/// the record it stood for, uncompressed, marked by [`RELEASE_EPOCH`].
pub fn release_batch(released: &[(i64, Envelope)]) -> Result<Bytes, DelayError> {
    let records: Vec<Record> = released.iter().map(|(id, e)| e.released(*id)).collect();
    let opts = EncodeOptions {
        producer_epoch: RELEASE_EPOCH,
        ..EncodeOptions::default()
    };
    encode_batch(&records, opts).map_err(|e| corrupt(&e.to_string()))
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

/// What one whole appended batch means to the index, the batch written at
/// `base_offset` (its own base offset field may still be the producer's).
/// Only control batches and release batches ([`is_release`]) are decoded;
/// every other batch costs a header parse.
pub fn scan(batch: &[u8], base_offset: i64) -> Result<Vec<Seen>, DelayError> {
    let header = RecordBatchHeader::parse(batch).ok_or_else(|| corrupt("not a batch"))?;
    if !header.is_control() && !is_release(&header) {
        return Ok(Vec::new());
    }
    let mut owned = batch[..header.total_size().min(batch.len())].to_vec();
    sluice_records::set_base_offset(&mut owned, base_offset);
    let decoded = decode_batches(Bytes::from(owned)).map_err(|e| corrupt(&e.to_string()))?;
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
                    // A damaged envelope is still indexed, due at once, and
                    // dropped (with a warning) at release.
                    let due_ms = Envelope::decode(&value).map_or(i64::MIN, |e| e.due_ms);
                    out.push(Seen::Delayed {
                        offset: r.offset,
                        due_ms,
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
/// its offset. Only control batches are decoded; a damaged envelope is left
/// out (its entry is then dropped, with a warning, instead of stopping every
/// later release).
pub fn envelopes_in(data: &Bytes) -> Result<Vec<(i64, Envelope)>, DelayError> {
    let mut controls = bytes::BytesMut::new();
    let mut pos = 0;
    for h in sluice_records::batch_headers(data) {
        if h.is_control() {
            controls.extend_from_slice(&data[pos..pos + h.total_size()]);
        }
        pos += h.total_size();
    }
    let decoded = decode_batches(controls.freeze()).map_err(|e| corrupt(&e.to_string()))?;
    let mut out = Vec::new();
    for b in &decoded {
        for r in &b.records {
            if control_type(r.key.as_deref().unwrap_or_default()) == Some(DELAYED_TYPE)
                && let Ok(e) = Envelope::decode(&r.value.clone().unwrap_or_default())
            {
                out.push((r.offset, e));
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
