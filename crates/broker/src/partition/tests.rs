//! Partition tests: leader and follower replicas on real logs.

use bytes::BytesMut;
use sluice_records::{EncodeOptions, Record, encode_batch};
use sluice_storage::LogConfig;
use sluice_types::ErrorCode;

use super::*;
use FollowerRegistration::{Current, Unconfirmed};

fn batch(values: &[&str]) -> BytesMut {
    let recs: Vec<Record> = values
        .iter()
        .map(|v| Record {
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: 1,
            ..Default::default()
        })
        .collect();
    BytesMut::from(&encode_batch(&recs, EncodeOptions::default()).unwrap()[..])
}

fn partition(dir: &std::path::Path, broker: i32) -> Partition {
    let log = PartitionLog::open(dir.join("t-0"), LogConfig::default(), 0).unwrap();
    Partition::new("t".into(), 0, broker, log, 0)
}

fn role(leader: i32, epoch: i32, isr: &[i32]) -> Role {
    Role {
        topic_id: "id".into(),
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        replicas: vec![1, 2],
        partition_epoch: 0,
    }
}

/// Applies one leader answer on a follower as the fetcher does.
fn apply(follower: &Partition, leader: i32, epoch: i32, read: ReplicaRead) -> Applied {
    match read {
        ReplicaRead::Data {
            batches,
            hw,
            log_start,
        } => follower.apply_replica_fetch(leader, epoch, None, batches, hw, log_start),
        ReplicaRead::Diverging {
            epoch: e,
            end_offset,
            hw,
            log_start,
        } => follower.apply_replica_fetch(
            leader,
            epoch,
            Some((e, end_offset)),
            Bytes::new(),
            hw,
            log_start,
        ),
    }
    .unwrap()
}

/// Fetch rounds of follower `id` from `leader` (broker `leader_id`, `epoch`)
/// until it holds everything; panics if it does not converge.
fn sync_as(leader: &Partition, leader_id: i32, follower: &Partition, id: i32, epoch: i32) {
    for _ in 0..10 {
        let (offset, last_epoch) = follower.fetch_position();
        let read = leader
            .read_for_follower(id, Current(1), offset, last_epoch, epoch, 1 << 20)
            .unwrap();
        let caught_up = matches!(&read, ReplicaRead::Data { batches, .. }
            if batches.is_empty() && offset == leader.offsets().leo);
        assert_ne!(
            apply(follower, leader_id, epoch, read),
            Applied::Unchanged,
            "a divergence answer changed nothing"
        );
        if caught_up {
            return;
        }
    }
    panic!("did not converge");
}

/// Replicates everything broker 1 (`leader`) has to broker 2 (`follower`).
fn sync(leader: &Partition, follower: &Partition, epoch: i32) {
    sync_as(leader, 1, follower, 2, epoch)
}

#[test]
fn follower_catches_up_and_moves_the_high_watermark() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = partition(d1.path(), 1);
    let follower = partition(d2.path(), 2);
    leader.set_role(role(1, 0, &[1, 2])).unwrap();
    follower.set_role(role(1, 0, &[1, 2])).unwrap();
    leader.append_as_leader(batch(&["a", "b"]), -1, 2).unwrap();
    // Not replicated yet: the high watermark waits for the follower.
    assert_eq!(leader.offsets().hw, 0);
    sync(&leader, &follower, 0);
    assert_eq!(leader.offsets().hw, 2);
    assert_eq!(follower.offsets().leo, 2);
    assert_eq!(follower.offsets().hw, 2);
}

#[test]
fn divergent_tail_of_an_old_leader_is_truncated_by_epoch() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = partition(d1.path(), 1);
    let new = partition(d2.path(), 2);
    // Epoch 0: broker 1 leads; both have "a".
    old.set_role(role(1, 0, &[1, 2])).unwrap();
    new.set_role(role(1, 0, &[1, 2])).unwrap();
    old.append_as_leader(batch(&["a"]), 1, 1).unwrap();
    sync(&old, &new, 0);
    // Broker 1 appends "x", "y" that never reach broker 2, then dies.
    old.append_as_leader(batch(&["x", "y"]), 1, 1).unwrap();
    assert_eq!(old.offsets().leo, 3);
    // Epoch 1: broker 2 leads and takes "b".
    new.set_role(Role {
        replicas: vec![1, 2],
        ..role(2, 1, &[2])
    })
    .unwrap();
    new.append_as_leader(batch(&["b"]), 1, 1).unwrap();
    // Broker 1 returns as a follower of epoch 1: its fetch with last epoch 0
    // diverges at offset 1; it truncates "x", "y" and takes "b".
    old.set_role(role(2, 1, &[2])).unwrap();
    let (offset, last_epoch) = old.fetch_position();
    assert_eq!((offset, last_epoch), (3, 0));
    match new
        .read_for_follower(1, Current(1), offset, last_epoch, 1, 1 << 20)
        .unwrap()
    {
        ReplicaRead::Diverging {
            epoch, end_offset, ..
        } => {
            assert_eq!((epoch, end_offset), (0, 1));
        }
        ReplicaRead::Data { .. } => panic!("divergence not detected"),
    }
    sync_as(&new, 2, &old, 1, 1);
    assert_eq!(old.offsets().leo, 2);
    let data = old.log.read().read(0, 1 << 20, 2, true).unwrap();
    let values: Vec<String> = sluice_records::decode_records(data)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["a", "b"]);
    assert_eq!(old.fetch_position().1, 1, "epoch cache follows the leader");
}

fn role3(leader: i32, epoch: i32, isr: &[i32]) -> Role {
    Role {
        replicas: vec![1, 2, 3],
        ..role(leader, epoch, isr)
    }
}

/// The outside fault test's recipe (issue 12): broker 2 is elected in epoch 1
/// and paused before it writes anything, broker 3 is elected in epoch 2 at
/// the same offset. Broker 2 returns as a follower holding an epoch-1 entry
/// at its log end: it must drop that entry and catch up, not ask the same
/// question forever.
#[test]
fn empty_epoch_led_by_a_paused_replica_is_dropped_when_following() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c] = [1, 2, 3].map(|id| partition(dirs[id as usize - 1].path(), id));
    for p in [&a, &b, &c] {
        p.set_role(role3(1, 0, &[1, 2, 3])).unwrap();
    }
    a.append_as_leader(batch(&["a", "b"]), -1, 1).unwrap();
    sync_as(&a, 1, &b, 2, 0);
    sync_as(&a, 1, &c, 3, 0);
    // Broker 1 dies; broker 2 leads epoch 1 (and records it), then pauses.
    b.set_role(role3(2, 1, &[2, 3])).unwrap();
    assert_eq!(b.log.read().epoch_entries().last(), Some(&(1, 2)));
    // Broker 3 leads epoch 2 at the same offset and takes a record.
    c.set_role(role3(3, 2, &[3])).unwrap();
    c.append_as_leader(batch(&["c"]), -1, 1).unwrap();
    // Broker 2 resumes as a follower of epoch 2.
    b.set_role(role3(3, 2, &[3])).unwrap();
    sync_as(&c, 3, &b, 2, 2);
    assert_eq!(b.offsets().leo, 3);
    assert_eq!(b.log.read().epoch_entries(), c.log.read().epoch_entries());
}

/// The leader holds more of an old epoch than the follower, which then led
/// a newer epoch the leader never saw: the follower truncates to its own end
/// of the shared epoch, not to the leader's (which would keep its tail).
#[test]
fn follower_truncates_to_its_own_end_of_the_shared_epoch() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let [a, b, c] = [1, 2, 3].map(|id| partition(dirs[id as usize - 1].path(), id));
    for p in [&a, &b, &c] {
        p.set_role(role3(1, 0, &[1, 2, 3])).unwrap();
    }
    a.append_as_leader(batch(&["a"]), -1, 1).unwrap();
    sync_as(&a, 1, &b, 2, 0);
    a.append_as_leader(batch(&["b", "c"]), -1, 1).unwrap();
    sync_as(&a, 1, &c, 3, 0);
    // Broker 2 has only "a" of epoch 0, leads epoch 1 and writes "x", "y".
    b.set_role(role3(2, 1, &[2])).unwrap();
    b.append_as_leader(batch(&["x", "y"]), 1, 1).unwrap();
    // Broker 3 (with "a", "b", "c" of epoch 0) leads epoch 2.
    c.set_role(role3(3, 2, &[3])).unwrap();
    b.set_role(role3(3, 2, &[3])).unwrap();
    sync_as(&c, 3, &b, 2, 2);
    let data = b.log.read().read(0, 1 << 20, 3, true).unwrap();
    let values: Vec<String> = sluice_records::decode_records(data)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
}

#[tokio::test]
async fn acks_all_waiter_fails_when_leadership_moves_instead_of_acking_a_lost_batch() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = partition(d1.path(), 1);
    let new = partition(d2.path(), 2);
    old.set_role(role(1, 0, &[1, 2])).unwrap();
    new.set_role(role(1, 0, &[1, 2])).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // "x" is appended on broker 1 but never reaches broker 2.
    let a = old.append_as_leader(batch(&["x"]), -1, 1).unwrap();
    let waiter = old.wait_replicated(a.first_offset..=a.last_offset, a.leader_epoch, deadline);
    let moved = async {
        // Broker 2 takes over in epoch 1 and writes "b" at the same offset;
        // broker 1 follows, truncates "x" and replicates "b": its high
        // watermark passes offset 0, but "x" is gone.
        new.set_role(role(2, 1, &[1, 2])).unwrap();
        new.append_as_leader(batch(&["b"]), 1, 1).unwrap();
        old.set_role(role(2, 1, &[1, 2])).unwrap();
        sync_as(&new, 2, &old, 1, 1);
        assert!(old.offsets().hw >= 1);
    };
    let (res, ()) = tokio::join!(waiter, moved);
    assert_eq!(res.unwrap_err().code(), ErrorCode::NotLeaderOrFollower);
    // A waiter in the current term on the current leader completes.
    let b = new.append_as_leader(batch(&["c"]), -1, 1).unwrap();
    let (offset, last_epoch) = old.fetch_position();
    if let ReplicaRead::Data { batches, hw, .. } = new
        .read_for_follower(1, Current(1), offset, last_epoch, 1, 1 << 20)
        .unwrap()
    {
        old.append_as_follower(batches, hw).unwrap();
    }
    let _ = new.read_for_follower(1, Current(1), old.fetch_position().0, 1, 1, 1 << 20);
    new.wait_replicated(b.first_offset..=b.last_offset, b.leader_epoch, deadline)
        .await
        .unwrap();
}

#[test]
fn compaction_keeps_producer_state_replayable() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 400,
        cleanup_policy: sluice_storage::CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let keyed = |producer_id: i64, seq: i32, value: &str| {
        let recs: Vec<Record> = ["a", "b"]
            .iter()
            .map(|k| Record {
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                timestamp: 1,
                ..Default::default()
            })
            .collect();
        let opts = EncodeOptions {
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            base_sequence: seq,
            ..EncodeOptions::default()
        };
        BytesMut::from(&encode_batch(&recs, opts).unwrap()[..])
    };
    let open = |cfg: LogConfig| {
        let log = PartitionLog::open(d.path().join("t-0"), cfg, 0).unwrap();
        let p = Partition::new("t".into(), 0, 1, log, 0);
        p.set_role(role(1, 0, &[1])).unwrap();
        p
    };
    let p = open(cfg.clone());
    // Producer 7 writes a and b twice; a plain producer overwrites them
    // until the producer's batches sit in closed segments.
    p.append_as_leader(keyed(7, 0, "1"), 1, 1).unwrap();
    p.append_as_leader(keyed(7, 2, "2"), 1, 1).unwrap();
    for _ in 0..8 {
        p.append_as_leader(keyed(-1, -1, "3"), 1, 1).unwrap();
    }
    let stats = p.compact(1_000).unwrap();
    assert!(stats.records_removed >= 4, "{stats:?}");
    // Restart without a producer-state snapshot: state comes from the log.
    p.into_log().close().unwrap();
    assert!(
        !d.path()
            .join("t-0")
            .join(crate::producer_state::SNAPSHOT_FILE)
            .exists()
    );
    let p = open(cfg);
    // The last batch's records are gone, but a retry of it is still
    // recognised, and the next sequence follows it.
    let retry = p.append_as_leader(keyed(7, 2, "2"), 1, 1).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.first_offset, 2);
    let next = p.append_as_leader(keyed(7, 4, "4"), 1, 1).unwrap();
    assert!(!next.duplicate);
    let gap = p.append_as_leader(keyed(7, 9, "9"), 1, 1).unwrap_err();
    assert_eq!(gap.code(), ErrorCode::OutOfOrderSequenceNumber);
}

#[test]
fn late_fetch_answer_from_an_old_leader_is_dropped() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = partition(d1.path(), 1);
    let next = partition(d2.path(), 2);
    old.set_role(role(1, 1, &[1, 2])).unwrap();
    next.set_role(role(1, 1, &[1, 2])).unwrap();
    old.append_as_leader(batch(&["a"]), 1, 1).unwrap();
    // Broker 2 asks broker 1 (epoch 1) for data...
    let ReplicaRead::Data { batches, hw, .. } = old
        .read_for_follower(2, Current(1), 0, -1, 1, 1 << 20)
        .unwrap()
    else {
        panic!("data expected")
    };
    // ...becomes leader in epoch 2 before the answer is applied.
    next.set_role(role(2, 2, &[1, 2])).unwrap();
    assert_eq!(
        next.apply_replica_fetch(1, 1, None, batches.clone(), hw, 0)
            .unwrap(),
        Applied::Stale
    );
    assert_eq!(next.offsets().leo, 0, "nothing from the old leader landed");
    assert_eq!(next.fetch_position().1, 2);
    // Applied normally while the role still matches.
    let d3 = tempfile::tempdir().unwrap();
    let follower = partition(d3.path(), 3);
    follower.set_role(role(1, 1, &[1, 3])).unwrap();
    assert_eq!(
        follower
            .apply_replica_fetch(1, 1, None, batches, hw, 0)
            .unwrap(),
        Applied::Done
    );
    assert_eq!(follower.offsets().leo, 1);
}

#[test]
fn stale_follower_epoch_is_fenced() {
    let d = tempfile::tempdir().unwrap();
    let leader = partition(d.path(), 1);
    leader.set_role(role(1, 3, &[1, 2])).unwrap();
    let e = leader
        .read_for_follower(2, Current(1), 0, -1, 2, 1024)
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::FencedLeaderEpoch);
    let e = leader
        .read_for_follower(2, Current(1), 0, -1, 4, 1024)
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::UnknownLeaderEpoch);
}

/// KIP-380 / KIP-903 on the leader: progress counts only in the follower's
/// current registration, and the ISR grows only by a follower in the
/// registration the leader's metadata shows.
#[test]
fn follower_progress_counts_only_in_its_current_registration() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = partition(d1.path(), 1);
    let follower = partition(d2.path(), 2);
    leader.set_role(role(1, 0, &[1])).unwrap();
    follower.set_role(role(1, 0, &[1])).unwrap();
    leader.append_as_leader(batch(&["a", "b"]), 1, 1).unwrap();
    // Registration 7 of broker 2 fetches everything, then asks again at the
    // end: the leader now holds it as caught up in registration 7.
    let ReplicaRead::Data { batches, hw, .. } = leader
        .read_for_follower(2, Current(7), 0, -1, 0, 1 << 20)
        .unwrap()
    else {
        panic!("data expected")
    };
    follower.append_as_follower(batches, hw).unwrap();
    leader
        .read_for_follower(2, Current(7), 2, 0, 0, 1 << 20)
        .unwrap();
    assert_eq!(leader.followers.lock()[&2].leo, 2);
    // A late fetch from registration 6 does not move it back.
    leader
        .read_for_follower(2, Current(6), 0, -1, 0, 1 << 20)
        .unwrap();
    assert_eq!(leader.followers.lock()[&2].leo, 2);
    // A fetch from a registration the leader does not know is served, not counted.
    leader
        .read_for_follower(2, Unconfirmed(9), 0, -1, 0, 1 << 20)
        .unwrap();
    assert_eq!(leader.followers.lock()[&2].leo, 2);
    // The incarnation already counted keeps counting while the metadata no
    // longer shows it (a broker in controlled shutdown, still in the ISR).
    leader.append_as_leader(batch(&["c"]), 1, 1).unwrap();
    leader
        .read_for_follower(2, Unconfirmed(7), 3, 0, 0, 1 << 20)
        .unwrap();
    assert_eq!(leader.followers.lock()[&2].leo, 3);
    // Joins the ISR only while the metadata shows registration 7.
    let max_lag = Duration::from_secs(30);
    assert!(leader.desired_isr(max_lag, |_| Some(8)).is_none());
    assert!(leader.desired_isr(max_lag, |_| None).is_none());
    let (_, isr) = leader.desired_isr(max_lag, |_| Some(7)).unwrap();
    assert_eq!(
        isr,
        [
            IsrMember {
                broker_id: 1,
                broker_epoch: -1
            },
            IsrMember {
                broker_id: 2,
                broker_epoch: 7
            }
        ]
    );
}

/// A gzip "bomb" (a few kilobytes that inflate past the cap) is refused with
/// MESSAGE_TOO_LARGE, and nothing is stored.
#[test]
fn compression_bomb_is_refused_before_it_inflates() {
    let d = tempfile::tempdir().unwrap();
    let leader = partition(d.path(), 1);
    leader.set_role(role(1, 0, &[1])).unwrap();
    let bomb = Record {
        value: Some(Bytes::from(vec![0u8; 40 << 20])),
        timestamp: 1,
        ..Default::default()
    };
    let data = encode_batch(
        &[bomb],
        EncodeOptions {
            compression: sluice_records::Compression::Gzip,
            ..EncodeOptions::default()
        },
    )
    .unwrap();
    assert!(
        data.len() < 1 << 20,
        "fits max.message.bytes: {}",
        data.len()
    );
    let e = leader
        .append_as_leader(BytesMut::from(&data[..]), 1, 1)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MessageTooLarge, "{e}");
    assert_eq!(leader.offsets().leo, 0);
    // The same record, small enough, is stored.
    leader.append_as_leader(batch(&["ok"]), 1, 1).unwrap();
    assert_eq!(leader.offsets().leo, 1);
}

/// KAFKA-7128: a new leader whose high watermark lags what the old leader
/// acknowledged does not take a follower into the ISR before it holds the
/// new epoch's start.
#[test]
fn a_follower_joins_the_isr_only_past_the_leaders_epoch_start() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = partition(d1.path(), 1);
    leader.set_role(role(1, 0, &[1])).unwrap();
    leader
        .append_as_leader(batch(&["a", "b", "c"]), 1, 1)
        .unwrap();
    // Broker 1 leads again in epoch 1 at offset 3, with broker 3 in the ISR
    // not heard from yet: its high watermark stays behind (as a new
    // leader's may be).
    leader.set_role(role3(1, 1, &[1, 3])).unwrap();
    leader.offsets.send_modify(|o| o.hw = 1);
    let _ = d2;
    // Broker 2 has two records: past the high watermark, short of the epoch start.
    leader
        .read_for_follower(2, Current(5), 2, 0, 1, 1 << 20)
        .unwrap();
    let max_lag = Duration::from_secs(30);
    assert!(leader.desired_isr(max_lag, |_| Some(5)).is_none());
    leader
        .read_for_follower(2, Current(5), 3, 0, 1, 1 << 20)
        .unwrap();
    let (_, isr) = leader.desired_isr(max_lag, |_| Some(5)).unwrap();
    assert!(isr.iter().any(|m| m.broker_id == 2), "{isr:?}");
}

#[test]
fn control_batches_from_clients_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let leader = partition(dir.path(), 1);
    leader.set_role(role(1, 1, &[1])).unwrap();
    let control = sluice_records::encode_batch_with(
        &[Record {
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            timestamp: 1,
            ..Default::default()
        }],
        EncodeOptions::default(),
        sluice_records::Layout { control: true },
    )
    .unwrap();
    let mut both = batch(&["ok"]);
    both.extend_from_slice(&control);
    let e = leader.append_as_leader(both, 1, 1).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRecord, "{e}");
    assert_eq!(leader.offsets().leo, 0, "nothing of the request was stored");
    leader.append_as_leader(batch(&["ok"]), 1, 1).unwrap();
}
