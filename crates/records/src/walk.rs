//! Record header names read in place, without decoding records.
//!
//! The produce path looks at every record for a delay request; decoding
//! (`decode_batches`) would allocate each record's key, value and headers.
//! This walks the varint framing of an uncompressed records section (the
//! bytes after the 61-byte batch header, or a decompressed section) and only
//! looks at header names.

use crate::error::RecordsError;

/// Calls `f` with each header name of each record of `section`, until it
/// returns true; returns whether one did. A damaged section is an error.
pub fn any_header_name(
    section: &[u8],
    mut f: impl FnMut(&[u8]) -> bool,
) -> Result<bool, RecordsError> {
    let mut rest = section;
    while !rest.is_empty() {
        let record = take_record(&mut rest)?;
        if walk_headers(record, &mut f)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The first record's first header name, if the section has a record with a
/// header (and is readable).
pub fn first_header_name(section: &[u8]) -> Option<&[u8]> {
    let mut rest = section;
    let mut b = take_record(&mut rest).ok()?;
    let b = &mut b;
    skip(b, 1).ok()?;
    varint(b)?;
    varint(b)?;
    bytes(b).ok()?;
    bytes(b).ok()?;
    if varint(b)? < 1 {
        return None;
    }
    bytes(b).ok()?
}

fn corrupt(reason: &str) -> RecordsError {
    RecordsError::CorruptMessage {
        position: 0,
        reason: format!("record framing: {reason}"),
    }
}

/// One record's body (after its length prefix).
fn take_record<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], RecordsError> {
    let len = varint(rest).ok_or_else(|| corrupt("bad length"))?;
    let len = usize::try_from(len).map_err(|_| corrupt("negative length"))?;
    if len > rest.len() {
        return Err(corrupt("a record runs past the section"));
    }
    let (body, tail) = rest.split_at(len);
    *rest = tail;
    Ok(body)
}

fn walk_headers(mut body: &[u8], f: &mut impl FnMut(&[u8]) -> bool) -> Result<bool, RecordsError> {
    let b = &mut body;
    skip(b, 1)?; // attributes
    varint(b).ok_or_else(|| corrupt("timestamp delta"))?;
    varint(b).ok_or_else(|| corrupt("offset delta"))?;
    bytes(b)?; // key
    bytes(b)?; // value
    let count = varint(b).ok_or_else(|| corrupt("header count"))?;
    for _ in 0..count.max(0) {
        let name = bytes(b)?.ok_or_else(|| corrupt("a header without a name"))?;
        if f(name) {
            return Ok(true);
        }
        bytes(b)?;
    }
    Ok(false)
}

fn skip(b: &mut &[u8], n: usize) -> Result<(), RecordsError> {
    if b.len() < n {
        return Err(corrupt("cut short"));
    }
    *b = &b[n..];
    Ok(())
}

/// Varint-length-prefixed bytes; a negative length is null.
fn bytes<'a>(b: &mut &'a [u8]) -> Result<Option<&'a [u8]>, RecordsError> {
    let len = varint(b).ok_or_else(|| corrupt("bad length"))?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > b.len() {
        return Err(corrupt("a field runs past its record"));
    }
    let (v, rest) = b.split_at(len);
    *b = rest;
    Ok(Some(v))
}

/// A zigzag varint of up to 64 bits (Kafka's varint and varlong).
fn varint(buf: &mut &[u8]) -> Option<i64> {
    let mut raw = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{EncodeOptions, HEADER_SIZE, Record, encode_batch};

    fn section(records: &[Record]) -> Bytes {
        let b = encode_batch(records, EncodeOptions::default()).unwrap();
        b.slice(HEADER_SIZE..)
    }

    fn rec(headers: &[(&str, Option<&str>)]) -> Record {
        Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(vec![7u8; 300])),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| Bytes::from(v.to_string()))))
                .collect(),
            timestamp: 1_800_000_000_000,
            offset: 0,
        }
    }

    #[test]
    fn finds_a_header_name_in_any_record() {
        let s = section(&[
            rec(&[]),
            rec(&[("a", None), ("b", Some("1"))]),
            rec(&[("x", Some("2"))]),
        ]);
        let mut seen = Vec::new();
        let found = any_header_name(&s, |n| {
            seen.push(String::from_utf8_lossy(n).into_owned());
            n == b"x"
        })
        .unwrap();
        assert!(found);
        assert_eq!(seen, ["a", "b", "x"]);
        assert!(!any_header_name(&s, |n| n == b"zz").unwrap());
        assert_eq!(first_header_name(&s), None, "the first record has none");
        let s = section(&[rec(&[("first", Some("v"))]), rec(&[])]);
        assert_eq!(first_header_name(&s), Some(&b"first"[..]));
    }

    #[test]
    fn damaged_sections_are_errors() {
        let s = section(&[rec(&[("a", Some("1"))]), rec(&[("b", Some("2"))])]);
        for cut in 1..s.len() {
            // Every cut either still parses whole records before it or fails:
            // never a panic, never a name from outside the section.
            let _ = any_header_name(&s[..cut], |n| {
                assert!(n == b"a" || n == b"b");
                false
            });
        }
        assert!(any_header_name(&s[..s.len() - 1], |_| false).is_err());
    }
}
