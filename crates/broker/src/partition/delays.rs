//! The replica's delayed records (issue 14, `docs/delayed-delivery.md`):
//! its timer index, fed every batch the log takes, in log order, on the
//! leader and on followers alike, so a new leader has one ready.
//!
//! Most partitions never hold a delayed record: until one does, there is no
//! index and a batch costs a header check. The index directory is created
//! before the first batch holding one is written, so a restart that finds no
//! directory knows the log holds none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_delay::batch::{
    Plan, Policy, Seen, cancel_batch, envelopes_in, plan, release_batch, scan,
};
use sluice_delay::{DelayError, Entry, Envelope, Summary, TimerIndex};
use sluice_records::{RecordBatchHeader, batch_headers};
use sluice_storage::PartitionLog;

use super::Partition;
use crate::error::BrokerError;

/// The index directory inside the partition's log directory.
pub const INDEX_DIR: &str = "delay-index";

pub(crate) struct Delays {
    dir: PathBuf,
    index: Option<TimerIndex>,
    /// The index could not be built or fed: what is pending is unknown, so
    /// retention keeps everything until a rebuild succeeds.
    degraded: bool,
}

impl Delays {
    /// Opens the index if this replica ever held a delayed record, and
    /// replays the log from where its checkpoint says. A damaged index is
    /// rebuilt from the whole log.
    pub fn open(log: &PartitionLog, hw: i64) -> Delays {
        let dir = log.dir().join(INDEX_DIR);
        let mut d = Delays {
            dir,
            index: None,
            degraded: false,
        };
        if d.dir.exists()
            && let Err(e) = d.load(log, hw)
        {
            tracing::warn!(dir = %d.dir.display(), error = %e, "timer index unreadable; rebuilding it from the log");
            d.rebuild(log, hw);
        }
        d
    }

    fn load(&mut self, log: &PartitionLog, hw: i64) -> Result<(), DelayError> {
        let mut index = TimerIndex::open(&self.dir)?;
        if index.replay_from() > log.log_end_offset() {
            // The log lost a tail the index had sealed (an unclean stop
            // before the page cache reached the disk): start over.
            return Err(DelayError::CorruptIndex {
                path: self.dir.display().to_string(),
                reason: format!(
                    "sealed through {}, past the log end {}",
                    index.replay_from(),
                    log.log_end_offset()
                ),
            });
        }
        let from = index.replay_from().max(log.log_start_offset());
        replay(log, &mut index, from)?;
        index.commit(hw);
        self.index = Some(index);
        self.degraded = false;
        Ok(())
    }

    /// Forgets the index and builds it again from the whole log (after the
    /// log was emptied and restarted, or when it cannot be trusted).
    pub fn rebuild(&mut self, log: &PartitionLog, hw: i64) {
        // A replica that never held a delayed record has nothing to rebuild
        // (and must not start an index for every partition it restarts).
        if self.index.is_none() && !self.dir.exists() {
            return;
        }
        self.index = None;
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Err(e) = self.load(log, hw) {
            // Delayed records of this replica stay pending until a restart
            // or a truncation rebuilds the index again: say so loudly.
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot rebuild the timer index; retention keeps this partition's segments until it can");
            self.degraded = true;
        }
    }

    /// Before `batches` are written: creates the index when they hold the
    /// replica's first control batch (a possible delayed record).
    pub fn prepare(&mut self, batches: &[u8]) -> Result<(), DelayError> {
        if self.index.is_some() || !batch_headers(batches).any(|h| h.is_control()) {
            return Ok(());
        }
        let index = TimerIndex::open(&self.dir)?;
        sync_parent(&self.dir)?;
        self.index = Some(index);
        Ok(())
    }

    /// After `batches` were written at the offsets in `placed` (one header
    /// per batch, in order, with its base offset as stored; `batches` may
    /// still carry the producer's): what they mean to the index.
    pub fn observe(
        &mut self,
        batches: &[u8],
        placed: &[RecordBatchHeader],
        hw: i64,
    ) -> Result<(), DelayError> {
        let Some(index) = self.index.as_mut() else {
            return Ok(());
        };
        let mut pos = 0;
        for h in placed {
            let end = pos + h.total_size();
            match scan(&batches[pos..end], h.base_offset) {
                Ok(seen) => apply(index, &seen),
                Err(e) => {
                    // The index misses what this batch meant.
                    self.degraded = true;
                    return Err(e);
                }
            }
            pos = end;
        }
        index.commit(hw);
        Ok(())
    }

    /// Seals and forgets in the background (`TimerIndex::upkeep`).
    pub fn upkeep(&mut self) -> Result<(), DelayError> {
        match self.index.as_mut() {
            Some(index) => index.upkeep(),
            None => Ok(()),
        }
    }

    /// The log was cut back to `offset` (or emptied and restarted there).
    pub fn truncated(&mut self, log: &PartitionLog, offset: i64, hw: i64) {
        let Some(index) = self.index.as_mut() else {
            return;
        };
        if index.truncate(offset).is_err() {
            self.rebuild(log, hw);
        }
    }

    /// Seals what is committed and writes the checkpoint (upkeep).
    pub fn checkpoint(&mut self, hw: i64) -> Result<(), DelayError> {
        match self.index.as_mut() {
            Some(index) => {
                index.commit(hw);
                index.checkpoint()
            }
            None => Ok(()),
        }
    }

    pub fn pending(&self) -> usize {
        self.index.as_ref().map_or(0, TimerIndex::pending)
    }

    /// The smallest pending offset at or above `log_start` (`None`: nothing
    /// pending); `log_start` itself while the index is degraded.
    pub fn oldest_pending(&self, log_start: i64) -> Result<Option<i64>, DelayError> {
        if self.degraded {
            return Ok(Some(log_start));
        }
        match &self.index {
            Some(i) if i.pending() > 0 => i.oldest_pending(log_start),
            _ => Ok(None),
        }
    }

    /// Index entries held in memory (the rest are in sorted runs on disk).
    pub fn in_memory(&self) -> usize {
        self.index.as_ref().map_or(0, TimerIndex::in_memory)
    }

    /// Pending records by when they fall due (`None`: this replica never
    /// held one).
    pub fn summary(&self, now_ms: i64) -> Result<Option<Summary>, DelayError> {
        self.index.as_ref().map(|i| i.summary(now_ms)).transpose()
    }

    /// Pending entries due at `now_ms`, in release order.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Entry>, DelayError> {
        match &self.index {
            Some(index) => index.due(now_ms, limit),
            None => Ok(Vec::new()),
        }
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.index.is_some()
    }
}

#[cfg(test)]
mod tests;

/// Records taken at release from a log that no longer has them (a segment
/// deleted by retention before they were due; carrying them forward is not
/// built yet): marked done, as if released long ago.
const GONE: i64 = -1;

/// Records released (or dropped) per step: one release batch.
pub const RELEASE_BATCH: usize = 2_000;

impl Delays {
    fn is_done(&self, id: i64) -> bool {
        self.index.as_ref().is_some_and(|i| i.is_done(id))
    }

    fn is_pending(&self, id: i64) -> Result<bool, DelayError> {
        match &self.index {
            Some(i) => i.is_pending(id),
            None => Ok(false),
        }
    }

    fn mark_gone(&mut self, ids: &[i64]) {
        if let Some(index) = self.index.as_mut() {
            for id in ids {
                index.mark_done(*id, GONE);
            }
        }
    }
}

impl Partition {
    pub(super) fn delay_err(&self) -> impl Fn(sluice_delay::DelayError) -> BrokerError + '_ {
        |source| BrokerError::DelayIndex {
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        }
    }

    /// Feeds the timer index what was just written. A failure here does not
    /// undo the append: it is logged, and the index is rebuilt from the log
    /// at the next start.
    pub(super) fn observe_delays(
        &self,
        delays: &mut Delays,
        batches: &[u8],
        placed: &[sluice_records::RecordBatchHeader],
    ) {
        if let Err(e) = delays.observe(batches, placed, self.offsets().hw) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "timer index not updated");
        }
    }

    /// Pending delayed records on this replica.
    pub fn delays_pending(&self) -> usize {
        self.delays.lock().pending()
    }

    /// Timer index entries this replica holds in memory.
    pub fn delays_in_memory(&self) -> usize {
        self.delays.lock().in_memory()
    }

    /// The produce path's rewrite of batches that ask for delays (`asks`:
    /// per batch, whether a record names one); `None` when nothing changes.
    pub(super) fn plan_delays(
        &self,
        batches: &[u8],
        headers: &[RecordBatchHeader],
        asks: &[bool],
        policy: Policy,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        if let Some((delay_ms, asked_by)) = policy.out_of_range {
            return Err(BrokerError::InvalidDelay {
                topic: self.topic.clone(),
                partition: self.partition,
                source: DelayError::OutOfRange {
                    asked_by,
                    delay_ms,
                    min_ms: policy.limits.min_ms,
                    max_ms: policy.limits.max_ms,
                },
            });
        }
        if policy.default_ms <= 0 && !asks.iter().any(|a| *a) {
            return Ok(None);
        }
        // What the topic's log settings add, read here (only for batches
        // that ask for a delay), not on every produce.
        let mut policy = policy;
        {
            let log = self.log.read();
            let config = log.config();
            // Delays may outlast `retention.ms`: retention keeps the segments
            // holding pending records (see `enforce_retention`).
            if config.cleanup_policy != sluice_storage::CleanupPolicy::Delete {
                policy.refused = Some(
                    "it is compacted (compaction would drop released records and keep pending ones)",
                );
            }
        }
        let mut out = Vec::with_capacity(batches.len() + 256);
        let mut pos = 0;
        for (h, asks) in headers.iter().zip(asks) {
            let batch = &batches[pos..pos + h.total_size()];
            pos += h.total_size();
            let planned =
                plan(batch, *asks, now_ms, policy).map_err(|source| BrokerError::InvalidDelay {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    source,
                })?;
            match planned {
                Plan::Keep => out.extend_from_slice(batch),
                Plan::Rewrite(parts) => parts.iter().for_each(|p| out.extend_from_slice(p)),
            }
        }
        Ok(Some(out))
    }

    /// Leader: appends the records due at `now_ms` (at most
    /// [`RELEASE_BATCH`], and under the topic's `max.message.bytes`) as one
    /// release batch. Returns how many were released or dropped; 0 when
    /// nothing was due or this replica does not lead. The only writer of
    /// releases for the partition: the broker's release task calls it for one
    /// partition at a time.
    pub fn release_due(&self, now_ms: i64) -> Result<usize, BrokerError> {
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Ok(0);
        }
        let due = self
            .delays
            .lock()
            .due(now_ms, RELEASE_BATCH)
            .map_err(self.delay_err())?;
        if due.is_empty() {
            return Ok(0);
        }
        let max_bytes = self.log.read().config().max_message_bytes as usize;
        let budget = (max_bytes / 4 * 3).max(1);
        let mut found: HashMap<i64, Envelope> = HashMap::new();
        let mut released = Vec::with_capacity(due.len());
        let mut gone = Vec::new();
        let mut bytes = 0;
        for e in &due {
            if !found.contains_key(&e.offset) {
                // One batch at a time, the lock taken per read: appends go on.
                let log = self.log.read();
                if e.offset >= log.log_start_offset() {
                    let data = log
                        .read(e.offset, 1, log.log_end_offset(), true)
                        .map_err(self.storage_err())?;
                    drop(log);
                    found.extend(envelopes_in(&data).map_err(self.delay_err())?);
                }
            }
            match found.remove(&e.offset) {
                Some(env) => {
                    let size = env.record.value.as_ref().map_or(0, |v| v.len())
                        + env.record.key.as_ref().map_or(0, |k| k.len())
                        + 128;
                    if !released.is_empty() && bytes + size > budget {
                        break;
                    }
                    bytes += size;
                    released.push((e.offset, env));
                }
                None => gone.push(e.offset),
            }
        }
        let mut log = self.log.write();
        // Leadership may have moved away and back meanwhile (another leader
        // released some of these, and this replica has that release now).
        let now_role = self.role.read().clone();
        if now_role.leader != self.broker_id || now_role.leader_epoch != role.leader_epoch {
            return Ok(0);
        }
        let mut delays = self.delays.lock();
        if !released.is_empty() {
            let batch = release_batch(&released).map_err(self.delay_err())?;
            match self.append_own(&mut log, &mut delays, &batch, role.leader_epoch) {
                Ok(()) => {
                    metrics::counter!("sluice_delayed_released_total", "topic" => self.topic.clone())
                        .increment(released.len() as u64);
                    let lateness = metrics::histogram!("sluice_delayed_release_lateness_seconds");
                    for (_, env) in &released {
                        lateness.record((now_ms - env.due_ms).max(0) as f64 / 1000.0);
                    }
                }
                // One record too large to release alone: it would block every
                // later one. Dropped, loudly.
                Err(sluice_storage::StorageError::MessageTooLarge { .. })
                    if released.len() == 1 =>
                {
                    gone.push(released[0].0);
                    released.clear();
                }
                Err(e) => return Err(self.storage_err()(e)),
            }
        }
        if !gone.is_empty() {
            tracing::warn!(topic = %self.topic, partition = self.partition, records = gone.len(), "delayed records dropped at release: gone from the log (retention) or unreadable");
            metrics::counter!("sluice_delayed_dropped_total", "topic" => self.topic.clone())
                .increment(gone.len() as u64);
            delays.mark_gone(&gone);
        }
        let leo = log.log_end_offset();
        drop(delays);
        drop(log);
        self.offsets.send_modify(|o| o.leo = leo);
        self.maybe_advance_hw();
        Ok(released.len() + gone.len())
    }

    /// Appends a batch the broker made (a release, a cancellation) as leader
    /// in `epoch`, under the locks the caller holds, and feeds the index.
    /// The caller moves the log end and the high watermark after.
    fn append_own(
        &self,
        log: &mut PartitionLog,
        delays: &mut Delays,
        batch: &[u8],
        epoch: i32,
    ) -> Result<(), sluice_storage::StorageError> {
        let info = log.append_as_leader(batch, epoch)?;
        let mut placed: Vec<RecordBatchHeader> = batch_headers(batch).collect();
        if let Some(h) = placed.first_mut() {
            h.base_offset = info.first_offset;
            self.producers.lock().update(h);
        }
        self.observe_delays(delays, batch, &placed);
        Ok(())
    }

    /// Pending delayed records by when they fall due, if this replica leads
    /// and holds any.
    pub fn delays_summary(&self, now_ms: i64) -> Result<Option<Summary>, BrokerError> {
        if !self.is_leader() {
            return Ok(None);
        }
        let s = self
            .delays
            .lock()
            .summary(now_ms)
            .map_err(self.delay_err())?;
        Ok(s.filter(|s| s.pending > 0))
    }

    /// Leader: cancels the pending delayed record `id` (a `CANCEL` record in
    /// the log, so every replica and any later leader agree).
    pub fn cancel_delayed(&self, id: i64, now_ms: i64) -> Result<(), BrokerError> {
        let not_pending = || BrokerError::NotPendingDelay {
            topic: self.topic.clone(),
            partition: self.partition,
            id,
        };
        // The walk over the index happens before the log lock; a release
        // meanwhile shows as a mark, checked again under the lock.
        let pending = self
            .delays
            .lock()
            .is_pending(id)
            .map_err(self.delay_err())?;
        if !pending {
            return Err(not_pending());
        }
        let batch = cancel_batch(id, now_ms).map_err(self.delay_err())?;
        let mut log = self.log.write();
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Err(self.not_leader(&role));
        }
        let mut delays = self.delays.lock();
        if delays.is_done(id) {
            return Err(not_pending());
        }
        self.append_own(&mut log, &mut delays, &batch, role.leader_epoch)
            .map_err(self.storage_err())?;
        let leo = log.log_end_offset();
        drop(delays);
        drop(log);
        self.offsets.send_modify(|o| o.leo = leo);
        self.maybe_advance_hw();
        Ok(())
    }

    /// Background upkeep of the timer index (sealing, forgetting marks).
    pub fn delays_upkeep(&self) {
        if let Err(e) = self.delays.lock().upkeep() {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "timer index upkeep failed");
        }
    }
}

fn apply(index: &mut TimerIndex, seen: &[Seen]) {
    for s in seen {
        match *s {
            Seen::Delayed { offset, due_ms } => index.add(Entry { due_ms, offset }),
            Seen::Released { id, at } | Seen::Cancelled { id, at } => index.mark_done(id, at),
        }
    }
}

/// Feeds the index the log from `from` (a batch boundary) to its end.
fn replay(log: &PartitionLog, index: &mut TimerIndex, from: i64) -> Result<(), DelayError> {
    let end = log.log_end_offset();
    let mut offset = from;
    while offset < end {
        // A read that fails leaves the index partial: the caller rebuilds.
        let data = log
            .read(offset, 8 << 20, end, true)
            .map_err(|e| DelayError::CorruptIndex {
                path: log.dir().display().to_string(),
                reason: format!("cannot read the log at {offset}: {e}"),
            })?;
        let before = offset;
        for (pos, h) in positions(&data) {
            apply(
                index,
                &scan(&data[pos..pos + h.total_size()], h.base_offset)?,
            );
            offset = h.next_offset();
        }
        if offset == before {
            break;
        }
    }
    Ok(())
}

/// Each whole batch of `data` with its position.
fn positions(data: &Bytes) -> Vec<(usize, RecordBatchHeader)> {
    let mut pos = 0;
    batch_headers(data)
        .map(|h| {
            let at = pos;
            pos += h.total_size();
            (at, h)
        })
        .collect()
}

/// Makes the index directory's creation durable: a crash after a delayed
/// record reached the log must find the directory (see the module docs).
fn sync_parent(dir: &Path) -> Result<(), DelayError> {
    let parent = dir.parent().unwrap_or(dir);
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|source| DelayError::Io {
            path: parent.display().to_string(),
            source,
        })
}
