//! Requests partition leaders make of the controller: ISR changes
//! (AlterPartition) and the broker-epoch fence every broker request passes.
//!
//! A broker's epoch is the create revision of its `brokers/<id>` key: every
//! registration (a restart, or a re-registration after a lost lease) gets a
//! larger one. A request carrying an older epoch comes from an incarnation
//! that no longer exists (KIP-380), and an ISR may only grow by a replica in
//! the registration its leader saw fetching (KIP-903). Both are checked
//! inside the transaction that writes, so a registration that changes
//! between the check and the write fails the write.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use sluice_metastore::{Compare, Op, Txn};
use sluice_types::meta::{self, PartitionState};
use tracing::info;

use super::{Controller, KEYS_PER_TXN, corrupt, meta_err};
use crate::error::{ControllerError, Result};

/// One proposed ISR member with the registration epoch its leader saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

impl Controller {
    /// A broker's current registration epoch, or `None` when it is not
    /// registered.
    async fn registration_epoch(&self, broker_id: i32) -> Result<Option<i64>> {
        Ok(self
            .store
            .get(&meta::broker_key(broker_id))
            .await
            .map_err(meta_err)?
            .map(|kv| kv.create_revision))
    }

    /// Refuses a request from a broker whose registration `broker_epoch` is
    /// not the current one (STALE_BROKER_EPOCH).
    pub async fn check_broker_epoch(&self, broker_id: i32, broker_epoch: i64) -> Result<()> {
        match self.registration_epoch(broker_id).await? {
            Some(current) if current == broker_epoch => Ok(()),
            current => Err(ControllerError::StaleBrokerEpoch {
                broker: broker_id,
                sent: broker_epoch,
                current,
            }),
        }
    }

    /// An ISR change asked by a partition leader (Kafka's AlterPartition),
    /// checked against the leader's registration, its leader epoch, the
    /// partition epoch, and the registration of every replica it adds.
    #[allow(clippy::too_many_arguments)]
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<IsrMember>,
    ) -> Result<PartitionState> {
        let change = IsrChange {
            partition,
            leader_epoch,
            partition_epoch,
            new_isr,
        };
        self.alter_partitions(broker_id, broker_epoch, topic, vec![change])
            .await?
            .pop()
            .expect("one result per change")
    }

    /// ISR changes a partition leader asks for partitions of one topic, each
    /// checked as [`Self::alter_partition`] says and succeeding or failing
    /// alone, in order. A leader asks for all its partitions at once, and a
    /// broker back from a restart rejoins every ISR it was in: so the reads
    /// are shared (one topic record, one broker list, pipelined partition
    /// gets) and the writes go in chunked transactions, not several round
    /// trips per partition. An error of the whole call (not the controller,
    /// etcd unreachable, unknown topic) holds for every partition.
    pub async fn alter_partitions(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        topic: &str,
        changes: Vec<IsrChange>,
    ) -> Result<Vec<Result<PartitionState>>> {
        let leader = self.leader_key()?;
        let Some((record, _)) = self.topic(topic).await? else {
            return Err(ControllerError::UnknownTopic {
                topic: topic.to_string(),
            });
        };
        let registrations: HashMap<i32, i64> = self
            .live_brokers()
            .await?
            .into_iter()
            .map(|b| (b.broker_id, b.epoch))
            .collect();
        let keys: Vec<String> = changes
            .iter()
            .map(|c| meta::partition_key(topic, c.partition))
            .collect();
        // Owned keys and store: a stream of futures borrowing them is not
        // `Send` for every lifetime, which the gRPC service needs.
        let store = self.store.clone();
        let current: Vec<_> = futures::stream::iter(keys)
            .map(move |k| {
                let store = store.clone();
                async move { store.get(&k).await }
            })
            .buffered(PIPELINED_GETS)
            .try_collect()
            .await
            .map_err(meta_err)?;
        let mut results: Vec<Option<Result<PartitionState>>> = Vec::with_capacity(changes.len());
        let mut writes = Vec::new();
        // A partition written twice in one transaction is refused by etcd
        // as a whole: a repeat is refused alone here instead.
        let mut seen = HashSet::new();
        for (i, (change, kv)) in changes.into_iter().zip(current).enumerate() {
            let checked = (|| {
                if !seen.insert(change.partition) {
                    return Err(ControllerError::InvalidRequest(format!(
                        "{topic}-{} is listed twice",
                        change.partition
                    )));
                }
                let Some(replicas) = record.assignment.get(change.partition as usize) else {
                    return Err(unknown_partition(topic, change.partition));
                };
                let kv = kv.ok_or_else(|| unknown_partition(topic, change.partition))?;
                let state: PartitionState =
                    meta::decode(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
                let check = IsrCheck {
                    broker_id,
                    topic,
                    replicas,
                    registrations: &registrations,
                };
                let (next, members) = check.next_state(&change, &state)?;
                Ok(PendingIsr {
                    result: i,
                    partition: change.partition,
                    key: kv.key,
                    mod_revision: kv.mod_revision,
                    next,
                    members,
                })
            })();
            match checked {
                Ok(w) => {
                    writes.push(w);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        // Each chunk also compares the registration of the leader and of
        // every replica it adds: cut where those would pass the limit.
        let mut ranges = Vec::new();
        let (mut start, mut brokers) = (0, BTreeSet::new());
        for (i, w) in writes.iter().enumerate() {
            let mut with = brokers.clone();
            with.extend(w.members.iter().copied());
            if i > start && (i + 1 - start) + with.len() + 2 > KEYS_PER_TXN {
                ranges.push(start..i);
                start = i;
                with = w.members.iter().copied().collect();
            }
            brokers = with;
        }
        ranges.push(start..writes.len());
        let broker_key = meta::broker_key(broker_id);
        let (written, _) = self
            .commit_in_halves(ranges, |range| {
                let chunk = &writes[range];
                let members: BTreeSet<(i32, i64)> = chunk
                    .iter()
                    .flat_map(|w| w.members.iter().copied())
                    .collect();
                let txn = Txn::fenced(&leader).when(Compare::create_revision_eq(
                    broker_key.clone(),
                    broker_epoch,
                ));
                let txn = members.into_iter().fold(txn, |txn, (id, epoch)| {
                    txn.when(Compare::create_revision_eq(meta::broker_key(id), epoch))
                });
                chunk.iter().fold(txn, |txn, w| {
                    txn.when(Compare::mod_revision_eq(w.key.clone(), w.mod_revision))
                        .and_then(Op::Put {
                            key: w.key.clone(),
                            value: meta::encode(&w.next),
                            lease: 0,
                        })
                })
            })
            .await?;
        for (w, written) in writes.into_iter().zip(written) {
            let partition = w.partition;
            results[w.result] = Some(if written {
                info!(topic, partition, isr = ?w.next.isr, epoch = w.next.partition_epoch, "ISR changed");
                Ok(w.next)
            } else {
                Err(ControllerError::Raced {
                    what: format!("{topic}-{partition} or a member's registration"),
                })
            });
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every change has a result"))
            .collect())
    }
}

/// Partition gets in flight at once for one AlterPartition request.
const PIPELINED_GETS: usize = 32;

/// One partition's ISR change in an AlterPartition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
}

/// A checked ISR change waiting for its transaction.
struct PendingIsr {
    /// Its index in the request.
    result: usize,
    partition: i32,
    key: String,
    mod_revision: i64,
    next: PartitionState,
    /// Replicas it adds, with the registration epochs the leader saw; the
    /// write holds only while they are still current.
    members: Vec<(i32, i64)>,
}

fn unknown_partition(topic: &str, partition: i32) -> ControllerError {
    ControllerError::UnknownPartition {
        topic: topic.to_string(),
        partition,
    }
}

/// What an ISR change is checked against (pure).
struct IsrCheck<'a> {
    broker_id: i32,
    topic: &'a str,
    replicas: &'a [i32],
    /// Each live broker's registration epoch.
    registrations: &'a HashMap<i32, i64>,
}

impl IsrCheck<'_> {
    /// The partition's next state, and the replicas it adds with their
    /// epochs, or why the change is refused.
    fn next_state(
        &self,
        change: &IsrChange,
        state: &PartitionState,
    ) -> Result<(PartitionState, Vec<(i32, i64)>)> {
        let (topic, partition) = (self.topic.to_string(), change.partition);
        if state.leader != self.broker_id {
            return Err(ControllerError::NotLeader {
                topic,
                partition,
                broker: self.broker_id,
                leader: state.leader,
            });
        }
        if change.leader_epoch != state.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                topic,
                partition,
                requested: change.leader_epoch,
                current: state.leader_epoch,
            });
        }
        if change.partition_epoch != state.partition_epoch {
            return Err(ControllerError::StalePartitionEpoch {
                topic,
                partition,
                requested: change.partition_epoch,
                current: state.partition_epoch,
            });
        }
        let new_isr = &change.new_isr;
        if !new_isr.iter().any(|m| m.broker_id == self.broker_id)
            || new_isr
                .iter()
                .any(|m| !self.replicas.contains(&m.broker_id))
        {
            return Err(ControllerError::InvalidIsr {
                topic,
                partition,
                isr: new_isr.iter().map(|m| m.broker_id).collect(),
                replicas: self.replicas.to_vec(),
            });
        }
        let mut members = Vec::new();
        for m in new_isr.iter().filter(|m| !state.isr.contains(&m.broker_id)) {
            let current = self.registrations.get(&m.broker_id).copied();
            if current != Some(m.broker_epoch) {
                return Err(ControllerError::IneligibleReplica {
                    topic,
                    partition,
                    broker: m.broker_id,
                    fetched_in: m.broker_epoch,
                    current,
                });
            }
            members.push((m.broker_id, m.broker_epoch));
        }
        let mut isr: Vec<i32> = new_isr.iter().map(|m| m.broker_id).collect();
        isr.sort_unstable();
        isr.dedup();
        let next = PartitionState {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            isr,
            partition_epoch: state.partition_epoch + 1,
        };
        Ok((next, members))
    }
}
