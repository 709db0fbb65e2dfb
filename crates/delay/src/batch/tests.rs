use bytes::Bytes;
use sluice_records::{
    Compression, EncodeOptions, Record, RecordBatchHeader, decode_batches, encode_batch,
    set_base_offset,
};

use super::*;
use crate::envelope::ID_HEADER;

const NOW: i64 = 1_800_000_000_000;

fn plan_any(b: &Bytes, now: i64, policy: Policy) -> Result<Plan, DelayError> {
    let asks = asks_for_delay(b, 1 << 24).unwrap_or(false);
    plan(b, asks, now, policy)
}

fn policy(default_ms: i64) -> Policy {
    Policy {
        default_ms,
        default_from: crate::request::TOPIC_DEFAULT,
        limits: DelayLimits::default(),
        refused: None,
        out_of_range: None,
    }
}

fn rec(value: &str, after: Option<&str>) -> Record {
    Record {
        key: Some(Bytes::from(format!("key-{value}"))),
        value: Some(Bytes::from(value.to_string())),
        headers: after
            .map(|a| {
                vec![(
                    DELIVER_AFTER_HEADER.to_string(),
                    Some(Bytes::from(a.to_string())),
                )]
            })
            .unwrap_or_default(),
        timestamp: NOW - 5,
        offset: 0,
    }
}

/// A producer's batch: idempotent (id 42, epoch 3, sequence 10).
fn producer_batch(records: &[Record], compression: Compression) -> Bytes {
    encode_batch(
        records,
        EncodeOptions {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 10,
            compression,
            ..EncodeOptions::default()
        },
    )
    .unwrap()
}

/// As the log stores it: at `base`.
fn at(batch: &Bytes, base: i64) -> Bytes {
    let mut b = batch.to_vec();
    set_base_offset(&mut b, base);
    Bytes::from(b)
}

#[test]
fn batches_that_ask_for_nothing_are_kept() {
    for c in [Compression::None, Compression::Lz4] {
        let b = producer_batch(&[rec("a", None), rec("b", None)], c);
        assert_eq!(plan_any(&b, NOW, policy(0)).unwrap(), Plan::Keep);
    }
}

#[test]
fn an_all_delayed_batch_becomes_one_control_batch_with_the_producers_identity() {
    for c in [Compression::None, Compression::Zstd] {
        let b = producer_batch(&[rec("a", Some("5000")), rec("b", Some("1000"))], c);
        let Plan::Rewrite(out) = plan_any(&b, NOW, policy(0)).unwrap() else {
            panic!("not rewritten")
        };
        assert_eq!(out.len(), 1);
        let original = RecordBatchHeader::parse(&b).unwrap();
        let h = RecordBatchHeader::parse(&out[0]).unwrap();
        assert!(h.is_control());
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.last_offset_delta
            ),
            (42, 3, 10, original.last_offset_delta)
        );
        let seen = scan(&out[0], 100).unwrap();
        assert_eq!(
            seen,
            [
                Seen::Delayed {
                    offset: 100,
                    due_ms: NOW + 5000
                },
                Seen::Delayed {
                    offset: 101,
                    due_ms: NOW + 1000
                },
            ]
        );
        let e = envelope_at(&at(&out[0], 100), 101).unwrap().unwrap();
        assert_eq!(envelopes_in(&at(&out[0], 100)).unwrap().len(), 2);
        assert_eq!(e.record.value.as_deref(), Some(&b"b"[..]));
        assert_eq!(e.produced_ms, NOW);
    }
}

#[test]
fn a_mixed_batch_appends_the_immediate_records_then_the_delayed_ones() {
    let b = producer_batch(
        &[
            rec("now-1", None),
            rec("later", Some("2000")),
            rec("now-2", None),
        ],
        Compression::None,
    );
    let Plan::Rewrite(out) = plan_any(&b, NOW, policy(0)).unwrap() else {
        panic!("not rewritten")
    };
    assert_eq!(out.len(), 2);
    // The immediate ones, in order, without the producer's identity.
    let first = &decode_batches(out[0].clone()).unwrap()[0];
    assert_eq!(first.header.producer_id, -1);
    let values: Vec<_> = first
        .records
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values, ["now-1", "now-2"]);
    // The delayed one at its own delta, the span and sequences of the whole.
    let h = RecordBatchHeader::parse(&out[1]).unwrap();
    assert!(h.is_control());
    assert_eq!(
        (h.producer_id, h.base_sequence, h.last_offset_delta),
        (42, 10, 2)
    );
    assert_eq!(
        scan(&out[1], 50).unwrap(),
        [Seen::Delayed {
            offset: 51,
            due_ms: NOW + 2000
        }]
    );
}

#[test]
fn the_topic_default_delays_records_that_name_none() {
    let b = producer_batch(&[rec("a", None), rec("b", Some("3000"))], Compression::None);
    let Plan::Rewrite(out) = plan_any(&b, NOW, policy(60_000)).unwrap() else {
        panic!("not rewritten")
    };
    assert_eq!(
        scan(&out[0], 0).unwrap(),
        [
            Seen::Delayed {
                offset: 0,
                due_ms: NOW + 60_000
            },
            Seen::Delayed {
                offset: 1,
                due_ms: NOW + 3000
            },
        ]
    );
}

#[test]
fn one_bad_delay_refuses_the_whole_batch_and_control_batches_are_refused() {
    let b = producer_batch(
        &[rec("a", Some("5000")), rec("b", Some("-1"))],
        Compression::None,
    );
    let e = plan_any(&b, NOW, policy(0)).unwrap_err().to_string();
    assert!(
        e.contains("record 1") && e.contains(DELIVER_AFTER_HEADER),
        "{e}"
    );
    let control = cancel_batch(7, NOW).unwrap();
    assert!(plan_any(&control, NOW, policy(0)).is_err());
}

#[test]
fn release_and_cancel_batches_are_recognised_and_nothing_else_is() {
    let envelope = |v: &str| Envelope {
        due_ms: NOW,
        produced_ms: NOW - 1000,
        origin_id: -1,
        record: rec(v, Some("1000")),
    };
    let release = release_batch(&[(7, envelope("x")), (9, envelope("y"))]).unwrap();
    assert_eq!(
        scan(&release, 20).unwrap(),
        [
            Seen::Released { id: 7, at: 20 },
            Seen::Released { id: 9, at: 21 }
        ]
    );
    // Released records carry the original, without the delay request.
    let r = &decode_batches(release.clone()).unwrap()[0].records[0];
    assert_eq!(r.value.as_deref(), Some(&b"x"[..]));
    assert!(r.headers.iter().all(|(k, _)| k != DELIVER_AFTER_HEADER));
    // A producer's batch is never one, whatever its headers say (a record
    // copied from a released one, say).
    let mut spoof = rec("z", None);
    spoof.headers = vec![(ID_HEADER.to_string(), Some(Bytes::from_static(b"7")))];
    let plain = encode_batch(std::slice::from_ref(&spoof), EncodeOptions::default()).unwrap();
    assert_eq!(scan(&plain, 0).unwrap(), []);
    assert_eq!(
        scan(&producer_batch(&[spoof], Compression::None), 0).unwrap(),
        []
    );
    assert_eq!(
        scan(&cancel_batch(7, NOW).unwrap(), 30).unwrap(),
        [Seen::Cancelled { id: 7, at: 30 }]
    );
}

#[test]
fn a_topic_that_refuses_delays_refuses_records_asking_for_one() {
    let refusing = Policy {
        refused: Some("the topic is compacted"),
        ..policy(0)
    };
    let b = producer_batch(&[rec("a", Some("5000"))], Compression::None);
    let e = plan_any(&b, NOW, refusing).unwrap_err().to_string();
    assert!(e.contains("compacted"), "{e}");
    let plain = producer_batch(&[rec("a", None)], Compression::None);
    assert_eq!(plan_any(&plain, NOW, refusing).unwrap(), Plan::Keep);
}
