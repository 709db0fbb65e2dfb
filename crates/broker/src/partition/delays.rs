//! The replica's delayed records (issue 14, `docs/delayed-delivery.md`):
//! its timer index, fed every batch the log takes, in log order, on the
//! leader and on followers alike, so a new leader has one ready.
//!
//! Most partitions never hold a delayed record: until one does, there is no
//! index and a batch costs a header check. The index directory is created
//! before the first batch holding one is written, so a restart that finds no
//! directory knows the log holds none.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_delay::batch::{Seen, scan};
use sluice_delay::{DelayError, Entry, TimerIndex};
use sluice_records::{RecordBatchHeader, batch_headers, set_base_offset};
use sluice_storage::PartitionLog;

/// The index directory inside the partition's log directory.
pub const INDEX_DIR: &str = "delay-index";

pub(crate) struct Delays {
    dir: PathBuf,
    index: Option<TimerIndex>,
}

impl Delays {
    /// Opens the index if this replica ever held a delayed record, and
    /// replays the log from where its checkpoint says. A damaged index is
    /// rebuilt from the whole log.
    pub fn open(log: &PartitionLog, hw: i64) -> Delays {
        let dir = log.dir().join(INDEX_DIR);
        let mut d = Delays { dir, index: None };
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
        index.commit(hw)?;
        self.index = Some(index);
        Ok(())
    }

    /// Forgets the index and builds it again from the whole log (after the
    /// log was emptied and restarted, or when it cannot be trusted).
    pub fn rebuild(&mut self, log: &PartitionLog, hw: i64) {
        self.index = None;
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Err(e) = self.load(log, hw) {
            // Delayed records of this replica stay pending until a restart
            // or a truncation rebuilds the index again: say so loudly.
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot rebuild the timer index");
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
            let mut batch = batches[pos..end].to_vec();
            pos = end;
            set_base_offset(&mut batch, h.base_offset);
            apply(index, &scan(&Bytes::from(batch), true)?);
        }
        index.commit(hw)
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
                index.commit(hw)?;
                index.checkpoint()
            }
            None => Ok(()),
        }
    }

    // Read by the release task (issue 14, next); by tests until then.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.index.as_ref().map_or(0, TimerIndex::pending)
    }

    /// Pending entries due at `now_ms`, in release order.
    #[cfg(test)]
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
        let Ok(data) = log.read(offset, 8 << 20, end, true) else {
            break;
        };
        let before = offset;
        for (pos, h) in positions(&data) {
            apply(index, &scan(&data.slice(pos..pos + h.total_size()), true)?);
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
