//! Registration and ownership: `coordinators/<id>` under a lease, and the
//! `offsets-owners/` assignments the controller writes. Partitions given to
//! this coordinator start loading; partitions taken away (or all of them,
//! when the lease is lost) drop their groups at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sluice_metastore::{LeaseKeeper, register_ephemeral};
use sluice_types::meta::{self, CoordinatorRegistration, OffsetsOwner};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tracing::{info, warn};

use super::{Coordinator, Owned, State, now_ms};
use crate::error::NotServed;

impl State {
    /// Brings the owned partitions in line with `mine` (partition -> the
    /// epoch it was given to this coordinator in): a partition no longer
    /// ours, or ours in another epoch, is dropped and its groups unloaded;
    /// one newly ours starts loading. Returns the partitions to load.
    pub(super) fn reconcile(&mut self, mine: &HashMap<i32, i64>) -> Vec<(i32, i64)> {
        let gone: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(p, o)| mine.get(p) != Some(&o.epoch()))
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            if let Some(Owned::Active { mut groups, .. }) = self.partitions.remove(&p) {
                for g in groups.values_mut() {
                    g.unload(NotServed::Moved { partition: p });
                }
            }
            info!(partition = p, "gave up __consumer_offsets partition");
        }
        let mut to_load = Vec::new();
        for (p, epoch) in mine {
            if !self.partitions.contains_key(p) {
                self.partitions.insert(*p, Owned::Loading { epoch: *epoch });
                to_load.push((*p, *epoch));
            }
        }
        to_load
    }

    /// Drops every partition and fails every group's parked calls.
    pub(super) fn unload_all(&mut self, why: NotServed) {
        for (_, owned) in self.partitions.drain() {
            if let Owned::Active { mut groups, .. } = owned {
                for g in groups.values_mut() {
                    g.unload(why);
                }
            }
        }
    }
}

impl Coordinator {
    /// Registers `coordinators/<id>` under a fresh lease, waiting out a
    /// previous run's registration (see `register_ephemeral`).
    pub(super) async fn register(&self) -> anyhow::Result<LeaseKeeper> {
        let (host, port) = self.config.advertised()?;
        let lease = Duration::from_millis(self.config.lease_ms);
        let keeper = register_ephemeral(
            self.store.as_ref(),
            meta::coordinator_key(self.config.coordinator_id),
            lease,
            lease * 2 + Duration::from_secs(2),
            |_| {
                meta::encode(&CoordinatorRegistration {
                    coordinator_id: self.config.coordinator_id,
                    host: host.clone(),
                    port: port as i32,
                    start_time_ms: now_ms(),
                })
            },
        )
        .await
        .context("register the coordinator")?;
        keeper.map(|(k, _)| k).with_context(|| {
            format!(
                "coordinator.id {} is already registered by a live coordinator; pick another id or stop the other one",
                self.config.coordinator_id
            )
        })
    }

    /// On a lost lease: drop every group at once (the controller may already
    /// have given them to another coordinator), then register again.
    pub(super) async fn keep_registered(self: Arc<Self>, mut keeper: LeaseKeeper) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = self.store.revoke_lease(keeper.lease()).await;
                    return;
                }
                _ = keeper.lost() => {}
            }
            self.registered.send_replace(false);
            self.unload_all(NotServed::LeaseLost);
            warn!("coordinator registration lease lost; registering again");
            loop {
                match self.register().await {
                    Ok(k) => {
                        keeper = k;
                        self.registered.send_replace(true);
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "re-registration failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }

    pub(super) fn unload_all(&self, why: NotServed) {
        self.state.lock().unload_all(why);
    }

    /// Follows `offsets-owners/`: loads partitions given to this coordinator,
    /// drops the ones taken away.
    pub(super) async fn follow_ownership(self: Arc<Self>) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let res = async {
                let (kvs, rev) = self.store.range(meta::OFFSETS_OWNERS_PREFIX).await?;
                let mut owners = BTreeMap::new();
                for kv in kvs {
                    if let (Some(p), Ok(o)) = (
                        meta::parse_offsets_owner_key(&kv.key),
                        meta::decode::<OffsetsOwner>(&kv.value),
                    ) {
                        owners.insert(p, o);
                    }
                }
                self.clone().apply_owners(&owners).await;
                let mut stream = self
                    .store
                    .watch_prefix(meta::OFFSETS_OWNERS_PREFIX, rev + 1)
                    .await?;
                let mut lease_state = self.registered.subscribe();
                loop {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(()),
                        // Re-registered after a lost lease: start over from a fresh read.
                        r = lease_state.changed() => {
                            if r.is_err() || *lease_state.borrow() {
                                return Ok(());
                            }
                        }
                        ev = stream.next() => match ev {
                            Some(Ok(events)) => {
                                for e in events {
                                    let Some(p) = meta::parse_offsets_owner_key(&e.kv.key) else { continue };
                                    match e.kind {
                                        sluice_metastore::EventKind::Put => {
                                            if let Ok(o) = meta::decode::<OffsetsOwner>(&e.kv.value) {
                                                owners.insert(p, o);
                                            }
                                        }
                                        sluice_metastore::EventKind::Delete => {
                                            owners.remove(&p);
                                        }
                                    }
                                }
                                self.clone().apply_owners(&owners).await;
                            }
                            Some(Err(e)) => return Err(e),
                            None => return Ok(()),
                        }
                    }
                }
            }
            .await;
            if let Err(e) = res {
                warn!(error = %e, "ownership watch broke; reloading");
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    async fn apply_owners(self: Arc<Self>, owners: &BTreeMap<i32, OffsetsOwner>) {
        let me = self.config.coordinator_id;
        if !*self.registered.borrow() {
            return;
        }
        let mine: HashMap<i32, i64> = owners
            .iter()
            .filter(|(_, o)| o.coordinator_id == me)
            .map(|(p, o)| (*p, o.epoch))
            .collect();
        if !mine.is_empty() && self.state.lock().num_partitions == 0 {
            match self
                .store
                .get(&meta::topic_key(CONSUMER_OFFSETS_TOPIC))
                .await
            {
                Ok(Some(kv)) => match meta::decode::<meta::TopicRecord>(&kv.value) {
                    Ok(t) => self.state.lock().num_partitions = t.num_partitions(),
                    Err(e) => warn!(error = %e, "undecodable {CONSUMER_OFFSETS_TOPIC} record"),
                },
                Ok(None) => {}
                Err(e) => warn!(error = %e, "cannot read {CONSUMER_OFFSETS_TOPIC}"),
            }
        }
        let to_load = self.state.lock().reconcile(&mine);
        for (p, epoch) in to_load {
            self.tasks.spawn(self.clone().load_partition(p, epoch));
        }
    }
}
