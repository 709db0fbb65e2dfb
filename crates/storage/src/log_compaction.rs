//! Compaction of one log: planning a pass, running it, and swapping the
//! cleaned segments in (see [`crate::cleaner`] for the cleaning itself).

use crate::checkpoint::sync_dir;
use crate::cleaner::{
    CleanedGroup, CleanedSegments, CompactionJob, CompactionStats, Source, remove_cleaned_files,
    rename_segment_files,
};
use crate::error::StorageError;
use crate::segment::LogSegment;

use super::PartitionLog;

impl PartitionLog {
    /// One whole compaction pass: [`Self::prepare_compaction`], the job, and
    /// [`Self::finish_compaction`], holding `&mut self` throughout. A broker
    /// runs the job without the log lock instead.
    pub fn compact(
        &mut self,
        now_ms: i64,
        max_offset: i64,
    ) -> Result<CompactionStats, StorageError> {
        match self.prepare_compaction(now_ms, max_offset)? {
            None => Ok(CompactionStats::default()),
            Some(job) => {
                let cleaned = job.run()?;
                self.finish_compaction(cleaned)
            }
        }
    }

    /// Plans a compaction pass (see [`crate::cleaner`]); `None` when the policy
    /// does not compact, nothing is cleanable, or less than
    /// `min.cleanable.dirty.ratio` of the cleanable bytes is new since the
    /// last pass. Records at or above `max_offset` (the high watermark) are
    /// neither cleaned nor allowed to supersede older records: a truncation
    /// may still remove them.
    ///
    /// Cleanable segments: the closed ones from the log start up to the first
    /// that holds offsets at or above the bound or, with
    /// `min.compaction.lag.ms`, a record younger than the lag.
    pub fn prepare_compaction(
        &self,
        now_ms: i64,
        max_offset: i64,
    ) -> Result<Option<CompactionJob>, StorageError> {
        let c = &self.config;
        if !c.cleanup_policy.compacts() {
            return Ok(None);
        }
        let bound = max_offset.min(self.log_end_offset());
        let active = self.active().base_offset;
        let mut cleanable: Vec<(i64, &LogSegment)> = Vec::new();
        for (base, seg) in self.segments.range(..active) {
            let young = c.min_compaction_lag_ms > 0
                && seg.largest_timestamp() > now_ms - c.min_compaction_lag_ms;
            if *base >= bound || seg.next_offset > bound || young {
                break;
            }
            cleanable.push((*base, seg));
        }
        let Some(&(last, _)) = cleanable.last() else {
            return Ok(None);
        };
        let clean_end = *self
            .segments
            .range(last + 1..)
            .next()
            .expect("the active segment follows")
            .0;
        let total: u64 = cleanable.iter().map(|(_, s)| s.size).sum();
        let dirty: u64 = cleanable
            .iter()
            .filter(|(b, _)| *b >= self.clean_offset)
            .map(|(_, s)| s.size)
            .sum();
        // Kafka cleans a log whose dirty ratio is strictly above the minimum.
        if total == 0 || dirty as f64 / total as f64 <= c.min_cleanable_dirty_ratio {
            return Ok(None);
        }
        let mut sources = Vec::new();
        for (base, seg) in self.segments.range(..bound) {
            sources.push(Source {
                base: *base,
                next_offset: seg.next_offset,
                size: seg.size,
                file: seg.clone_file()?,
                path: seg.log_path().to_path_buf(),
                largest_timestamp: seg.largest_timestamp(),
                modified: seg.modified(),
            });
        }
        Ok(Some(CompactionJob {
            dir: self.dir.clone(),
            index_interval: c.index_interval_bytes,
            delete_retention_ms: c.delete_retention_ms,
            now_ms,
            bound,
            cleanable: cleanable.len(),
            sources,
            max_segment_bytes: c.segment_bytes.min(u64::from(u32::MAX)),
            generation: self.generation,
            clean_end,
        }))
    }

    /// Swaps cleaned segments in (see [`crate::cleaner`] for the crash-safe
    /// order). Nothing is swapped if the log was truncated or compacted since
    /// the job was prepared; a group is skipped if any segment it replaces
    /// is gone or changed (retention). An I/O error leaves the in-memory log
    /// as it was (the replaced segments stay readable through their open
    /// handles); the files are put right when the log is next opened.
    pub fn finish_compaction(
        &mut self,
        mut cleaned: CleanedSegments,
    ) -> Result<CompactionStats, StorageError> {
        let mut stats = CompactionStats::default();
        if cleaned.generation != self.generation || cleaned.dir != self.dir {
            stats.groups_abandoned = cleaned.groups.len();
            // Dropping `cleaned` deletes its files.
            return Ok(stats);
        }
        let active = self.active().base_offset;
        let mut groups = std::mem::take(&mut cleaned.groups).into_iter();
        while let Some(g) = groups.next() {
            let intact = g.replaces.iter().all(|(base, size)| {
                *base < active && self.segments.get(base).is_some_and(|s| s.size == *size)
            });
            if !intact {
                remove_cleaned_files(&self.dir, g.base);
                stats.groups_abandoned += 1;
                continue;
            }
            if let Err(e) = self.swap_in(&g) {
                remove_cleaned_files(&self.dir, g.base);
                for rest in groups {
                    remove_cleaned_files(&self.dir, rest.base);
                }
                // Segments may be half swapped on disk: no later job may
                // trust what it saw.
                self.generation += 1;
                return Err(e);
            }
            stats.add(&g.stats);
        }
        self.generation += 1;
        if stats.groups_abandoned == 0 {
            self.clean_offset = cleaned.clean_end;
        }
        if stats.segments_before > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments_before = stats.segments_before,
                segments_after = stats.segments_after,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                records_removed = stats.records_removed,
                tombstones_removed = stats.tombstones_removed,
                "compacted log"
            );
        }
        Ok(stats)
    }

    fn swap_in(&mut self, g: &CleanedGroup) -> Result<(), StorageError> {
        use crate::segment::{CLEANED, SWAP};
        rename_segment_files(&self.dir, g.base, CLEANED, SWAP)?;
        // The swap is committed (durably) before any original goes.
        sync_dir(&self.dir)?;
        for (base, _) in &g.replaces {
            self.segments[base].delete_files()?;
        }
        rename_segment_files(&self.dir, g.base, SWAP, "")?;
        sync_dir(&self.dir)?;
        let (seg, _) =
            LogSegment::open(&self.dir, g.base, self.config.index_interval_bytes, false)?;
        for (base, _) in &g.replaces {
            self.segments.remove(base);
        }
        self.segments.insert(g.base, seg);
        Ok(())
    }
}
