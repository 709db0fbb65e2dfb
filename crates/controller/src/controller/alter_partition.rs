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
use sluice_types::{ApiError, ErrorCode};
use tracing::info;

use super::{Controller, corrupt, meta_err};

/// One proposed ISR member with the registration epoch its leader saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

impl Controller {
    /// A broker's current registration epoch, or `None` when it is not
    /// registered.
    async fn registration_epoch(&self, broker_id: i32) -> Result<Option<i64>, ApiError> {
        Ok(self
            .store
            .get(&meta::broker_key(broker_id))
            .await
            .map_err(meta_err)?
            .map(|kv| kv.create_revision))
    }

    /// Refuses a request from a broker whose registration `broker_epoch` is
    /// not the current one (STALE_BROKER_EPOCH).
    pub async fn check_broker_epoch(
        &self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ApiError> {
        match self.registration_epoch(broker_id).await? {
            Some(current) if current == broker_epoch => Ok(()),
            Some(current) => Err(ApiError::new(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "broker {broker_id} sent registration epoch {broker_epoch}; its current registration is {current}"
                ),
            )),
            None => Err(ApiError::new(
                ErrorCode::StaleBrokerEpoch,
                format!("broker {broker_id} (registration epoch {broker_epoch}) is not registered"),
            )),
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
    ) -> Result<PartitionState, ApiError> {
        let leader = self.leader_key()?;
        let Some((record, _)) = self.topic(topic).await? else {
            return Err(ApiError::unknown_topic(topic));
        };
        let Some(replicas) = record.assignment.get(partition as usize) else {
            return Err(ApiError::unknown_partition(topic, partition));
        };
        let key = meta::partition_key(topic, partition);
        let Some(kv) = self.store.get(&key).await.map_err(meta_err)? else {
            return Err(ApiError::unknown_partition(topic, partition));
        };
        let state: PartitionState = meta::decode(&kv.value).map_err(|e| corrupt(&key, e))?;
        if state.leader != broker_id {
            return Err(ApiError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "broker {broker_id} is not the leader of {topic}-{partition} (leader is {})",
                    state.leader
                ),
            ));
        }
        if leader_epoch != state.leader_epoch {
            return Err(ApiError::new(
                ErrorCode::FencedLeaderEpoch,
                format!(
                    "{topic}-{partition}: leader epoch {leader_epoch} is not the current {}",
                    state.leader_epoch
                ),
            ));
        }
        if partition_epoch != state.partition_epoch {
            return Err(ApiError::new(
                ErrorCode::InvalidUpdateVersion,
                format!(
                    "{topic}-{partition}: partition epoch {partition_epoch} is not the current {}",
                    state.partition_epoch
                ),
            ));
        }
        if !new_isr.iter().any(|m| m.broker_id == broker_id)
            || new_isr.iter().any(|m| !replicas.contains(&m.broker_id))
        {
            return Err(ApiError::invalid_request(format!(
                "{topic}-{partition}: ISR {:?} must contain the leader and only replicas of {replicas:?}",
                new_isr.iter().map(|m| m.broker_id).collect::<Vec<_>>()
            )));
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
                return Err(ApiError::new(
                    ErrorCode::IneligibleReplica,
                    format!(
                        "{topic}-{partition}: broker {} fetched in registration epoch {}, its current registration is {}",
                        m.broker_id,
                        m.broker_epoch,
                        current.map_or("none".to_string(), |e| e.to_string())
                    ),
                ));
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
        self.commit(txn, || {
            ApiError::new(
                ErrorCode::InvalidUpdateVersion,
                format!(
                    "{topic}-{partition} or a member's registration changed concurrently; retry with the new partition epoch"
                ),
            )
        })
        .await?;
        info!(topic, partition, isr = ?next.isr, epoch = next.partition_epoch, "ISR changed");
        Ok(next)
    }
}
