//! PartitionLog tests against real files in temp dirs.

use std::fs::OpenOptions;

use bytes::{Bytes, BytesMut};
use sluice_records::{
    EncodeOptions, Record, decode_batches, decode_records, encode_batch, split_batches,
};

use proptest::prelude::*;

use super::*;

/// A batch of `n` records with timestamps `ts, ts+1, ...` and ~100-byte values.
fn batch(n: usize, ts: i64) -> BytesMut {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; 100])),
            headers: vec![],
            timestamp: ts + i as i64,
            offset: 0,
        })
        .collect();
    BytesMut::from(&encode_batch(&recs, EncodeOptions::default()).unwrap()[..])
}

fn offsets(bytes: Bytes) -> Vec<i64> {
    decode_records(bytes)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect()
}

fn small_config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

fn segment_files(log: &PartitionLog, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut sizes = vec![];
    for i in 0..3 {
        let b = batch(3, 1000 + i * 10);
        sizes.push(b.len());
        let info = log.append_as_leader(b, 5).unwrap();
        assert_eq!(info.first_offset, i * 3);
        assert_eq!(info.last_offset, i * 3 + 2);
        assert_eq!(info.num_records, 3);
        assert_eq!(info.max_timestamp, 1000 + i * 10 + 2);
        assert_eq!(info.valid_bytes, sizes[0]);
    }
    assert_eq!(log.log_end_offset(), 9);
    let all = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(offsets(all.clone()), (0..9).collect::<Vec<_>>());
    let batches = split_batches(&all).unwrap();
    assert!(batches.iter().all(|b| b.header.partition_leader_epoch == 5));
    assert_eq!(log.latest_epoch(), Some(5));
    // From the middle of a batch: the whole batch comes back.
    assert_eq!(
        offsets(log.read(4, usize::MAX, i64::MAX, true).unwrap())[0],
        3
    );
    // High watermark cut-off.
    assert_eq!(
        offsets(log.read(0, usize::MAX, 6, true).unwrap()),
        (0..6).collect::<Vec<_>>()
    );
    assert!(log.read(6, usize::MAX, 6, true).unwrap().is_empty());
    // max_bytes: whole batches only.
    assert_eq!(
        offsets(log.read(0, sizes[0] + 1, i64::MAX, true).unwrap()),
        vec![0, 1, 2]
    );
    assert_eq!(
        offsets(log.read(0, 1, i64::MAX, true).unwrap()),
        vec![0, 1, 2]
    );
    assert!(log.read(0, 1, i64::MAX, false).unwrap().is_empty());
    // At and past the end.
    assert!(log.read(9, 100, i64::MAX, true).unwrap().is_empty());
    assert!(matches!(
        log.read(10, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange {
            offset: 10,
            log_start: 0,
            log_end: 9
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn leader_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), small_config(), 0).unwrap();
    let mut two = batch(2, 0);
    let mut bad = batch(2, 0);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    two.extend_from_slice(&bad);
    assert!(matches!(
        log.append_as_leader(two, 0),
        Err(StorageError::CorruptMessage(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    let mut tiny = PartitionLog::open(
        dir.path().join("t-1"),
        LogConfig {
            max_message_bytes: 100,
            ..LogConfig::default()
        },
        0,
    )
    .unwrap();
    let b = batch(2, 0);
    let size = b.len();
    assert!(matches!(
        tiny.append_as_leader(b, 0),
        Err(StorageError::MessageTooLarge { size: s, max: 100 }) if s == size
    ));
    assert!(matches!(
        log.append_as_leader(BytesMut::new(), 0),
        Err(StorageError::InvalidRecord { .. })
    ));
}

#[test]
fn follower_append_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = PartitionLog::open(dir.path().join("l-0"), small_config(), 0).unwrap();
    let mut follower = PartitionLog::open(dir.path().join("f-0"), small_config(), 0).unwrap();
    leader.append_as_leader(batch(2, 0), 1).unwrap();
    leader.append_as_leader(batch(3, 0), 2).unwrap();
    let data = leader.read(0, usize::MAX, i64::MAX, true).unwrap();
    // A fetch may end with a partial batch: it is ignored.
    let partial = data.slice(..data.len() - 5);
    let info = follower.append_as_follower(partial).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 1));
    let rest = leader.read(2, usize::MAX, i64::MAX, true).unwrap();
    follower.append_as_follower(rest.clone()).unwrap();
    assert_eq!(follower.log_end_offset(), 5);
    assert_eq!(follower.epoch_entries(), &[(1, 0), (2, 2)]);
    assert!(matches!(
        follower.append_as_follower(rest),
        Err(StorageError::OffsetMismatch {
            expected: 5,
            actual: 2
        })
    ));
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    for _ in 0..10 {
        log.append_as_leader(batch(2, 0), 0).unwrap();
    }
    assert_eq!(log.num_segments(), 4);
    let names: Vec<String> = segment_files(&log, "log")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "00000000000000000000.log");
    assert_eq!(names[1], "00000000000000000006.log");
    for off in 0..20 {
        let got = offsets(log.read(off, one as usize, i64::MAX, true).unwrap());
        assert_eq!(got, vec![off & !1, (off & !1) + 1], "read at {off}");
    }
    // A read never spans segments.
    assert_eq!(
        offsets(log.read(0, usize::MAX, i64::MAX, true).unwrap()).len(),
        6
    );
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    log.append_as_leader(batch(1, 10_000), 0).unwrap();
    log.append_as_leader(batch(1, 10_500), 0).unwrap();
    assert_eq!(log.num_segments(), 1);
    log.append_as_leader(batch(1, 11_001), 0).unwrap();
    assert_eq!(log.num_segments(), 2);
}

#[test]
fn retention_keeps_every_segment_from_a_pinned_offset_on() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let mut log = PartitionLog::open(
        dir.path().join("t-0"),
        LogConfig {
            segment_bytes: one * 2,
            retention_ms: 10_000,
            retention_bytes: 1,
            ..small_config()
        },
        0,
    )
    .unwrap();
    // Segments [0,4) [4,8) [8,12) [12,14), all old and over the size limit.
    for _ in 0..7 {
        log.append_as_leader(batch(2, 1000), 0).unwrap();
    }
    assert!(log.retention_due(1_000_000));
    // A pending record at offset 5: [0,4) may go, [4,8) and later stay.
    assert_eq!(
        log.enforce_retention_keeping(1_000_000, Some(5)).unwrap(),
        1
    );
    assert_eq!(log.log_start_offset(), 4);
    // At a segment's first offset the segment before it may go.
    assert_eq!(
        log.enforce_retention_keeping(1_000_000, Some(8)).unwrap(),
        1
    );
    assert_eq!(log.log_start_offset(), 8);
    // Released: retention goes on as usual.
    assert_eq!(log.enforce_retention_keeping(1_000_000, None).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 12);
    // Only the active segment is left: nothing is due.
    assert!(!log.retention_due(1_000_000));
}

#[test]
fn retention_by_time_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 2,
        retention_ms: 10_000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    // Segments: [0,4) ts ~1000, [4,8) ts ~2000, [8,12) ts ~50_000, [12,14) active.
    for ts in [1000, 1000, 2000, 2000, 50_000, 50_000, 50_000] {
        log.append_as_leader(batch(2, ts), 0).unwrap();
    }
    assert_eq!(log.num_segments(), 4);
    assert_eq!(log.enforce_retention(55_000).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 8);
    assert!(matches!(
        log.read(2, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        offsets(log.read(8, usize::MAX, i64::MAX, true).unwrap())[0],
        8
    );
    // The active segment is never deleted, however old.
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 1);
    assert_eq!(log.num_segments(), 1);
    assert_eq!(log.log_start_offset(), 12);

    let mut log = PartitionLog::open(
        dir.path().join("t-1"),
        LogConfig {
            segment_bytes: one * 2,
            retention_bytes: (one * 3) as i64,
            retention_ms: -1,
            ..small_config()
        },
        0,
    )
    .unwrap();
    for _ in 0..7 {
        log.append_as_leader(batch(2, 0), 0).unwrap();
    }
    // 7 batches = 3 full segments + 1 active; keep at most 3 batches' worth.
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 8);
    assert!(log.size_bytes() <= one * 3);
}

#[test]
fn offset_for_timestamp_uses_index_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(4, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 5,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg.clone(), 0).unwrap();
    // Batch i holds offsets 4i..4i+3 with timestamps 100i..100i+3.
    for i in 0..12 {
        log.append_as_leader(batch(4, i * 100), 0).unwrap();
    }
    let check = |log: &PartitionLog| {
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(2).unwrap(), Some((2, 2)));
        assert_eq!(log.offset_for_timestamp(50).unwrap(), Some((4, 100)));
        assert_eq!(log.offset_for_timestamp(703).unwrap(), Some((31, 703)));
        assert_eq!(log.offset_for_timestamp(1103).unwrap(), Some((47, 1103)));
        assert_eq!(log.offset_for_timestamp(1104).unwrap(), None);
    };
    check(&log);
    let end = log.log_end_offset();
    log.close().unwrap();
    let log = PartitionLog::open(dir.path().join("t-0"), cfg, end).unwrap();
    check(&log);
}

#[test]
fn restart_reopens_everything() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let path = dir.path().join("my-topic-3");
    let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
    log.set_topic_id("abc123").unwrap();
    for i in 0..8 {
        log.append_as_leader(batch(2, i), (i / 3) as i32).unwrap();
    }
    let before = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 16);
    let epochs = log.epoch_entries().to_vec();
    let index_files = segment_files(&log, "index");
    log.close().unwrap();
    for rp in [16, 0] {
        let log = PartitionLog::open(&path, cfg.clone(), rp).unwrap();
        assert_eq!(log.log_end_offset(), 16);
        assert_eq!(log.num_segments(), 3);
        assert_eq!(log.topic_id(), Some("abc123"));
        assert_eq!(log.epoch_entries(), &epochs[..]);
        assert_eq!(log.read(0, usize::MAX, i64::MAX, true).unwrap(), before);
        assert_eq!(segment_files(&log, "index"), index_files);
        assert_eq!(log.recovery_point(), 16);
        log.close().unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(path.join("partition.metadata")).unwrap(),
        "version: 0\ntopic_id: abc123\n"
    );
}

/// Three batches of 2 in one segment, closed; returns (dir, size of one batch).
fn three_batches(path: &Path) -> usize {
    let mut log = PartitionLog::open(path, small_config(), 0).unwrap();
    for _ in 0..3 {
        log.append_as_leader(batch(2, 0), 0).unwrap();
    }
    log.close().unwrap();
    batch(2, 0).len()
}

#[test]
fn torn_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let one = three_batches(&path);
    let seg = path.join("00000000000000000000.log");
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len((one * 3 - 7) as u64).unwrap();
    drop(f);
    // Recovery point 6 was checkpointed, but the active segment is always checked.
    let mut log = PartitionLog::open(&path, small_config(), 6).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), (one * 2) as u64);
    assert_eq!(
        offsets(log.read(0, usize::MAX, i64::MAX, true).unwrap()),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        log.append_as_leader(batch(1, 0), 0).unwrap().first_offset,
        4
    );
}

#[test]
fn corrupt_last_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let one = three_batches(&path);
    let seg = path.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[one * 2 + 40] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(&path, small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(
        offsets(log.read(0, usize::MAX, i64::MAX, true).unwrap()),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn corrupt_middle_segment_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let one = batch(2, 0).len();
    let cfg = LogConfig {
        segment_bytes: (one * 2) as u64,
        ..small_config()
    };
    let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
    for _ in 0..6 {
        log.append_as_leader(batch(2, 0), 0).unwrap();
    }
    log.close().unwrap();
    // Segments at 0, 4, 8; break the second batch of segment 4.
    let seg = path.join("00000000000000000004.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[one + 30] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(&path, cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.num_segments(), 2);
    assert!(!path.join("00000000000000000008.log").exists());
}

#[test]
fn missing_or_garbled_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let one = batch(2, 0).len();
    let cfg = LogConfig {
        segment_bytes: (one * 6) as u64,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
    for i in 0..10 {
        log.append_as_leader(batch(2, i * 10), 0).unwrap();
    }
    let expected: Vec<Bytes> = (0..20)
        .map(|o| log.read(o, one, i64::MAX, true).unwrap())
        .collect();
    let end = log.log_end_offset();
    log.close().unwrap();
    let idx0 = path.join("00000000000000000000.index");
    let tidx0 = path.join("00000000000000000000.timeindex");
    let idx_len = std::fs::metadata(&idx0).unwrap().len();
    let tidx_len = std::fs::metadata(&tidx0).unwrap().len();
    assert!(idx_len >= 16, "index has entries");
    for damage in 0..4 {
        match damage {
            0 => std::fs::remove_file(&idx0).unwrap(),
            1 => std::fs::write(&idx0, [1u8; 13]).unwrap(),
            2 => std::fs::write(&idx0, [0, 0, 0, 9, 0xff, 0xff, 0, 0]).unwrap(),
            _ => std::fs::write(&tidx0, [7u8; 12]).unwrap(),
        }
        let log = PartitionLog::open(&path, cfg.clone(), end).unwrap();
        for (o, want) in expected.iter().enumerate() {
            assert_eq!(&log.read(o as i64, one, i64::MAX, true).unwrap(), want);
        }
        assert_eq!(log.offset_for_timestamp(31).unwrap(), Some((7, 31)));
        log.close().unwrap();
        // Garbage was replaced by the rebuilt index.
        assert_eq!(std::fs::metadata(&idx0).unwrap().len(), idx_len);
        assert_eq!(std::fs::metadata(&tidx0).unwrap().len(), tidx_len);
    }
}

#[test]
fn epochs_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let one = batch(2, 0).len();
    let cfg = LogConfig {
        segment_bytes: (one * 2) as u64,
        ..small_config()
    };
    let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
    for epoch in [1, 1, 3, 3, 3, 4] {
        log.append_as_leader(batch(2, 0), epoch).unwrap();
    }
    assert_eq!(log.epoch_entries(), &[(1, 0), (3, 4), (4, 10)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 12)));
    assert_eq!(log.end_offset_for_epoch(5), None);
    log.assign_epoch_start(6, 12).unwrap();
    assert_eq!(log.latest_epoch(), Some(6));
    drop(log);
    let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
    assert_eq!(
        log.epoch_entries(),
        &[(1, 0), (3, 4), (4, 10)],
        "epoch past the log end dropped on open"
    );
    // Truncate into the middle of batch [6, 7]: the whole batch goes.
    log.truncate_to(7).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.num_segments(), 2);
    assert_eq!(log.epoch_entries(), &[(1, 0), (3, 4)]);
    assert_eq!(
        offsets(log.read(4, usize::MAX, i64::MAX, true).unwrap()),
        vec![4, 5]
    );
    assert_eq!(
        log.append_as_leader(batch(2, 0), 7).unwrap().first_offset,
        6
    );
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.epoch_entries(), &[(1, 0)]);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.epoch_entries().is_empty());
    log.close().unwrap();
    let log = PartitionLog::open(&path, cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    let decoded = decode_batches(log.read(0, usize::MAX, i64::MAX, true).unwrap()).unwrap();
    assert!(decoded.is_empty());
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn flush_messages_moves_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_messages: Some(4),
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    log.append_as_leader(batch(2, 0), 0).unwrap();
    assert!(!log.flush_due());
    log.append_as_leader(batch(2, 0), 0).unwrap();
    // The append leaves the fsync to the caller, outside the log's lock.
    assert!(log.flush_due());
    assert_eq!(log.recovery_point(), 0);
    let pending = log.begin_flush().unwrap();
    log.append_as_leader(batch(2, 0), 0).unwrap();
    pending.sync().unwrap();
    assert!(log.finish_flush(pending));
    // What the flush covered, not what was appended while it ran.
    assert_eq!(log.recovery_point(), 4);
    assert!(!log.flush_due(), "2 records since the flush began, of 4");
}

#[test]
fn flush_across_a_truncation_keeps_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), small_config(), 0).unwrap();
    log.append_as_leader(batch(4, 0), 0).unwrap();
    let pending = log.begin_flush().unwrap();
    log.truncate_to(2).unwrap();
    pending.sync().unwrap();
    assert!(!log.finish_flush(pending));
    assert_eq!(log.recovery_point(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any offset reads back the batch containing it, before and after a
    /// restart, whatever the batch sizes, segment size and index interval.
    #[test]
    fn every_offset_reads_its_batch(
        sizes in proptest::collection::vec(1usize..6, 1..30),
        segment_batches in 1u64..5,
        interval in 1u32..800,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p-0");
        let cfg = LogConfig {
            segment_bytes: batch(3, 0).len() as u64 * segment_batches,
            index_interval_bytes: interval,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(&path, cfg.clone(), 0).unwrap();
        let mut starts = vec![];
        for (i, n) in sizes.iter().enumerate() {
            let info = log.append_as_leader(batch(*n, i as i64 * 10), 0).unwrap();
            starts.push(info.first_offset);
        }
        let end = log.log_end_offset();
        prop_assert_eq!(end, sizes.iter().sum::<usize>() as i64);
        let check = |log: &PartitionLog| -> Result<(), TestCaseError> {
            for off in 0..end {
                let got = offsets(log.read(off, 1, i64::MAX, true).unwrap());
                let b = starts.partition_point(|s| *s <= off) - 1;
                let want: Vec<i64> = (starts[b]..starts[b] + sizes[b] as i64).collect();
                prop_assert_eq!(got, want);
            }
            Ok(())
        };
        check(&log)?;
        log.close().unwrap();
        let log = PartitionLog::open(&path, cfg.clone(), end).unwrap();
        check(&log)?;
        drop(log);
        let log = PartitionLog::open(&path, cfg, 0).unwrap();
        check(&log)?;
    }
}

#[test]
fn advance_log_start_deletes_whole_segments_below_and_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), cfg, 0).unwrap();
    // Segments: [0,4) [4,8) [8,12) [12,14) active.
    for ts in 0..7 {
        log.append_as_leader(batch(2, ts * 10), 0).unwrap();
    }
    assert_eq!(log.num_segments(), 4);
    assert_eq!(log.advance_log_start(5).unwrap(), 5);
    // [0,4) went; [4,8) holds offset 5 and stays.
    assert_eq!(log.num_segments(), 3);
    assert_eq!(log.log_start_offset(), 5);
    assert!(matches!(
        log.read(4, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // The batch holding 5 comes back whole (consumers skip offsets below).
    assert_eq!(
        offsets(log.read(5, usize::MAX, i64::MAX, true).unwrap())[0],
        4
    );
    assert_eq!(log.advance_log_start(3).unwrap(), 5, "never moves back");
    // Retention after it keeps the higher start.
    assert_eq!(
        log.advance_log_start(100).unwrap(),
        14,
        "at most the log end"
    );
    assert_eq!(log.num_segments(), 1);
    assert_eq!(log.log_end_offset(), 14);
}

#[test]
fn an_epoch_without_records_reaches_the_disk_with_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let checkpoint = || std::fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap();
    let mut log = PartitionLog::open(&path, small_config(), 0).unwrap();
    log.append_as_leader(batch(2, 0), 1).unwrap();
    assert_eq!(checkpoint(), "0\n1\n1 0\n");
    // Elected: in memory only.
    log.assign_epoch_start(3, 2).unwrap();
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(checkpoint(), "0\n1\n1 0\n");
    // Its first record writes it first.
    log.append_as_leader(batch(2, 0), 3).unwrap();
    assert_eq!(checkpoint(), "0\n2\n1 0\n3 2\n");
    // A crash: no flush; the epochs of what was written are all there.
    drop(log);
    let log = PartitionLog::open(&path, small_config(), 0).unwrap();
    assert_eq!(log.epoch_entries(), &[(1, 0), (3, 2)]);
}
