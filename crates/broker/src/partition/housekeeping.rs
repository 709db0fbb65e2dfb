//! A replica's upkeep: retention, compaction, DeleteRecords, flushes and
//! their checkpoints' inputs. Nothing here is on the produce or fetch path
//! except the flush a topic's `flush.messages` / `flush.ms` asks for.

use sluice_storage::{CompactionStats, LogConfig, PartitionLog};

use super::Partition;
use crate::error::BrokerError;

impl Partition {
    /// Leader: DeleteRecords. Moves the log start to `offset` (-1: the high
    /// watermark); an offset above the high watermark is OFFSET_OUT_OF_RANGE.
    /// Returns the new log start (Kafka's low watermark).
    pub fn delete_records(&self, offset: i64) -> Result<i64, BrokerError> {
        let mut log = self.log.write();
        self.check_leader(-1)?;
        let hw = self.offsets().hw;
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(BrokerError::DeleteBeyondHighWatermark {
                topic: self.topic.clone(),
                partition: self.partition,
                offset,
                high_watermark: hw,
            });
        }
        self.set_log_start(&mut log, target)
    }

    pub(super) fn set_log_start(
        &self,
        log: &mut PartitionLog,
        offset: i64,
    ) -> Result<i64, BrokerError> {
        let start = log.advance_log_start(offset).map_err(self.storage_err())?;
        self.offsets.send_modify(|o| o.log_start = start);
        Ok(start)
    }

    /// The log directory holding this replica (its parent) and the bytes of
    /// its segments.
    pub fn disk_usage(&self) -> (std::path::PathBuf, u64) {
        let log = self.log.read();
        let dir = log
            .dir()
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        (dir, log.size_bytes())
    }

    /// Deletes old segments by `retention.ms` / `retention.bytes`, keeping
    /// every segment from the oldest pending delayed record on: a delay may
    /// be longer than the retention, and its record must be there when due.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, BrokerError> {
        // The pending set is walked (under the delays mutex, which appends
        // wait for) only when retention has something to delete.
        let log_start = {
            let log = self.log.read();
            if !log.retention_due(now_ms) {
                return Ok(0);
            }
            log.log_start_offset()
        };
        let keep_from = self
            .delays
            .lock()
            .oldest_pending(log_start)
            .map_err(self.delay_err())?;
        let mut log = self.log.write();
        let n = log
            .enforce_retention_keeping(now_ms, keep_from)
            .map_err(self.storage_err())?;
        if n == 0 && keep_from.is_some() {
            tracing::debug!(topic = %self.topic, partition = self.partition, ?keep_from, "retention holds segments with pending delayed records");
        }
        let log_start = log.log_start_offset();
        drop(log);
        if n > 0 {
            self.offsets.send_modify(|o| o.log_start = log_start);
        }
        Ok(n)
    }

    /// One log-cleaner pass (no-op unless `cleanup.policy` includes compact).
    /// The log lock is held only to plan the pass (read) and to swap the
    /// cleaned segments in (write); reading and rewriting segments runs
    /// without it, so produce and fetch continue. Only records below the high
    /// watermark count: an unreplicated record may be truncated and must not
    /// remove the value it replaces. Producer state needs no update: the
    /// cleaner keeps each producer's last batch (see `sluice_storage::cleaner`).
    pub fn compact(&self, now_ms: i64) -> Result<CompactionStats, BrokerError> {
        let err = self.storage_err();
        let hw = self.offsets().hw;
        let Some(job) = self
            .log
            .read()
            .prepare_compaction(now_ms, hw)
            .map_err(&err)?
        else {
            return Ok(CompactionStats::default());
        };
        let cleaned = job.run().map_err(&err)?;
        self.log.write().finish_compaction(cleaned).map_err(err)
    }

    /// Applies the topic's log settings if they changed (after a restart the
    /// log was opened with the broker defaults).
    pub fn set_log_config(&self, config: LogConfig) {
        if self.log.read().config() != &config {
            self.log.write().set_config(config);
        }
    }

    /// Fsyncs what the log holds past its recovery point and snapshots the
    /// producer state; returns the new recovery point. The log lock is held
    /// only to collect the files and to move the recovery point: produce and
    /// fetch never wait behind the disk.
    pub fn flush(&self) -> Result<i64, BrokerError> {
        let _one_at_a_time = self.flushing.lock();
        // The producer state as of the flushed end: both change only under
        // the log's write lock.
        let (pending, producers) = {
            let mut log = self.log.write();
            let pending = log.begin_flush().map_err(self.storage_err())?;
            (pending, self.producers.lock().clone())
        };
        pending.sync().map_err(self.storage_err())?;
        let mut log = self.log.write();
        let flushed = log.finish_flush(pending);
        let recovery_point = log.recovery_point();
        if flushed {
            // Written under the read lock: a truncation (which deletes the
            // snapshot and rebuilds the state) cannot slip in between and
            // have an older state written back over it.
            let log = parking_lot::RwLockWriteGuard::downgrade(log);
            if let Err(e) = producers.write_snapshot(log.dir()) {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "cannot write producer state snapshot");
            }
        } else {
            drop(log);
        }
        if self.is_leader() {
            self.maybe_advance_hw();
        }
        // The timer index's checkpoint goes with the log's flush: a restart
        // replays the log from it.
        let hw = self.offsets().hw;
        if let Err(e) = self.delays.lock().checkpoint(hw) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "cannot checkpoint the timer index");
        }
        Ok(recovery_point)
    }

    /// Whether `flush.messages` / `flush.ms` ask for a flush now.
    pub fn flush_due(&self) -> bool {
        self.log.read().flush_due()
    }

    pub fn recovery_point(&self) -> i64 {
        self.log.read().recovery_point()
    }
}
