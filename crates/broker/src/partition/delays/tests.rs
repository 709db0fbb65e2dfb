//! The timer index kept by a replica: fed by what it appends, reloaded at a
//! start, cut back with its log.

use bytes::{Bytes, BytesMut};
use sluice_delay::batch::{Plan, Policy, asks_for_delay, plan, release_batch};
use sluice_delay::{Entry, Envelope};
use sluice_records::{
    EncodeOptions, Record, RecordBatchHeader, encode_batch, set_base_offset,
    set_partition_leader_epoch,
};
use sluice_storage::{LogConfig, PartitionLog};

use super::INDEX_DIR;
use crate::partition::Partition;

const NOW: i64 = 1_800_000_000_000;

fn plan_any(b: &Bytes, now: i64, policy: Policy) -> Result<Plan, sluice_delay::DelayError> {
    plan(b, asks_for_delay(b, 1 << 24).unwrap(), now, policy)
}

fn rec(v: &str, after: Option<&str>) -> Record {
    Record {
        value: Some(Bytes::from(v.to_string())),
        headers: after
            .map(|a| {
                vec![(
                    "sluice.deliver.after.ms".to_string(),
                    Some(Bytes::from(a.to_string())),
                )]
            })
            .unwrap_or_default(),
        timestamp: NOW,
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> Partition {
    let log = PartitionLog::open(dir.join("t-0"), LogConfig::default(), 0).unwrap();
    Partition::new("t".into(), 0, 2, log, 0)
}

/// `batches` as a leader would send them from `base` on, in epoch 1.
fn stamped(batches: &[Bytes], mut base: i64) -> Bytes {
    let mut out = BytesMut::new();
    for b in batches {
        let mut b = b.to_vec();
        set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, 1);
        base = RecordBatchHeader::parse(&b).unwrap().next_offset();
        out.extend_from_slice(&b);
    }
    out.freeze()
}

/// A plain batch, a producer batch rewritten for delays (`m1`, a record due
/// in 5 s, one due in 2 s, `m2`), another plain one: offsets 0 .. 7.
fn with_delays() -> Bytes {
    let producer = encode_batch(
        &[
            rec("m1", None),
            rec("late", Some("5000")),
            rec("soon", Some("2000")),
            rec("m2", None),
        ],
        EncodeOptions::default(),
    )
    .unwrap();
    let Plan::Rewrite(parts) = plan_any(
        &producer,
        NOW,
        Policy {
            default_ms: 0,
            default_from: sluice_delay::request::TOPIC_DEFAULT,
            limits: Default::default(),
            refused: None,
            out_of_range: None,
        },
    )
    .unwrap() else {
        panic!("not rewritten")
    };
    let mut batches = vec![encode_batch(&[rec("a", None)], EncodeOptions::default()).unwrap()];
    batches.extend(parts);
    batches.push(encode_batch(&[rec("b", None)], EncodeOptions::default()).unwrap());
    stamped(&batches, 0)
}

#[test]
fn a_follower_indexes_what_it_appends_and_a_restart_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    assert!(!p.delays.lock().is_open());
    p.append_as_follower(
        stamped(
            &[encode_batch(&[rec("x", None)], EncodeOptions::default()).unwrap()],
            0,
        ),
        0,
    )
    .unwrap();
    assert!(
        !dir.path().join("t-0").join(INDEX_DIR).exists(),
        "no delays, no index"
    );
    drop(p);

    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    p.append_as_follower(with_delays(), 4).unwrap();
    // The control batch sits at offsets 3..7 (after `a` and the immediate
    // batch's two records): `late` at 4, `soon` at 5.
    let due = p.delays.lock().due(NOW + 10_000, 10).unwrap();
    assert_eq!(
        due,
        [
            Entry {
                due_ms: NOW + 2000,
                offset: 5
            },
            Entry {
                due_ms: NOW + 5000,
                offset: 4
            }
        ]
    );
    assert!(p.delays.lock().due(NOW + 1999, 10).unwrap().is_empty());
    p.flush().unwrap();
    drop(p);
    let p = open(dir.path());
    assert_eq!(p.delays.lock().pending(), 2);
    assert_eq!(p.delays.lock().due(NOW + 10_000, 10).unwrap().len(), 2);
}

#[test]
fn a_release_is_indexed_and_undone_by_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    let first = with_delays();
    let end = 8;
    p.append_as_follower(first, 0).unwrap();
    let envelope = Envelope {
        due_ms: NOW + 2000,
        produced_ms: NOW,
        origin_id: -1,
        record: rec("soon", None),
    };
    let release = release_batch(&[(5, envelope)]).unwrap();
    p.append_as_follower(stamped(&[release], end), 0).unwrap();
    assert_eq!(p.delays.lock().pending(), 1, "`soon` was released");
    // A new leader never had the release: the tail is cut, `soon` is
    // pending again.
    p.truncate_to(end).unwrap();
    assert_eq!(p.delays.lock().pending(), 2);
    // And a restart agrees.
    p.flush().unwrap();
    drop(p);
    assert_eq!(open(dir.path()).delays.lock().pending(), 2);
}

#[test]
fn a_client_cannot_forge_a_release() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path());
    p.set_role(crate::partition::Role {
        topic_id: "id".into(),
        leader: 2,
        leader_epoch: 1,
        isr: vec![2],
        replicas: vec![2],
        partition_epoch: 0,
    })
    .unwrap();
    let envelope = Envelope {
        due_ms: NOW,
        produced_ms: NOW,
        origin_id: -1,
        record: rec("x", None),
    };
    let forged = release_batch(&[(0, envelope)]).unwrap();
    let e = p.append_as_leader(&forged[..], 1, 1).unwrap_err();
    assert_eq!(e.code(), sluice_types::ErrorCode::InvalidRecord, "{e}");
    assert_eq!(p.offsets().leo, 0);
}
