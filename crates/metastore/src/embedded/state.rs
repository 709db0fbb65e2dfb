//! The embedded store's key space as a pure state machine: compare, plan, commit, and
//! replay history for watchers. No locks, no I/O, no timers.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use crate::{EventKind, KeyValue, MetaError, Op, WatchEvent};

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) kvs: BTreeMap<String, KeyValue>,
    /// Revision of the last committed change.
    pub(crate) revision: i64,
    /// Events of revisions `<= floor` are no longer retained (compacted or from before a
    /// reopen); watching from there fails with `Compacted`.
    floor: i64,
    /// Recent changes, one entry per revision, oldest first.
    history: VecDeque<(i64, Vec<WatchEvent>)>,
    history_limit: usize,
}

/// What a watcher at `from` sees next.
pub(crate) enum Replay {
    /// The first revision `>= from` with changes under the prefix.
    Batch(i64, Vec<WatchEvent>),
    /// Nothing under the prefix up to the current revision.
    CaughtUp(i64),
}

impl State {
    pub(crate) fn new(
        kvs: BTreeMap<String, KeyValue>,
        revision: i64,
        history_limit: usize,
    ) -> Self {
        Self {
            kvs,
            revision,
            floor: revision,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
        }
    }

    /// The changes `ops` would make at `rev`, in order, without applying them. Ops see the
    /// effects of earlier ops in the same txn.
    pub(crate) fn plan(&self, ops: &[Op], rev: i64) -> Vec<WatchEvent> {
        let mut overlay: BTreeMap<&str, Option<KeyValue>> = BTreeMap::new();
        let mut events = Vec::new();
        let lookup = |overlay: &BTreeMap<&str, Option<KeyValue>>, key: &str| match overlay.get(key)
        {
            Some(v) => v.clone(),
            None => self.kvs.get(key).cloned(),
        };
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let prev = lookup(&overlay, key);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    overlay.insert(key, Some(kv.clone()));
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                    });
                }
                Op::Delete { key } => {
                    if lookup(&overlay, key).is_some() {
                        overlay.insert(key, None);
                        events.push(deleted(key, rev));
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let mut keys: Vec<&str> = self
                        .kvs
                        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                        .map(|(k, _)| k.as_str())
                        .take_while(|k| k.starts_with(prefix.as_str()))
                        .collect();
                    keys.extend(
                        overlay
                            .keys()
                            .copied()
                            .filter(|k| k.starts_with(prefix.as_str())),
                    );
                    keys.sort_unstable();
                    keys.dedup();
                    for key in keys {
                        if lookup(&overlay, key).is_some() {
                            overlay.insert(key, None);
                            events.push(deleted(key, rev));
                        }
                    }
                }
            }
        }
        events
    }

    /// Applies one planned change (also used for log replay, with no history).
    pub(crate) fn apply(&mut self, event: &WatchEvent) {
        match event.kind {
            EventKind::Put => {
                self.kvs.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                self.kvs.remove(&event.kv.key);
            }
        }
    }

    /// Records a committed revision's events for watchers; the caller applied them.
    pub(crate) fn record(&mut self, rev: i64, events: Vec<WatchEvent>) {
        self.revision = rev;
        self.history.push_back((rev, events));
        while self.history.len() > self.history_limit {
            if let Some((old, _)) = self.history.pop_front() {
                self.floor = old;
            }
        }
    }

    /// Where a watcher of `prefix` waiting for revision `from` stands.
    pub(crate) fn replay(&self, prefix: &str, from: i64) -> Result<Replay, MetaError> {
        if from <= self.floor {
            return Err(MetaError::Compacted {
                revision: self.floor + 1,
            });
        }
        let start = self.history.partition_point(|(rev, _)| *rev < from);
        for (rev, events) in self.history.range(start..) {
            let matching: Vec<WatchEvent> = events
                .iter()
                .filter(|e| e.kv.key.starts_with(prefix))
                .cloned()
                .collect();
            if !matching.is_empty() {
                return Ok(Replay::Batch(*rev, matching));
            }
        }
        Ok(Replay::CaughtUp(self.revision))
    }

    /// Keys under `prefix`, sorted.
    pub(crate) fn range(&self, prefix: &str) -> Vec<KeyValue> {
        self.kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect()
    }
}

fn deleted(key: &str, rev: i64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.to_owned(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(state: &mut State, ops: &[Op]) -> i64 {
        let rev = state.revision + 1;
        let events = state.plan(ops, rev);
        for e in &events {
            state.apply(e);
        }
        state.record(rev, events);
        rev
    }

    #[test]
    fn put_tracks_create_revision_and_version() {
        let mut s = State::new(BTreeMap::new(), 0, 16);
        committed(&mut s, &[Op::put("a", "1")]);
        committed(&mut s, &[Op::put("a", "2")]);
        let kv = &s.kvs["a"];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    }

    #[test]
    fn ops_in_one_txn_see_each_other() {
        let mut s = State::new(BTreeMap::new(), 0, 16);
        committed(&mut s, &[Op::put("p/a", "1")]);
        let events = s.plan(&[Op::put("p/b", "2"), Op::delete_prefix("p/")], 2);
        let deleted: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::Delete)
            .map(|e| e.kv.key.as_str())
            .collect();
        assert_eq!(deleted, ["p/a", "p/b"]);
        assert!(s.plan(&[Op::delete("missing")], 2).is_empty());
    }

    #[test]
    fn replay_skips_other_prefixes_and_reports_compaction() {
        let mut s = State::new(BTreeMap::new(), 0, 2);
        committed(&mut s, &[Op::put("x/1", "")]);
        committed(&mut s, &[Op::put("y/1", "")]);
        committed(&mut s, &[Op::put("x/2", "")]);
        assert!(matches!(
            s.replay("x/", 1),
            Err(MetaError::Compacted { revision: 2 })
        ));
        match s.replay("x/", 2).unwrap() {
            Replay::Batch(rev, events) => {
                assert_eq!(rev, 3);
                assert_eq!(events[0].kv.key, "x/2");
            }
            Replay::CaughtUp(_) => panic!("expected a batch"),
        }
        assert!(matches!(s.replay("x/", 4).unwrap(), Replay::CaughtUp(3)));
    }
}
