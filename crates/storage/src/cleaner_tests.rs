//! Compaction tests against real files in temp dirs.

use std::collections::HashMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use sluice_records::{DecodedBatch, EncodeOptions, Record, decode_batches, encode_batch};

use super::*;
use crate::config::{CleanupPolicy, LogConfig};
use crate::log::PartitionLog;

/// Far below any test timestamp: tombstones never expire unless a test says so.
const NOW: i64 = 20_000;

/// `(key, value)` records; `None` is a null key or value.
type Kv<'a> = (Option<&'a str>, Option<&'a str>);

fn encode(pairs: &[Kv], ts: i64, opts: EncodeOptions) -> BytesMut {
    let recs: Vec<Record> = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
            timestamp: ts + i as i64,
            offset: 0,
        })
        .collect();
    BytesMut::from(&encode_batch(&recs, opts).unwrap()[..])
}

fn kv(pairs: &[Kv], ts: i64) -> BytesMut {
    encode(pairs, ts, EncodeOptions::default())
}

/// About three of the test batches per segment.
fn config(policy: CleanupPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        cleanup_policy: policy,
        delete_retention_ms: 1_000_000,
        ..LogConfig::default()
    }
}

/// Every batch in the log, read the way a consumer does (across gaps).
fn batches(log: &PartitionLog) -> Vec<DecodedBatch> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        assert!(!data.is_empty(), "no data at {offset} below the log end");
        for b in decode_batches(data).unwrap() {
            offset = b.header.next_offset();
            out.push(b);
        }
    }
    out
}

fn records(log: &PartitionLog) -> Vec<Record> {
    batches(log).into_iter().flat_map(|b| b.records).collect()
}

/// What compaction must leave: every keyless record, every record at or
/// after `keep_from` (the active segment), and the latest record per key.
fn expected_after(before: &[Record], keep_from: i64) -> Vec<Record> {
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for r in before {
        if let Some(k) = &r.key {
            latest.insert(k.clone(), r.offset);
        }
    }
    before
        .iter()
        .filter(|r| r.offset >= keep_from || r.key.as_ref().is_none_or(|k| latest[k] == r.offset))
        .cloned()
        .collect()
}

fn files_with(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn active_file(log: &PartitionLog) -> Vec<u8> {
    let base = *log.segment_base_offsets().last().unwrap();
    std::fs::read(segment_file(log.dir(), base, "log")).unwrap()
}

/// Ten keys updated over several segments, keyless records, and the active
/// segment holding the newest values of some keys.
fn fill(log: &mut PartitionLog) {
    for round in 0..6 {
        for k in 0..10 {
            let key = format!("k{k}");
            let value = format!("v{round}-{k}");
            log.append_as_leader(
                kv(&[(Some(key.as_str()), Some(value.as_str()))], 1000 + round),
                3,
            )
            .unwrap();
        }
        log.append_as_leader(kv(&[(None, Some("keyless"))], 1000 + round), 3)
            .unwrap();
    }
    // Newest values of k0 and k1 land in the active segment.
    log.append_as_leader(
        kv(
            &[(Some("k0"), Some("last-0")), (Some("k1"), Some("last-1"))],
            2000,
        ),
        4,
    )
    .unwrap();
}

#[test]
fn compressed_batches_are_compacted_in_their_codec() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    let lz4 = EncodeOptions {
        compression: sluice_records::Compression::Lz4,
        ..EncodeOptions::default()
    };
    for round in 0..8 {
        let values: Vec<String> = (0..3).map(|k| format!("v{round}-{k}")).collect();
        let pairs: Vec<Kv> = (0..3)
            .map(|k| (Some(["k0", "k1", "k2"][k]), Some(values[k].as_str())))
            .collect();
        log.append_as_leader(encode(&pairs, 1000 + round, lz4), 3)
            .unwrap();
    }
    log.append_as_leader(kv(&[(Some("k0"), Some("last"))], 2000), 3)
        .unwrap();
    assert!(log.num_segments() > 2);
    let before = records(&log);
    let active_base = *log.segment_base_offsets().last().unwrap();
    log.compact(NOW, i64::MAX).unwrap();
    assert_eq!(records(&log), expected_after(&before, active_base));
    // The 8 compressed batches hold offsets 0..24.
    for b in batches(&log) {
        if b.header.base_offset < 24 {
            assert_eq!(
                b.header.compression(),
                Some(sluice_records::Compression::Lz4),
                "batch at {} keeps its codec",
                b.header.base_offset
            );
        }
    }
}

#[test]
fn keeps_the_latest_value_per_key_and_preserves_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    assert!(log.num_segments() > 5);
    let before = records(&log);
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let epochs = log.epoch_entries().to_vec();
    let active_base = *log.segment_base_offsets().last().unwrap();
    let active = active_file(&log);
    let segments_before = log.num_segments();

    let stats = log.compact(NOW, i64::MAX).unwrap();

    let want = expected_after(&before, active_base);
    assert_eq!(records(&log), want);
    assert_eq!(stats.records_removed as usize, before.len() - want.len());
    assert_eq!(stats.tombstones_removed, 0);
    assert!(stats.bytes_after < stats.bytes_before);
    assert_eq!(stats.groups_abandoned, 0);
    // Every key's value is its newest, wherever that is.
    let values: HashMap<Bytes, Bytes> = records(&log)
        .into_iter()
        .filter_map(|r| Some((r.key?, r.value?)))
        .collect();
    assert_eq!(values[&Bytes::from("k0")], Bytes::from("last-0"));
    assert_eq!(values[&Bytes::from("k9")], Bytes::from("v5-9"));
    assert_eq!(
        records(&log).iter().filter(|r| r.key.is_none()).count(),
        6,
        "keyless records stay"
    );
    // Offsets, epochs and the active segment are untouched.
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
    assert_eq!(log.epoch_entries(), &epochs[..]);
    assert_eq!(*log.segment_base_offsets().last().unwrap(), active_base);
    assert_eq!(active_file(&log), active);
    assert_eq!(log.segment_base_offsets()[0], start);
    assert!(
        log.num_segments() < segments_before,
        "small cleaned segments are grouped"
    );
    assert!(files_with(log.dir(), ".cleaned").is_empty());
    assert!(files_with(log.dir(), ".swap").is_empty());

    // The same after a restart, and a second pass with nothing new is skipped.
    assert_eq!(
        log.compact(NOW, i64::MAX).unwrap(),
        CompactionStats::default()
    );
    log.close().unwrap();
    let log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), end).unwrap();
    assert_eq!(records(&log), want);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
}

#[test]
fn reads_across_gaps_return_the_next_surviving_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    log.compact(NOW, i64::MAX).unwrap();
    let survivors: Vec<i64> = records(&log).iter().map(|r| r.offset).collect();
    let end = log.log_end_offset();
    let mut gaps = 0;
    for offset in 0..end {
        let data = log.read(offset, 1, i64::MAX, true).unwrap();
        let first = decode_batches(data)
            .unwrap()
            .into_iter()
            .flat_map(|b| b.records)
            .map(|r| r.offset)
            .find(|o| *o >= offset);
        let want = survivors.iter().copied().find(|o| *o >= offset);
        assert_eq!(first, want, "read at {offset}");
        gaps += usize::from(!survivors.contains(&offset));
    }
    assert!(gaps > 30, "the test needs gaps: {gaps}");
    // Timestamp lookups still land on surviving records.
    let (off, ts) = log.offset_for_timestamp(1005).unwrap().unwrap();
    assert!(survivors.contains(&off) && ts >= 1005);
}

#[test]
fn tombstones_stay_until_delete_retention_passes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        delete_retention_ms: 1_000,
        ..config(CleanupPolicy::Compact)
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    // a: value then tombstone; b: tombstone then a new value; c: plain value.
    log.append_as_leader(kv(&[(Some("a"), Some("1")), (Some("b"), None)], 10_000), 0)
        .unwrap();
    log.append_as_leader(kv(&[(Some("a"), None), (Some("c"), Some("3"))], 10_000), 0)
        .unwrap();
    log.append_as_leader(kv(&[(Some("b"), Some("2"))], 10_000), 0)
        .unwrap();
    let pad = |log: &mut PartitionLog| {
        // Fills segments so the batches above are in closed ones.
        for _ in 0..4 {
            log.append_as_leader(kv(&[(Some("pad"), Some("x"))], 10_000), 0)
                .unwrap();
        }
    };
    pad(&mut log);
    let kept = |log: &PartitionLog| -> Vec<(String, Option<String>)> {
        records(log)
            .into_iter()
            .filter(|r| r.key.as_deref() != Some(b"pad"))
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                )
            })
            .collect()
    };
    // 900 ms after the write: the tombstone of a stays, a's value and b's
    // superseded tombstone go.
    let stats = log.compact(10_900, i64::MAX).unwrap();
    assert_eq!(stats.tombstones_removed, 0);
    assert_eq!(
        kept(&log),
        [
            ("a".into(), None),
            ("c".into(), Some("3".into())),
            ("b".into(), Some("2".into()))
        ]
    );
    // New dirty data triggers the next pass; over 1000 ms after the write
    // the tombstone goes.
    pad(&mut log);
    // Its batch's max timestamp is 10_001 (the second record's).
    let stats = log.compact(11_100, i64::MAX).unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(
        kept(&log),
        [
            ("c".into(), Some("3".into())),
            ("b".into(), Some("2".into()))
        ]
    );
}

#[test]
fn records_at_or_above_the_bound_neither_supersede_nor_get_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    let before = records(&log);
    // Pretend only the first 32 offsets are replicated (the high watermark):
    // inside the segment [30, 35), whose records at 33 and 34 (new values of
    // k0 and k1) must not count.
    const BOUND: i64 = 32;
    assert!(log.segment_base_offsets().contains(&30));
    log.compact(NOW, BOUND).unwrap();
    let after = records(&log);
    let mut latest_below: HashMap<Bytes, i64> = HashMap::new();
    for r in before.iter().filter(|r| r.offset < BOUND) {
        if let Some(k) = &r.key {
            latest_below.insert(k.clone(), r.offset);
        }
    }
    // Records at or above the bound stay, and so do the latest values below
    // it even when a newer one exists above it.
    for r in &before {
        let must_stay =
            r.offset >= BOUND || r.key.as_ref().is_none_or(|k| latest_below[k] == r.offset);
        if must_stay {
            assert!(after.contains(r), "{r:?} must stay");
        }
    }
    assert!(after.len() < before.len(), "something below the bound went");
}

#[test]
fn min_compaction_lag_keeps_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        min_compaction_lag_ms: 1_000,
        ..config(CleanupPolicy::Compact)
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    fill(&mut log);
    let before = records(&log);
    // Every record is younger than the lag at 1500: nothing is cleaned.
    assert_eq!(
        log.compact(1_500, i64::MAX).unwrap(),
        CompactionStats::default()
    );
    assert_eq!(records(&log), before);
    assert!(log.compact(NOW, i64::MAX).unwrap().records_removed > 0);
}

#[test]
fn producer_keeps_its_last_batch_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    let idem = |seq: i32, pairs: &[Kv]| {
        encode(
            pairs,
            1000,
            EncodeOptions {
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: seq,
                ..EncodeOptions::default()
            },
        )
    };
    // Producer 7 writes a, b twice; a plain producer then overwrites both.
    log.append_as_leader(
        idem(0, &[(Some("a"), Some("1")), (Some("b"), Some("1"))]),
        0,
    )
    .unwrap();
    log.append_as_leader(
        idem(2, &[(Some("a"), Some("2")), (Some("b"), Some("2"))]),
        0,
    )
    .unwrap();
    for _ in 0..6 {
        log.append_as_leader(
            kv(&[(Some("a"), Some("3")), (Some("b"), Some("3"))], 1000),
            0,
        )
        .unwrap();
    }
    let last_before = batches(&log)[1].header;
    assert_eq!((last_before.producer_id, last_before.base_offset), (7, 2));
    log.compact(NOW, i64::MAX).unwrap();
    let after = batches(&log);
    let of_7: Vec<_> = after.iter().filter(|b| b.header.producer_id == 7).collect();
    assert_eq!(of_7.len(), 1, "only the producer's last batch stays");
    let h = of_7[0].header;
    assert!(of_7[0].records.is_empty());
    assert_eq!(h.records_count, 0);
    assert_eq!(
        (
            h.base_offset,
            h.last_offset(),
            h.producer_epoch,
            h.base_sequence
        ),
        (2, 3, 2, 2),
        "offsets and sequence range survive"
    );
    assert_eq!(h.partition_leader_epoch, last_before.partition_leader_epoch);
    // Plain batches left with no records are dropped.
    assert!(
        after
            .iter()
            .all(|b| b.header.producer_id == 7 || !b.records.is_empty())
    );
}

/// A log with closed segments to clean, and the job's output, not swapped in.
fn cleaned_but_not_swapped(path: &Path) -> (PartitionLog, Vec<Record>, Vec<Record>, i64) {
    let mut log = PartitionLog::open(path, config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    log.flush().unwrap();
    let before = records(&log);
    let active_base = *log.segment_base_offsets().last().unwrap();
    let want = expected_after(&before, active_base);
    let job = log.prepare_compaction(NOW, i64::MAX).unwrap().unwrap();
    let mut cleaned = job.run().unwrap();
    assert!(!files_with(path, ".log.cleaned").is_empty());
    let group = cleaned.groups.remove(0);
    // The crash: nothing cleans up the files.
    std::mem::forget(cleaned);
    (log, before, want, group.base)
}

/// After a simulated crash and a reopen: consistent, every latest value
/// there, no leftovers, and compaction still works.
fn check_reopened(path: &Path, before: &[Record], end: i64) -> Vec<Record> {
    let mut log = PartitionLog::open(path, config(CleanupPolicy::Compact), end).unwrap();
    assert!(files_with(path, ".cleaned").is_empty());
    assert!(files_with(path, ".swap").is_empty());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
    let got = records(&log);
    // A subset of what was written, in order, holding every latest value.
    let mut it = before.iter();
    for r in &got {
        assert!(
            it.any(|b| b == r),
            "{r:?} was not written or is out of order"
        );
    }
    let latest = expected_after(before, i64::MAX);
    for r in &latest {
        assert!(got.contains(r), "latest record {r:?} lost");
    }
    let active_base = *log.segment_base_offsets().last().unwrap();
    log.compact(NOW, i64::MAX).unwrap();
    assert_eq!(records(&log), expected_after(before, active_base));
    got
}

#[test]
fn crash_before_the_swap_leaves_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (log, before, _, base) = cleaned_but_not_swapped(&path);
    let end = log.log_end_offset();
    drop(log);
    // Also a crash half way through the rename to `.swap`: an index moved,
    // the log (the commit point) did not.
    std::fs::rename(
        segment_file(&path, base, "index.cleaned"),
        segment_file(&path, base, "index.swap"),
    )
    .unwrap();
    let got = check_reopened(&path, &before, end);
    assert_eq!(got, before, "nothing was swapped");
}

#[test]
fn crash_after_the_commit_point_completes_the_swap() {
    // Where the crash hits, after `.log.swap` exists.
    #[derive(Debug, Clone, Copy)]
    enum At {
        Committed,
        SomeOriginalsDeleted,
        AllOriginalsDeleted,
        IndexesRenamed,
    }
    for at in [
        At::Committed,
        At::SomeOriginalsDeleted,
        At::AllOriginalsDeleted,
        At::IndexesRenamed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let (log, before, _, base) = cleaned_but_not_swapped(&path);
        let end = log.log_end_offset();
        let bases = log.segment_base_offsets();
        drop(log);
        rename_segment_files(&path, base, CLEANED, SWAP).unwrap();
        // The first group's originals: the segments below the next group's
        // base, which is at most the active one.
        let group: Vec<i64> = bases[..bases.len() - 1].to_vec();
        let delete = |b: i64| {
            for ext in ["log", "index", "timeindex"] {
                let _ = std::fs::remove_file(segment_file(&path, b, ext));
            }
        };
        match at {
            At::Committed => {}
            At::SomeOriginalsDeleted => delete(group[0]),
            At::AllOriginalsDeleted | At::IndexesRenamed => {
                // Only those the swap replaces: the ones inside its range.
                let swap_end =
                    scan_end_offset(&segment_file(&path, base, "log.swap"), base).unwrap();
                for b in group.iter().filter(|b| **b < swap_end) {
                    delete(*b);
                }
                if matches!(at, At::IndexesRenamed) {
                    for ext in ["index", "timeindex"] {
                        std::fs::rename(
                            segment_file(&path, base, &format!("{ext}.swap")),
                            segment_file(&path, base, ext),
                        )
                        .unwrap();
                    }
                }
            }
        }
        let got = check_reopened(&path, &before, end);
        assert!(got.len() < before.len(), "{at:?}: the swap was completed");
    }
}

#[test]
fn dropped_job_output_and_a_changed_log_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path().join("t-0"), config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    let before = records(&log);
    // Output dropped unused.
    let cleaned = log
        .prepare_compaction(NOW, i64::MAX)
        .unwrap()
        .unwrap()
        .run()
        .unwrap();
    drop(cleaned);
    assert!(files_with(log.dir(), ".cleaned").is_empty());
    // Truncation while the job ran: nothing is swapped.
    let cleaned = log
        .prepare_compaction(NOW, i64::MAX)
        .unwrap()
        .unwrap()
        .run()
        .unwrap();
    let end = log.log_end_offset();
    log.truncate_to(end - 1).unwrap();
    let stats = log.finish_compaction(cleaned).unwrap();
    assert!(stats.groups_abandoned > 0);
    assert_eq!(stats.segments_before, 0);
    assert!(files_with(log.dir(), ".cleaned").is_empty());
    assert_eq!(records(&log), before[..before.len() - 2]);
    // Retention deleting the first segment meanwhile: that group is skipped,
    // the others are swapped in.
    let mut log = PartitionLog::open(
        dir.path().join("t-1"),
        LogConfig {
            retention_bytes: 0,
            ..config(CleanupPolicy::CompactDelete)
        },
        0,
    )
    .unwrap();
    fill(&mut log);
    let cleaned = log
        .prepare_compaction(NOW, i64::MAX)
        .unwrap()
        .unwrap()
        .run()
        .unwrap();
    assert!(cleaned.groups.len() > 1);
    assert!(log.enforce_retention(NOW).unwrap() > 0);
    let stats = log.finish_compaction(cleaned).unwrap();
    assert!(stats.groups_abandoned > 0);
    assert!(files_with(log.dir(), ".cleaned").is_empty());
    records(&log);
}

#[test]
fn compacted_log_takes_appends_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    log.compact(NOW, i64::MAX).unwrap();
    let first = log.log_end_offset();
    for round in 0..4 {
        for k in [0, 5, 10] {
            let key = format!("k{k}");
            let value = format!("w{round}-{k}");
            log.append_as_leader(kv(&[(Some(key.as_str()), Some(value.as_str()))], 3000), 5)
                .unwrap();
        }
    }
    let end = log.log_end_offset();
    let info = log
        .append_as_leader(kv(&[(Some("k1"), Some("final"))], 3000), 5)
        .unwrap();
    assert_eq!(info.first_offset, end, "appends continue at the log end");
    let before = records(&log);
    log.close().unwrap();
    let mut log = PartitionLog::open(&path, config(CleanupPolicy::Compact), 0).unwrap();
    assert_eq!(records(&log), before);
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert!(log.compact(NOW, i64::MAX).unwrap().records_removed > 0);
    let want = expected_after(&before, active_base);
    assert_eq!(records(&log), want);
    assert!(records(&log).iter().any(|r| r.offset >= first));
    let end = log.log_end_offset();
    log.close().unwrap();
    let log = PartitionLog::open(&path, config(CleanupPolicy::Compact), end).unwrap();
    assert_eq!(records(&log), want);
    assert_eq!(log.latest_epoch(), Some(5));
}

#[test]
fn follower_replicates_a_compacted_leader_across_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader =
        PartitionLog::open(dir.path().join("l-0"), config(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut leader);
    leader.compact(NOW, i64::MAX).unwrap();
    let mut follower =
        PartitionLog::open(dir.path().join("f-0"), config(CleanupPolicy::Compact), 0).unwrap();
    while follower.log_end_offset() < leader.log_end_offset() {
        let data = leader
            .read(follower.log_end_offset(), 300, i64::MAX, true)
            .unwrap();
        follower.append_as_follower(data).unwrap();
    }
    assert_eq!(records(&follower), records(&leader));
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
}

#[test]
fn cleanup_policy_decides_between_retention_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let strict = |policy| LogConfig {
        retention_ms: 1,
        retention_bytes: 0,
        ..config(policy)
    };
    // compact: retention deletes nothing, however old or large.
    let mut log =
        PartitionLog::open(dir.path().join("c-0"), strict(CleanupPolicy::Compact), 0).unwrap();
    fill(&mut log);
    let n = log.num_segments();
    assert_eq!(log.enforce_retention(NOW * 1000).unwrap(), 0);
    assert_eq!((log.num_segments(), log.log_start_offset()), (n, 0));
    // delete: compaction does nothing.
    let mut log =
        PartitionLog::open(dir.path().join("d-0"), strict(CleanupPolicy::Delete), 0).unwrap();
    fill(&mut log);
    let before = records(&log);
    assert!(log.prepare_compaction(NOW, i64::MAX).unwrap().is_none());
    assert_eq!(
        log.compact(NOW, i64::MAX).unwrap(),
        CompactionStats::default()
    );
    assert_eq!(records(&log), before);
    assert!(log.enforce_retention(NOW * 1000).unwrap() > 0);
    // compact,delete: both.
    let mut log = PartitionLog::open(
        dir.path().join("b-0"),
        LogConfig {
            retention_bytes: -1,
            ..strict(CleanupPolicy::CompactDelete)
        },
        0,
    )
    .unwrap();
    fill(&mut log);
    assert!(log.compact(NOW, i64::MAX).unwrap().records_removed > 0);
    // Far enough in the future for segment mtimes too (an empty cleaned
    // segment has no timestamp).
    assert!(log.enforce_retention(i64::MAX / 2).unwrap() > 0);
    assert_eq!(log.num_segments(), 1);
}

#[test]
fn dirty_ratio_skips_a_mostly_clean_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        min_cleanable_dirty_ratio: 0.9,
        ..config(CleanupPolicy::Compact)
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    fill(&mut log);
    // A fresh log is all dirty.
    assert!(log.compact(NOW, i64::MAX).unwrap().segments_before > 0);
    // A closed segment or two are far less than 90% of the cleanable bytes.
    for _ in 0..8 {
        log.append_as_leader(kv(&[(Some("k3"), Some("again"))], 3000), 3)
            .unwrap();
    }
    assert_eq!(
        log.compact(NOW, i64::MAX).unwrap(),
        CompactionStats::default()
    );
    // With a low ratio it runs.
    let mut cfg = log.config().clone();
    cfg.min_cleanable_dirty_ratio = 0.01;
    log.set_config(cfg);
    assert!(log.compact(NOW, i64::MAX).unwrap().records_removed > 0);
}
