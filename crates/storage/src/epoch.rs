//! LeaderEpochFileCache: (epoch, start offset) pairs, persisted to
//! `leader-epoch-checkpoint`, used for KIP-101 truncation.

use std::path::{Path, PathBuf};

use crate::checkpoint::{read_lines, write_lines};
use crate::error::StorageError;

pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<(i32, i64)>,
    /// Assigned since the file was last written (see [`Self::assign`]).
    dirty: bool,
}

impl LeaderEpochCache {
    pub(crate) fn load(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut entries = Vec::new();
        for line in read_lines(&path)?.unwrap_or_default() {
            let mut it = line.split_whitespace();
            let parsed = it
                .next()
                .and_then(|e| e.parse::<i32>().ok())
                .zip(it.next().and_then(|o| o.parse::<i64>().ok()));
            let entry = parsed.ok_or_else(|| StorageError::InvalidCheckpoint {
                path: path.clone(),
                reason: format!("bad entry {line:?}"),
            })?;
            entries.push(entry);
        }
        Ok(LeaderEpochCache {
            path,
            entries,
            dirty: false,
        })
    }

    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start`. Like Kafka, entries that would
    /// break monotonicity (epoch >= `epoch` or start >= `start`) are dropped.
    /// Returns whether the cache changed.
    ///
    /// In memory only: the file is written (with fsync) before the first
    /// record of the epoch is appended (`PartitionLog::append_validated`), or
    /// by the next flush. A new epoch starts on every leadership change, and
    /// an fsync per partition at election made a broker taking over
    /// thousands of leaderships spend seconds on the metadata path. An epoch
    /// that holds no record is forgotten after a crash, which is harmless: a
    /// restarted broker rejoins as a follower and truncates against its
    /// leader, and no record of that epoch exists anywhere.
    pub(crate) fn assign(&mut self, epoch: i32, start: i64) -> Result<bool, StorageError> {
        if epoch < 0 {
            return Ok(false);
        }
        if let Some(&(e, s)) = self.entries.last()
            && e == epoch
            && s <= start
        {
            return Ok(false);
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start);
        self.entries.push((epoch, start));
        self.dirty = true;
        Ok(true)
    }

    /// KIP-101: the end offset of `requested` is the start of the next
    /// higher epoch, or the log end if `requested` is the latest.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end));
        }
        let split = self.entries.partition_point(|e| e.0 <= requested);
        let next = self.entries.get(split)?;
        match split.checked_sub(1) {
            Some(i) => Some((self.entries[i].0, next.1)),
            // Requested epoch predates everything we know.
            None => Some((requested, next.1)),
        }
    }

    /// Drops epochs starting at or after `offset` (log truncated to `offset`).
    pub(crate) fn truncate_from_end(&mut self, offset: i64) -> Result<(), StorageError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.1 < offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The log start moved to `offset`: drop epochs entirely before it and
    /// clamp the one that spans it.
    pub(crate) fn truncate_from_start(&mut self, offset: i64) -> Result<(), StorageError> {
        let covered = self.entries.partition_point(|e| e.1 <= offset);
        if covered == 0 {
            return Ok(());
        }
        let (epoch, start) = self.entries[covered - 1];
        if covered == 1 && start == offset {
            return Ok(());
        }
        self.entries.drain(..covered - 1);
        self.entries[0] = (epoch, offset);
        self.persist()
    }

    /// Removes everything (log deleted or fully truncated).
    pub(crate) fn clear(&mut self) -> Result<(), StorageError> {
        self.entries.clear();
        self.persist()
    }

    /// Writes the file if epochs were assigned since it was last written.
    pub(crate) fn persist_if_dirty(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.persist()?;
        }
        Ok(())
    }

    fn persist(&mut self) -> Result<(), StorageError> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|(e, s)| format!("{e} {s}"))
            .collect();
        write_lines(&self.path, &lines)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip101_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(c.end_offset_for(0, 10), None);
        c.assign(1, 0).unwrap();
        c.assign(1, 5).unwrap(); // same epoch later: ignored
        c.assign(3, 10).unwrap();
        c.assign(5, 20).unwrap();
        assert_eq!(c.entries(), &[(1, 0), (3, 10), (5, 20)]);
        // Assigning is in memory; the flush writes the file.
        assert!(!dir.path().join(LEADER_EPOCH_CHECKPOINT).exists());
        c.persist_if_dirty().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap(),
            "0\n3\n1 0\n3 10\n5 20\n"
        );
        let c2 = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(c2.entries(), c.entries());
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        c.truncate_from_start(12).unwrap();
        assert_eq!(c.entries(), &[(3, 12), (5, 20)]);
        c.truncate_from_end(20).unwrap();
        assert_eq!(c.entries(), &[(3, 12)]);
        // A lower start for a new epoch evicts conflicting entries.
        c.assign(4, 11).unwrap();
        assert_eq!(c.entries(), &[(4, 11)]);
    }
}
