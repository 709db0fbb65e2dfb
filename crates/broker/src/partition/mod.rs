//! One local partition replica.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use sluice_records::batch_headers;
use sluice_storage::{PartitionLog, StorageError};
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::producer_state::ProducerStateManager;

mod delays;
pub use delays::RELEASE_BATCH;
mod follower;
mod housekeeping;
pub use follower::Applied;
#[cfg(test)]
mod tests;

/// The offsets a long-polling Fetch or an acks=all Produce waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOffsets {
    pub log_start: i64,
    /// Log end offset: the next offset to be written.
    pub leo: i64,
    /// High watermark: consumers read below it.
    pub hw: i64,
}

/// This replica's role, from the metadata store.
#[derive(Debug, Clone, Default)]
pub struct Role {
    pub topic_id: String,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Version of the partition state, for AlterPartition.
    pub partition_epoch: i32,
}

/// What one compressed batch may inflate to: 32 times `max.message.bytes`
/// (at least 32 MiB). Producers cap a batch by its uncompressed size
/// (`batch.size`), so real batches stay far below; a compression bomb that
/// fits `max.message.bytes` does not, and is refused before it fills memory.
fn inflation_limit(max_message_bytes: u32) -> usize {
    (max_message_bytes as usize).max(1 << 20).saturating_mul(32)
}

/// How far a leader trusts a follower's fetch (KIP-380, KIP-903).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerRegistration {
    /// The leader's metadata shows the follower registered in this epoch:
    /// its progress counts.
    Current(i64),
    /// The metadata does not show this registration (not yet, or no longer):
    /// its progress counts only if it is the incarnation already counted.
    Unconfirmed(i64),
}

/// One member of a proposed ISR, with the registration epoch it fetched in
/// (-1 for the leader itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// What the leader knows of one follower (Kafka's Replica state).
#[derive(Debug, Clone, Copy)]
pub struct FollowerState {
    /// The follower's log end offset: its last fetch offset.
    pub leo: i64,
    /// Last time the follower had fetched everything the leader had.
    pub last_caught_up: Instant,
    /// The registration epoch the follower fetched in (KIP-903): progress
    /// from an older one is ignored, and the ISR only grows by a follower in
    /// the epoch the controller knows.
    pub broker_epoch: i64,
}

/// The answer to one ReplicaFetch partition.
pub enum ReplicaRead {
    Data {
        batches: Bytes,
        hw: i64,
        log_start: i64,
    },
    /// The follower's log diverges: truncate to `end_offset` of `epoch`.
    Diverging {
        epoch: i32,
        end_offset: i64,
        hw: i64,
        log_start: i64,
    },
}

pub struct Partition {
    pub topic: String,
    pub partition: i32,
    broker_id: i32,
    /// A read/write lock so fetches read concurrently; appends hold the write
    /// side only for the page-cache write (no fsync unless configured, no await).
    log: RwLock<PartitionLog>,
    role: RwLock<Role>,
    /// (leader, leader epoch) of the current role: acks=all waiters give up
    /// when it moves on, since the new leader may never have their batch.
    term: watch::Sender<(i32, i32)>,
    offsets: watch::Sender<LogOffsets>,
    /// On the leader: each follower's progress. Cleared on every role change.
    followers: parking_lot::Mutex<HashMap<i32, FollowerState>>,
    /// Idempotent-producer state, changed only while the log's write lock is
    /// held (lock order: log, then producers).
    producers: parking_lot::Mutex<ProducerStateManager>,
    /// Held for a whole flush: flushes of one replica (periodic, checkpoint,
    /// `flush.messages`) run one at a time, without the log lock.
    flushing: parking_lot::Mutex<()>,
    /// The timer index of delayed records, fed in log order (observations
    /// are made under the log's write lock; lock order: log, then delays).
    delays: parking_lot::Mutex<delays::Delays>,
}

/// The result of a leader append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The leader epoch the append was checked against.
    pub leader_epoch: i32,
    /// The batches were already in the log (a producer retry): nothing new was
    /// written and the offsets are the original ones.
    pub duplicate: bool,
    /// `flush.messages` / `flush.ms` ask for a flush: the caller runs
    /// [`Partition::flush`] off the runtime before it answers.
    pub flush_due: bool,
}

/// Rebuilds producer state from the log, from the snapshot's end (or the log
/// start) to the log end.
fn load_producer_state(log: &PartitionLog) -> ProducerStateManager {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let mut state = ProducerStateManager::read_snapshot(log.dir())
        .filter(|s| s.end_offset >= start && s.end_offset <= end)
        .unwrap_or_else(|| ProducerStateManager::starting_at(start));
    scan_into(log, &mut state, end);
    state
}

fn scan_into(log: &PartitionLog, state: &mut ProducerStateManager, end: i64) {
    let mut offset = state.end_offset.max(log.log_start_offset());
    while offset < end {
        let Ok(data) = log.read(offset, 8 << 20, end, true) else {
            break;
        };
        if data.is_empty() {
            break;
        }
        let before = offset;
        // The log was validated when it was opened; headers are enough.
        for h in batch_headers(&data) {
            state.update(&h);
            offset = h.next_offset();
        }
        if offset == before {
            break;
        }
    }
    state.end_offset = state.end_offset.max(offset);
}

impl Partition {
    pub fn new(topic: String, partition: i32, broker_id: i32, log: PartitionLog, hw: i64) -> Self {
        let producers = load_producer_state(&log);
        let leo = log.log_end_offset();
        let offsets = LogOffsets {
            log_start: log.log_start_offset(),
            leo,
            hw: hw.clamp(log.log_start_offset(), leo),
        };
        let delays = delays::Delays::open(&log, offsets.hw);
        Self {
            topic,
            partition,
            broker_id,
            log: RwLock::new(log),
            role: RwLock::new(Role::default()),
            term: watch::Sender::new((-1, -1)),
            offsets: watch::Sender::new(offsets),
            followers: parking_lot::Mutex::new(HashMap::new()),
            producers: parking_lot::Mutex::new(producers),
            flushing: parking_lot::Mutex::new(()),
            delays: parking_lot::Mutex::new(delays),
        }
    }

    pub fn role(&self) -> Role {
        self.role.read().clone()
    }

    pub fn topic_id(&self) -> Option<String> {
        self.log.read().topic_id().map(str::to_string)
    }

    pub fn offsets(&self) -> LogOffsets {
        *self.offsets.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<LogOffsets> {
        self.offsets.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        self.role.read().leader == self.broker_id
    }

    /// Applies the role from metadata. On becoming leader in a new epoch, the
    /// epoch's start offset is recorded in the leader-epoch checkpoint.
    pub fn set_role(&self, role: Role) -> Result<(), BrokerError> {
        let leading = role.leader == self.broker_id;
        // Becoming leader: the log lock is held until the new role is in
        // place, so a late ReplicaFetch answer from the old leader (applied
        // under the same lock, see `apply_replica_fetch`) either lands before
        // the new epoch starts or is refused.
        let mut log_guard = None;
        if leading {
            let mut log = self.log.write();
            if log.latest_epoch().is_none_or(|e| e < role.leader_epoch) {
                let leo = log.log_end_offset();
                log.assign_epoch_start(role.leader_epoch, leo)
                    .map_err(self.storage_err())?;
            }
            if log.topic_id().is_none() && !role.topic_id.is_empty() {
                log.set_topic_id(&role.topic_id)
                    .map_err(self.storage_err())?;
            }
            log_guard = Some(log);
        }
        let (new_term, isr_delta) = {
            let old = self.role.read();
            let new_term = old.leader != role.leader || old.leader_epoch != role.leader_epoch;
            // Kafka's IsrShrinksPerSec / IsrExpandsPerSec, counted by the
            // leader whether it asked for the change or the controller made
            // it (a dead follower).
            let delta = if leading && !new_term {
                role.isr.len() as i64 - old.isr.len() as i64
            } else {
                0
            };
            (new_term, delta)
        };
        if isr_delta < 0 {
            metrics::counter!("sluice_broker_isr_shrinks_total").increment(1);
        } else if isr_delta > 0 {
            metrics::counter!("sluice_broker_isr_expands_total").increment(1);
        }
        if new_term {
            // Follower progress from an earlier term is not evidence for this one;
            // start the lag clock now so nobody is shrunk out at once.
            let now = Instant::now();
            let mut f = self.followers.lock();
            f.clear();
            if leading {
                for r in role.replicas.iter().filter(|r| **r != self.broker_id) {
                    f.insert(
                        *r,
                        FollowerState {
                            leo: -1,
                            last_caught_up: now,
                            broker_epoch: -1,
                        },
                    );
                }
            }
        }
        // The term first: an acks=all waiter must never see a high watermark
        // reached as follower while the old term still shows.
        let term = (role.leader, role.leader_epoch);
        self.term
            .send_if_modified(|t| std::mem::replace(t, term) != term);
        *self.role.write() = role;
        drop(log_guard);
        if leading {
            self.maybe_advance_hw();
        }
        Ok(())
    }

    /// acks=all: waits until the high watermark covers `offsets` (appended by
    /// this broker as leader in `epoch`). Fails with NOT_LEADER_OR_FOLLOWER as
    /// soon as leadership moves on, as Kafka's DelayedProduce does: the new
    /// leader may have written other records at those offsets, and a high
    /// watermark reached as its follower would acknowledge a lost batch.
    pub async fn wait_replicated(
        &self,
        offsets: std::ops::RangeInclusive<i64>,
        epoch: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), BrokerError> {
        let target = offsets.end() + 1;
        let mut hw = self.subscribe();
        let mut term = self.term.subscribe();
        let moved_on = |t: (i32, i32)| t != (self.broker_id, epoch);
        loop {
            if moved_on(*term.borrow_and_update()) {
                return Err(BrokerError::LeadershipMoved {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    leader_epoch: epoch,
                    first_offset: *offsets.start(),
                    last_offset: *offsets.end(),
                });
            }
            if hw.borrow_and_update().hw >= target {
                return Ok(());
            }
            tokio::select! {
                r = hw.changed() => if r.is_err() { break },
                r = term.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Err(BrokerError::ReplicationTimedOut {
            topic: self.topic.clone(),
            partition: self.partition,
            first_offset: *offsets.start(),
            last_offset: *offsets.end(),
        })
    }

    /// Leader: HW = the smallest log end offset over the ISR (Kafka's rule); it
    /// never moves back.
    fn maybe_advance_hw(&self) {
        let role = self.role.read().clone();
        let leo = self.offsets().leo;
        let followers = self.followers.lock();
        let mut hw = leo;
        for r in role.isr.iter().filter(|r| **r != self.broker_id) {
            match followers.get(r) {
                Some(f) if f.leo >= 0 => hw = hw.min(f.leo),
                _ => return,
            }
        }
        drop(followers);
        self.offsets.send_if_modified(|o| {
            if hw > o.hw {
                o.hw = hw;
                true
            } else {
                false
            }
        });
    }

    /// Leader: serves one partition of a follower's ReplicaFetch and records
    /// its progress as `registration` allows (see [`FollowerRegistration`]).
    /// Checks the follower's leader epoch and, from its last fetched epoch,
    /// whether its log diverges (KIP-101/KIP-320).
    #[allow(clippy::too_many_arguments)]
    pub fn read_for_follower(
        &self,
        follower: i32,
        registration: FollowerRegistration,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        current_leader_epoch: i32,
        max_bytes: usize,
    ) -> Result<ReplicaRead, BrokerError> {
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Err(self.not_leader(&role));
        }
        self.check_epoch(&role, current_leader_epoch)?;
        if !role.replicas.contains(&follower) {
            return Err(BrokerError::NotReplica {
                topic: self.topic.clone(),
                partition: self.partition,
                follower,
            });
        }
        let offsets = self.offsets();
        if last_fetched_epoch >= 0 {
            let end = self.log.read().end_offset_for_epoch(last_fetched_epoch);
            match end {
                Some((epoch, end_offset))
                    if epoch == last_fetched_epoch && end_offset >= fetch_offset => {}
                Some((epoch, end_offset)) => {
                    return Ok(ReplicaRead::Diverging {
                        epoch,
                        end_offset: end_offset.min(fetch_offset),
                        hw: offsets.hw,
                        log_start: offsets.log_start,
                    });
                }
                None => {
                    return Ok(ReplicaRead::Diverging {
                        epoch: -1,
                        end_offset: offsets.log_start.min(fetch_offset),
                        hw: offsets.hw,
                        log_start: offsets.log_start,
                    });
                }
            }
        }
        if fetch_offset > offsets.leo {
            return Ok(ReplicaRead::Diverging {
                epoch: self.log.read().latest_epoch().unwrap_or(-1),
                end_offset: offsets.leo,
                hw: offsets.hw,
                log_start: offsets.log_start,
            });
        }
        {
            let now = Instant::now();
            let mut f = self.followers.lock();
            let (epoch, counted) = match registration {
                FollowerRegistration::Current(e) => (e, true),
                // The same incarnation as counted before (its log has not
                // changed under it): a broker in controlled shutdown, already
                // deregistered but still in the ISR, keeps the high watermark
                // moving. A new one is counted once metadata shows it.
                FollowerRegistration::Unconfirmed(e) => {
                    (e, f.get(&follower).is_some_and(|st| st.broker_epoch == e))
                }
            };
            if counted {
                let st = f.entry(follower).or_insert(FollowerState {
                    leo: -1,
                    last_caught_up: now,
                    broker_epoch: epoch,
                });
                // A late fetch from an older registration must not overwrite
                // what the current one reported (its log may be shorter).
                if epoch >= st.broker_epoch {
                    st.broker_epoch = epoch;
                    st.leo = fetch_offset;
                    if fetch_offset >= offsets.leo {
                        st.last_caught_up = now;
                    }
                }
            }
        }
        self.maybe_advance_hw();
        let batches = if fetch_offset < offsets.leo {
            self.log
                .read()
                .read(fetch_offset, max_bytes, offsets.leo, true)
                .map_err(self.storage_err())?
        } else {
            Bytes::new()
        };
        let offsets = self.offsets();
        Ok(ReplicaRead::Data {
            batches,
            hw: offsets.hw,
            log_start: offsets.log_start,
        })
    }

    /// Checks a client's idea of the leader epoch (KIP-320): an older one is
    /// FENCED_LEADER_EPOCH (it must refresh metadata), a newer one
    /// UNKNOWN_LEADER_EPOCH (this broker has not caught up yet); -1 skips it.
    fn check_epoch(&self, role: &Role, current_leader_epoch: i32) -> Result<(), BrokerError> {
        if current_leader_epoch >= 0 && current_leader_epoch < role.leader_epoch {
            return Err(BrokerError::FencedLeaderEpoch {
                topic: self.topic.clone(),
                partition: self.partition,
                requested: current_leader_epoch,
                current: role.leader_epoch,
            });
        }
        if current_leader_epoch > role.leader_epoch {
            return Err(BrokerError::UnknownLeaderEpoch {
                topic: self.topic.clone(),
                partition: self.partition,
                requested: current_leader_epoch,
                current: role.leader_epoch,
            });
        }
        Ok(())
    }

    /// Leader: checks that this broker leads at `current_leader_epoch` (-1:
    /// any epoch), for consumers' Fetch and ListOffsets.
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<(), BrokerError> {
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Err(self.not_leader(&role));
        }
        self.check_epoch(&role, current_leader_epoch)
    }

    /// Leader: OffsetForLeaderEpoch. The largest epoch at most `epoch` this
    /// log has and the offset where it ends (the log end offset for the
    /// current one); (-1, -1) when the log knows no such epoch.
    pub fn end_offset_for_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), BrokerError> {
        self.check_leader(current_leader_epoch)?;
        Ok(self
            .log
            .read()
            .end_offset_for_epoch(epoch)
            .unwrap_or((-1, -1)))
    }

    /// Leader: the ISR this partition should have now, if it differs: followers
    /// that lag more than `max_lag` leave; followers that reached the high
    /// watermark join.
    /// A follower is added only while `registration_epoch` (the leader's view
    /// of who is registered) shows the registration it fetched in: one in
    /// controlled shutdown keeps fetching but must not be proposed back, and
    /// a restarted one must fetch again first, or the controller refuses the
    /// whole change, a needed shrink included.
    pub fn desired_isr(
        &self,
        max_lag: Duration,
        registration_epoch: impl Fn(i32) -> Option<i64>,
    ) -> Option<(Role, Vec<IsrMember>)> {
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return None;
        }
        let hw = self.offsets().hw;
        // KAFKA-7128: a follower joins only once it also holds everything up
        // to this leader's epoch start. A new leader's high watermark can lag
        // what the previous leader acknowledged; a follower between the two
        // would otherwise join, could be elected next, and lose those records.
        let epoch_start = self
            .log
            .read()
            .epoch_entries()
            .iter()
            .rev()
            .find(|(e, _)| *e == role.leader_epoch)
            .map_or(0, |(_, start)| *start);
        let now = Instant::now();
        let followers = self.followers.lock();
        let mut isr = vec![IsrMember {
            broker_id: self.broker_id,
            broker_epoch: -1,
        }];
        for r in role.replicas.iter().filter(|r| **r != self.broker_id) {
            let Some(f) = followers.get(r) else { continue };
            let in_isr = role.isr.contains(r);
            let lagging = now.duration_since(f.last_caught_up) > max_lag;
            let caught_up = f.leo >= hw && f.leo >= epoch_start && f.leo >= 0;
            // Added only in the registration it fetched in (KIP-903).
            let current = registration_epoch(*r) == Some(f.broker_epoch);
            if (in_isr && !lagging) || (!in_isr && caught_up && current) {
                isr.push(IsrMember {
                    broker_id: *r,
                    broker_epoch: f.broker_epoch,
                });
            }
        }
        drop(followers);
        let mut current = role.isr.clone();
        current.sort_unstable();
        isr.sort_unstable_by_key(|m| m.broker_id);
        let ids: Vec<i32> = isr.iter().map(|m| m.broker_id).collect();
        (ids != current).then_some((role, isr))
    }

    fn not_leader(&self, role: &Role) -> BrokerError {
        BrokerError::NotLeader {
            topic: self.topic.clone(),
            partition: self.partition,
            broker: self.broker_id,
            leader: role.leader,
        }
    }

    /// A storage failure of this replica's log.
    fn storage_err(&self) -> impl Fn(StorageError) -> BrokerError + '_ {
        |source| BrokerError::Storage {
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        }
    }

    /// Leader append of a producer's batches, without delayed delivery (see
    /// [`Partition::append_produced`]).
    pub fn append_as_leader(
        &self,
        batches: impl AsRef<[u8]>,
        acks: i32,
        min_insync: i32,
    ) -> Result<Appended, BrokerError> {
        self.append_produced(batches, acks, min_insync, None)
    }

    /// Leader append of a producer's batches. Checks leadership and
    /// `min.insync.replicas` for acks=all before writing, so a refused write
    /// appends nothing. `delays`: the topic's delay policy and the time now;
    /// batches that ask for delays are rewritten (`delays.rs`).
    pub fn append_produced(
        &self,
        batches: impl AsRef<[u8]>,
        acks: i32,
        min_insync: i32,
        delays: Option<(sluice_delay::batch::Policy, i64)>,
    ) -> Result<Appended, BrokerError> {
        let batches = batches.as_ref();
        // Headers only: the log validates every batch (CRC included) on append,
        // so each CRC is computed once on the produce path.
        let mut headers: Vec<_> = batch_headers(batches).collect();
        // Which batches name a delay in a record header.
        let mut asks = vec![false; headers.len()];
        // Compressed batches are decompressed once here, before the lock, so
        // one nobody could read later is refused now (Kafka's LogValidator).
        let mut pos = 0;
        for (i, h) in headers.iter().enumerate() {
            // Control batches and release batches are the broker's own.
            if h.is_control() || sluice_delay::batch::is_release(h) {
                return Err(BrokerError::ControlBatchFromClient {
                    topic: self.topic.clone(),
                    partition: self.partition,
                });
            }
            let end = pos + h.total_size();
            let invalid = |source| BrokerError::InvalidBatch {
                topic: self.topic.clone(),
                partition: self.partition,
                source,
            };
            if h.compression() != Some(sluice_records::Compression::None) {
                // Only for compressed batches: the uncompressed produce path
                // takes no extra lock.
                let limit = inflation_limit(self.log.read().config().max_message_bytes);
                asks[i] = sluice_records::check_compressed_for(
                    &batches[pos..end],
                    limit,
                    sluice_delay::batch::is_delay_header,
                )
                .map_err(invalid)?;
            } else if delays.is_some() {
                asks[i] = sluice_records::walk::any_header_name(
                    &batches[pos + sluice_records::HEADER_SIZE..end],
                    sluice_delay::batch::is_delay_header,
                )
                .map_err(invalid)?;
            }
            pos = end;
        }
        // A bad delay is answered after the duplicate check: a retry of a
        // batch already stored (its due time now under a second away, say)
        // is a duplicate, not an error.
        let (rewritten, refused) = match delays {
            Some((policy, now)) => match self.plan_delays(batches, &headers, &asks, policy, now) {
                Ok(r) => (r, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        };
        // The role is read under the log lock (the order `set_role` and
        // `apply_replica_fetch` use): a leadership change cannot slip in
        // between the check and the append, so no batch is written with an
        // epoch older than one the log has already started.
        let mut log = self.log.write();
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Err(self.not_leader(&role));
        }
        if acks == -1 && (role.isr.len() as i32) < min_insync {
            return Err(BrokerError::NotEnoughReplicas {
                topic: self.topic.clone(),
                partition: self.partition,
                isr: role.isr.clone(),
                min_insync,
            });
        }
        let mut producers = self.producers.lock();
        if let Some(first_offset) = producers.check_all(&headers, &self.topic, self.partition)? {
            let records: i64 = headers.iter().map(|h| h.records_count as i64).sum();
            let last_offset = first_offset + records - 1;
            return Ok(Appended {
                first_offset,
                last_offset,
                leader_epoch: role.leader_epoch,
                duplicate: true,
                // A retry is acknowledged as the original would be: after
                // its flush, if the topic asks for one.
                flush_due: log.awaits_flush(last_offset),
            });
        }
        if let Some(e) = refused {
            return Err(e);
        }
        // The duplicate check above saw the batches as the producer sent
        // them; what is written may be their delayed-delivery rewrite.
        let batches = match &rewritten {
            Some(b) => {
                headers = batch_headers(b).collect();
                &b[..]
            }
            None => batches,
        };
        let mut delays = self.delays.lock();
        delays.prepare(batches).map_err(self.delay_err())?;
        let info = log
            .append_as_leader(batches, role.leader_epoch)
            .map_err(self.storage_err())?;
        // Offsets were assigned densely from the first one, batch by batch.
        let mut next = info.first_offset;
        for h in &mut headers {
            h.base_offset = next;
            next = h.next_offset();
            producers.update(h);
        }
        drop(producers);
        self.observe_delays(&mut delays, batches, &headers);
        drop(delays);
        let leo = log.log_end_offset();
        let log_start = log.log_start_offset();
        let flush_due = log.flush_due();
        drop(log);
        self.offsets.send_modify(|o| {
            o.leo = leo;
            o.log_start = log_start;
        });
        // With a flush due, consumers see the records once they are on
        // disk: `flush` moves the high watermark (as Kafka flushes before it
        // advances it).
        if !flush_due {
            self.maybe_advance_hw();
        }
        Ok(Appended {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            leader_epoch: role.leader_epoch,
            duplicate: false,
            flush_due,
        })
    }

    /// Reads whole batches from `offset` up to the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        require_leader: bool,
    ) -> Result<(Bytes, LogOffsets), BrokerError> {
        if require_leader {
            let role = self.role.read();
            if role.leader != self.broker_id {
                let role = role.clone();
                return Err(self.not_leader(&role));
            }
        }
        let offsets = self.offsets();
        if offset >= offsets.hw && offset <= offsets.leo {
            // Nothing visible yet: the long poll waits for the watermark.
            return Ok((Bytes::new(), offsets));
        }
        let log = self.log.read();
        let data = log
            .read(offset, max_bytes, offsets.hw, min_one)
            .map_err(self.storage_err())?;
        Ok((data, offsets))
    }

    /// The first offset with a timestamp at or after `ts`, below the watermark.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, BrokerError> {
        let hw = self.offsets().hw;
        let found = self
            .log
            .read()
            .offset_for_timestamp(ts)
            .map_err(self.storage_err())?;
        Ok(found.filter(|(o, _)| *o < hw))
    }

    pub fn leader_epoch_of(&self, offset: i64) -> i32 {
        let log = self.log.read();
        log.epoch_entries()
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map_or(-1, |(e, _)| *e)
    }

    /// Takes the log out for closing or deletion; the partition is unusable after.
    pub fn into_log(self) -> PartitionLog {
        self.log.into_inner()
    }
}
