//! Log compaction: Kafka's log cleaner for `cleanup.policy=compact`.
//!
//! A pass has three steps, so the broker holds the log lock only briefly:
//!
//! 1. [`PartitionLog::prepare_compaction`] (shared access, quick): picks the
//!    closed segments to clean and groups them, and takes a second handle on
//!    the file of every segment below the bound.
//! 2. [`CompactionJob::run`] (no lock): builds the map key -> latest offset
//!    over the whole log below the bound (the active segment is read, never
//!    rewritten), then writes each group's cleaned segment to `.cleaned`
//!    files and fsyncs them. Closed segments do not change in place, and the
//!    handles keep working if retention unlinks a file meanwhile.
//! 3. [`PartitionLog::finish_compaction`] (exclusive access): drops the
//!    result if the log was truncated or compacted under the job, skips
//!    groups whose segments are gone (retention), and swaps the rest in.
//!
//! # What is kept
//!
//! - For each key, only the record with the highest offset below the bound.
//!   The bound is the caller's (the broker passes the high watermark): a
//!   record that a truncation may still remove must not remove the value it
//!   replaces. Offsets are preserved; readers skip the gaps.
//! - Records without a key stay. Kafka refuses them on compacted topics at
//!   produce time; Sluice does not check, so they are kept as a delete topic
//!   would keep them.
//! - Control batches stay whole. Compressed batches are decompressed,
//!   filtered and compressed again with their own codec.
//! - Tombstones (a key with a null value) that are the latest for their key
//!   stay until `now - max timestamp of their batch > delete.retention.ms`
//!   (the segment's largest timestamp or mtime when the batch has none). This
//!   counts from the write time (LogAppendTime) or the producer's timestamp
//!   (CreateTime), not from the first cleaning as Kafka's KIP-534 delete
//!   horizon does: storing a horizon in the batch means re-encoding every
//!   record's timestamp delta. A tombstone older than that when written may go
//!   at the first pass; the active segment is never cleaned, so consumers that
//!   keep up still see it. Expired tombstones are only removed by a pass,
//!   which runs when enough of the log is dirty (no forced pass for them).
//! - Batches keep their header (base and last offset, producer id and epoch,
//!   base sequence, leader epoch, base timestamp) and lose only records
//!   ([`sluice_records::retain_records`]). A batch left with no records is
//!   dropped, unless it is its producer id's last batch below the bound: that
//!   one stays as an empty batch, as in Kafka, so rebuilding producer state
//!   from the log still finds the producer's epoch and last sequence. Earlier
//!   batches of a producer may go, so a retry of one of those (not the last)
//!   after a restart is refused as out of sequence instead of deduplicated.
//! - Consecutive closed segments are cleaned into one segment named after the
//!   first, taking the next one while the cleaned output so far plus its
//!   original size fits `segment.bytes` (and the index's u32 range), so the
//!   log start offset never moves and small segments merge. A group with
//!   nothing left stays as an empty segment (retention then uses its mtime,
//!   which is set to the newest of the originals').
//!
//! The key map holds every distinct key below the bound (a copy of each),
//! unlike Kafka's fixed-size map of key hashes: memory grows with the number
//! of keys, and no hash collision can drop a record.
//!
//! # Crash safety (Kafka's order)
//!
//! Cleaned files are written and fsynced as `.cleaned`, renamed to `.swap`
//! (indexes first, `.log.swap` last: it is the commit point), the directory
//! is fsynced, the replaced segments' files are deleted, the `.swap` files are
//! renamed to their final names (`.log` last) and the directory is fsynced
//! again. Opening a log finishes what a crash interrupted: `.cleaned` files
//! are deleted (the originals were not touched yet); a `.log.swap` is complete
//! and durable, so the segments whose base offset lies in its offset range
//! are deleted and the swap takes their place; index `.swap` files without
//! their `.log.swap` are deleted (missing indexes are rebuilt).
//!
//! [`PartitionLog::prepare_compaction`]: crate::PartitionLog::prepare_compaction
//! [`PartitionLog::finish_compaction`]: crate::PartitionLog::finish_compaction

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use sluice_records::{
    HEADER_SIZE, MAGIC_V2, RecordBatchHeader, RecordsError, decode_batches, retain_records,
};

use crate::checkpoint::sync_dir;
use crate::error::{StorageError, io_err};
use crate::segment::{CLEANED, LogSegment, SWAP, segment_file};

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments rewritten, and the segments that replaced them.
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records dropped because a later record has the same key.
    pub records_removed: u64,
    /// Latest-for-their-key tombstones dropped after `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Groups cleaned but not swapped in because the log changed meanwhile
    /// (truncation, retention, another pass); the next pass redoes them.
    pub groups_abandoned: usize,
}

impl CompactionStats {
    pub(crate) fn add(&mut self, o: &CompactionStats) {
        self.segments_before += o.segments_before;
        self.segments_after += o.segments_after;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
        self.records_removed += o.records_removed;
        self.tombstones_removed += o.tombstones_removed;
        self.groups_abandoned += o.groups_abandoned;
    }
}

/// One segment as the job sees it.
pub(crate) struct Source {
    pub(crate) base: i64,
    /// Offset after its last batch when the job was prepared.
    pub(crate) next_offset: i64,
    /// Bytes to read: the size when the job was prepared.
    pub(crate) size: u64,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// The segment's largest timestamp (its mtime when batches carry none):
    /// the tombstone clock for batches without a timestamp.
    pub(crate) largest_timestamp: i64,
    pub(crate) modified: Option<SystemTime>,
}

/// The lock-free part of a pass: see the module docs.
pub struct CompactionJob {
    pub(crate) dir: PathBuf,
    pub(crate) index_interval: u32,
    pub(crate) delete_retention_ms: i64,
    pub(crate) now_ms: i64,
    /// Records at or above this offset are neither mapped nor cleaned.
    pub(crate) bound: i64,
    /// Every segment with offsets below the bound, oldest first.
    pub(crate) sources: Vec<Source>,
    /// How many of `sources` (a prefix) are cleaned.
    pub(crate) cleanable: usize,
    /// Largest cleaned segment: `segment.bytes`, and index entries hold u32
    /// positions.
    pub(crate) max_segment_bytes: u64,
    /// The log's generation when prepared; see `finish_compaction`.
    pub(crate) generation: u64,
    /// Base offset of the first segment not cleaned: where the dirty part
    /// starts after this pass.
    pub(crate) clean_end: i64,
}

/// One cleaned segment waiting in `.cleaned` files.
pub(crate) struct CleanedGroup {
    pub(crate) base: i64,
    /// (base offset, size) of the segments it replaces.
    pub(crate) replaces: Vec<(i64, u64)>,
    pub(crate) stats: CompactionStats,
}

/// The result of [`CompactionJob::run`], for [`crate::PartitionLog::finish_compaction`].
/// Dropping it unused deletes its files.
pub struct CleanedSegments {
    pub(crate) dir: PathBuf,
    pub(crate) generation: u64,
    pub(crate) clean_end: i64,
    pub(crate) groups: Vec<CleanedGroup>,
}

impl Drop for CleanedSegments {
    fn drop(&mut self) {
        for g in &self.groups {
            remove_cleaned_files(&self.dir, g.base);
        }
    }
}

/// Key -> offset of its latest record, and producer id -> base offset of
/// its last batch, below the bound.
#[derive(Default)]
struct OffsetMap {
    keys: HashMap<Bytes, i64>,
    producers: HashMap<i64, i64>,
}

/// Cleaned output is appended in chunks of about this size.
const WRITE_CHUNK: usize = 1 << 20;
/// Segments are read in chunks of about this size (more for a larger batch).
const READ_CHUNK: u64 = 1 << 20;

impl CompactionJob {
    /// Builds the key map and writes every group's cleaned segment. On error
    /// nothing is left behind and the log is untouched.
    pub fn run(self) -> Result<CleanedSegments, StorageError> {
        let map = self.build_map()?;
        let mut out = CleanedSegments {
            dir: self.dir.clone(),
            generation: self.generation,
            clean_end: self.clean_end,
            groups: Vec::new(),
        };
        let mut start = 0;
        while start < self.cleanable {
            match self.clean_group(start, &map) {
                Ok((g, next)) => {
                    out.groups.push(g);
                    start = next;
                }
                Err(e) => {
                    remove_cleaned_files(&self.dir, self.sources[start].base);
                    // `out` deletes the groups written so far.
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn build_map(&self) -> Result<OffsetMap, StorageError> {
        let mut map = OffsetMap::default();
        for src in &self.sources {
            for_each_batch(src, |batch| {
                let h = RecordBatchHeader::parse(&batch).expect("whole batch");
                if h.base_offset >= self.bound {
                    return Ok(false);
                }
                if h.producer_id >= 0 {
                    map.producers.insert(h.producer_id, h.base_offset);
                }
                if !filterable(&h) {
                    return Ok(true);
                }
                let decoded = match decode_batches(batch) {
                    Ok(d) => d,
                    // Stored before leaders checked compressed batches:
                    // kept whole, its keys out of the map (less compaction).
                    Err(e) if h.compression() != Some(sluice_records::Compression::None) => {
                        tracing::warn!(base_offset = h.base_offset, error = %e, "compacted topic holds an undecodable compressed batch; keeping it whole");
                        return Ok(true);
                    }
                    Err(e) => return Err(e.into()),
                };
                for b in decoded {
                    for r in b.records {
                        let Some(key) = r.key else { continue };
                        if r.offset >= self.bound {
                            continue;
                        }
                        // Copy new keys: a slice would pin the whole read chunk.
                        match map.keys.get_mut(&key[..]) {
                            Some(latest) => *latest = r.offset,
                            None => {
                                map.keys.insert(Bytes::copy_from_slice(&key), r.offset);
                            }
                        }
                    }
                }
                Ok(true)
            })?;
        }
        Ok(map)
    }

    /// Cleans `sources[start..]` into one segment named after the first,
    /// taking the next segment while the output so far plus its original
    /// size fits (so the result surely does); returns the group and the
    /// index of the next segment.
    fn clean_group(
        &self,
        start: usize,
        map: &OffsetMap,
    ) -> Result<(CleanedGroup, usize), StorageError> {
        let base = self.sources[start].base;
        let mut out = LogSegment::create_cleaned(&self.dir, base, self.index_interval)?;
        let mut stats = CompactionStats {
            segments_after: 1,
            ..CompactionStats::default()
        };
        let mut pending = Vec::new();
        let mut headers = Vec::new();
        let mut end = start;
        while let Some(src) = self.sources[..self.cleanable].get(end) {
            let written = out.size + pending.len() as u64;
            if end > start
                && (written + src.size > self.max_segment_bytes
                    || src.next_offset - base > i64::from(i32::MAX))
            {
                break;
            }
            end += 1;
            stats.segments_before += 1;
            stats.bytes_before += src.size;
            for_each_batch(src, |batch| {
                if let Some(kept) = self.clean_batch(batch, src, map, &mut stats)? {
                    let h = RecordBatchHeader::parse(&kept).expect("whole batch");
                    headers.push((pending.len(), h));
                    pending.extend_from_slice(&kept);
                    if pending.len() >= WRITE_CHUNK {
                        out.append(&pending, &headers, false)?;
                        pending.clear();
                        headers.clear();
                    }
                }
                Ok(true)
            })?;
        }
        if !pending.is_empty() {
            out.append(&pending, &headers, false)?;
        }
        let members = &self.sources[start..end];
        stats.bytes_after = out.size;
        if let Some(t) = members.iter().filter_map(|s| s.modified).max() {
            out.set_modified(t)?;
        }
        // Durable before the rename to `.swap` commits it.
        out.sync()?;
        let group = CleanedGroup {
            base,
            replaces: members.iter().map(|s| (s.base, s.size)).collect(),
            stats,
        };
        Ok((group, end))
    }

    /// The batch to write in place of `batch`, if any.
    fn clean_batch(
        &self,
        batch: Bytes,
        src: &Source,
        map: &OffsetMap,
        stats: &mut CompactionStats,
    ) -> Result<Option<Bytes>, StorageError> {
        let h = RecordBatchHeader::parse(&batch).expect("whole batch");
        if !filterable(&h) {
            return Ok(Some(batch));
        }
        let written = if h.max_timestamp >= 0 {
            h.max_timestamp
        } else {
            src.largest_timestamp
        };
        let tombstones_expired = self.now_ms - written > self.delete_retention_ms;
        let (mut superseded, mut expired) = (0, 0);
        let filtered = retain_records(&batch, |r| {
            let Some(key) = &r.key else {
                return true;
            };
            if map
                .keys
                .get(&key[..])
                .is_some_and(|latest| *latest > r.offset)
            {
                superseded += 1;
                return false;
            }
            if r.value.is_none() && tombstones_expired {
                expired += 1;
                return false;
            }
            true
        });
        let filtered = match filtered {
            Ok(f) => f,
            Err(_) if h.compression() != Some(sluice_records::Compression::None) => {
                return Ok(Some(batch));
            }
            Err(e) => return Err(e.into()),
        };
        stats.records_removed += superseded;
        stats.tombstones_removed += expired;
        let kept = filtered.unwrap_or(batch);
        let left = RecordBatchHeader::parse(&kept)
            .expect("whole batch")
            .records_count;
        let producers_last =
            h.producer_id >= 0 && map.producers.get(&h.producer_id) == Some(&h.base_offset);
        if left == 0 && !producers_last {
            return Ok(None);
        }
        Ok(Some(kept))
    }
}

/// Batches whose records the cleaner can filter.
fn filterable(h: &RecordBatchHeader) -> bool {
    !h.is_control() && h.compression().is_some()
}

/// Calls `f` with each whole batch of `src` (up to its recorded size), in
/// order, until `f` returns false. Reads in chunks; a damaged length is an
/// error (the batches themselves are CRC-checked when decoded).
fn for_each_batch(
    src: &Source,
    mut f: impl FnMut(Bytes) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let read = |pos: u64, len: u64| -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len as usize];
        src.file
            .read_exact_at(&mut buf, pos)
            .map_err(io_err("read segment", &src.path))?;
        Ok(Bytes::from(buf))
    };
    let corrupt = |pos: u64, reason: String| {
        StorageError::CorruptMessage(RecordsError::CorruptMessage {
            position: pos as usize,
            reason: format!("{}: {reason}", src.path.display()),
        })
    };
    let mut pos = 0u64;
    while pos < src.size {
        let mut chunk = read(pos, (src.size - pos).min(READ_CHUNK))?;
        let first = RecordBatchHeader::parse(&chunk)
            .ok_or_else(|| corrupt(pos, "partial batch header".into()))?;
        if first.total_size() > chunk.len() {
            if pos + first.total_size() as u64 > src.size {
                return Err(corrupt(pos, "batch runs past the segment end".into()));
            }
            chunk = read(pos, first.total_size() as u64)?;
        }
        let mut off = 0usize;
        while let Some(h) = RecordBatchHeader::parse(&chunk[off..]) {
            let size = h.total_size();
            if h.magic != MAGIC_V2 || size < HEADER_SIZE {
                return Err(corrupt(
                    pos + off as u64,
                    format!("implausible header {h:?}"),
                ));
            }
            if off + size > chunk.len() {
                break;
            }
            if !f(chunk.slice(off..off + size))? {
                return Ok(());
            }
            off += size;
        }
        if off == 0 {
            return Err(corrupt(pos, "no whole batch".into()));
        }
        pos += off as u64;
    }
    Ok(())
}

fn remove_quietly(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete file", path)(e)),
    }
}

/// Best effort: a leftover is deleted when the log is next opened.
pub(crate) fn remove_cleaned_files(dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex"] {
        let p = segment_file(dir, base, &format!("{ext}{CLEANED}"));
        if let Err(e) = remove_quietly(&p) {
            tracing::warn!(error = %e, "cannot delete cleaned segment file");
        }
    }
}

/// Renames the three files of segment `base` from one suffix to another
/// ("" for the final names).
pub(crate) fn rename_segment_files(
    dir: &Path,
    base: i64,
    from: &str,
    to: &str,
) -> Result<(), StorageError> {
    // The log file last: a `.log.swap` is the commit point, and a `.log`
    // without its `.swap` means the swap finished.
    for ext in ["index", "timeindex", "log"] {
        let src = segment_file(dir, base, &format!("{ext}{from}"));
        let dst = segment_file(dir, base, &format!("{ext}{to}"));
        std::fs::rename(&src, &dst).map_err(io_err("rename segment file", &src))?;
    }
    Ok(())
}

/// Offset after the last whole batch of a segment file; `base` when it has none.
fn scan_end_offset(path: &Path, base: i64) -> Result<i64, StorageError> {
    let file = File::open(path).map_err(io_err("open segment", path))?;
    let size = file.metadata().map_err(io_err("stat segment", path))?.len();
    let mut end = base;
    let mut pos = 0u64;
    let mut buf = [0u8; HEADER_SIZE];
    while pos + HEADER_SIZE as u64 <= size {
        file.read_exact_at(&mut buf, pos)
            .map_err(io_err("read segment", path))?;
        let h = RecordBatchHeader::parse(&buf).expect("HEADER_SIZE bytes");
        let total = h.total_size() as u64;
        if h.magic != MAGIC_V2 || total < HEADER_SIZE as u64 || pos + total > size {
            break;
        }
        end = h.next_offset();
        pos += total;
    }
    Ok(end)
}

/// Finishes or rolls back a compaction a crash interrupted; runs before the
/// log's segments are listed. See the module docs for the rules.
pub(crate) fn recover_interrupted(dir: &Path) -> Result<(), StorageError> {
    let list = || -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err("list log dir", dir))? {
            let entry = entry.map_err(io_err("list log dir", dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    };
    let base_of = |name: &str, ext: &str| -> Option<i64> { name.strip_suffix(ext)?.parse().ok() };
    let names = list()?;
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(CLEANED)) {
        tracing::warn!(dir = %dir.display(), file = name, "deleting unfinished cleaned segment file");
        remove_quietly(&dir.join(name))?;
        changed = true;
    }
    let segments: Vec<i64> = names.iter().filter_map(|n| base_of(n, ".log")).collect();
    let log_swap = format!(".log{SWAP}");
    for (name, base) in names
        .iter()
        .filter_map(|n| Some((n, base_of(n, &log_swap)?)))
    {
        let end = scan_end_offset(&dir.join(name), base)?.max(base + 1);
        tracing::warn!(dir = %dir.display(), base_offset = base, end_offset = end, "completing interrupted segment swap");
        for old in segments.iter().filter(|b| (base..end).contains(*b)) {
            for ext in ["log", "index", "timeindex"] {
                remove_quietly(&segment_file(dir, *old, ext))?;
            }
        }
        for ext in ["index", "timeindex", "log"] {
            let src = segment_file(dir, base, &format!("{ext}{SWAP}"));
            if ext == "log" || src.exists() {
                let dst = segment_file(dir, base, ext);
                std::fs::rename(&src, &dst).map_err(io_err("rename segment file", &src))?;
            }
        }
        changed = true;
    }
    // Index swaps without a `.log.swap`: a crash before the commit point, so
    // the originals (and their indexes) are still in place.
    for name in list()?.iter().filter(|n| n.ends_with(SWAP)) {
        tracing::warn!(dir = %dir.display(), file = name, "deleting stray swap file");
        remove_quietly(&dir.join(name))?;
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
