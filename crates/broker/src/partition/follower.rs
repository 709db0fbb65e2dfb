//! The follower side of a replica: applying what the leader sends (batches,
//! divergence truncation, its log start) and where to fetch from next.

use bytes::Bytes;
use sluice_records::batch_headers;
use sluice_storage::PartitionLog;
use sluice_types::ApiError;

use super::{Partition, load_producer_state, storage_err};

impl Partition {
    /// Follower: appends what the leader sent and takes its high watermark.
    pub fn append_as_follower(&self, batches: Bytes, leader_hw: i64) -> Result<(), ApiError> {
        let mut log = self.log.write();
        self.append_fetched(&mut log, batches, leader_hw)
    }

    fn append_fetched(
        &self,
        log: &mut PartitionLog,
        batches: Bytes,
        leader_hw: i64,
    ) -> Result<(), ApiError> {
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
                    .map_err(|e| storage_err(&self.topic, self.partition, e))?;
            }
            log.append_as_follower(batches)
                .map_err(|e| storage_err(&self.topic, self.partition, e))?;
            let mut producers = self.producers.lock();
            for h in &headers {
                producers.update(h);
            }
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
    pub fn truncate_to(&self, offset: i64) -> Result<(), ApiError> {
        let mut log = self.log.write();
        self.truncate_log(&mut log, offset)
    }

    fn truncate_log(&self, log: &mut PartitionLog, offset: i64) -> Result<(), ApiError> {
        if offset < log.log_end_offset() {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset, log_end = log.log_end_offset(), "truncating divergent log tail");
            log.truncate_to(offset)
                .map_err(|e| storage_err(&self.topic, self.partition, e))?;
            // Producer state may describe removed batches: rebuild it from the log.
            let _ = std::fs::remove_file(log.dir().join(crate::producer_state::SNAPSHOT_FILE));
            *self.producers.lock() = load_producer_state(log);
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

    /// Follower: applies one ReplicaFetch answer that `leader` gave in
    /// `leader_epoch` (a truncation when it reported divergence, else the
    /// batches). Returns false, touching nothing, when this replica's role
    /// has moved on since the request: a late answer from an old leader must
    /// not land in a new leader's log (its batches would carry the old epoch
    /// past the new epoch's start and make every follower diverge forever).
    pub fn apply_replica_fetch(
        &self,
        leader: i32,
        leader_epoch: i32,
        diverging_end: Option<i64>,
        batches: Bytes,
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<bool, ApiError> {
        let mut log = self.log.write();
        if !self.still_follows(leader, leader_epoch) {
            return Ok(false);
        }
        match diverging_end {
            Some(end) => self.truncate_log(&mut log, end)?,
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
        Ok(true)
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
    ) -> Result<bool, ApiError> {
        let mut log = self.log.write();
        if !self.still_follows(leader, leader_epoch) || leader_log_start <= log.log_end_offset() {
            return Ok(false);
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, log_end = log.log_end_offset(), leader_log_start, "behind the leader's log start; restarting the log there");
        log.truncate_fully_and_start_at(leader_log_start)
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        let _ = std::fs::remove_file(log.dir().join(crate::producer_state::SNAPSHOT_FILE));
        *self.producers.lock() = load_producer_state(&log);
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
