//! Sparse offset and time indexes, kept as a `Vec` in memory and written to
//! their file at a flush or roll (no mmap: the indexes are small and a `Vec`
//! keeps the code free of unsafe). No file stays open: a replica holds one
//! open file (its active segment) instead of three, so a broker can host
//! tens of thousands of partitions under the usual open-files limits. After
//! a crash, segments past the recovery point get their indexes rebuilt, and
//! one the flush did not reach is only shorter (entries are sparse hints).
//!
//! - `.index`: 8-byte big-endian entries (u32 offset relative to the segment
//!   base, u32 file position), as Kafka writes them: the offset is the last
//!   offset of the batch starting at that position, so the greatest entry <=
//!   a target is a batch at or before the one holding the target.
//! - `.timeindex`: 12-byte entries (i64 max timestamp so far, u32 relative
//!   offset of the last record covered by that maximum).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{StorageError, io_err};

pub(crate) const OFFSET_ENTRY: usize = 8;
pub(crate) const TIME_ENTRY: usize = 12;

/// Index of the greatest entry whose key is <= `target`; entries are sorted
/// by key.
pub fn floor_index<T>(entries: &[T], target: i64, key: impl Fn(&T) -> i64) -> Option<usize> {
    let n = entries.partition_point(|e| key(e) <= target);
    n.checked_sub(1)
}

/// Index of the greatest entry whose key is strictly < `target`.
pub fn lower_index<T>(entries: &[T], target: i64, key: impl Fn(&T) -> i64) -> Option<usize> {
    let n = entries.partition_point(|e| key(e) < target);
    n.checked_sub(1)
}

fn open_rw(path: &Path, truncate: bool) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(io_err("open index", path))
}

/// Reads a whole index file; `None` if it does not exist.
fn read_all(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read index", path)(e)),
    }
}

/// Writes `bytes` at `at` in the index file; returns the open file.
fn write_tail(path: &Path, bytes: &[u8], at: usize) -> Result<File, StorageError> {
    let file = open_rw(path, false)?;
    file.write_all_at(bytes, at as u64)
        .map_err(io_err("write index", path))?;
    Ok(file)
}

/// Cuts the file to `keep` entries if it holds more.
fn shrink_file(
    path: &Path,
    written: &mut usize,
    keep: usize,
    entry: usize,
) -> Result<(), StorageError> {
    if *written > keep {
        open_rw(path, false)?
            .set_len((keep * entry) as u64)
            .map_err(io_err("truncate index", path))?;
        *written = keep;
    }
    Ok(())
}

pub(crate) struct OffsetIndex {
    path: PathBuf,
    base_offset: i64,
    /// (relative offset, position)
    entries: Vec<(u32, u32)>,
    /// How many of `entries` the file holds.
    written: usize,
}

impl OffsetIndex {
    /// Creates an empty index, discarding any existing file.
    pub(crate) fn create(path: PathBuf, base_offset: i64) -> Result<Self, StorageError> {
        open_rw(&path, true)?;
        Ok(OffsetIndex {
            path,
            base_offset,
            entries: Vec::new(),
            written: 0,
        })
    }

    /// Loads an existing index; `Ok(None)` when it is missing or fails the
    /// sanity checks (entry size, strictly increasing, within `log_size`).
    pub(crate) fn load(
        path: PathBuf,
        base_offset: i64,
        log_size: u64,
    ) -> Result<Option<Self>, StorageError> {
        let Some(bytes) = read_all(&path)? else {
            return Ok(None);
        };
        if bytes.len() % OFFSET_ENTRY != 0 {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_ENTRY);
        for c in bytes.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_be_bytes(c[0..4].try_into().expect("4"));
            let pos = u32::from_be_bytes(c[4..8].try_into().expect("4"));
            if u64::from(pos) >= log_size {
                return Ok(None);
            }
            if let Some(&(prel, ppos)) = entries.last()
                && (rel <= prel || pos <= ppos)
            {
                return Ok(None);
            }
            entries.push((rel, pos));
        }
        Ok(Some(OffsetIndex {
            path,
            base_offset,
            written: entries.len(),
            entries,
        }))
    }

    /// In memory; the file gets it at the next [`Self::sync_handle`].
    pub(crate) fn append(&mut self, offset: i64, position: u32) {
        let rel = (offset - self.base_offset) as u32;
        self.entries.push((rel, position));
    }

    /// Greatest entry with offset <= `offset`, as (absolute offset, position);
    /// (base offset, 0) when there is none.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u32) {
        match floor_index(&self.entries, offset, |e| self.base_offset + i64::from(e.0)) {
            Some(i) => (
                self.base_offset + i64::from(self.entries[i].0),
                self.entries[i].1,
            ),
            None => (self.base_offset, 0),
        }
    }

    pub(crate) fn last_position(&self) -> Option<u32> {
        self.entries.last().map(|e| e.1)
    }

    /// Drops entries for offsets >= `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self
            .entries
            .partition_point(|e| self.base_offset + i64::from(e.0) < offset);
        self.entries.truncate(keep);
        shrink_file(&self.path, &mut self.written, keep, OFFSET_ENTRY)
    }

    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        let (file, path) = self.sync_handle()?;
        file.sync_data()
            .map_err(io_err("fsync offset index", &path))
    }

    /// Writes the entries the file lacks and returns a handle on it, for a
    /// flush to fsync without the log's lock.
    pub(crate) fn sync_handle(&mut self) -> Result<(File, PathBuf), StorageError> {
        let bytes: Vec<u8> = self.entries[self.written..]
            .iter()
            .flat_map(|(rel, pos)| rel.to_be_bytes().into_iter().chain(pos.to_be_bytes()))
            .collect();
        let file = write_tail(&self.path, &bytes, self.written * OFFSET_ENTRY)?;
        self.written = self.entries.len();
        Ok((file, self.path.clone()))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) struct TimeIndex {
    path: PathBuf,
    base_offset: i64,
    /// (timestamp, relative offset)
    entries: Vec<(i64, u32)>,
    /// How many of `entries` the file holds.
    written: usize,
}

impl TimeIndex {
    pub(crate) fn create(path: PathBuf, base_offset: i64) -> Result<Self, StorageError> {
        open_rw(&path, true)?;
        Ok(TimeIndex {
            path,
            base_offset,
            entries: Vec::new(),
            written: 0,
        })
    }

    /// Loads an existing index; `Ok(None)` when missing or insane
    /// (entry size, timestamps strictly increasing, offsets non-decreasing
    /// and below `next_offset`).
    pub(crate) fn load(
        path: PathBuf,
        base_offset: i64,
        next_offset: i64,
    ) -> Result<Option<Self>, StorageError> {
        let Some(bytes) = read_all(&path)? else {
            return Ok(None);
        };
        if bytes.len() % TIME_ENTRY != 0 {
            return Ok(None);
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / TIME_ENTRY);
        for c in bytes.chunks_exact(TIME_ENTRY) {
            let ts = i64::from_be_bytes(c[0..8].try_into().expect("8"));
            let rel = u32::from_be_bytes(c[8..12].try_into().expect("4"));
            if base_offset + i64::from(rel) >= next_offset {
                return Ok(None);
            }
            if let Some(&(pts, prel)) = entries.last()
                && (ts <= pts || rel < prel)
            {
                return Ok(None);
            }
            entries.push((ts, rel));
        }
        Ok(Some(TimeIndex {
            path,
            base_offset,
            written: entries.len(),
            entries,
        }))
    }

    /// Appends (timestamp, offset) if `timestamp` is newer than the last
    /// entry; in memory, as [`OffsetIndex::append`].
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        if timestamp < 0 || self.entries.last().is_some_and(|e| e.0 >= timestamp) {
            return;
        }
        let rel = (offset - self.base_offset) as u32;
        self.entries.push((timestamp, rel));
    }

    /// Greatest entry with timestamp strictly below `ts`, as (timestamp,
    /// absolute offset). Every record up to that offset is older than `ts`.
    pub(crate) fn lookup_before(&self, ts: i64) -> Option<(i64, i64)> {
        lower_index(&self.entries, ts, |e| e.0).map(|i| {
            (
                self.entries[i].0,
                self.base_offset + i64::from(self.entries[i].1),
            )
        })
    }

    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|e| (e.0, self.base_offset + i64::from(e.1)))
    }

    /// Drops entries for offsets >= `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self
            .entries
            .partition_point(|e| self.base_offset + i64::from(e.1) < offset);
        self.entries.truncate(keep);
        shrink_file(&self.path, &mut self.written, keep, TIME_ENTRY)
    }

    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        let (file, path) = self.sync_handle()?;
        file.sync_data().map_err(io_err("fsync time index", &path))
    }

    /// As [`OffsetIndex::sync_handle`].
    pub(crate) fn sync_handle(&mut self) -> Result<(File, PathBuf), StorageError> {
        let bytes: Vec<u8> = self.entries[self.written..]
            .iter()
            .flat_map(|(ts, rel)| ts.to_be_bytes().into_iter().chain(rel.to_be_bytes()))
            .collect();
        let file = write_tail(&self.path, &bytes, self.written * TIME_ENTRY)?;
        self.written = self.entries.len();
        Ok((file, self.path.clone()))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn floor_is_greatest_le(mut keys in proptest::collection::vec(0i64..10_000, 0..200), target in -10i64..10_100) {
            keys.sort_unstable();
            keys.dedup();
            let got = floor_index(&keys, target, |k| *k).map(|i| keys[i]);
            let want = keys.iter().copied().filter(|k| *k <= target).max();
            prop_assert_eq!(got, want);
            let got = lower_index(&keys, target, |k| *k).map(|i| keys[i]);
            let want = keys.iter().copied().filter(|k| *k < target).max();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn offset_index_lookup_matches_model(mut rels in proptest::collection::vec(1u32..100_000, 0..100), target in 0i64..200_000) {
            rels.sort_unstable();
            rels.dedup();
            let dir = tempfile::tempdir().unwrap();
            let base = 1000;
            let mut idx = OffsetIndex::create(dir.path().join("x.index"), base).unwrap();
            for (i, r) in rels.iter().enumerate() {
                idx.append(base + i64::from(*r), (i as u32 + 1) * 10);
            }
            // Entries reach the file at a sync (a flush or roll).
            idx.sync().unwrap();
            let want = rels.iter().enumerate().rev()
                .find(|(_, r)| base + i64::from(**r) <= target)
                .map(|(i, r)| (base + i64::from(*r), (i as u32 + 1) * 10))
                .unwrap_or((base, 0));
            prop_assert_eq!(idx.lookup(target), want);
            // And the file round-trips.
            let loaded = OffsetIndex::load(dir.path().join("x.index"), base, u64::MAX).unwrap().unwrap();
            prop_assert_eq!(loaded.lookup(target), want);
        }
    }

    #[test]
    fn rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.index");
        std::fs::write(&p, [0u8; 7]).unwrap();
        assert!(OffsetIndex::load(p.clone(), 0, 100).unwrap().is_none());
        // Entries not increasing.
        std::fs::write(&p, [0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 4, 0, 0, 0, 10]).unwrap();
        assert!(OffsetIndex::load(p.clone(), 0, 100).unwrap().is_none());
        // Position past the log.
        std::fs::write(&p, [0, 0, 0, 5, 0, 0, 0, 200]).unwrap();
        assert!(OffsetIndex::load(p.clone(), 0, 100).unwrap().is_none());
        assert!(
            OffsetIndex::load(dir.path().join("missing"), 0, 100)
                .unwrap()
                .is_none()
        );
        let t = dir.path().join("a.timeindex");
        let mut ti = TimeIndex::create(t.clone(), 10).unwrap();
        ti.maybe_append(5, 12);
        ti.maybe_append(5, 13); // not newer: skipped
        ti.maybe_append(7, 14);
        assert_eq!(ti.lookup_before(7), Some((5, 12)));
        assert_eq!(ti.lookup_before(5), None);
        ti.sync().unwrap();
        assert!(TimeIndex::load(t.clone(), 10, 15).unwrap().is_some());
        // Offset 14 is past a log ending at 14.
        assert!(TimeIndex::load(t, 10, 14).unwrap().is_none());
    }
}
