//! Topic administration on the metadata store: create and delete topics, add
//! partitions, change topic configs. Every write is a fenced transaction.
//!
//! A topic's partition states are written in chunks of
//! [`KEYS_PER_TXN`](super::KEYS_PER_TXN) (etcd's `--max-txn-ops` is 128 by
//! default, so one transaction cannot hold a large topic) and its record
//! last: brokers and the controller know a partition exists from the record,
//! so none sees a topic whose partition states are missing. A creation cut
//! short (lost leadership, etcd gone) leaves partition states no record
//! lists; every reader skips those, and the next creation of the name clears
//! them first. Operations are serialized by `Controller::topic_admin` so two
//! creations of one name cannot interleave their chunks.

use std::collections::{BTreeMap, HashSet};

use sluice_metastore::{Compare, LeaderKey, Op, Txn};
use sluice_types::meta::{self, PartitionState, TopicRecord};
use sluice_types::names::{collision_name, is_internal_topic, validate_topic_name};
use tokio::sync::MutexGuard;
use tracing::info;

use super::{Controller, KEYS_PER_TXN, meta_err};
use crate::error::{ControllerError, Result};
use crate::topic_config;

/// A topic to create, after defaults are applied by [`Controller::create_topic`].
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    /// -1 for `num.partitions`.
    pub num_partitions: i32,
    /// -1 for `default.replication.factor`.
    pub replication_factor: i32,
    /// Explicit placement, partition order.
    pub assignment: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

impl Controller {
    /// Creates a topic: validates, places replicas over live brokers, and writes
    /// its partition states, then the topic record (see the module docs).
    pub async fn create_topic(&self, req: NewTopic, validate_only: bool) -> Result<TopicRecord> {
        self.leader_key()?;
        validate_topic_name(&req.name).map_err(ControllerError::InvalidName)?;
        if is_internal_topic(&req.name) || req.name.starts_with("__") {
            return Err(ControllerError::ReservedName {
                topic: req.name.clone(),
            });
        }
        topic_config::validate(&req.configs)?;
        let live = self.live_brokers().await?;
        let brokers: Vec<i32> = live.iter().map(|b| b.broker_id).collect();
        let assignment = match req.assignment {
            Some(a) => {
                if req.num_partitions != -1 || req.replication_factor != -1 {
                    return Err(ControllerError::InvalidRequest(
                        "give either an explicit replica assignment or partitions and replication factor, not both".into(),
                    ));
                }
                validate_assignment(&a, &brokers)?;
                a
            }
            None => {
                let partitions = if req.num_partitions == -1 {
                    self.config.num_partitions
                } else {
                    req.num_partitions
                };
                if partitions < 1 {
                    return Err(ControllerError::TooFewPartitions { partitions });
                }
                let rf = if req.replication_factor == -1 {
                    self.config.default_replication_factor
                } else {
                    req.replication_factor
                };
                self.place(&live, 0, partitions, rf)?
            }
        };
        let serialized = self.topic_admin.lock().await;
        // Read after the lock: a wait behind a long creation may span a lost
        // and regained term, whose writes would fail the old fence.
        let leader = self.leader_key()?;
        if let Some((existing, _)) = self.topic(&req.name).await? {
            return Err(topic_exists(&existing.name));
        }
        let (topics, _) = self
            .store
            .range(meta::TOPICS_PREFIX)
            .await
            .map_err(meta_err)?;
        let collision = collision_name(&req.name);
        for kv in &topics {
            let other = kv.key.trim_start_matches(meta::TOPICS_PREFIX);
            if collision_name(other) == collision {
                return Err(ControllerError::CollidingName {
                    topic: req.name.clone(),
                    existing: other.to_string(),
                });
            }
        }
        let record = TopicRecord {
            name: req.name.clone(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            assignment,
            configs: req.configs,
            internal: false,
        };
        if validate_only {
            return Ok(record);
        }
        self.write_new_topic(&serialized, &leader, &record, &brokers)
            .await?;
        info!(topic = %record.name, partitions = record.num_partitions(), rf = record.replication_factor(), "created topic");
        Ok(record)
    }

    /// Writes a new topic: its partition states in chunks, then its record,
    /// each only while no record of the name exists. `live` are the brokers
    /// the initial leaders were picked from. Called with `topic_admin` held.
    pub(super) async fn write_new_topic(
        &self,
        _serialized: &MutexGuard<'_, ()>,
        leader: &LeaderKey,
        record: &TopicRecord,
        live: &[i32],
    ) -> Result<()> {
        let name = &record.name;
        let key = meta::topic_key(name);
        let unless_created = || Txn::fenced(leader).when(Compare::absent(key.clone()));
        // What an earlier creation cut short left. In a transaction of its
        // own: etcd refuses a put to a key a delete of the same transaction
        // covers.
        let txn = unless_created().and_then(Op::DeletePrefix {
            prefix: meta::partitions_prefix(name),
        });
        self.commit(txn, || topic_exists(name)).await?;
        for (i, chunk) in record.assignment.chunks(KEYS_PER_TXN).enumerate() {
            let first = i * KEYS_PER_TXN;
            let mut txn = unless_created();
            for (j, replicas) in chunk.iter().enumerate() {
                txn = txn.and_then(Op::Put {
                    key: meta::partition_key(name, (first + j) as i32),
                    value: meta::encode(&initial_state(replicas, live)),
                    lease: 0,
                });
            }
            self.commit(txn, || topic_exists(name)).await?;
        }
        let txn = unless_created().and_then(Op::Put {
            key: key.clone(),
            value: meta::encode(record),
            lease: 0,
        });
        self.commit(txn, || topic_exists(name)).await?;
        self.reconcile_if_brokers_left(live).await;
        Ok(())
    }

    /// A reconcile that ran while a topic was being written skipped its
    /// partitions (no record yet): if a broker the initial leaders were
    /// picked from is gone now, elect again rather than wait for the next
    /// broker change.
    async fn reconcile_if_brokers_left(&self, live: &[i32]) {
        match self.live_ids().await {
            Ok(now) if live.iter().all(|b| now.contains(b)) => {}
            // Unknown (etcd unreachable): elect anyway; it only costs reads.
            _ => self.reconcile_logged().await,
        }
    }

    /// Deletes a topic's metadata; brokers delete its data when they see it go.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        // The leadership is read after the lock: a wait behind a long creation
        // may span a lost and regained term.
        let _serialized = self.topic_admin.lock().await;
        let leader = self.leader_key()?;
        if is_internal_topic(name) {
            return Err(ControllerError::InternalTopic {
                topic: name.to_string(),
            });
        }
        if self.topic(name).await?.is_none() {
            return Err(ControllerError::UnknownTopic {
                topic: name.to_string(),
            });
        }
        let key = meta::topic_key(name);
        let txn = Txn::fenced(&leader)
            .when(Compare::present(key.clone()))
            .and_then(Op::Delete { key })
            .and_then(Op::DeletePrefix {
                prefix: meta::partitions_prefix(name),
            });
        self.commit(txn, || ControllerError::UnknownTopic {
            topic: name.to_string(),
        })
        .await?;
        info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<()> {
        // The leadership is read after the lock: a wait behind a long creation
        // may span a lost and regained term.
        let _serialized = self.topic_admin.lock().await;
        let leader = self.leader_key()?;
        let Some((mut topic, rev)) = self.topic(name).await? else {
            return Err(ControllerError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        let current = topic.num_partitions();
        if count <= current {
            return Err(ControllerError::PartitionCountNotHigher {
                topic: name.to_string(),
                current,
                requested: count,
            });
        }
        let live = self.live_brokers().await?;
        let brokers: Vec<i32> = live.iter().map(|b| b.broker_id).collect();
        let added = match assignment {
            Some(a) => {
                if a.len() as i32 != count - current {
                    return Err(ControllerError::InvalidAssignment {
                        reason: format!(
                            "assignment covers {} partitions, {} are being added",
                            a.len(),
                            count - current
                        ),
                    });
                }
                validate_assignment(&a, &brokers)?;
                a
            }
            None => self.place(&live, current, count - current, topic.replication_factor())?,
        };
        if validate_only {
            return Ok(());
        }
        // As a creation: the new partitions' states in chunks, the record
        // that lists them last, each only while the record is unchanged.
        let key = meta::topic_key(name);
        let unless_changed =
            || Txn::fenced(&leader).when(Compare::mod_revision_eq(key.clone(), rev));
        let raced = || ControllerError::Raced {
            what: format!("topic \"{name}\""),
        };
        // States an earlier addition cut short left past the current count:
        // the new ones overwrite some, the rest must not outlive this one.
        let (existing, _) = self
            .store
            .range(&meta::partitions_prefix(name))
            .await
            .map_err(meta_err)?;
        let leftovers: Vec<String> = existing
            .into_iter()
            .filter(|kv| meta::parse_partition_key(&kv.key).is_some_and(|(_, p)| p >= count))
            .map(|kv| kv.key)
            .collect();
        for chunk in leftovers.chunks(KEYS_PER_TXN) {
            let txn = chunk.iter().fold(unless_changed(), |txn, key| {
                txn.and_then(Op::Delete { key: key.clone() })
            });
            self.commit(txn, raced).await?;
        }
        for (i, chunk) in added.chunks(KEYS_PER_TXN).enumerate() {
            let first = current + (i * KEYS_PER_TXN) as i32;
            let mut txn = unless_changed();
            for (j, replicas) in chunk.iter().enumerate() {
                txn = txn.and_then(Op::Put {
                    key: meta::partition_key(name, first + j as i32),
                    value: meta::encode(&initial_state(replicas, &brokers)),
                    lease: 0,
                });
            }
            self.commit(txn, raced).await?;
        }
        topic.assignment.extend(added);
        let txn = unless_changed().and_then(Op::Put {
            key: key.clone(),
            value: meta::encode(&topic),
            lease: 0,
        });
        self.commit(txn, raced).await?;
        info!(topic = %name, from = current, to = count, "added partitions");
        self.reconcile_if_brokers_left(&brokers).await;
        Ok(())
    }

    /// Changes a topic's config overrides (fenced CAS on the topic record);
    /// brokers apply them as the record reaches them.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[crate::topic_config::ConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        // The leadership is read after the lock: a wait behind a long creation
        // may span a lost and regained term.
        let _serialized = self.topic_admin.lock().await;
        let leader = self.leader_key()?;
        // Read-modify-write: a change to the topic record by another
        // controller's term fails the CAS; read again and retry.
        for _ in 0..8 {
            let Some((mut topic, rev)) = self.topic(name).await? else {
                return Err(ControllerError::UnknownTopic {
                    topic: name.to_string(),
                });
            };
            topic.configs = crate::topic_config::apply_ops(&topic.configs, ops)?;
            if validate_only {
                return Ok(());
            }
            let key = meta::topic_key(name);
            let txn = Txn::fenced(&leader)
                .when(Compare::mod_revision_eq(key.clone(), rev))
                .and_then(Op::Put {
                    key,
                    value: meta::encode(&topic),
                    lease: 0,
                });
            match self
                .commit(txn, || ControllerError::Raced {
                    what: format!("topic \"{name}\""),
                })
                .await
            {
                Ok(()) => {
                    info!(topic = %name, ?ops, "altered topic configs");
                    return Ok(());
                }
                Err(ControllerError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ControllerError::Contended {
            what: format!("topic \"{name}\""),
        })
    }
}

fn topic_exists(name: &str) -> ControllerError {
    ControllerError::TopicExists {
        topic: name.to_string(),
    }
}

/// A new partition's state: the first live replica leads, every replica is in sync
/// (they are all empty).
fn initial_state(replicas: &[i32], live: &[i32]) -> PartitionState {
    let leader = replicas
        .iter()
        .copied()
        .find(|r| live.contains(r))
        .unwrap_or(-1);
    PartitionState {
        leader,
        leader_epoch: 0,
        isr: replicas.to_vec(),
        partition_epoch: 0,
    }
}

fn validate_assignment(a: &[Vec<i32>], live: &[i32]) -> Result<()> {
    let bad = |reason: String| Err(ControllerError::InvalidAssignment { reason });
    let Some(first) = a.first() else {
        return bad("the assignment is empty".into());
    };
    for (p, replicas) in a.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != first.len() {
            return bad(format!(
                "partition {p} has {} replicas; every partition needs the same non-zero count",
                replicas.len()
            ));
        }
        let distinct: HashSet<_> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return bad(format!("partition {p} lists a broker twice: {replicas:?}"));
        }
        if let Some(b) = replicas.iter().find(|b| !live.contains(b)) {
            return bad(format!(
                "partition {p} names broker {b}, which is not a live broker"
            ));
        }
    }
    Ok(())
}
