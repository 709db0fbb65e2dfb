//! PartitionLog (Kafka's UnifiedLog/LocalLog): the segments of one
//! partition replica plus its leader-epoch cache. Compaction of the log
//! (planning, swapping cleaned segments in) is in `log_compaction.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_records::{BatchIter, RecordBatchHeader};

use crate::checkpoint::{sync_dir, write_atomic};
use crate::config::LogConfig;
use crate::epoch::LeaderEpochCache;
use crate::error::{StorageError, io_err};
use crate::segment::LogSegment;

/// File holding the topic id, as in Kafka.
pub const PARTITION_METADATA: &str = "partition.metadata";

pub(crate) use sluice_types::now_ms;

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// Largest batch max timestamp, -1 if none.
    pub max_timestamp: i64,
    pub num_records: u64,
    /// Bytes written.
    pub valid_bytes: usize,
}

/// A flush prepared under the log's lock and run without it (see
/// [`PartitionLog::begin_flush`]).
pub struct PendingFlush {
    files: Vec<(std::fs::File, PathBuf)>,
    dir: PathBuf,
    end: i64,
    /// Records appended but not flushed when the flush began.
    messages: u64,
    generation: u64,
}

impl PendingFlush {
    /// Fsyncs the files and the directory (new segment files must survive
    /// a crash too). A segment deleted meanwhile is synced harmlessly.
    pub fn sync(&self) -> Result<(), StorageError> {
        for (file, path) in &self.files {
            file.sync_data().map_err(io_err("fsync", path))?;
        }
        sync_dir(&self.dir)
    }
}

/// The log of one partition replica: a directory of segments.
///
/// Not internally synchronized: the broker wraps each log in a mutex, and
/// `read` takes `&self` so a read-write lock also works.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Keyed by base offset; never empty, the last one is active.
    segments: BTreeMap<i64, LogSegment>,
    log_start_offset: i64,
    recovery_point: i64,
    epochs: LeaderEpochCache,
    topic_id: Option<String>,
    unflushed_messages: u64,
    last_flush_ms: i64,
    /// Where the part not compacted yet starts (Kafka's cleaner checkpoint,
    /// kept in memory only: after a restart the whole log counts as dirty,
    /// which costs one extra pass).
    clean_offset: i64,
    /// Bumped by every change that invalidates a compaction job prepared
    /// earlier: truncation, and a compaction swap.
    generation: u64,
}

impl PartitionLog {
    /// Opens or creates the partition directory, recovering segments after
    /// `recovery_point`.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        recovery_point: i64,
    ) -> Result<PartitionLog, StorageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err("create log dir", &dir))?;
        crate::cleaner::recover_interrupted(&dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("list log dir", &dir))? {
            let entry = entry.map_err(io_err("list log dir", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(base) = stem.parse::<i64>() else {
                continue;
            };
            match ext {
                "log" => bases.push(base),
                "index" | "timeindex" if !dir.join(format!("{stem}.log")).exists() => {
                    tracing::warn!(file = %entry.path().display(), "deleting index without a segment");
                    std::fs::remove_file(entry.path())
                        .map_err(io_err("delete orphan index", entry.path()))?;
                }
                _ => {}
            }
        }
        bases.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut recovered_any = false;
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            // A segment needs recovery if it may hold data past the recovery
            // point: the last one, or one whose successor starts after it.
            let recover = bases.get(i + 1).is_none_or(|next| *next > recovery_point);
            let (seg, truncated) =
                LogSegment::open(&dir, base, config.index_interval_bytes, recover)?;
            recovered_any |= recover;
            segments.insert(base, seg);
            if truncated {
                for later in &bases[i + 1..] {
                    tracing::warn!(dir = %dir.display(), base_offset = later, "deleting segment after a corrupt one");
                    for ext in ["log", "index", "timeindex"] {
                        let p = crate::segment::segment_file(&dir, *later, ext);
                        if p.exists() {
                            std::fs::remove_file(&p).map_err(io_err("delete segment file", &p))?;
                        }
                    }
                }
                break;
            }
            i += 1;
        }
        if segments.is_empty() {
            segments.insert(0, LogSegment::create(&dir, 0, config.index_interval_bytes)?);
        }
        let log_start_offset = *segments.keys().next().expect("non-empty");
        let topic_id = read_topic_id(&dir)?;
        let epochs = LeaderEpochCache::load(&dir)?;
        let mut log = PartitionLog {
            dir,
            config,
            segments,
            log_start_offset,
            recovery_point: recovery_point.max(log_start_offset),
            epochs,
            topic_id,
            unflushed_messages: 0,
            last_flush_ms: now_ms(),
            clean_offset: log_start_offset,
            generation: 0,
        };
        // Epochs past the recovered end describe data that no longer exists.
        let end = log.log_end_offset();
        log.epochs.truncate_from_end(end)?;
        log.epochs.truncate_from_start(log.log_start_offset)?;
        if recovered_any {
            // What recovery validated (and possibly truncated) becomes durable,
            // so the recovery point can move to the log end.
            log.flush()?;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings: a topic config change, or the topic's overrides
    /// once known (a restart opens every log with the broker defaults).
    /// Existing segments keep their index interval.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first (the last is active).
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    pub fn topic_id(&self) -> Option<&str> {
        self.topic_id.as_deref()
    }

    fn active(&self) -> &LogSegment {
        self.segments.values().next_back().expect("never empty")
    }

    fn active_mut(&mut self) -> &mut LogSegment {
        self.segments.values_mut().next_back().expect("never empty")
    }

    /// Leader append: validates every batch, assigns offsets from the log
    /// end, stamps `leader_epoch`, and appends. All-or-nothing. `batches` is
    /// not modified: the new base offsets and epoch go to disk through the
    /// segment's stamped write (see [`LogSegment::append`]).
    pub fn append_as_leader(
        &mut self,
        batches: impl AsRef<[u8]>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, StorageError> {
        let batches = batches.as_ref();
        let headers = validate_all(batches, false)?;
        if headers.is_empty() {
            return Err(StorageError::InvalidRecord {
                reason: "produce request holds no record batches".into(),
            });
        }
        for (_, h) in &headers {
            if h.total_size() > self.config.max_message_bytes as usize {
                return Err(StorageError::MessageTooLarge {
                    size: h.total_size(),
                    max: self.config.max_message_bytes,
                });
            }
            // Offsets are assigned from the header, so the batch must be dense.
            if h.records_count == 0
                || i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1
            {
                return Err(StorageError::InvalidRecord {
                    reason: format!(
                        "batch has {} records but last offset delta {}",
                        h.records_count, h.last_offset_delta
                    ),
                });
            }
        }
        let mut next = self.log_end_offset();
        let mut assigned = Vec::with_capacity(headers.len());
        for (pos, h) in headers {
            let h = RecordBatchHeader {
                base_offset: next,
                partition_leader_epoch: leader_epoch,
                ..h
            };
            next = h.next_offset();
            assigned.push((pos, h));
        }
        self.append_validated(batches, &assigned, true)
    }

    /// Follower append: offsets are kept; the first batch must start at or
    /// after the log end offset (after it when compaction on the leader
    /// removed the batches in between, as Kafka allows). A trailing partial
    /// batch (as fetches may return) is ignored.
    pub fn append_as_follower(&mut self, batches: Bytes) -> Result<AppendInfo, StorageError> {
        let headers = validate_all(&batches, true)?;
        let end = self.log_end_offset();
        let Some((_, first)) = headers.first() else {
            return Ok(AppendInfo {
                first_offset: end,
                last_offset: end - 1,
                max_timestamp: -1,
                num_records: 0,
                valid_bytes: 0,
            });
        };
        if first.base_offset < end {
            return Err(StorageError::OffsetMismatch {
                expected: end,
                actual: first.base_offset,
            });
        }
        let mut next = end;
        for (_, h) in &headers {
            if h.base_offset < next {
                return Err(StorageError::InvalidRecord {
                    reason: format!(
                        "batch base offset {} overlaps the previous batch ending at {}",
                        h.base_offset,
                        next - 1
                    ),
                });
            }
            next = h.next_offset();
        }
        self.append_validated(&batches, &headers, false)
    }

    /// `stamp`: see [`LogSegment::append`].
    fn append_validated(
        &mut self,
        data: &[u8],
        batches: &[(usize, RecordBatchHeader)],
        stamp: bool,
    ) -> Result<AppendInfo, StorageError> {
        let (last_pos, last) = batches.last().expect("non-empty");
        let valid_bytes = last_pos + last.total_size();
        let data = &data[..valid_bytes];
        let first_offset = batches[0].1.base_offset;
        let last_offset = last.last_offset();
        let max_timestamp = batches
            .iter()
            .map(|b| b.1.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.maybe_roll(valid_bytes as u64, first_offset, last_offset, max_timestamp)?;
        for (_, h) in batches {
            if self
                .epochs
                .latest_epoch()
                .is_none_or(|e| h.partition_leader_epoch > e)
            {
                self.epochs
                    .assign(h.partition_leader_epoch, h.base_offset)?;
            }
        }
        // An epoch is on disk before its first record (an epoch a leader
        // was elected in stays in memory until then: see
        // `LeaderEpochCache::assign`).
        self.epochs.persist_if_dirty()?;
        self.active_mut().append(data, batches, stamp)?;
        let num_records: u64 = batches.iter().map(|b| b.1.records_count as u64).sum();
        self.unflushed_messages += num_records;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp,
            num_records,
            valid_bytes,
        })
    }

    /// Rolls a new active segment when the append would overflow it, when
    /// its first batch is older than `segment_ms`, or when relative offsets
    /// would overflow the index's u32.
    fn maybe_roll(
        &mut self,
        size: u64,
        first_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
    ) -> Result<(), StorageError> {
        let seg = self.active();
        if seg.size == 0 {
            return Ok(());
        }
        let full = seg.size + size > self.config.segment_bytes;
        let waited = match seg.first_batch_timestamp {
            Some(t) if t >= 0 && max_timestamp >= 0 => max_timestamp - t,
            _ => now_ms() - seg.created_ms,
        };
        let old = waited > self.config.segment_ms;
        // Index entries hold u32 relative offsets and positions.
        let overflow = last_offset - seg.base_offset > i64::from(i32::MAX)
            || seg.size + size > u64::from(u32::MAX);
        if full || old || overflow {
            self.roll(first_offset)?;
        }
        Ok(())
    }

    /// Starts a new active segment at `base_offset`.
    fn roll(&mut self, base_offset: i64) -> Result<(), StorageError> {
        self.active_mut().seal_time_index()?;
        let seg = LogSegment::create(&self.dir, base_offset, self.config.index_interval_bytes)?;
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled new segment");
        self.segments.insert(base_offset, seg);
        Ok(())
    }

    /// Reads whole batches starting with the one containing `offset`, from
    /// one segment, up to `max_bytes` (at least one batch if `min_one`),
    /// never returning a batch whose first offset is >= `max_offset`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Result<Bytes, StorageError> {
        let log_end = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset == log_end || offset >= max_offset {
            return Ok(Bytes::new());
        }
        // Start in the segment containing `offset`; move on if it ends earlier
        // (an empty segment or a gap).
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.log_start_offset, |(b, _)| *b);
        for seg in self.segments.range(first..).map(|(_, s)| s) {
            if let Some(bytes) = seg.read(offset, max_bytes, max_offset, min_one)? {
                return Ok(bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// First offset whose timestamp >= `ts`, with that record's timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        for seg in self.segments.values() {
            if seg.size == 0 || seg.max_timestamp < ts {
                continue;
            }
            if let Some(hit) = seg.find_offset_by_timestamp(ts)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// KIP-101: (largest epoch <= `epoch`, end offset of that epoch); None if
    /// `epoch` is newer than anything known (or the cache is empty).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The (epoch, start offset) entries of the leader-epoch cache.
    pub fn epoch_entries(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }

    pub fn assign_epoch_start(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        self.epochs.assign(epoch, start_offset).map(|_| ())
    }

    /// Drops everything at offsets >= `offset` (whole batches: a batch
    /// containing `offset` goes too). Returns whether records were removed.
    /// Epochs starting at or after the resulting log end go in any case
    /// (Kafka's `truncateTo`): a replica that led an epoch without writing
    /// anything must not keep it, or it diverges from every later leader.
    pub fn truncate_to(&mut self, offset: i64) -> Result<bool, StorageError> {
        if offset >= self.log_end_offset() {
            let end = self.log_end_offset();
            self.epochs.truncate_from_end(end)?;
            return Ok(false);
        }
        if offset <= self.log_start_offset {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(true);
        }
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if self.segments.len() == 1 {
                break;
            }
            let seg = self.segments.remove(&base).expect("listed");
            seg.delete()?;
        }
        self.generation += 1;
        self.active_mut().truncate_to(offset)?;
        let end = self.log_end_offset();
        self.epochs.truncate_from_end(end)?;
        self.recovery_point = self.recovery_point.min(end);
        Ok(true)
    }

    /// Deletes every segment and restarts the log empty at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        self.generation += 1;
        self.clean_offset = offset;
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.delete()?;
        }
        let seg = LogSegment::create(&self.dir, offset, self.config.index_interval_bytes)?;
        self.segments.insert(offset, seg);
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.epochs.clear()
    }

    /// DeleteRecords: moves the log start up to `offset` (at most the log
    /// end). Segments wholly below it are deleted; reads below it are out of
    /// range, though the batch holding `offset` stays on disk. Returns the
    /// log start, which never moves back.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<i64, StorageError> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        // A segment is wholly below `offset` when the next one starts at or
        // before it; the active segment always stays.
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for pair in bases.windows(2) {
            if pair[1] > offset {
                break;
            }
            let seg = self.segments.remove(&pair[0]).expect("listed");
            tracing::info!(dir = %self.dir.display(), base_offset = pair[0], "deleting segment below the new log start");
            seg.delete()?;
        }
        self.generation += 1;
        self.log_start_offset = offset;
        self.clean_offset = self.clean_offset.max(offset);
        self.recovery_point = self.recovery_point.max(offset);
        self.epochs.truncate_from_start(offset)?;
        Ok(offset)
    }

    /// Deletes whole old segments by time and by size, never the active one;
    /// returns how many were deleted. Does nothing unless `cleanup.policy`
    /// includes delete.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.enforce_retention_keeping(now_ms, None)
    }

    /// Whether retention would delete the oldest segment now (by time or
    /// size, ignoring what [`Self::enforce_retention_keeping`] keeps).
    pub fn retention_due(&self, now_ms: i64) -> bool {
        if !self.config.cleanup_policy.deletes() || self.segments.len() < 2 {
            return false;
        }
        let first = self.segments.values().next().expect("non-empty");
        let by_time = self.config.retention_ms >= 0
            && now_ms - first.largest_timestamp() > self.config.retention_ms;
        let by_size = self.config.retention_bytes >= 0
            && self.size_bytes() as i64 - self.config.retention_bytes >= first.size as i64;
        by_time || by_size
    }

    /// [`Self::enforce_retention`], except that no segment holding an offset
    /// at or above `keep_from` is deleted (a pending delayed record there
    /// must stay until it is released).
    pub fn enforce_retention_keeping(
        &mut self,
        now_ms: i64,
        keep_from: Option<i64>,
    ) -> Result<usize, StorageError> {
        if !self.config.cleanup_policy.deletes() {
            return Ok(0);
        }
        // The oldest segment may go only if the next one starts at or below
        // `keep_from`: then every offset it holds is below it.
        let held = |segments: &BTreeMap<i64, LogSegment>| {
            keep_from.is_some_and(|k| segments.keys().nth(1).is_some_and(|next| *next > k))
        };
        let mut deleted = 0;
        if self.config.retention_ms >= 0 {
            while self.segments.len() > 1 && !held(&self.segments) {
                let first = self.segments.values().next().expect("non-empty");
                if now_ms - first.largest_timestamp() <= self.config.retention_ms {
                    break;
                }
                self.delete_oldest_segment("time")?;
                deleted += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            while self.segments.len() > 1 && !held(&self.segments) {
                let first = self.segments.values().next().expect("non-empty");
                if excess < first.size as i64 {
                    break;
                }
                excess -= first.size as i64;
                self.delete_oldest_segment("size")?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            // Never back: DeleteRecords may have moved it inside this segment.
            let first = *self.segments.keys().next().expect("non-empty");
            self.log_start_offset = self.log_start_offset.max(first);
            self.recovery_point = self.recovery_point.max(self.log_start_offset);
            self.epochs.truncate_from_start(self.log_start_offset)?;
        }
        Ok(deleted)
    }

    fn delete_oldest_segment(&mut self, reason: &'static str) -> Result<(), StorageError> {
        let (base, seg) = self.segments.pop_first().expect("non-empty");
        tracing::info!(dir = %self.dir.display(), base_offset = base, reason, "deleting segment for retention");
        seg.delete()
    }

    /// Whether `flush.messages` or `flush.ms` asks for a flush now. The
    /// caller flushes (see [`Self::begin_flush`]): an append never waits for
    /// the disk while the log is locked.
    pub fn flush_due(&self) -> bool {
        let by_count = self
            .config
            .flush_messages
            .is_some_and(|n| self.unflushed_messages >= n);
        let by_time = self
            .config
            .flush_ms
            .is_some_and(|ms| now_ms() - self.last_flush_ms >= ms as i64);
        by_count || by_time
    }

    /// Fsyncs segments and indexes holding data past the recovery point,
    /// then moves the recovery point to the log end.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        let pending = self.begin_flush()?;
        pending.sync()?;
        self.finish_flush(pending);
        Ok(())
    }

    /// The first step of a flush that does not hold the log's lock while it
    /// waits for the disk: second handles on every file holding data past
    /// the recovery point, and the log end they cover. Call
    /// [`PendingFlush::sync`] without the lock, then [`Self::finish_flush`].
    pub fn begin_flush(&mut self) -> Result<PendingFlush, StorageError> {
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        // An epoch elected without records yet (see `LeaderEpochCache::assign`):
        // rare, and the only fsync a flush does under the log lock.
        self.epochs.persist_if_dirty()?;
        let mut files = Vec::new();
        for seg in self.segments.range_mut(from..).map(|(_, s)| s) {
            seg.sync_handles(&mut files)?;
        }
        Ok(PendingFlush {
            files,
            dir: self.dir.clone(),
            end: self.log_end_offset(),
            messages: self.unflushed_messages,
            generation: self.generation,
        })
    }

    /// After a successful [`PendingFlush::sync`]: moves the recovery point to
    /// what `flushed` covered and counts those records as flushed, unless the
    /// log was truncated or compacted meanwhile (the next flush covers it).
    /// Returns whether it did.
    pub fn finish_flush(&mut self, flushed: PendingFlush) -> bool {
        if flushed.generation != self.generation {
            return false;
        }
        self.recovery_point = self.recovery_point.max(flushed.end);
        self.unflushed_messages = self.unflushed_messages.saturating_sub(flushed.messages);
        self.last_flush_ms = now_ms();
        true
    }

    /// Whether a flush policy (`flush.messages` / `flush.ms`) is set and
    /// `offset` is not flushed yet: a producer's retry of it waits for a
    /// flush too.
    pub fn awaits_flush(&self, offset: i64) -> bool {
        (self.config.flush_messages.is_some() || self.config.flush_ms.is_some())
            && offset >= self.recovery_point
    }

    /// Flushes and closes.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.flush()
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_err("delete log dir", &dir))
    }

    /// Writes `partition.metadata` with the topic id.
    pub fn set_topic_id(&mut self, id: &str) -> Result<(), StorageError> {
        write_atomic(
            &self.dir.join(PARTITION_METADATA),
            &format!("version: 0\ntopic_id: {id}\n"),
        )?;
        self.topic_id = Some(id.to_string());
        Ok(())
    }
}

fn read_topic_id(dir: &Path) -> Result<Option<String>, StorageError> {
    let path = dir.join(PARTITION_METADATA);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read partition metadata", &path)(e)),
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .map(|id| id.trim().to_string()))
}

/// Validates every batch; with `allow_partial_tail` a truncated last batch
/// is dropped instead of failing.
fn validate_all(
    buf: &[u8],
    allow_partial_tail: bool,
) -> Result<Vec<(usize, RecordBatchHeader)>, StorageError> {
    let mut out = Vec::new();
    for item in BatchIter::new(buf) {
        match item {
            Ok(v) => out.push(v),
            Err(e) if allow_partial_tail && e.is_truncated() => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

#[path = "log_compaction.rs"]
mod compaction;

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
