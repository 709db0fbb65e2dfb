//! The follower side of a replica: applying what the leader sends (batches,
//! divergence truncation, its log start) and where to fetch from next.

use bytes::Bytes;
use sluice_records::batch_headers;
use sluice_storage::PartitionLog;

use super::{Partition, load_producer_state};
use crate::error::BrokerError;

/// What became of one ReplicaFetch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Appended or truncated.
    Done,
    /// The replica's leader or epoch changed since the request: dropped.
    Stale,
    /// A divergence answer that changed nothing here (the caller backs off).
    Unchanged,
}

impl Partition {
    /// Follower: appends what the leader sent and takes its high watermark.
    pub fn append_as_follower(&self, batches: Bytes, leader_hw: i64) -> Result<(), BrokerError> {
        let mut log = self.log.write();
        self.append_fetched(&mut log, batches, leader_hw)
    }

    fn append_fetched(
        &self,
        log: &mut PartitionLog,
        batches: Bytes,
        leader_hw: i64,
    ) -> Result<(), BrokerError> {
        if !batches.is_empty() {
            let headers: Vec<_> = batch_headers(&batches).collect();
            // An empty log restarted at the leader's log start, which lies
            // inside a batch: the batch comes whole, so the log restarts at
            // its first offset (the log start is set again just after).
            if let Some(first) = headers.first()
                && first.base_offset < log.log_end_offset()
                && log.log_end_offset() == log.log_start_offset()
                && first.next_offset() > log.log_end_offset()
            {
                log.truncate_fully_and_start_at(first.base_offset)
                    .map_err(self.storage_err())?;
            }
            let mut delays = self.delays.lock();
            delays.prepare(&batches).map_err(self.delay_err())?;
            log.append_as_follower(batches.clone())
                .map_err(self.storage_err())?;
            let mut producers = self.producers.lock();
            for h in &headers {
                producers.update(h);
            }
            drop(producers);
            self.observe_delays(&mut delays, &batches, &headers);
        }
        let leo = log.log_end_offset();
        let log_start = log.log_start_offset();
        self.offsets.send_modify(|o| {
            o.leo = leo;
            o.log_start = log_start;
            o.hw = leader_hw.min(leo).max(o.hw.min(leo));
        });
        Ok(())
    }

    /// Follower: drops a divergent tail (everything at or above `offset`).
    pub fn truncate_to(&self, offset: i64) -> Result<(), BrokerError> {
        let mut log = self.log.write();
        self.truncate_log(&mut log, offset)
    }

    fn truncate_log(&self, log: &mut PartitionLog, offset: i64) -> Result<(), BrokerError> {
        if offset < log.log_end_offset() {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset, log_end = log.log_end_offset(), "truncating divergent log tail");
        }
        // Also when nothing is cut: the epoch cache may end in an epoch this
        // replica led without writing anything (KIP-279), which must go.
        let cut = log.truncate_to(offset).map_err(self.storage_err())?;
        if cut {
            // Producer state may describe removed batches: rebuild it from the log.
            let _ = std::fs::remove_file(log.dir().join(crate::producer_state::SNAPSHOT_FILE));
            *self.producers.lock() = load_producer_state(log);
            let hw = self.offsets().hw.min(offset);
            self.delays.lock().truncated(log, offset, hw);
        }
        let leo = log.log_end_offset();
        let log_start = log.log_start_offset();
        self.offsets.send_modify(|o| {
            o.leo = leo;
            o.log_start = log_start;
            o.hw = o.hw.min(leo);
        });
        Ok(())
    }

    /// Where a follower truncates when the leader says its log diverges at
    /// (`epoch`, `end`) (Kafka's `getOffsetTruncationState`): when this
    /// replica knows `epoch`, to the smaller of both ends of it; when it does
    /// not, to the end of its largest epoch below it, and the next fetch asks
    /// again from there.
    fn divergence_point(log: &PartitionLog, epoch: i32, end: i64) -> i64 {
        let leo = log.log_end_offset();
        if epoch < 0 {
            return end.min(leo);
        }
        match log.end_offset_for_epoch(epoch) {
            Some((mine, my_end)) if mine == epoch => end.min(my_end).min(leo),
            Some((_, my_end)) => my_end.min(leo),
            None => end.min(leo),
        }
    }

    /// Follower: applies one ReplicaFetch answer that `leader` gave in
    /// `leader_epoch` (a truncation when it reported divergence, else the
    /// batches). Touches nothing when this replica's role has moved on since
    /// the request: a late answer from an old leader must not land in a new
    /// leader's log (its batches would carry the old epoch past the new
    /// epoch's start and make every follower diverge forever).
    pub fn apply_replica_fetch(
        &self,
        leader: i32,
        leader_epoch: i32,
        diverging: Option<(i32, i64)>,
        batches: Bytes,
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<Applied, BrokerError> {
        let mut log = self.log.write();
        if !self.still_follows(leader, leader_epoch) {
            return Ok(Applied::Stale);
        }
        match diverging {
            Some((epoch, end)) => {
                let before = (log.log_end_offset(), log.latest_epoch());
                let point = Self::divergence_point(&log, epoch, end);
                self.truncate_log(&mut log, point)?;
                if (log.log_end_offset(), log.latest_epoch()) == before {
                    // The next fetch would ask the same question: never spin on it.
                    return Ok(Applied::Unchanged);
                }
            }
            None => {
                self.append_fetched(&mut log, batches, leader_hw)?;
                // Follow the leader's log start (DeleteRecords, retention),
                // never past what this replica knows is committed.
                let target = leader_log_start.min(self.offsets().hw);
                if target > log.log_start_offset() {
                    self.set_log_start(&mut log, target)?;
                }
            }
        }
        Ok(Applied::Done)
    }

    /// Whether this replica still follows `leader` in `leader_epoch`.
    fn still_follows(&self, leader: i32, leader_epoch: i32) -> bool {
        let role = self.role.read();
        role.leader == leader && role.leader_epoch == leader_epoch && leader != self.broker_id
    }

    /// Follower: the leader no longer has the offset this replica needs next
    /// (its log start moved past it): empty the log and start over at the
    /// leader's log start. False when the role moved on meanwhile.
    pub fn restart_at_leader_start(
        &self,
        leader: i32,
        leader_epoch: i32,
        leader_log_start: i64,
    ) -> Result<bool, BrokerError> {
        let mut log = self.log.write();
        if !self.still_follows(leader, leader_epoch) || leader_log_start <= log.log_end_offset() {
            return Ok(false);
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, log_end = log.log_end_offset(), leader_log_start, "behind the leader's log start; restarting the log there");
        log.truncate_fully_and_start_at(leader_log_start)
            .map_err(self.storage_err())?;
        let _ = std::fs::remove_file(log.dir().join(crate::producer_state::SNAPSHOT_FILE));
        *self.producers.lock() = load_producer_state(&log);
        self.delays.lock().rebuild(&log, leader_log_start);
        self.offsets.send_modify(|o| {
            o.leo = leader_log_start;
            o.log_start = leader_log_start;
            o.hw = o.hw.max(leader_log_start);
        });
        Ok(true)
    }

    /// Follower: where to fetch from and the epoch of the last batch held.
    pub fn fetch_position(&self) -> (i64, i32) {
        let log = self.log.read();
        (log.log_end_offset(), log.latest_epoch().unwrap_or(-1))
    }
}
