//! Partition leadership and ISR changes the controller makes itself (a broker
//! came or went, preferred leader election), written in bulk.
//!
//! A broker failure can touch every partition. One fenced transaction per
//! partition made failover take one etcd round trip per partition (issue 13:
//! 28 s leaderless at 3,000 partitions), and one transaction for all of them
//! breaks etcd's `--max-txn-ops`. So a pass collects its changes and writes
//! them in fenced transactions of at most [`KEYS_PER_TXN`] partitions; a
//! transaction that loses to a concurrent change (an AlterPartition on one of
//! its partitions) is split in halves until the partitions that changed stand
//! alone, so the others are still written ([`Controller::commit_in_halves`],
//! which AlterPartition requests use as well).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use sluice_metastore::{Compare, Op, Txn};
use sluice_types::meta::{self, PartitionState, TopicRecord};
use tracing::{debug, info, warn};

use super::{Controller, corrupt, meta_err};
use crate::error::{ControllerError, Result};

/// Keys one controller transaction writes at most. etcd refuses a
/// transaction with more than `--max-txn-ops` (128 by default) compares or
/// more than that many ops; a conditional write of one key is one compare and
/// one put, and the leadership fence one more compare. Well under the limit
/// so a few extra compares (a topic's revision) fit, and the request stays
/// far from `--max-request-bytes` (1.5 MiB).
pub(crate) const KEYS_PER_TXN: usize = 100;

/// A partition's state as read from the store, for a conditional update.
pub(super) struct StoredPartition {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) replicas: Vec<i32>,
    pub(super) state: PartitionState,
    pub(super) key: String,
    pub(super) mod_revision: i64,
}

/// A partition's next state, written only if it is unchanged since read.
pub(super) struct PartitionChange {
    pub(super) current: StoredPartition,
    pub(super) next: PartitionState,
}

/// What [`Controller::write_partition_states`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct WriteOutcome {
    /// Partitions written.
    pub(super) written: usize,
    /// Of those, partitions whose leader changed.
    pub(super) leaders_changed: usize,
    /// Partitions that changed since they were read: not written.
    pub(super) conflicts: usize,
    /// Transactions it took.
    pub(super) txns: usize,
}

impl Controller {
    /// Elects leaders and shrinks ISRs so they match the live brokers. Runs when
    /// this controller becomes active and on every broker registration change.
    /// Returns how many partitions changed.
    ///
    /// A broker that registered again since the last pass (a restart, or a
    /// lease lost and regained) leaves every ISR and leadership first, as
    /// Kafka fences a new incarnation: it may have lost what it had not
    /// flushed, so it rejoins only through its leaders' AlterPartition, which
    /// checks the registration it fetched in (KIP-903). Its deletion and new
    /// registration may reach this controller as one change.
    pub async fn reconcile_partitions(&self) -> Result<usize> {
        let _one_pass_at_a_time = self.reconciling.lock().await;
        let brokers = self.live_brokers().await?;
        let live: HashSet<i32> = brokers.iter().map(|b| b.broker_id).collect();
        let current: HashMap<i32, i64> = brokers.iter().map(|b| (b.broker_id, b.epoch)).collect();
        let restarted: HashSet<i32> = {
            let seen = self.seen_epochs.lock().unwrap_or_else(|e| e.into_inner());
            current
                .iter()
                .filter(|(id, epoch)| seen.get(id).is_some_and(|e| e != *epoch))
                .map(|(id, _)| *id)
                .collect()
        };
        if !restarted.is_empty() {
            info!(brokers = ?restarted, "brokers registered again: out of every ISR until they catch up");
        }
        let mut changed = 0;
        // A write that loses to a concurrent change (an AlterPartition) is
        // tried again on the new state; the new registrations count as seen
        // only once every partition took the fence, or the next pass would
        // not know to fence them.
        for _ in 0..3 {
            let changes: Vec<PartitionChange> = self
                .load_partitions()
                .await?
                .into_iter()
                .filter_map(|p| {
                    let next =
                        crate::election::on_restart(&p.replicas, &p.state, &live, &restarted)?;
                    Some(PartitionChange { current: p, next })
                })
                .collect();
            let out = self
                .write_partition_states(changes, "partition states updated after a broker change")
                .await?;
            changed += out.written;
            if out.conflicts == 0 {
                *self.seen_epochs.lock().unwrap_or_else(|e| e.into_inner()) = current;
                return Ok(changed);
            }
        }
        warn!("partition states kept changing during a reconcile; the next one tries again");
        Ok(changed)
    }

    /// Preferred leader election (Kafka's `auto.leader.rebalance.enable`):
    /// for every broker whose preferred partitions are led elsewhere above
    /// `leader.imbalance.per.broker.percentage`, hands those partitions back
    /// where it is alive and in sync. Returns how many partitions moved.
    pub async fn rebalance_leaders(&self) -> Result<usize> {
        let live = self.live_ids().await?;
        let parts = self.load_partitions().await?;
        let pairs: Vec<(i32, i32)> = parts
            .iter()
            .filter_map(|p| Some((*p.replicas.first()?, p.state.leader)))
            .collect();
        let ratio = f64::from(self.config.leader_imbalance_per_broker_percentage) / 100.0;
        let imbalanced = crate::election::imbalanced_brokers(&pairs, ratio);
        let changes: Vec<PartitionChange> = parts
            .into_iter()
            .filter(|p| p.replicas.first().is_some_and(|b| imbalanced.contains(b)))
            .filter_map(|p| {
                let next = crate::election::preferred_leader(&p.replicas, &p.state, &live)?;
                Some(PartitionChange { current: p, next })
            })
            .collect();
        // A partition that changed meanwhile is looked at again next interval.
        let out = self
            .write_partition_states(changes, "leadership moved back to preferred replicas")
            .await?;
        Ok(out.written)
    }

    /// Every partition's state with its replica list and store revision: two
    /// range reads, whatever the partition count. Partition keys of a topic
    /// whose record does not list them (what a creation cut short leaves) are
    /// left out.
    pub(super) async fn load_partitions(&self) -> Result<Vec<StoredPartition>> {
        let (topics, _) = self
            .store
            .range(meta::TOPICS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut assignments: HashMap<String, Vec<Vec<i32>>> = HashMap::new();
        for kv in topics {
            let t: TopicRecord = meta::decode(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
            assignments.insert(t.name, t.assignment);
        }
        let (parts, _) = self
            .store
            .range(meta::PARTITIONS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = Vec::with_capacity(parts.len());
        for kv in parts {
            let Some((topic, p)) = meta::parse_partition_key(&kv.key) else {
                continue;
            };
            let Some(replicas) = assignments.get(topic).and_then(|a| a.get(p as usize)) else {
                continue;
            };
            out.push(StoredPartition {
                topic: topic.to_string(),
                partition: p,
                replicas: replicas.clone(),
                state: meta::decode(&kv.value).map_err(|e| corrupt(&kv.key, e))?,
                key: kv.key,
                mod_revision: kv.mod_revision,
            });
        }
        Ok(out)
    }

    /// Writes each change if its partition is unchanged since it was read, in
    /// fenced transactions of at most [`KEYS_PER_TXN`] partitions. A partition
    /// that changed meanwhile (a concurrent AlterPartition) is not written and
    /// counts as a conflict: the caller reads again, or the next broker
    /// event, check interval or controller term looks again. Lost leadership
    /// is an error. `why` names the pass in its one summary log line.
    pub(super) async fn write_partition_states(
        &self,
        mut changes: Vec<PartitionChange>,
        why: &str,
    ) -> Result<WriteOutcome> {
        let mut out = WriteOutcome::default();
        if changes.is_empty() {
            return Ok(out);
        }
        let leader = self.leader_key()?;
        let started = std::time::Instant::now();
        // New leaders first: until those land their partitions have none,
        // while an ISR shrink under a live leader can wait a few transactions.
        changes.sort_by_key(|c| c.next.leader == c.current.state.leader);
        let chunks = (0..changes.len())
            .step_by(KEYS_PER_TXN)
            .map(|start| start..(start + KEYS_PER_TXN).min(changes.len()))
            .collect();
        let (written, txns) = self
            .commit_in_halves(chunks, |range| {
                changes[range].iter().fold(Txn::fenced(&leader), |txn, c| {
                    txn.when(Compare::mod_revision_eq(
                        c.current.key.clone(),
                        c.current.mod_revision,
                    ))
                    .and_then(Op::Put {
                        key: c.current.key.clone(),
                        value: meta::encode(&c.next),
                        lease: 0,
                    })
                })
            })
            .await?;
        out.txns = txns;
        for (c, written) in changes.iter().zip(written) {
            let p = &c.current;
            if !written {
                debug!(topic = %p.topic, partition = p.partition, "partition changed concurrently; not written");
                out.conflicts += 1;
                continue;
            }
            debug!(topic = %p.topic, partition = p.partition, leader = c.next.leader, epoch = c.next.leader_epoch, isr = ?c.next.isr, "partition state changed");
            out.written += 1;
            if c.next.leader != p.state.leader {
                out.leaders_changed += 1;
            }
        }
        metrics::counter!("sluice_controller_partition_leader_elections_total")
            .increment(out.leaders_changed as u64);
        info!(
            partitions = out.written,
            leaders_changed = out.leaders_changed,
            conflicts = out.conflicts,
            txns = out.txns,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{why}"
        );
        Ok(out)
    }

    /// Commits one fenced transaction per range of item indexes, built by
    /// `txn`. A range whose compares fail goes back as two halves, so one
    /// item that changed concurrently costs about 2·log2(range length)
    /// transactions rather than one per item of its range, and the others
    /// are still written. Returns whether each item (index `0..` the end of
    /// the last range) was written, and how many transactions it took. Lost
    /// leadership is an error.
    pub(super) async fn commit_in_halves(
        &self,
        ranges: Vec<Range<usize>>,
        txn: impl Fn(Range<usize>) -> Txn,
    ) -> Result<(Vec<bool>, usize)> {
        let mut written = vec![false; ranges.iter().map(|r| r.end).max().unwrap_or(0)];
        let mut txns = 0;
        // A stack: the next range to write last.
        let mut todo: Vec<Range<usize>> = ranges.into_iter().rev().collect();
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            txns += 1;
            let raced = || ControllerError::Raced {
                what: format!("{} keys", range.len()),
            };
            match self.commit(txn(range.clone()), raced).await {
                Ok(()) => written[range].fill(true),
                Err(ControllerError::Raced { .. }) if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(ControllerError::Raced { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((written, txns))
    }
}

#[cfg(test)]
mod tests;
