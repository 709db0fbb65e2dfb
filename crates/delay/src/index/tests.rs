use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn e(due_ms: i64, offset: i64) -> Entry {
    Entry { due_ms, offset }
}

#[test]
fn due_entries_come_in_due_then_produce_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    for (due, off) in [(300, 0), (100, 1), (200, 2), (100, 3), (100, 4)] {
        ix.add(e(due, off));
    }
    assert_eq!(ix.next_due().unwrap(), Some(100));
    // Same due time: produce (offset) order.
    assert_eq!(ix.due(100, 10).unwrap(), [e(100, 1), e(100, 3), e(100, 4)]);
    assert_eq!(ix.due(250, 2).unwrap(), [e(100, 1), e(100, 3)]);
    assert_eq!(ix.due(99, 10).unwrap(), []);
    // Released (the release record at offset 5 says so): no longer due.
    ix.mark_done(1, 5);
    ix.mark_done(3, 5);
    assert_eq!(ix.due(1000, 10).unwrap(), [e(100, 4), e(200, 2), e(300, 0)]);
    assert_eq!(ix.pending(), 3);
}

#[test]
fn summary_and_lookup_see_only_pending_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    let now = 1_000_000;
    for (i, due) in [
        now + 30_000,
        now + 600_000,
        now + 7_200_000,
        now + 900_000_000,
    ]
    .into_iter()
    .enumerate()
    {
        ix.add(e(due, i as i64));
    }
    ix.mark_done(1, 9);
    let s = ix.summary(now).unwrap();
    assert_eq!(s.pending, 3);
    assert_eq!(
        (s.next_due_ms, s.last_due_ms),
        (now + 30_000, now + 900_000_000)
    );
    assert_eq!(s.due_within, [1, 0, 1, 1]);
    assert!(ix.is_pending(2).unwrap());
    assert!(!ix.is_pending(1).unwrap(), "released");
    assert!(!ix.is_pending(7).unwrap(), "never there");
}

#[test]
fn sealed_runs_survive_a_restart_and_only_the_tail_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap().with_seal_at(100);
    for off in 0..250 {
        ix.add(e(10_000 - off, off));
    }
    ix.commit(200);
    ix.upkeep().unwrap(); // 200 committed entries: sealed
    assert_eq!(ix.runs(), 1);
    assert_eq!(ix.in_memory(), 50);
    ix.mark_done(249, 250); // uncommitted: may still be truncated
    drop(ix);

    let mut ix = TimerIndex::open(dir.path()).unwrap();
    assert_eq!(ix.replay_from(), 200);
    assert_eq!(ix.pending(), 200);
    for off in 200..250 {
        ix.add(e(10_000 - off, off));
    }
    ix.mark_done(249, 250);
    assert_eq!(ix.pending(), 249);
    // Earliest due is the last produced (10_000 - 248), then back to 0.
    let all = ix.due(i64::MAX, 1000).unwrap();
    assert_eq!(all.len(), 249);
    assert_eq!(all[0], e(10_000 - 248, 248));
    assert!(all.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn truncation_drops_only_uncommitted_entries_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    for off in 0..10 {
        ix.add(e(100, off));
    }
    ix.commit(6);
    ix.upkeep().unwrap();
    ix.checkpoint().unwrap(); // entries 0..6 sealed
    ix.mark_done(2, 7); // a release at 7, not committed
    ix.mark_done(3, 5); // committed
    ix.truncate(7).unwrap();
    // Entries 7.. are gone, the release at 7 undone: 2 is pending again.
    let offsets: Vec<i64> = ix.due(100, 100).unwrap().iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 4, 5, 6]);
    assert!(ix.truncate(3).is_err(), "below what was sealed");
}

#[test]
fn many_runs_merge_into_one_without_the_released() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    let mut off = 0;
    for round in 0..(MAX_RUNS as i64 + 2) {
        for i in 0..10 {
            ix.add(e(1_000 + i * 7 + round, off));
            off += 1;
        }
        ix.commit(off);
        ix.upkeep().unwrap();
        ix.checkpoint().unwrap();
    }
    assert!(ix.runs() <= MAX_RUNS, "{} runs", ix.runs());
    let before = ix.due(i64::MAX, 1000).unwrap();
    for x in &before[..30] {
        ix.mark_done(x.offset, off);
    }
    off += 1;
    ix.commit(off);
    ix.upkeep().unwrap();
    ix.checkpoint().unwrap();
    assert_eq!(ix.pending(), before.len() - 30);
    assert_eq!(ix.due(i64::MAX, 1000).unwrap(), before[30..]);
    // Files on disk: the checkpoint and the runs it names, nothing else.
    let files = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, ix.runs() + 1);
}

#[test]
fn the_oldest_pending_offset_spans_runs_and_tail_and_skips_done_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap().with_seal_at(2);
    assert_eq!(ix.oldest_pending(0).unwrap(), None);
    // Offset 0 is due last: a run sorted by due time still yields it.
    for (due, off) in [(900, 0), (100, 1), (200, 2)] {
        ix.add(e(due, off));
    }
    ix.commit(3);
    ix.upkeep().unwrap();
    assert_eq!(ix.runs(), 1);
    ix.add(e(50, 3));
    assert_eq!(ix.oldest_pending(0).unwrap(), Some(0));
    // Below the log start (DeleteRecords took it): not held for.
    assert_eq!(ix.oldest_pending(1).unwrap(), Some(1));
    ix.mark_done(0, 4);
    assert_eq!(ix.oldest_pending(0).unwrap(), Some(1));
    ix.mark_done(1, 4);
    ix.mark_done(2, 4);
    assert_eq!(ix.oldest_pending(0).unwrap(), Some(3));
    ix.mark_done(3, 4);
    assert_eq!(ix.oldest_pending(0).unwrap(), None);
}

#[test]
fn a_million_pending_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    let mut max_tail = 0;
    for off in 0..1_000_000i64 {
        // Due times spread over 30 days, in no order.
        ix.add(e((off * 7_919) % (30 * 86_400_000), off));
        if off % 10_000 == 9_999 {
            ix.commit(off + 1);
            ix.upkeep().unwrap();
        }
        max_tail = max_tail.max(ix.in_memory());
    }
    assert!(max_tail <= SEAL_AT + 10_000, "tail grew to {max_tail}");
    assert_eq!(ix.pending(), 1_000_000);
    assert_eq!(ix.due(0, 10).unwrap(), [e(0, 0)]);
}

#[test]
fn a_damaged_checkpoint_is_an_error_not_a_silent_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = TimerIndex::open(dir.path()).unwrap();
    ix.add(e(1, 0));
    ix.commit(1);
    ix.upkeep().unwrap();
    ix.checkpoint().unwrap();
    fs::write(dir.path().join(CHECKPOINT), "something else\n").unwrap();
    assert!(TimerIndex::open(dir.path()).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Add(i64),
    /// Release the n-th due entry (modulo), as a release record would.
    Release(usize),
    Commit,
    Checkpoint,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i64..50).prop_map(Op::Add),
        3 => any::<usize>().prop_map(Op::Release),
        2 => Just(Op::Commit),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The index against a plain set of live entries, through seals, merges
    /// and restarts that replay the log from where the checkpoint says.
    #[test]
    fn the_index_matches_a_model(ops in proptest::collection::vec(op(), 1..200)) {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TimerIndex::open(dir.path()).unwrap().with_seal_at(4);
        let mut model: BTreeSet<Entry> = BTreeSet::new();
        // The log: (offset, what the record says).
        let mut log: Vec<(i64, Op, Vec<i64>)> = Vec::new();
        let mut next = 0i64;
        for op in ops {
            match op {
                Op::Add(due) => {
                    ix.add(e(due, next));
                    model.insert(e(due, next));
                    log.push((next, Op::Add(due), vec![]));
                    next += 1;
                }
                Op::Release(n) => {
                    let due = ix.due(i64::MAX, usize::MAX).unwrap();
                    if due.is_empty() { continue; }
                    let x = due[n % due.len()];
                    ix.mark_done(x.offset, next);
                    model.remove(&x);
                    log.push((next, Op::Release(0), vec![x.offset]));
                    next += 1;
                }
                Op::Commit => {
                    ix.commit(next);
                    ix.upkeep().unwrap();
                }
                Op::Checkpoint => ix.checkpoint().unwrap(),
                Op::Restart => {
                    drop(ix);
                    ix = TimerIndex::open(dir.path()).unwrap().with_seal_at(4);
                    let from = ix.replay_from();
                    for (off, op, ids) in log.iter().filter(|(o, _, _)| *o >= from) {
                        match op {
                            Op::Add(due) => ix.add(e(*due, *off)),
                            _ => ix.mark_done(ids[0], *off),
                        }
                    }
                }
            }
            let all = ix.due(i64::MAX, usize::MAX).unwrap();
            let want: Vec<Entry> = model.iter().copied().collect();
            prop_assert_eq!(&all, &want);
            prop_assert_eq!(ix.pending(), model.len());
        }
    }
}
