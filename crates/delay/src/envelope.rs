//! The pending record's format, and the record its release appends.
//!
//! A pending record is one record of a control batch: its key is Kafka's
//! 4-byte control key (version 0, then the type: every Kafka client checks
//! the size and skips types it does not know), its value an [`Envelope`].

use bytes::{BufMut, Bytes, BytesMut};
use sluice_records::Record;

use crate::error::DelayError;
use crate::request::{DELIVER_AFTER_HEADER, DELIVER_AT_HEADER};

/// Control type of a pending delayed record (Kafka uses 0 and 1).
pub const DELAYED_TYPE: i16 = 0x5D10;
/// Control type of a cancellation (its value: the delay id, i64).
pub const CANCEL_TYPE: i16 = 0x5D11;
/// Control type of a place holder: in the control batch of a batch that
/// mixed immediate and delayed records, it stands where an immediate record
/// was (appended just before, as a normal batch), so the control batch stays
/// dense and keeps the producer's whole sequence range.
pub const PLACEHOLDER_TYPE: i16 = 0x5D12;

/// Headers a released record carries.
pub const PRODUCED_HEADER: &str = "sluice.delay.produced.ms";
pub const DUE_HEADER: &str = "sluice.delay.due.ms";
/// The delay id: the offset of the pending record it was released from.
pub const ID_HEADER: &str = "sluice.delay.id";

const VERSION: u8 = 0;

/// Kafka's control record key: version 0, then the type, big-endian.
pub fn control_key(control_type: i16) -> [u8; 4] {
    let t = control_type.to_be_bytes();
    [0, 0, t[0], t[1]]
}

/// The type in a control record key, if it is a version-0 key.
pub fn control_type(key: &[u8]) -> Option<i16> {
    match key {
        [0, 0, a, b] => Some(i16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// A pending record: when it is due and what it will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub due_ms: i64,
    /// When the broker accepted it.
    pub produced_ms: i64,
    /// The delay id of the record this one was carried forward from (a
    /// segment about to be deleted by retention), or -1.
    pub origin_id: i64,
    /// The original record (its offset is not used).
    pub record: Record,
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let r = &self.record;
        let size = 1
            + 8 * 4
            + 8
            + r.key.as_ref().map_or(0, Bytes::len)
            + r.value.as_ref().map_or(0, Bytes::len)
            + r.headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
            + 4;
        let mut b = BytesMut::with_capacity(size);
        b.put_u8(VERSION);
        b.put_i64(self.due_ms);
        b.put_i64(self.produced_ms);
        b.put_i64(r.timestamp);
        b.put_i64(self.origin_id);
        put_bytes(&mut b, r.key.as_deref());
        put_bytes(&mut b, r.value.as_deref());
        b.put_i32(r.headers.len() as i32);
        for (k, v) in &r.headers {
            put_bytes(&mut b, Some(k.as_bytes()));
            put_bytes(&mut b, v.as_deref());
        }
        b.freeze()
    }

    pub fn decode(buf: &Bytes) -> Result<Envelope, DelayError> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(corrupt(format!("unknown version {version}")));
        }
        let due_ms = r.i64()?;
        let produced_ms = r.i64()?;
        let timestamp = r.i64()?;
        let origin_id = r.i64()?;
        let key = r.bytes()?;
        let value = r.bytes()?;
        let count = r.i32()?;
        if count < 0 || count as usize > buf.len() {
            return Err(corrupt(format!("{count} headers")));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = r
                .bytes()?
                .ok_or_else(|| corrupt("a header without a name".into()))?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| corrupt("a header name that is not UTF-8".into()))?;
            headers.push((name, r.bytes()?));
        }
        if r.pos != buf.len() {
            return Err(corrupt(format!("{} bytes left over", buf.len() - r.pos)));
        }
        Ok(Envelope {
            due_ms,
            produced_ms,
            origin_id,
            record: Record {
                key,
                value,
                headers,
                timestamp,
                offset: -1,
            },
        })
    }

    /// The record a release appends: the original key, value and timestamp,
    /// its headers less the delay request, plus when it was produced, when it
    /// was due and its delay id (`id`, or the id it was carried from).
    pub fn released(&self, id: i64) -> Record {
        let id = if self.origin_id >= 0 {
            self.origin_id
        } else {
            id
        };
        // The id first, where a reader of the record sees it first.
        let mut headers: Vec<(String, Option<Bytes>)> = [
            (ID_HEADER, id),
            (PRODUCED_HEADER, self.produced_ms),
            (DUE_HEADER, self.due_ms),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(Bytes::from(v.to_string()))))
        .collect();
        headers.extend(
            self.record
                .headers
                .iter()
                .filter(|(k, _)| k != DELIVER_AT_HEADER && k != DELIVER_AFTER_HEADER)
                .cloned(),
        );
        Record {
            key: self.record.key.clone(),
            value: self.record.value.clone(),
            headers,
            timestamp: self.record.timestamp,
            offset: -1,
        }
    }
}

/// The delay id a released record names, if it is one.
pub fn released_id(record: &Record) -> Option<i64> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == ID_HEADER)
        .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok()?.parse().ok())
}

fn put_bytes(b: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            b.put_i32(v.len() as i32);
            b.put_slice(v);
        }
        None => b.put_i32(-1),
    }
}

fn corrupt(reason: String) -> DelayError {
    DelayError::CorruptEnvelope { reason }
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DelayError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt(format!("cut short at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn i64(&mut self) -> Result<i64, DelayError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn i32(&mut self) -> Result<i32, DelayError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    /// Length-prefixed bytes, sharing the buffer (no copy); -1 is null.
    fn bytes(&mut self) -> Result<Option<Bytes>, DelayError> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(corrupt(format!("length {n}"))),
            n => {
                let start = self.pos;
                self.take(n as usize)?;
                Ok(Some(self.buf.slice(start..self.pos)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            due_ms: 1_800_000_030_000,
            produced_ms: 1_800_000_000_000,
            origin_id: -1,
            record: Record {
                key: Some(Bytes::from_static(b"order-17")),
                value: Some(Bytes::from_static(b"{\"unpaid\":true}")),
                headers: vec![
                    ("trace".into(), Some(Bytes::from_static(b"abc"))),
                    ("empty".into(), None),
                    (
                        DELIVER_AFTER_HEADER.into(),
                        Some(Bytes::from_static(b"30000")),
                    ),
                ],
                timestamp: 1_799_999_999_000,
                offset: -1,
            },
        }
    }

    #[test]
    fn an_envelope_round_trips() {
        let e = envelope();
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        let null = Envelope {
            record: Record {
                offset: -1,
                ..Record::default()
            },
            ..envelope()
        };
        assert_eq!(Envelope::decode(&null.encode()).unwrap(), null);
    }

    #[test]
    fn damaged_envelopes_are_errors_not_panics() {
        let good = envelope().encode();
        for cut in 0..good.len() {
            assert!(
                Envelope::decode(&good.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(Envelope::decode(&Bytes::from(longer)).is_err());
        let mut version = good.to_vec();
        version[0] = 9;
        assert!(Envelope::decode(&Bytes::from(version)).is_err());
    }

    #[test]
    fn a_released_record_keeps_the_original_and_says_when_and_which() {
        let e = envelope();
        let r = e.released(42);
        assert_eq!(
            (&r.key, &r.value, r.timestamp),
            (&e.record.key, &e.record.value, e.record.timestamp)
        );
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [ID_HEADER, PRODUCED_HEADER, DUE_HEADER, "trace", "empty"]
        );
        assert_eq!(released_id(&r), Some(42));
        // A carried-forward copy keeps the id it was produced with.
        let carried = Envelope {
            origin_id: 7,
            ..envelope()
        };
        assert_eq!(released_id(&carried.released(42)), Some(7));
        assert_eq!(released_id(&e.record), None);
    }

    #[test]
    fn control_keys_are_kafkas_four_bytes() {
        assert_eq!(control_key(DELAYED_TYPE).len(), 4);
        assert_eq!(control_type(&control_key(DELAYED_TYPE)), Some(DELAYED_TYPE));
        assert_eq!(control_type(&control_key(CANCEL_TYPE)), Some(CANCEL_TYPE));
        assert_eq!(control_type(&[0, 1, 0, 0]), None);
        assert_eq!(control_type(&[0, 0, 0]), None);
    }
}
