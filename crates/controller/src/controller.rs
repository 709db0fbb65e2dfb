//! The controller: election loop and admin operations on the metadata store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ControllerError, Result};
use futures::StreamExt;
use rand::Rng;
use sluice_metastore::{Compare, LeaderKey, MetaError, MetadataStore, Op, Txn};
use sluice_types::meta::{
    self, BrokerRegistration, ControllerInfo, CoordinatorRegistration, OffsetsOwner,
    ProducerIdBlock, TopicRecord,
};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC as OFFSETS_TOPIC;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ControllerConfig;
use crate::placement::assign_replicas;

mod alter_partition;
pub use alter_partition::{IsrChange, IsrMember};
mod partition_writes;
use partition_writes::KEYS_PER_TXN;
mod quota_admin;
mod security_admin;
#[cfg(test)]
mod tests;
pub use security_admin::ScramChange;
mod topic_admin;
pub use topic_admin::NewTopic;

/// Producer ids handed to a broker per AllocateProducerIds call (Kafka's 1000).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// One controller instance. Cheap to share: the state is the store and the
/// current leadership.
pub struct Controller {
    store: Arc<dyn MetadataStore>,
    config: ControllerConfig,
    /// `Some` while this instance is the active controller.
    leadership: watch::Sender<Option<LeaderKey>>,
    /// Each live broker's registration epoch at the last reconcile, to see
    /// a broker that registered again in between (see `reconcile_partitions`).
    seen_epochs: std::sync::Mutex<HashMap<i32, i64>>,
    /// Held through each topic creation, deletion and change. A creation is
    /// several transactions (see `topic_admin`), and two creations of one
    /// name must not interleave theirs; a tokio Mutex because it is held
    /// across those awaits.
    topic_admin: tokio::sync::Mutex<()>,
    /// Held through each reconcile pass: the main loop's and one a topic
    /// creation starts must not interleave, or the slower could record an
    /// older `seen_epochs` and fence a rejoined broker again.
    reconciling: tokio::sync::Mutex<()>,
    /// The lease this instance campaigns (and, once elected, rules) with: how
    /// the crash watch tells the active controller's record is its own.
    campaign_lease: std::sync::atomic::AtomicI64,
}

pub(crate) fn meta_err(e: MetaError) -> ControllerError {
    ControllerError::MetadataStore(e)
}

fn corrupt(key: &str, e: serde_json::Error) -> ControllerError {
    ControllerError::CorruptRecord {
        key: key.to_string(),
        source: e,
    }
}

impl Controller {
    pub fn new(store: Arc<dyn MetadataStore>, config: ControllerConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            leadership: watch::Sender::new(None),
            seen_epochs: std::sync::Mutex::new(HashMap::new()),
            topic_admin: tokio::sync::Mutex::new(()),
            reconciling: tokio::sync::Mutex::new(()),
            campaign_lease: std::sync::atomic::AtomicI64::new(0),
        })
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Whether this instance is the active controller now.
    pub fn is_active(&self) -> bool {
        self.leadership.borrow().is_some()
    }

    /// Ready to serve (the health service's SERVING): active, or a standby
    /// that reaches etcd and sees an active controller to defer to.
    /// Also refreshes `sluice_controller_active`, so a standby reports 0
    /// rather than nothing (it is polled by the health loop).
    pub async fn is_ready(&self) -> bool {
        let active = self.is_active();
        metrics::gauge!("sluice_controller_active").set(f64::from(u8::from(active)));
        active || matches!(self.active_controller().await, Ok(Some(_)))
    }

    /// Resolves when this instance becomes the active controller.
    pub async fn wait_active(&self) {
        let mut rx = self.leadership.subscribe();
        let _ = rx.wait_for(|l| l.is_some()).await;
    }

    fn leader_key(&self) -> Result<LeaderKey> {
        self.leadership
            .borrow()
            .clone()
            .ok_or(ControllerError::NotController {
                controller_id: self.config.controller_id,
            })
    }

    /// Campaigns for leadership, serves while elected, and campaigns again after
    /// losing the lease, until `shutdown` fires.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let ttl = Duration::from_millis(self.config.lease_ms);
        let watching = shutdown.child_token();
        // The crash watch reaches the other processes' health services; the
        // lease still decides without it. (The files were read at startup;
        // one broken since turns the watch off, not the controller.)
        let tls = match self.config.security.inter_service() {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::error!(error = %e, "crash detection off: no TLS configuration to reach the other processes with");
                None
            }
        };
        if let (true, Some(tls)) = (self.config.crash_detection_enable, tls) {
            let me = self.clone();
            tokio::spawn(crate::crash_watch::run(
                self.store.clone(),
                tls,
                move || me.is_active(),
                {
                    let me = self.clone();
                    move || me.campaign_lease.load(std::sync::atomic::Ordering::Acquire)
                },
                watching.clone(),
            ));
        }
        let _stop_watching = watching.drop_guard();
        while !shutdown.is_cancelled() {
            match self.clone().serve_one_term(ttl, &shutdown).await {
                Ok(()) => {}
                Err(e) => {
                    metrics::gauge!("sluice_controller_active").set(0.0);
                    warn!(error = %e, "controller term ended; campaigning again");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
        self.leadership.send_replace(None);
        metrics::gauge!("sluice_controller_active").set(0.0);
    }

    async fn serve_one_term(
        self: Arc<Self>,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), MetaError> {
        // Registrations seen in an earlier term say nothing about this one:
        // another controller may have handled restarts in between.
        self.seen_epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let lease = self.store.grant_lease(ttl).await?;
        self.campaign_lease
            .store(lease, std::sync::atomic::Ordering::Release);
        let keeper = self.store.keep_alive(lease).await?;
        let value = self.config.controller_id.to_string().into_bytes();
        let leader = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = self.store.revoke_lease(lease).await;
                return Ok(());
            }
            _ = keeper.lost() => return Err(MetaError::LeaseNotFound { lease }),
            l = self.store.campaign(meta::CONTROLLER_ELECTION, value, lease) => l?,
        };
        // Checked by `ControllerConfig::validate` before the controller runs.
        let (host, port) = self.config.advertised().unwrap_or_default();
        let info = ControllerInfo {
            controller_id: self.config.controller_id,
            host,
            port: i32::from(port),
            epoch: leader.revision,
        };
        // Fenced like every other write: if we already lost, this fails.
        let res = self
            .store
            .txn(
                Txn::fenced(&leader)
                    .and_then(Op::Put {
                        key: meta::CONTROLLER_INFO_KEY.into(),
                        value: meta::encode(&info),
                        lease,
                    })
                    .and_then(Op::Put {
                        key: meta::CLUSTER_ID_KEY.into(),
                        value: self.cluster_id_or_new().await?.into_bytes(),
                        lease: 0,
                    }),
            )
            .await?;
        if !res.succeeded {
            return Err(MetaError::LeaseNotFound { lease });
        }
        info!(
            controller_id = self.config.controller_id,
            epoch = leader.revision,
            "elected active controller"
        );
        self.leadership.send_replace(Some(leader.clone()));
        metrics::counter!("sluice_controller_elections_total").increment(1);
        metrics::gauge!("sluice_controller_active").set(1.0);
        let (_, rev) = self.store.range(meta::BROKERS_PREFIX).await?;
        let mut brokers = self
            .store
            .watch_prefix(meta::BROKERS_PREFIX, rev + 1)
            .await?;
        let (_, rev) = self.store.range(meta::COORDINATORS_PREFIX).await?;
        let mut coordinators = self
            .store
            .watch_prefix(meta::COORDINATORS_PREFIX, rev + 1)
            .await?;
        // Brokers and coordinators may have come or gone while no controller
        // was active.
        self.reconcile_logged().await;
        self.reconcile_owners_logged().await;
        let mut imbalance_check = tokio::time::interval(Duration::from_secs(
            self.config.leader_imbalance_check_interval_seconds.max(1),
        ));
        imbalance_check.reset(); // the first check one interval from now, as Kafka
        // Ownership is also reconciled on a timer: a reconcile that failed
        // (an etcd hiccup) must not leave a dead coordinator's groups
        // unserved until the next coordinator comes or goes.
        let mut owners_check = tokio::time::interval(Duration::from_secs(5));
        owners_check.reset();
        let mut metrics_tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = owners_check.tick() => self.reconcile_owners_logged().await,
                _ = metrics_tick.tick() => self.report_metrics().await,
                _ = imbalance_check.tick(), if self.config.auto_leader_rebalance_enable => {
                    // `write_partition_states` logs what moved.
                    if let Err(e) = self.rebalance_leaders().await {
                        warn!(error = %e, "preferred leader election failed");
                    }
                }
                _ = shutdown.cancelled() => {
                    self.leadership.send_replace(None);
                    let _ = self.store.resign(&leader).await;
                    let _ = self.store.revoke_lease(lease).await;
                    info!("controller resigned on shutdown");
                    return Ok(());
                }
                _ = keeper.lost() => {
                    // Step down at once: another controller may already be elected.
                    self.leadership.send_replace(None);
                    warn!("controller lease lost; stepped down");
                    return Err(MetaError::LeaseNotFound { lease });
                }
                ev = coordinators.next() => {
                    if !matches!(ev, Some(Ok(_))) {
                        if let Some(Err(e)) = ev {
                            warn!(error = %e, "coordinator watch broke; re-watching");
                        }
                        let (_, rev) = self.store.range(meta::COORDINATORS_PREFIX).await?;
                        coordinators = self
                            .store
                            .watch_prefix(meta::COORDINATORS_PREFIX, rev + 1)
                            .await?;
                    }
                    self.reconcile_owners_logged().await;
                }
                ev = brokers.next() => match ev {
                    Some(Ok(_)) => self.reconcile_logged().await,
                    Some(Err(e)) => {
                        warn!(error = %e, "broker watch broke; re-watching");
                        let (_, rev) = self.store.range(meta::BROKERS_PREFIX).await?;
                        brokers = self.store.watch_prefix(meta::BROKERS_PREFIX, rev + 1).await?;
                        self.reconcile_logged().await;
                    }
                    None => {
                        let (_, rev) = self.store.range(meta::BROKERS_PREFIX).await?;
                        brokers = self.store.watch_prefix(meta::BROKERS_PREFIX, rev + 1).await?;
                        self.reconcile_logged().await;
                    }
                },
            }
        }
    }

    /// Cluster-wide gauges, from the active controller only (a standby's
    /// view would double-count in sums across controllers).
    async fn report_metrics(&self) {
        let (Ok(parts), Ok(live)) = (self.load_partitions().await, self.live_ids().await) else {
            return;
        };
        let offline = parts.iter().filter(|p| p.state.leader < 0).count();
        let under = parts
            .iter()
            .filter(|p| p.state.leader >= 0 && p.state.isr.len() < p.replicas.len())
            .count();
        metrics::gauge!("sluice_controller_active").set(1.0);
        metrics::gauge!("sluice_controller_partitions").set(parts.len() as f64);
        metrics::gauge!("sluice_controller_offline_partitions").set(offline as f64);
        metrics::gauge!("sluice_controller_under_replicated_partitions").set(under as f64);
        metrics::gauge!("sluice_controller_live_brokers").set(live.len() as f64);
    }

    async fn reconcile_owners_logged(&self) {
        match self.reconcile_offsets_owners().await {
            Ok(0) => {}
            Ok(n) => info!(
                partitions = n,
                "moved __consumer_offsets partitions between coordinators"
            ),
            Err(e) => warn!(error = %e, "cannot update __consumer_offsets ownership"),
        }
    }

    /// Owner of each `__consumer_offsets` partition.
    pub async fn offsets_owners(&self) -> Result<BTreeMap<i32, OffsetsOwner>> {
        let (kvs, _) = self
            .store
            .range(meta::OFFSETS_OWNERS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = BTreeMap::new();
        for kv in kvs {
            if let Some(p) = meta::parse_offsets_owner_key(&kv.key) {
                out.insert(p, meta::decode(&kv.value).map_err(|e| corrupt(&kv.key, e))?);
            }
        }
        Ok(out)
    }

    /// Registered (live) coordinators, sorted by id.
    pub async fn live_coordinators(&self) -> Result<Vec<CoordinatorRegistration>> {
        let (kvs, _) = self
            .store
            .range(meta::COORDINATORS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            out.push(
                meta::decode::<CoordinatorRegistration>(&kv.value)
                    .map_err(|e| corrupt(&kv.key, e))?,
            );
        }
        out.sort_by_key(|c| c.coordinator_id);
        Ok(out)
    }

    /// Hands `__consumer_offsets` partitions to live coordinators (see
    /// [`crate::offsets_owners`]). Returns how many moved.
    pub async fn reconcile_offsets_owners(&self) -> Result<usize> {
        let leader = self.leader_key()?;
        let Some((topic, _)) = self.topic(OFFSETS_TOPIC).await? else {
            return Ok(0);
        };
        let live = self
            .live_coordinators()
            .await?
            .into_iter()
            .map(|c| c.coordinator_id)
            .collect();
        let (kvs, _) = self
            .store
            .range(meta::OFFSETS_OWNERS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut current = BTreeMap::new();
        let mut revisions = HashMap::new();
        for kv in kvs {
            let Some(p) = meta::parse_offsets_owner_key(&kv.key) else {
                continue;
            };
            current.insert(
                p,
                meta::decode::<OffsetsOwner>(&kv.value).map_err(|e| corrupt(&kv.key, e))?,
            );
            revisions.insert(p, kv.mod_revision);
        }
        let changes = crate::offsets_owners::assign_owners(topic.num_partitions(), &current, &live);
        if changes.is_empty() {
            return Ok(0);
        }
        // Chunked for etcd's `--max-txn-ops`: `offsets.topic.num.partitions`
        // may be large. Each entry carries its own epoch, so a move need not
        // be atomic with the others; a chunk that races stops the pass, and
        // the next change or timer tick reads again.
        let changes: Vec<(i32, OffsetsOwner)> = changes.into_iter().collect();
        for chunk in changes.chunks(KEYS_PER_TXN) {
            let mut txn = Txn::fenced(&leader);
            for (p, owner) in chunk {
                let key = meta::offsets_owner_key(*p);
                txn = match revisions.get(p) {
                    Some(rev) => txn.when(Compare::mod_revision_eq(key.clone(), *rev)),
                    None => txn.when(Compare::absent(key.clone())),
                }
                .and_then(Op::Put {
                    key,
                    value: meta::encode(owner),
                    lease: 0,
                });
            }
            self.commit(txn, || ControllerError::Raced {
                what: "offsets ownership (retried on the next change)".into(),
            })
            .await?;
            for (p, o) in chunk {
                info!(
                    partition = p,
                    coordinator = o.coordinator_id,
                    epoch = o.epoch,
                    "__consumer_offsets partition assigned"
                );
            }
        }
        Ok(changes.len())
    }

    /// Creates `__consumer_offsets` if it is missing (compacted, RF capped by
    /// the live brokers) and assigns its partitions to coordinators. Returns
    /// its partition count.
    pub async fn ensure_offsets_topic(&self) -> Result<i32> {
        self.leader_key()?;
        if let Some((t, _)) = self.topic(OFFSETS_TOPIC).await? {
            return Ok(t.num_partitions());
        }
        let live = self.live_brokers().await?;
        if live.is_empty() {
            return Err(ControllerError::NoBrokerForOffsets {
                topic: OFFSETS_TOPIC.to_string(),
            });
        }
        let want = self.config.offsets_topic_replication_factor;
        let rf = want.min(live.len() as i32);
        if rf < want {
            warn!(
                wanted = want,
                live_brokers = live.len(),
                "creating {OFFSETS_TOPIC} with replication factor {rf}: offsets.topic.replication.factor is larger than the live brokers"
            );
        }
        let partitions = self.config.offsets_topic_num_partitions;
        let record = TopicRecord {
            name: OFFSETS_TOPIC.into(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            assignment: self.place(&live, 0, partitions, rf)?,
            configs: BTreeMap::from([
                ("cleanup.policy".into(), "compact".into()),
                (
                    "segment.bytes".into(),
                    self.config.offsets_topic_segment_bytes.to_string(),
                ),
            ]),
            internal: true,
        };
        let ids: Vec<i32> = live.iter().map(|b| b.broker_id).collect();
        let serialized = self.topic_admin.lock().await;
        // Read after the lock, as in `create_topic`.
        let leader = self.leader_key()?;
        match self
            .write_new_topic(&serialized, &leader, &record, &ids)
            .await
        {
            Ok(()) => info!(partitions, rf, "created {OFFSETS_TOPIC}"),
            // Another request created it first.
            Err(ControllerError::TopicExists { .. }) => {}
            Err(e) => return Err(e),
        }
        drop(serialized);
        self.reconcile_owners_logged().await;
        Ok(partitions)
    }

    async fn reconcile_logged(&self) {
        // `write_partition_states` logs what changed.
        if let Err(e) = self.reconcile_partitions().await {
            warn!(error = %e, "cannot update partition leadership");
        }
    }

    async fn live_ids(&self) -> Result<HashSet<i32>> {
        Ok(self
            .live_brokers()
            .await?
            .into_iter()
            .map(|b| b.broker_id)
            .collect())
    }

    async fn cluster_id_or_new(&self) -> Result<String, MetaError> {
        Ok(match self.store.get(meta::CLUSTER_ID_KEY).await? {
            Some(kv) => String::from_utf8_lossy(&kv.value).into_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        })
    }

    /// The cluster id, once a controller has been elected.
    pub async fn cluster_id(&self) -> Result<String> {
        Ok(self
            .store
            .get(meta::CLUSTER_ID_KEY)
            .await
            .map_err(meta_err)?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .unwrap_or_default())
    }

    /// Places new partitions over the live brokers: rack-aware when any broker
    /// has `broker.rack`, with Kafka's random start so topics spread.
    fn place(
        &self,
        live: &[BrokerRegistration],
        first_partition: i32,
        count: i32,
        rf: i32,
    ) -> Result<Vec<Vec<i32>>> {
        let mut rng = rand::rng();
        let n = live.len().max(1);
        let (start, shift) = (rng.random_range(0..n), rng.random_range(0..n));
        if live.iter().any(|b| b.rack.is_some()) {
            let brokers: Vec<(i32, String)> = live
                .iter()
                .map(|b| (b.broker_id, b.rack.clone().unwrap_or_default()))
                .collect();
            crate::placement::assign_replicas_rack_aware(
                &brokers,
                first_partition,
                count,
                rf,
                start,
                shift,
            )
        } else {
            let ids: Vec<i32> = live.iter().map(|b| b.broker_id).collect();
            assign_replicas(&ids, first_partition, count, rf, start, shift)
        }
    }

    /// Registered (live) brokers, sorted by id.
    pub async fn live_brokers(&self) -> Result<Vec<BrokerRegistration>> {
        let (kvs, _) = self
            .store
            .range(meta::BROKERS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let mut b =
                meta::decode::<BrokerRegistration>(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
            b.epoch = kv.create_revision;
            out.push(b);
        }
        out.sort_by_key(|b| b.broker_id);
        Ok(out)
    }

    /// The active controller's endpoint and epoch, if one is elected.
    pub async fn active_controller(&self) -> Result<Option<ControllerInfo>> {
        let Some(kv) = self
            .store
            .get(meta::CONTROLLER_INFO_KEY)
            .await
            .map_err(meta_err)?
        else {
            return Ok(None);
        };
        Ok(Some(
            meta::decode(&kv.value).map_err(|e| corrupt(&kv.key, e))?,
        ))
    }

    async fn topic(&self, name: &str) -> Result<Option<(TopicRecord, i64)>> {
        let key = meta::topic_key(name);
        let Some(kv) = self.store.get(&key).await.map_err(meta_err)? else {
            return Ok(None);
        };
        let t = meta::decode(&kv.value).map_err(|e| corrupt(&key, e))?;
        Ok(Some((t, kv.mod_revision)))
    }

    /// Runs a fenced transaction; a failed compare is either lost leadership or
    /// the caller's own condition (`on_conflict`).
    async fn commit(&self, txn: Txn, on_conflict: impl FnOnce() -> ControllerError) -> Result<()> {
        let res = self.store.txn(txn).await.map_err(meta_err)?;
        if res.succeeded {
            return Ok(());
        }
        // Tell the two apart so a deposed controller says so.
        self.leader_key()?;
        let current = self.leadership.borrow().clone();
        let still = match current {
            Some(l) => self
                .store
                .get(&l.key)
                .await
                .map_err(meta_err)?
                .is_some_and(|kv| kv.create_revision == l.revision),
            None => false,
        };
        if !still {
            self.leadership.send_replace(None);
            return Err(ControllerError::LostLeadership);
        }
        Err(on_conflict())
    }

    /// Hands out the next block of producer ids (fenced CAS on `producer-ids`).
    pub async fn allocate_producer_ids(&self) -> Result<(i64, i32)> {
        let leader = self.leader_key()?;
        for _ in 0..16 {
            let current = self
                .store
                .get(meta::PRODUCER_IDS_KEY)
                .await
                .map_err(meta_err)?;
            let (start, cond) = match &current {
                Some(kv) => (
                    meta::decode::<ProducerIdBlock>(&kv.value)
                        .map_err(|e| corrupt(meta::PRODUCER_IDS_KEY, e))?
                        .next_start,
                    Compare::mod_revision_eq(meta::PRODUCER_IDS_KEY, kv.mod_revision),
                ),
                None => (0, Compare::absent(meta::PRODUCER_IDS_KEY)),
            };
            let next = ProducerIdBlock {
                next_start: start + PRODUCER_ID_BLOCK_SIZE as i64,
            };
            let txn = Txn::fenced(&leader).when(cond).and_then(Op::Put {
                key: meta::PRODUCER_IDS_KEY.into(),
                value: meta::encode(&next),
                lease: 0,
            });
            match self
                .commit(txn, || ControllerError::Raced {
                    what: "the producer id block".into(),
                })
                .await
            {
                Ok(()) => return Ok((start, PRODUCER_ID_BLOCK_SIZE)),
                Err(ControllerError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ControllerError::ProducerIdContention)
    }
}
