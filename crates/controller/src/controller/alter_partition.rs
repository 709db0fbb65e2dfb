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

use sluice_metastore::{Compare, Op, Txn};
use sluice_types::meta::{self, PartitionState};
use tracing::info;

use super::{Controller, corrupt, meta_err};
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
        let leader = self.leader_key()?;
        let Some((record, _)) = self.topic(topic).await? else {
            return Err(ControllerError::UnknownTopic {
                topic: topic.to_string(),
            });
        };
        let Some(replicas) = record.assignment.get(partition as usize) else {
            return Err(ControllerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        };
        let key = meta::partition_key(topic, partition);
        let Some(kv) = self.store.get(&key).await.map_err(meta_err)? else {
            return Err(ControllerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        };
        let state: PartitionState = meta::decode(&kv.value).map_err(|e| corrupt(&key, e))?;
        if state.leader != broker_id {
            return Err(ControllerError::NotLeader {
                topic: topic.to_string(),
                partition,
                broker: broker_id,
                leader: state.leader,
            });
        }
        if leader_epoch != state.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                topic: topic.to_string(),
                partition,
                requested: leader_epoch,
                current: state.leader_epoch,
            });
        }
        if partition_epoch != state.partition_epoch {
            return Err(ControllerError::StalePartitionEpoch {
                topic: topic.to_string(),
                partition,
                requested: partition_epoch,
                current: state.partition_epoch,
            });
        }
        if !new_isr.iter().any(|m| m.broker_id == broker_id)
            || new_isr.iter().any(|m| !replicas.contains(&m.broker_id))
        {
            return Err(ControllerError::InvalidIsr {
                topic: topic.to_string(),
                partition,
                isr: new_isr.iter().map(|m| m.broker_id).collect(),
                replicas: replicas.clone(),
            });
        }
        let mut txn = Txn::fenced(&leader)
            .when(Compare::mod_revision_eq(key.clone(), kv.mod_revision))
            .when(Compare::create_revision_eq(
                meta::broker_key(broker_id),
                broker_epoch,
            ));
        for m in new_isr.iter().filter(|m| !state.isr.contains(&m.broker_id)) {
            let current = self.registration_epoch(m.broker_id).await?;
            if current != Some(m.broker_epoch) {
                return Err(ControllerError::IneligibleReplica {
                    topic: topic.to_string(),
                    partition,
                    broker: m.broker_id,
                    fetched_in: m.broker_epoch,
                    current,
                });
            }
            txn = txn.when(Compare::create_revision_eq(
                meta::broker_key(m.broker_id),
                m.broker_epoch,
            ));
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
        let txn = txn.and_then(Op::Put {
            key,
            value: meta::encode(&next),
            lease: 0,
        });
        self.commit(txn, || ControllerError::Raced {
            what: format!("{topic}-{partition} or a member's registration"),
        })
        .await?;
        info!(topic, partition, isr = ?next.isr, epoch = next.partition_epoch, "ISR changed");
        Ok(next)
    }
}
