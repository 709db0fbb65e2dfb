//! Cross-module tests: encode -> split/validate -> mutate -> decode.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use crate::*;

fn rec(i: i64) -> Record {
    Record {
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("value-{i}"))),
        headers: vec![("h".to_string(), Some(Bytes::from_static(b"x")))],
        timestamp: 1_000 + i,
        offset: 0,
    }
}

fn sample(n: i64, base: i64) -> Bytes {
    let recs: Vec<Record> = (0..n).map(rec).collect();
    encode_batch(
        &recs,
        EncodeOptions {
            base_offset: base,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn header_fields_after_encode() {
    let b = sample(3, 10);
    let batches = split_batches(&b).unwrap();
    assert_eq!(batches.len(), 1);
    let h = batches[0].header;
    assert_eq!(h.base_offset, 10);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.last_offset(), 12);
    assert_eq!(h.next_offset(), 13);
    assert_eq!(h.magic, 2);
    assert_eq!(h.records_count, 3);
    assert_eq!(h.base_timestamp, 1_000);
    assert_eq!(h.max_timestamp, 1_002);
    assert_eq!(h.producer_id, -1);
    assert_eq!(h.base_sequence, -1);
    assert_eq!(h.total_size(), b.len());
    assert_eq!(h.compression(), Some(Compression::None));
    assert_eq!(h.timestamp_type(), TimestampType::Creation);
    assert!(!h.is_control());
}

#[test]
fn empty_encodes_to_nothing() {
    assert!(
        encode_batch(&[], EncodeOptions::default())
            .unwrap()
            .is_empty()
    );
    assert!(split_batches(&Bytes::new()).unwrap().is_empty());
}

#[test]
fn idempotent_fields_survive() {
    let recs: Vec<Record> = (0..4).map(rec).collect();
    let b = encode_batch(
        &recs,
        EncodeOptions {
            base_offset: 0,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
            partition_leader_epoch: 5,
            transactional: false,
            compression: Compression::None,
        },
    )
    .unwrap();
    let h = split_batches(&b).unwrap()[0].header;
    assert_eq!(split_batches(&b).unwrap().len(), 1);
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (7, 2, 40)
    );
    assert_eq!(h.partition_leader_epoch, 5);
    assert_eq!(h.records_count, 4);
}

#[test]
fn several_batches_and_trailing_partial() {
    let mut all = BytesMut::new();
    all.extend_from_slice(&sample(2, 0));
    all.extend_from_slice(&sample(3, 2));
    let whole = all.clone().freeze();
    assert_eq!(split_batches(&whole).unwrap().len(), 2);
    let third = sample(1, 5);
    all.extend_from_slice(&third[..third.len() - 4]);
    let partial = all.freeze();
    let err = split_batches(&partial).unwrap_err();
    assert!(err.is_truncated(), "{err}");
    assert_eq!(err.position(), Some(whole.len()));
    let decoded = decode_records(partial).unwrap();
    assert_eq!(
        decoded.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    // Fewer than 12 bytes of a next batch is also just a partial tail.
    let mut short = BytesMut::from(&whole[..]);
    short.extend_from_slice(&[0, 0, 0]);
    assert_eq!(decode_records(short.freeze()).unwrap().len(), 5);
}

#[test]
fn bad_magic_and_length_detected() {
    let b = sample(2, 0);
    let mut m = BytesMut::from(&b[..]);
    m[16] = 1;
    assert!(matches!(
        split_batches(&m.freeze()),
        Err(RecordsError::UnsupportedMagic { magic: 1, .. })
    ));
    let mut m = BytesMut::from(&b[..]);
    m[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(
        split_batches(&m.clone().freeze()),
        Err(RecordsError::CorruptMessage { .. })
    ));
    // Corruption is an error even for the lenient decoder.
    assert!(decode_batches(m.freeze()).is_err());
}

#[test]
fn set_base_offset_and_epoch_keep_crc() {
    let b = sample(3, 0);
    let mut m = BytesMut::from(&b[..]);
    set_base_offset(&mut m, 100);
    set_partition_leader_epoch(&mut m, 9);
    let m = m.freeze();
    let h = split_batches(&m).unwrap()[0].header;
    assert_eq!((h.base_offset, h.partition_leader_epoch), (100, 9));
    let offsets: Vec<i64> = decode_records(m)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![100, 101, 102]);
}

#[test]
fn log_append_time_recomputes_crc() {
    let b = sample(3, 0);
    let mut m = BytesMut::from(&b[..]);
    set_log_append_time(&mut m, 99_999);
    let m = m.freeze();
    let batches = decode_batches(m).unwrap();
    assert_eq!(batches[0].header.timestamp_type(), TimestampType::LogAppend);
    assert_eq!(batches[0].header.max_timestamp, 99_999);
    assert!(batches[0].records.iter().all(|r| r.timestamp == 99_999));
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
        0i64..1_000_000,
    )
        .prop_map(|(k, v, h, ts)| Record {
            key: k.map(Bytes::from),
            value: v.map(Bytes::from),
            // Unique keys: kafka-protocol collapses duplicate header keys.
            headers: h
                .into_iter()
                .map(|(k, v)| (k, v.map(Bytes::from)))
                .collect(),
            timestamp: 1_600_000_000_000 + ts,
            offset: 0,
        })
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

proptest! {
    #[test]
    fn roundtrip(recs in proptest::collection::vec(arb_record(), 1..20), base in 0i64..1_000_000_000, compression in arb_compression()) {
        let b = encode_batch(&recs, EncodeOptions { base_offset: base, compression, ..Default::default() }).unwrap();
        let split = split_batches(&b).unwrap();
        prop_assert_eq!(split.len(), 1);
        prop_assert_eq!(split[0].header.records_count as usize, recs.len());
        prop_assert_eq!(split[0].header.max_timestamp, recs.iter().map(|r| r.timestamp).max().unwrap());
        let decoded = decode_records(b).unwrap();
        let expected: Vec<Record> = recs.iter().enumerate()
            .map(|(i, r)| Record { offset: base + i as i64, ..r.clone() })
            .collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn crc_covers_attributes_to_end(recs in proptest::collection::vec(arb_record(), 1..5), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        let b = encode_batch(&recs, EncodeOptions::default()).unwrap();
        let pos = 21 + pick.index(b.len() - 21);
        let mut m = BytesMut::from(&b[..]);
        m[pos] ^= 1 << bit;
        let err = split_batches(&m.freeze()).unwrap_err();
        let is_crc = matches!(err, RecordsError::CrcMismatch { .. });
        prop_assert!(is_crc, "{}", err);
    }

    #[test]
    fn rebase_shifts_offsets(recs in proptest::collection::vec(arb_record(), 1..10), base in 0i64..1_000_000) {
        let b = encode_batch(&recs, EncodeOptions::default()).unwrap();
        let mut m = BytesMut::from(&b[..]);
        set_base_offset(&mut m, base);
        let decoded = decode_records(m.freeze()).unwrap();
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        prop_assert_eq!(offsets, (base..base + recs.len() as i64).collect::<Vec<_>>());
    }
}

#[test]
fn batch_headers_reads_whole_batches_and_stops_at_a_partial_one() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&sample(3, 0));
    buf.extend_from_slice(&sample(2, 3));
    let whole = buf.len();
    let partial = sample(4, 5);
    buf.extend_from_slice(&partial[..partial.len() - 1]);
    let headers: Vec<_> = crate::batch_headers(&buf).collect();
    assert_eq!(headers.len(), 2);
    assert_eq!((headers[0].base_offset, headers[0].records_count), (0, 3));
    assert_eq!((headers[1].base_offset, headers[1].records_count), (3, 2));
    assert_eq!(headers.iter().map(|h| h.total_size()).sum::<usize>(), whole);
}

/// A batch of `rec(0..n)` at offset `base` from producer 7 (epoch 2, first
/// sequence 40) in leader epoch 5.
fn producer_batch(n: i64, base: i64) -> Bytes {
    let recs: Vec<Record> = (0..n).map(rec).collect();
    encode_batch(
        &recs,
        EncodeOptions {
            base_offset: base,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
            partition_leader_epoch: 5,
            transactional: false,
            compression: Compression::None,
        },
    )
    .unwrap()
}

#[test]
fn retain_records_keeps_header_fields_and_offsets() {
    let b = producer_batch(4, 100);
    let before = split_batches(&b).unwrap()[0].header;
    // Drop the first and the last record: the batch keeps its offset range.
    let out = retain_records(&b, |r| r.offset == 101 || r.offset == 102)
        .unwrap()
        .unwrap();
    let after = split_batches(&out).unwrap()[0].header;
    assert_eq!(after.records_count, 2);
    assert_eq!(after.base_offset, 100);
    assert_eq!(after.last_offset(), 103, "last offset (and sequence) kept");
    assert_eq!(
        (
            after.producer_id,
            after.producer_epoch,
            after.base_sequence,
            after.partition_leader_epoch,
            after.base_timestamp,
            after.attributes,
        ),
        (
            before.producer_id,
            before.producer_epoch,
            before.base_sequence,
            before.partition_leader_epoch,
            before.base_timestamp,
            before.attributes,
        )
    );
    assert_eq!(after.max_timestamp, 1_002, "largest kept timestamp");
    assert!(out.len() < b.len());
    let kept = decode_records(out).unwrap();
    let want: Vec<Record> = [1, 2]
        .iter()
        .map(|i| Record {
            offset: 100 + i,
            ..rec(*i)
        })
        .collect();
    assert_eq!(kept, want);
}

#[test]
fn retain_records_all_or_nothing() {
    let b = producer_batch(3, 0);
    assert_eq!(retain_records(&b, |_| true).unwrap(), None);
    let empty = retain_records(&b, |_| false).unwrap().unwrap();
    let h = validate_batch(&empty, 0).unwrap();
    assert_eq!(h.total_size(), HEADER_SIZE);
    assert_eq!((h.records_count, h.base_offset, h.last_offset()), (0, 0, 2));
    assert_eq!((h.producer_id, h.base_sequence), (7, 40));
    assert_eq!(
        h.max_timestamp, 1_002,
        "an empty batch keeps its max timestamp"
    );
    assert!(decode_records(empty.clone()).unwrap().is_empty());
    // Filtering an empty batch again is a no-op.
    assert_eq!(retain_records(&empty, |_| false).unwrap(), None);
    // Two batches, or a damaged one, are refused.
    let mut two = BytesMut::from(&b[..]);
    two.extend_from_slice(&b);
    assert!(retain_records(&two.freeze(), |_| true).is_err());
    let mut bad = BytesMut::from(&b[..]);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        retain_records(&bad.freeze(), |_| true),
        Err(RecordsError::CrcMismatch { .. })
    ));
}

proptest! {
    #[test]
    fn retain_records_matches_a_filter(
        recs in proptest::collection::vec(arb_record(), 1..20),
        mask in proptest::collection::vec(any::<bool>(), 20),
        base in 0i64..1_000_000,
        compression in arb_compression(),
    ) {
        let b = encode_batch(&recs, EncodeOptions { base_offset: base, compression, ..Default::default() }).unwrap();
        let keep = |r: &Record| mask[(r.offset - base) as usize];
        let expected: Vec<Record> = decode_records(b.clone()).unwrap().into_iter().filter(keep).collect();
        let out = retain_records(&b, keep).unwrap().unwrap_or_else(|| b.clone());
        let h = validate_batch(&out, 0).unwrap();
        prop_assert_eq!(h.base_offset, base);
        prop_assert_eq!(h.last_offset(), base + recs.len() as i64 - 1);
        prop_assert_eq!(h.records_count as usize, expected.len());
        prop_assert_eq!(h.compression(), Some(compression), "kept in its codec");
        prop_assert_eq!(decode_records(out).unwrap(), expected);
    }
}

#[test]
fn compressed_batches_are_checked_before_append() {
    let recs: Vec<Record> = (0..5).map(rec).collect();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let b = encode_batch(
            &recs,
            EncodeOptions {
                compression,
                ..Default::default()
            },
        )
        .unwrap();
        check_compressed(&b, 1 << 20).unwrap();
    }
    let good = encode_batch(
        &recs,
        EncodeOptions {
            compression: Compression::Lz4,
            ..Default::default()
        },
    )
    .unwrap();
    check_compressed(&good, 1 << 20).unwrap();
    // A count that disagrees with the compressed section.
    let mut wrong = BytesMut::from(&good[..]);
    wrong[57..61].copy_from_slice(&4i32.to_be_bytes());
    let e = check_compressed(&wrong, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("holds 5"), "{e}");
    // A payload that is not lz4 at all, under a valid CRC.
    let mut garbage = BytesMut::from(&good[..HEADER_SIZE]);
    garbage.extend_from_slice(b"definitely not an lz4 frame");
    let len = (garbage.len() - LOG_OVERHEAD) as i32;
    garbage[8..12].copy_from_slice(&len.to_be_bytes());
    crate::header::recompute_crc(&mut garbage);
    let e = check_compressed(&garbage, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("do not decompress"), "{e}");
}
