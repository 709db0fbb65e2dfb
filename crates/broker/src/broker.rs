//! Broker startup, background tasks and clean shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sluice_metastore::{LeaseKeeper, MetadataStore, register_ephemeral};
use sluice_types::meta::{self, BrokerRegistration};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metadata::{ClusterView, MetadataCache};
use crate::replica_manager::ReplicaManager;
use crate::service::BrokerService;

pub use sluice_types::now_ms;

pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<dyn MetadataStore>,
    pub metadata: Arc<MetadataCache>,
    pub replicas: Arc<ReplicaManager>,
    pub(crate) shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The current producer-id block from the controller: (next, end).
    pub(crate) producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// True while the registration lease is held (readiness).
    registered: AtomicBool,
    /// The registration epoch (see [`Broker::epoch`]).
    epoch: AtomicI64,
    /// Fired by [`Broker::controlled_shutdown`]: give up the registration
    /// (and so every leadership) while still serving.
    deregister: CancellationToken,
    /// TLS to the other services (`security.inter.broker.protocol=SSL`).
    pub(crate) tls: Option<sluice_tls::ClientTls>,
}

impl Broker {
    /// Opens the logs, registers in the metadata store under a lease, loads
    /// metadata and starts the background tasks. Stops when `shutdown` fires;
    /// then call [`Broker::close`].
    pub async fn start(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BrokerError> {
        config.validate()?;
        let tls = config.security.inter_service()?;
        let replicas = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || ReplicaManager::open(config))
                .await
                .map_err(|source| BrokerError::TaskFailed {
                    task: "open logs",
                    source,
                })??
        };
        let metadata = MetadataCache::new();
        let broker = Arc::new(Self {
            config,
            store,
            metadata,
            replicas,
            shutdown,
            tasks: TaskTracker::new(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            registered: AtomicBool::new(false),
            epoch: AtomicI64::new(0),
            deregister: CancellationToken::new(),
            tls,
        });
        let keeper = tokio::select! {
            k = broker.register() => k?,
            _ = broker.shutdown.cancelled() => return Err(BrokerError::ShutDown { during: "registering" }),
        };
        broker.registered.store(true, Ordering::Release);
        let loaded = tokio::select! {
            r = MetadataCache::load(broker.store.as_ref()) => Some(r),
            _ = broker.shutdown.cancelled() => None,
        };
        let rev = match loaded {
            Some(r) => {
                let (view, rev) = r?;
                broker.apply_view(view).await?;
                rev
            }
            None => {
                // Registered but stopping: give the registration up now, or
                // the next start would wait for the lease to expire.
                let _ = broker.store.revoke_lease(keeper.lease()).await;
                return Err(BrokerError::ShutDown {
                    during: "loading metadata",
                });
            }
        };
        broker.tasks.spawn(broker.clone().watch_metadata(rev));
        broker.tasks.spawn(broker.clone().keep_registered(keeper));
        broker.tasks.spawn(broker.clone().periodic_tasks());
        broker.tasks.spawn(broker.clone().log_cleaner());
        broker
            .tasks
            .spawn(crate::delayed::release_loop(broker.clone()));
        broker.tasks.spawn(broker.clone().report_metrics());
        broker
            .tasks
            .spawn(crate::replication::manage_fetchers(broker.clone()));
        broker
            .tasks
            .spawn(crate::replication::maintain_isr(broker.clone()));
        info!(broker_id = broker.config.broker_id, "broker started");
        Ok(broker)
    }

    pub fn service(self: &Arc<Self>, access: &sluice_server::access::Access) -> BrokerService {
        BrokerService::new(self.clone(), access.clone())
    }

    /// Ready to serve (the health service's SERVING): registered under a live
    /// lease, with metadata loaded (which [`Broker::start`] did).
    pub fn is_ready(&self) -> bool {
        self.registered.load(Ordering::Acquire) && !self.deregister.is_cancelled()
    }

    /// Ready and in sync: in the ISR of every hosted partition that has a
    /// leader. What a rolling update should wait for before restarting the
    /// next broker (served as the health service `sluice.broker.v1.Broker.InSync`):
    /// plain readiness comes as soon as the broker registers, while it may
    /// still be catching up, and taking a second broker then would leave
    /// partitions below `min.insync.replicas`.
    pub fn is_in_sync(&self) -> bool {
        self.is_ready()
            && self.replicas.all().iter().all(|p| {
                let role = p.role();
                role.leader < 0 || role.isr.contains(&self.config.broker_id)
            })
    }

    /// Hosted partitions that have no leader right now (offline, or not
    /// elected yet after a start).
    pub fn leaderless_partitions(&self) -> usize {
        self.replicas
            .all()
            .iter()
            .filter(|p| p.role().leader < 0)
            .count()
    }

    /// Kafka's controlled shutdown: gives up the registration while still
    /// serving, so the controller moves leadership of every partition this
    /// broker leads to another in-sync replica (and drops it from the ISRs);
    /// then waits, up to `controlled.shutdown.timeout.ms`, until it leads
    /// nothing. Clients meanwhile get NOT_LEADER_OR_FOLLOWER, refresh their
    /// metadata and retry on the new leaders, instead of losing connections
    /// to a process that is already gone. Call before cancelling the server.
    pub async fn controlled_shutdown(&self) {
        if !self.config.controlled_shutdown_enable {
            return;
        }
        let leading = || self.replicas.all().iter().filter(|p| p.is_leader()).count();
        info!(
            leading = leading(),
            "controlled shutdown: handing over leadership"
        );
        self.deregister.cancel();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config.controlled_shutdown_timeout_ms);
        let mut changes = self.metadata.subscribe();
        // With no active controller nobody moves leadership: when the whole
        // cluster stops at once the controllers may go first. A standby takes
        // over within moments of a resignation, so only a longer gap ends the
        // wait.
        let mut no_controller_since: Option<tokio::time::Instant> = None;
        loop {
            let n = leading();
            if n == 0 {
                info!("controlled shutdown: leadership handed over");
                return;
            }
            if self.metadata.read(|v| v.controller.is_none()) {
                let since = *no_controller_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > Duration::from_secs(3) {
                    warn!(
                        leading = n,
                        "controlled shutdown: no active controller to move leadership; stopping"
                    );
                    return;
                }
            } else {
                no_controller_since = None;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(leading = n, "controlled shutdown timed out; stopping while still leading");
                    return;
                }
                // A re-check on a timer too: leadership may already have moved
                // before we subscribed.
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Registers `brokers/<id>` under a fresh lease. A broker restarted right
    /// after a crash finds its previous registration still there until that
    /// lease expires, so it waits up to twice the lease time; after that the id
    /// belongs to another live broker and starting fails.
    async fn register(&self) -> Result<LeaseKeeper, BrokerError> {
        let (host, port) = self.config.advertised()?;
        let lease = Duration::from_millis(self.config.lease_ms);
        let keeper = register_ephemeral(
            self.store.as_ref(),
            meta::broker_key(self.config.broker_id),
            lease,
            lease * 2 + Duration::from_secs(2),
            |_| {
                meta::encode(&BrokerRegistration {
                    broker_id: self.config.broker_id,
                    host: host.clone(),
                    port: port as i32,
                    rack: self.config.rack.clone(),
                    start_time_ms: now_ms(),
                    // Readers take the epoch from the key's create revision.
                    epoch: 0,
                })
            },
        )
        .await
        .map_err(|source| BrokerError::MetadataStore {
            action: "register the broker",
            source,
        })?;
        let (keeper, epoch) = keeper.ok_or(BrokerError::AlreadyRegistered {
            broker: self.config.broker_id,
        })?;
        self.epoch.store(epoch, Ordering::Release);
        info!(epoch, "registered");
        Ok(keeper)
    }

    /// This broker's registration epoch (KIP-380): sent with every request to
    /// other brokers and the controller so a stale incarnation is refused.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Re-registers after the lease is lost (for example after a long pause).
    async fn keep_registered(self: Arc<Self>, mut keeper: LeaseKeeper) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = self.store.revoke_lease(keeper.lease()).await;
                    return;
                }
                _ = self.deregister.cancelled() => {
                    self.registered.store(false, Ordering::Release);
                    if let Err(e) = self.store.revoke_lease(keeper.lease()).await {
                        warn!(error = %e, "cannot give up the registration; leadership moves when the lease expires");
                    }
                    return;
                }
                _ = keeper.lost() => {}
            }
            self.registered.store(false, Ordering::Release);
            warn!("broker registration lease lost; registering again");
            loop {
                // A controlled shutdown under way must not be undone by
                // registering again (the broker would be elected again).
                let attempt = tokio::select! {
                    _ = self.deregister.cancelled() => return,
                    r = self.register() => r,
                };
                match attempt {
                    Ok(k) if self.deregister.is_cancelled() => {
                        let _ = self.store.revoke_lease(k.lease()).await;
                        return;
                    }
                    Ok(k) => {
                        keeper = k;
                        self.registered.store(true, Ordering::Release);
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "re-registration failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = self.deregister.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }

    /// Follows the metadata store; on a broken watch, reloads and watches again.
    async fn watch_metadata(self: Arc<Self>, mut rev: i64) {
        loop {
            let stream = self.store.watch_prefix("", rev + 1).await;
            match stream {
                Ok(mut stream) => loop {
                    let next = tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        n = stream.next() => n,
                    };
                    match next {
                        Some(Ok(events)) => {
                            if let Some(last) = events.last() {
                                rev = rev.max(last.kv.mod_revision);
                            }
                            let view = self.metadata.next_view(&events);
                            if let Err(e) = self.apply_view(view).await {
                                warn!(error = %e, "cannot apply metadata; reloading");
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            warn!(error = %e, "metadata watch broke; reloading");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => warn!(error = %e, "cannot watch metadata; retrying"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            match MetadataCache::load(self.store.as_ref()).await {
                Ok((view, r)) => match self.apply_view(view).await {
                    Ok(()) => rev = r,
                    Err(e) => warn!(error = %e, "cannot apply reloaded metadata"),
                },
                Err(e) => warn!(error = %e, "cannot reload metadata"),
            }
        }
    }

    /// Applies `view` to the local replicas (creating and deleting logs,
    /// changing roles), then shows it to readers. The replicas are
    /// reconciled on the blocking pool and without the metadata lock: a topic
    /// with thousands of partitions takes seconds to create, and on a runtime
    /// worker, with Metadata readers blocked on the lock, it starved the
    /// registration's keep-alive until the broker lost its lease.
    /// An error (a panic while reconciling) leaves the view readers see
    /// unchanged: the watch reloads everything.
    async fn apply_view(self: &Arc<Self>, view: ClusterView) -> Result<(), BrokerError> {
        let this = self.clone();
        let view = tokio::task::spawn_blocking(move || {
            this.replicas.reconcile(&view);
            view
        })
        .await
        .map_err(|source| BrokerError::TaskFailed {
            task: "apply metadata",
            source,
        })?;
        self.metadata.install(view);
        Ok(())
    }

    /// Retention and checkpoints, each on its own interval (compaction runs
    /// in [`Self::log_cleaner`]).
    async fn periodic_tasks(self: Arc<Self>) {
        let c = &self.config;
        let mut retention = tokio::time::interval(Duration::from_millis(
            c.log_retention_check_interval_ms.max(100),
        ));
        let mut hw = tokio::time::interval(Duration::from_millis(
            c.replica_high_watermark_checkpoint_interval_ms.max(100),
        ));
        let mut recovery = tokio::time::interval(Duration::from_millis(
            c.log_flush_offset_checkpoint_interval_ms.max(100),
        ));
        let flush_ms = c.log_flush_interval_ms;
        let mut flush =
            tokio::time::interval(Duration::from_millis(flush_ms.unwrap_or(1000).max(10)));
        loop {
            // Each job runs on the blocking pool: checkpoints and flushes fsync,
            // and an fsync on ext4 can wait for a journal commit of every dirty
            // log page. On a runtime worker that stalled produce and fetch
            // (tens of ms every checkpoint interval under load).
            let job: Box<dyn FnOnce(&ReplicaManager) + Send> = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = retention.tick() => Box::new(|r| r.enforce_retention(now_ms())),
                _ = hw.tick() => Box::new(|r| {
                    if let Err(e) = r.checkpoint_high_watermarks() {
                        warn!(error = %e, "high watermark checkpoint failed");
                    }
                }),
                _ = recovery.tick() => Box::new(|r| {
                    if let Err(e) = r.checkpoint_recovery_points() {
                        warn!(error = %e, "recovery point checkpoint failed");
                    }
                }),
                _ = flush.tick(), if flush_ms.is_some() => Box::new(|r| {
                    for p in r.all() {
                        if let Err(e) = p.flush() {
                            warn!(topic = %p.topic, partition = p.partition, error = %e, "flush failed");
                        }
                    }
                }),
            };
            let replicas = self.replicas.clone();
            // Awaited, so one job runs at a time and a slow disk cannot pile them up.
            let _ = tokio::task::spawn_blocking(move || job(&replicas)).await;
        }
    }

    /// The log cleaner: every `log.cleaner.backoff.ms`, compacts the logs of
    /// topics whose `cleanup.policy` includes compact. It is the cleaner tick
    /// of the periodic work, in its own task because a pass reads and
    /// rewrites whole segments: checkpoints and flushes must not queue
    /// behind it. Shutdown waits for the current partition, not the pass.
    async fn log_cleaner(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.log_cleaner_backoff_ms.max(100));
        // The first pass after one backoff, not during startup.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let replicas = self.replicas.clone();
            let stop = self.shutdown.clone();
            // Awaited, so passes never overlap.
            let _ = tokio::task::spawn_blocking(move || {
                replicas.compact_logs(now_ms(), || stop.is_cancelled())
            })
            .await;
        }
    }

    /// Refreshes the per-partition gauges every few seconds: offsets of every
    /// replica, and under-replicated partitions among those this broker leads.
    async fn report_metrics(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        // Topics whose pending gauge was set: set to 0 once they have none
        // (not left at a stale count).
        let mut with_pending: std::collections::BTreeSet<String> = Default::default();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (mut leaders, mut under) = (0u32, 0u32);
            let all = self.replicas.all();
            // Pending delayed records per topic, counted by leaders only.
            let mut pending: std::collections::BTreeMap<&str, usize> = Default::default();
            // Timer index entries and done marks in memory on every replica
            // (the unsealed tail, and marks not yet applied to the runs).
            let mut in_memory = 0usize;
            for p in &all {
                in_memory += p.delays_in_memory();
                if p.is_leader() {
                    *pending.entry(p.topic.as_str()).or_default() += p.delays_pending();
                }
                let o = p.offsets();
                let labels = [
                    ("topic", p.topic.clone()),
                    ("partition", p.partition.to_string()),
                ];
                metrics::gauge!("sluice_partition_log_end_offset", &labels).set(o.leo as f64);
                metrics::gauge!("sluice_partition_high_watermark", &labels).set(o.hw as f64);
                metrics::gauge!("sluice_partition_log_start_offset", &labels)
                    .set(o.log_start as f64);
                // Written by every replica (0 on followers), so a sum across
                // brokers counts each partition once after leadership moves.
                let short = p.is_leader() && {
                    let role = p.role();
                    role.isr.len() < role.replicas.len()
                };
                leaders += u32::from(p.is_leader());
                under += u32::from(short);
                metrics::gauge!("sluice_partition_under_replicated", &labels)
                    .set(f64::from(u8::from(short)));
            }
            for (topic, n) in pending {
                if n > 0 || with_pending.contains(topic) {
                    metrics::gauge!("sluice_delayed_pending", "topic" => topic.to_string())
                        .set(n as f64);
                }
                if n > 0 {
                    with_pending.insert(topic.to_string());
                } else {
                    with_pending.remove(topic);
                }
            }
            metrics::gauge!("sluice_delayed_index_memory_entries").set(in_memory as f64);
            metrics::gauge!("sluice_broker_partitions").set(all.len() as f64);
            metrics::gauge!("sluice_broker_leader_partitions").set(f64::from(leaders));
            metrics::gauge!("sluice_broker_under_replicated_partitions").set(f64::from(under));
            metrics::gauge!("sluice_broker_registered").set(f64::from(u8::from(self.is_ready())));
        }
    }

    /// Waits for the background tasks to stop (after `shutdown` fired), then
    /// flushes and checkpoints every log.
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        let replicas = self.replicas.clone();
        let _ = tokio::task::spawn_blocking(move || replicas.shutdown()).await;
    }
}
