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
//!
//! # Layout
//! - this file: the [`Coordinator`], the partitions it owns and the groups in
//!   them, and the lookups the service makes ([`Coordinator::with_group`]).
//! - `ownership`: registration under a lease and following `offsets-owners/`.
//! - `loading`: loading a partition (owner marker, then replay).
//! - `offsets_log`: the I/O on `__consumer_offsets`, behind a trait: the
//!   cluster's brokers, or an in-memory log in tests.
//! - `writer`: the write queue, confirming writes, persisting group records.
//! - `timers`: session expiry, initial delays and rebalance timeouts.
//! - `gauges`: group gauges and consumer lag.
//! - `topics`: the topics' partition counts, for consumer-protocol groups.

mod gauges;
mod loading;
mod offsets_log;
mod ownership;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod timers;
mod topics;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use sluice_metastore::MetadataStore;
use sluice_types::hash::group_offsets_partition;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::CoordinatorConfig;
use crate::error::{CoordinatorError, NotServed};
use crate::group::Group;
use offsets_log::{ClusterLog, OffsetsLog};
use writer::WriteQueue;

pub use writer::Submitted;

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

pub struct Coordinator {
    pub config: CoordinatorConfig,
    store: Arc<dyn MetadataStore>,
    // parking_lot: every critical section is synchronous (no `.await` inside),
    // and the group calls made under it only park oneshot senders.
    state: Mutex<State>,
    /// Where records are written and partitions read.
    log: Arc<dyn OffsetsLog>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// True once registered (for readiness).
    registered: watch::Sender<bool>,
    /// The queue of writes to `__consumer_offsets`, and their numbering.
    writes: WriteQueue,
    /// Numbers each completed partition load.
    loads: AtomicU64,
    /// The cluster's topics, for consumer-protocol assignments.
    topics: parking_lot::RwLock<Arc<crate::consumer_group::TopicCounts>>,
}

fn not_coordinator(group: &str, why: NotServed) -> CoordinatorError {
    CoordinatorError::NotCoordinator {
        group: group.to_string(),
        why,
    }
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
        let log = Arc::new(ClusterLog::new(config.clone(), store.clone(), bootstrap));
        Self::start_with_log(config, store, log, shutdown).await
    }

    /// [`Self::start`] over any [`OffsetsLog`] (tests use an in-memory one).
    pub(crate) async fn start_with_log(
        config: CoordinatorConfig,
        store: Arc<dyn MetadataStore>,
        log: Arc<dyn OffsetsLog>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        let (writes, jobs) = WriteQueue::new();
        let c = Arc::new(Self {
            config,
            store,
            state: Mutex::new(State::default()),
            log,
            shutdown,
            tasks: TaskTracker::new(),
            registered: watch::Sender::new(false),
            writes,
            loads: AtomicU64::new(0),
            topics: Default::default(),
        });
        let keeper = c.register().await?;
        c.registered.send_replace(true);
        c.tasks
            .spawn(writer::run_writer(c.log.clone(), jobs, c.shutdown.clone()));
        c.tasks.spawn(c.clone().keep_registered(keeper));
        c.tasks.spawn(c.clone().follow_ownership());
        c.tasks.spawn(c.clone().run_timers());
        c.tasks.spawn(c.clone().follow_topics());
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
        self.unload_all(NotServed::ShuttingDown);
    }

    /// The partition and epoch of a group this coordinator serves.
    pub fn home(&self, group: &str) -> Result<GroupHome, CoordinatorError> {
        let st = self.state.lock();
        if st.num_partitions == 0 {
            return Err(not_coordinator(group, NotServed::NoPartitions));
        }
        let p = group_offsets_partition(group, st.num_partitions);
        match st.partitions.get(&p) {
            None => Err(not_coordinator(group, NotServed::NotOwned { partition: p })),
            Some(Owned::Loading { .. }) => Err(CoordinatorError::LoadInProgress {
                group: group.to_string(),
                partition: p,
            }),
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
    ) -> Result<R, CoordinatorError> {
        let home = self.home(group)?;
        let mut st = self.state.lock();
        let Some(Owned::Active { groups, .. }) = st.partitions.get_mut(&home.partition) else {
            return Err(not_coordinator(group, NotServed::OwnershipChanged));
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
}
