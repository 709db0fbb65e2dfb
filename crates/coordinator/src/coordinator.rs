//! A running coordinator: registration under a lease, ownership of
//! `__consumer_offsets` partitions (assigned by the controller), loading a
//! partition's groups from the log, writing offsets and group records, and the
//! group timers.
//!
//! Ownership: the controller writes `offsets-owners/<p>` = (coordinator,
//! epoch). On gaining a partition the coordinator writes an `owner` marker
//! with its epoch (acks=all), reads the partition up to that marker and
//! rebuilds its groups (COORDINATOR_LOAD_IN_PROGRESS meanwhile). On losing it,
//! or its own lease, it drops the groups at once (NOT_COORDINATOR).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use sluice_client::{
    ClientConfig, Consumer, DeliveryFuture, Producer, ProducerRecord, TopicPartition,
};
use sluice_metastore::{LeaseKeeper, MetadataStore, register_ephemeral};
use sluice_types::hash::group_offsets_partition;
use sluice_types::meta::{self, BrokerRegistration, CoordinatorRegistration, OffsetsOwner};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::CoordinatorConfig;
use crate::group::{Effects, Group, GroupRecord};
use crate::records::{self, GroupValue, OwnerValue, RecordKey};

pub(crate) use sluice_types::now_ms;

enum Owned {
    Loading {
        epoch: i64,
    },
    Active {
        epoch: i64,
        /// Which load built these groups: a partition can be loaded again
        /// in the same epoch (our lease lost and regained without a move).
        load: u64,
        groups: BTreeMap<String, Group>,
    },
}

impl Owned {
    fn epoch(&self) -> i64 {
        match self {
            Owned::Loading { epoch } | Owned::Active { epoch, .. } => *epoch,
        }
    }
}

#[derive(Default)]
struct State {
    /// Partitions of `__consumer_offsets`; 0 until known.
    num_partitions: i32,
    partitions: HashMap<i32, Owned>,
}

/// Where a group lives: its partition and the ownership epoch it was read in.
#[derive(Debug, Clone, Copy)]
pub struct GroupHome {
    pub partition: i32,
    pub epoch: i64,
    /// The load of the partition the group lives in (see `Owned::Active`).
    pub load: u64,
}

/// One write to `__consumer_offsets`: its records, and where to send their
/// delivery futures once the producer has them.
struct WriteJob {
    records: Vec<ProducerRecord>,
    queued: oneshot::Sender<Result<Vec<DeliveryFuture>, ApiError>>,
}

/// A write on its way to `__consumer_offsets`.
pub struct Submitted {
    /// Its place in the log order of this coordinator's writes.
    pub number: u64,
    queued: oneshot::Receiver<Result<Vec<DeliveryFuture>, ApiError>>,
}

/// The client side the coordinator uses to read and write its partitions.
struct Clients {
    producer: Producer,
    config: ClientConfig,
}

pub struct Coordinator {
    pub config: CoordinatorConfig,
    store: Arc<dyn MetadataStore>,
    state: Mutex<State>,
    clients: tokio::sync::OnceCell<Clients>,
    /// Bootstrap for the internal clients; `None`: the live brokers in the store.
    bootstrap: Option<String>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// True once registered (for readiness).
    registered: watch::Sender<bool>,
    /// The queue of writes to `__consumer_offsets`, and their numbering.
    writes: mpsc::UnboundedSender<WriteJob>,
    write_number: AtomicU64,
    /// Numbers each completed partition load.
    loads: AtomicU64,
}

fn not_coordinator(group: &str, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotCoordinator,
        format!(
            "this coordinator does not serve group \"{group}\": {why}; find the coordinator again"
        ),
    )
}

impl Coordinator {
    /// Registers and starts following ownership. `bootstrap` overrides where
    /// the internal producer and consumer connect (standalone mode).
    pub async fn start(
        config: CoordinatorConfig,
        store: Arc<dyn MetadataStore>,
        bootstrap: Option<String>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        let (writes, jobs) = mpsc::unbounded_channel();
        let c = Arc::new(Self {
            config,
            store,
            state: Mutex::new(State::default()),
            clients: tokio::sync::OnceCell::new(),
            bootstrap,
            shutdown,
            tasks: TaskTracker::new(),
            registered: watch::Sender::new(false),
            writes,
            write_number: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        });
        let keeper = c.register().await?;
        c.registered.send_replace(true);
        c.tasks.spawn(c.clone().run_writer(jobs));
        c.tasks.spawn(c.clone().keep_registered(keeper));
        c.tasks.spawn(c.clone().follow_ownership());
        c.tasks.spawn(c.clone().run_timers());
        c.tasks.spawn(c.clone().report_metrics());
        info!(
            coordinator_id = c.config.coordinator_id,
            "coordinator registered"
        );
        Ok(c)
    }

    /// Ready to serve (the health service's SERVING): registered, and every
    /// `__consumer_offsets` partition it owns loaded.
    pub fn is_ready(&self) -> bool {
        *self.registered.borrow()
            && !self
                .state
                .lock()
                .partitions
                .values()
                .any(|o| matches!(o, Owned::Loading { .. }))
    }

    pub fn subscribe_registered(&self) -> watch::Receiver<bool> {
        self.registered.subscribe()
    }

    /// Stops the background tasks and drops every group.
    pub async fn close(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.unload_all("the coordinator is shutting down");
    }

    /// Registers `coordinators/<id>` under a fresh lease, waiting out a
    /// previous run's registration (see `register_ephemeral`).
    async fn register(&self) -> anyhow::Result<LeaseKeeper> {
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
    async fn keep_registered(self: Arc<Self>, mut keeper: LeaseKeeper) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = self.store.revoke_lease(keeper.lease()).await;
                    return;
                }
                _ = keeper.lost() => {}
            }
            self.registered.send_replace(false);
            self.unload_all("the coordinator lost its registration lease");
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

    fn unload_all(&self, why: &str) {
        let mut st = self.state.lock();
        for (_, owned) in st.partitions.drain() {
            if let Owned::Active { mut groups, .. } = owned {
                for g in groups.values_mut() {
                    g.unload(ErrorCode::NotCoordinator, why);
                }
            }
        }
    }

    /// Follows `offsets-owners/`: loads partitions given to this coordinator,
    /// drops the ones taken away.
    async fn follow_ownership(self: Arc<Self>) {
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
        let mut to_load = Vec::new();
        {
            let mut st = self.state.lock();
            let gone: Vec<i32> = st
                .partitions
                .iter()
                .filter(|(p, o)| mine.get(p) != Some(&o.epoch()))
                .map(|(p, _)| *p)
                .collect();
            for p in gone {
                if let Some(Owned::Active { mut groups, .. }) = st.partitions.remove(&p) {
                    for g in groups.values_mut() {
                        g.unload(
                            ErrorCode::NotCoordinator,
                            "its __consumer_offsets partition moved to another coordinator",
                        );
                    }
                }
                info!(partition = p, "gave up __consumer_offsets partition");
            }
            for (p, epoch) in &mine {
                if !st.partitions.contains_key(p) {
                    st.partitions.insert(*p, Owned::Loading { epoch: *epoch });
                    to_load.push((*p, *epoch));
                }
            }
        }
        for (p, epoch) in to_load {
            self.tasks.spawn(self.clone().load_partition(p, epoch));
        }
    }

    fn still_loading(&self, p: i32, epoch: i64) -> bool {
        matches!(self.state.lock().partitions.get(&p), Some(Owned::Loading { epoch: e }) if *e == epoch)
    }

    /// Loads one partition, retrying while it is still ours to load.
    async fn load_partition(self: Arc<Self>, p: i32, epoch: i64) {
        let started = Instant::now();
        while self.still_loading(p, epoch) && !self.shutdown.is_cancelled() {
            // A load reads through this node's own brokers: on shutdown they
            // stop answering, so stop waiting for them at once.
            let loaded = tokio::select! {
                r = self.try_load(p, epoch) => r,
                _ = self.shutdown.cancelled() => return,
            };
            match loaded {
                Ok(groups) => {
                    let mut st = self.state.lock();
                    if let Some(o @ Owned::Loading { .. }) = st.partitions.get_mut(&p)
                        && o.epoch() == epoch
                    {
                        info!(
                            partition = p,
                            epoch,
                            groups = groups.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "loaded __consumer_offsets partition"
                        );
                        *o = Owned::Active {
                            epoch,
                            load: self.loads.fetch_add(1, Ordering::Relaxed) + 1,
                            groups,
                        };
                    }
                    return;
                }
                Err(e) => {
                    warn!(partition = p, epoch, error = %e, "cannot load __consumer_offsets partition yet; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    async fn try_load(&self, p: i32, epoch: i64) -> Result<BTreeMap<String, Group>, ApiError> {
        let clients = self.clients().await?;
        // The marker first: everything before it is the state to load, and a
        // deposed owner's writes after it are ignored by every later load.
        let marker = clients
            .producer
            .send(
                ProducerRecord::new(
                    CONSUMER_OFFSETS_TOPIC,
                    records::encode(&OwnerValue {
                        coordinator_id: self.config.coordinator_id,
                        owner_epoch: epoch,
                    }),
                )
                .with_key(
                    RecordKey::Owner {
                        partition: p,
                        epoch,
                    }
                    .encode(),
                )
                .with_partition(p),
            )
            .await
            .map_err(api)?
            .await
            .map_err(api)?
            .offset;
        let mut consumer = Consumer::new(clients.config.clone()).map_err(api)?;
        let tp = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, p);
        consumer.assign(vec![tp.clone()]);
        consumer
            .seek_to_beginning(std::slice::from_ref(&tp))
            .await
            .map_err(api)?;
        let mut recs: Vec<(Option<Bytes>, Option<Bytes>, Option<i64>)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumer.position(&tp).unwrap_or(0) <= marker {
            if Instant::now() > deadline {
                return Err(ApiError::new(
                    ErrorCode::CoordinatorLoadInProgress,
                    format!("reading {tp} up to offset {marker} took over 60 s"),
                ));
            }
            for r in consumer
                .poll(Duration::from_millis(200))
                .await
                .map_err(api)?
            {
                if r.offset <= marker {
                    let epoch = records::header_epoch(&r.headers);
                    recs.push((r.key, r.value, epoch));
                }
            }
        }
        debug!(
            partition = p,
            records = recs.len(),
            "replaying __consumer_offsets partition"
        );
        Ok(records::replay(
            recs.iter()
                .map(|(k, v, e)| (k.as_deref(), v.as_deref(), *e)),
            self.config.group_settings(),
            Instant::now(),
        ))
    }

    async fn clients(&self) -> Result<&Clients, ApiError> {
        self.clients
            .get_or_try_init(|| async {
                let bootstrap = match &self.bootstrap {
                    Some(b) => b.clone(),
                    None => {
                        let (kvs, _) =
                            self.store.range(meta::BROKERS_PREFIX).await.map_err(|e| {
                                ApiError::new(
                                    ErrorCode::CoordinatorNotAvailable,
                                    format!("metadata store: {e}"),
                                )
                            })?;
                        let addrs: Vec<String> = kvs
                            .iter()
                            .filter_map(|kv| meta::decode::<BrokerRegistration>(&kv.value).ok())
                            .map(|b| format!("{}:{}", b.host, b.port))
                            .collect();
                        if addrs.is_empty() {
                            return Err(ApiError::new(
                                ErrorCode::CoordinatorNotAvailable,
                                "no live broker yet",
                            ));
                        }
                        addrs.join(",")
                    }
                };
                let config = ClientConfig::from_pairs([
                    format!("bootstrap.servers={bootstrap}"),
                    "acks=all".into(),
                    "linger.ms=0".into(),
                    format!(
                        "client.id=sluice-coordinator-{}",
                        self.config.coordinator_id
                    ),
                    format!(
                        "delivery.timeout.ms={}",
                        self.config.offsets_commit_timeout_ms.max(1000)
                    ),
                    format!(
                        "request.timeout.ms={}",
                        self.config.offsets_commit_timeout_ms.max(1000)
                    ),
                ])
                .map_err(api)?;
                let producer = Producer::new(config.clone()).map_err(api)?;
                Ok(Clients { producer, config })
            })
            .await
    }

    /// The partition and epoch of a group this coordinator serves.
    pub fn home(&self, group: &str) -> Result<GroupHome, ApiError> {
        let st = self.state.lock();
        if st.num_partitions == 0 {
            return Err(not_coordinator(
                group,
                "it owns no __consumer_offsets partition",
            ));
        }
        let p = group_offsets_partition(group, st.num_partitions);
        match st.partitions.get(&p) {
            None => Err(not_coordinator(
                group,
                &format!("it does not own __consumer_offsets partition {p}"),
            )),
            Some(Owned::Loading { .. }) => Err(ApiError::new(
                ErrorCode::CoordinatorLoadInProgress,
                format!("__consumer_offsets partition {p} (group \"{group}\") is still loading"),
            )),
            Some(Owned::Active { epoch, load, .. }) => Ok(GroupHome {
                partition: p,
                epoch: *epoch,
                load: *load,
            }),
        }
    }

    /// Runs `f` on the group (created when `create`; `None` when absent),
    /// under the state lock. Fails when the group is not served here.
    pub fn with_group<R>(
        &self,
        group: &str,
        create: bool,
        f: impl FnOnce(Option<&mut Group>, GroupHome) -> R,
    ) -> Result<R, ApiError> {
        let home = self.home(group)?;
        let mut st = self.state.lock();
        let Some(Owned::Active { groups, .. }) = st.partitions.get_mut(&home.partition) else {
            return Err(not_coordinator(group, "ownership changed"));
        };
        if create && !groups.contains_key(group) {
            let mut g = Group::new(group.to_string(), self.config.group_settings());
            g.write_floor = self.last_write_number();
            groups.insert(group.to_string(), g);
        }
        Ok(f(groups.get_mut(group), home))
    }

    /// Every group this coordinator serves.
    pub fn for_each_group(&self, mut f: impl FnMut(&Group)) {
        let st = self.state.lock();
        for o in st.partitions.values() {
            if let Owned::Active { groups, .. } = o {
                groups.values().for_each(&mut f);
            }
        }
    }

    /// Removes a group from memory (after its tombstones were written).
    pub fn forget_group(&self, group: &str, home: GroupHome) {
        let mut st = self.state.lock();
        if let Some(Owned::Active {
            groups,
            epoch,
            load,
        }) = st.partitions.get_mut(&home.partition)
            && (*epoch, *load) == (home.epoch, home.load)
        {
            groups.remove(group);
        }
    }

    /// Queues records for the group's partition (acks=all) and numbers the
    /// write. Writes reach the log in the order they are submitted, so callers
    /// submit under the state lock, where they decide what to write: the log
    /// then ends with the last decision, not with whichever write won a race.
    pub fn submit(&self, home: GroupHome, recs: Vec<(RecordKey, Option<Vec<u8>>)>) -> Submitted {
        let records = recs
            .into_iter()
            .map(|(key, value)| ProducerRecord {
                topic: CONSUMER_OFFSETS_TOPIC.into(),
                partition: Some(home.partition),
                key: Some(Bytes::from(key.encode())),
                value: value.map(Bytes::from),
                // Fences this record on replay even when it is a tombstone.
                headers: vec![records::epoch_header(home.epoch)],
                ..Default::default()
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let number = self.write_number.fetch_add(1, Ordering::Relaxed) + 1;
        // The receiver lives as long as the writer task; if it is gone we are
        // shutting down and the dropped reply says so.
        let _ = self.writes.send(WriteJob {
            records,
            queued: tx,
        });
        Submitted { number, queued: rx }
    }

    /// The last write number handed out (a new group's floor).
    pub fn last_write_number(&self) -> u64 {
        self.write_number.load(Ordering::Relaxed)
    }

    /// Feeds queued writes to the producer one job at a time, so a job's
    /// records stay together and jobs keep their submission order.
    async fn run_writer(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<WriteJob>) {
        loop {
            let job = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let queued = async {
                let clients = self.clients().await?;
                let mut pending = Vec::with_capacity(job.records.len());
                for rec in job.records {
                    pending.push(clients.producer.send(rec).await.map_err(write_err)?);
                }
                Ok(pending)
            }
            .await;
            let _ = job.queued.send(queued);
        }
    }

    /// Waits for a submitted write to be acknowledged; fails with
    /// NOT_COORDINATOR if the partition moved meanwhile.
    pub async fn confirm(
        &self,
        group: &str,
        home: GroupHome,
        submitted: Submitted,
    ) -> Result<(), ApiError> {
        let timeout = Duration::from_millis(self.config.offsets_commit_timeout_ms);
        let acked = tokio::time::timeout(timeout, async {
            let pending = submitted.queued.await.map_err(|_| {
                ApiError::new(
                    ErrorCode::CoordinatorNotAvailable,
                    "the coordinator is shutting down",
                )
            })??;
            for f in pending {
                f.await.map_err(write_err)?;
            }
            Ok::<_, ApiError>(())
        })
        .await;
        match acked {
            Ok(r) => r?,
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::CoordinatorNotAvailable,
                    format!(
                        "writing to {CONSUMER_OFFSETS_TOPIC}-{} took over offsets.commit.timeout.ms",
                        home.partition
                    ),
                ));
            }
        }
        // Acknowledged, but only meaningful if we still own the partition:
        // first by our own view, then by the store itself, since our watch
        // may lag a move (a successor ignores our records after its marker).
        let now = self.home(group)?;
        if (now.partition, now.epoch, now.load) != (home.partition, home.epoch, home.load) {
            // A reload in between rebuilt the group without this write's
            // place in the order: the client retries through the new load.
            return Err(not_coordinator(group, "ownership changed during the write"));
        }
        let owner = self
            .store
            .get(&meta::offsets_owner_key(home.partition))
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::CoordinatorNotAvailable,
                    format!("cannot confirm ownership in the metadata store: {e}"),
                )
            })?
            .and_then(|kv| meta::decode::<OffsetsOwner>(&kv.value).ok());
        if owner
            != Some(OffsetsOwner {
                coordinator_id: self.config.coordinator_id,
                epoch: home.epoch,
            })
        {
            return Err(not_coordinator(
                group,
                "its __consumer_offsets partition moved",
            ));
        }
        Ok(())
    }

    /// Writes a group record; then, when `settle` is set, tells the group.
    /// Call it where the record was decided, under the state lock, so group
    /// records reach the log in generation order.
    pub fn persist_group(
        self: &Arc<Self>,
        group: String,
        home: GroupHome,
        rec: GroupRecord,
        settle: Option<i32>,
    ) {
        let value = records::encode(&GroupValue {
            group: rec,
            owner_epoch: home.epoch,
        });
        let submitted = self.submit(
            home,
            vec![(
                RecordKey::Group {
                    group: group.clone(),
                },
                Some(value),
            )],
        );
        let this = self.clone();
        self.tasks.spawn(async move {
            let res = this.confirm(&group, home, submitted).await;
            if let Err(e) = &res {
                warn!(group = %group, error = %e, "cannot persist group metadata");
            }
            if let Some(generation) = settle {
                let _ = this.with_group(&group, false, |g, _| {
                    if let Some(g) = g {
                        g.assignment_persisted(generation, res, Instant::now());
                    }
                });
            }
        });
    }

    /// Applies the effects of a group call made under [`Self::with_group`].
    pub fn apply(
        self: &Arc<Self>,
        group: &str,
        home: GroupHome,
        effects: Effects,
        settle: Option<i32>,
    ) {
        if let Some(rec) = effects.persist {
            self.persist_group(group.to_string(), home, rec, settle);
        }
    }

    /// Group gauges and consumer lag (committed offset against the
    /// partition's high watermark, as `kafka-consumer-groups.sh --describe`
    /// shows it), every 10 s while a metrics endpoint is on.
    async fn report_metrics(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut lag_reader: Option<Consumer> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !sluice_server::metrics::enabled() {
                continue;
            }
            let mut committed: Vec<(String, TopicPartition, i64)> = Vec::new();
            let (mut groups, mut owned, mut loading) = (0u32, 0u32, 0u32);
            {
                let st = self.state.lock();
                for o in st.partitions.values() {
                    owned += 1;
                    let Owned::Active { groups: gs, .. } = o else {
                        loading += 1;
                        continue;
                    };
                    for g in gs.values() {
                        groups += 1;
                        let group = [("group", g.id.clone())];
                        metrics::gauge!("sluice_consumer_group_members", &group)
                            .set(g.members.len() as f64);
                        for ((topic, partition), c) in &g.offsets {
                            committed.push((
                                g.id.clone(),
                                TopicPartition::new(topic.clone(), *partition),
                                c.offset,
                            ));
                        }
                    }
                }
            }
            metrics::gauge!("sluice_coordinator_groups").set(f64::from(groups));
            metrics::gauge!("sluice_coordinator_owned_partitions").set(f64::from(owned));
            metrics::gauge!("sluice_coordinator_loading_partitions").set(f64::from(loading));
            if committed.is_empty() {
                continue;
            }
            if lag_reader.is_none() {
                let Ok(clients) = self.clients().await else {
                    continue;
                };
                lag_reader = Consumer::new(clients.config.clone()).ok();
            }
            let Some(reader) = lag_reader.as_mut() else {
                continue;
            };
            let mut tps: Vec<TopicPartition> =
                committed.iter().map(|(_, tp, _)| tp.clone()).collect();
            tps.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            tps.dedup();
            let ends = match reader.end_offsets(&tps).await {
                Ok(e) => e,
                Err(e) => {
                    debug!(error = %e, "cannot read end offsets for lag");
                    continue;
                }
            };
            for (group, tp, offset) in committed {
                let labels = [
                    ("group", group),
                    ("topic", tp.topic.clone()),
                    ("partition", tp.partition.to_string()),
                ];
                metrics::gauge!("sluice_consumer_group_committed_offset", &labels)
                    .set(offset as f64);
                if let Some(end) = ends.get(&tp) {
                    metrics::gauge!("sluice_consumer_group_lag", &labels)
                        .set((end - offset).max(0) as f64);
                }
            }
        }
    }

    /// Session expiry, initial delays and rebalance timeouts, every 100 ms.
    async fn run_timers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let mut st = self.state.lock();
            for (p, o) in st.partitions.iter_mut() {
                if let Owned::Active {
                    groups,
                    epoch,
                    load,
                } = o
                {
                    // Groups left with nothing (a refused first join) go.
                    groups.retain(|_, g| !g.is_unused());
                    for g in groups.values_mut() {
                        if let Some(rec) = g.tick(now).persist {
                            let home = GroupHome {
                                partition: *p,
                                epoch: *epoch,
                                load: *load,
                            };
                            self.persist_group(g.id.clone(), home, rec, None);
                        }
                    }
                }
            }
        }
    }
}

/// A client error as the coordinator's own answer.
fn api(e: sluice_client::ClientError) -> ApiError {
    match e {
        sluice_client::ClientError::Api(a) => a,
        other => ApiError::new(other.code(), other.to_string()),
    }
}

fn write_err(e: sluice_client::ClientError) -> ApiError {
    let e = api(e);
    match e.code {
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => e,
        _ => ApiError::new(
            ErrorCode::CoordinatorNotAvailable,
            format!("cannot write to {CONSUMER_OFFSETS_TOPIC}: {e}"),
        ),
    }
}
