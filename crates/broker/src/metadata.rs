//! The broker's view of cluster metadata, kept current by a watch on the
//! metadata store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use sluice_metastore::{EventKind, KeyValue, MetadataStore, WatchEvent};
use sluice_types::meta::{
    self, BrokerRegistration, ControllerInfo, CoordinatorRegistration, OffsetsOwner,
    PartitionState, TopicRecord,
};
use tokio::sync::watch;
use tracing::warn;

use crate::error::BrokerError;

/// One topic as the broker sees it: its record plus each partition's state.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub record: TopicRecord,
    pub partitions: BTreeMap<i32, PartitionState>,
}

#[derive(Debug, Default, Clone)]
pub struct ClusterView {
    pub topics: BTreeMap<String, TopicView>,
    /// Partition states seen before their topic record (a watch may deliver
    /// either first), parked until the topic arrives.
    pending_partitions: HashMap<(String, i32), PartitionState>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub controller: Option<ControllerInfo>,
    pub cluster_id: String,
    /// Live group coordinators.
    pub coordinators: BTreeMap<i32, CoordinatorRegistration>,
    /// Owner of each `__consumer_offsets` partition.
    pub offsets_owners: BTreeMap<i32, OffsetsOwner>,
    /// Topic id to name: Kafka consumers (Fetch v13+) name topics by id on
    /// every fetch.
    topic_ids: HashMap<String, String>,
}

/// Shared, cheaply readable cluster metadata. Readers take a short read lock
/// (parking_lot: never held across an await); the watch task is the only writer.
pub struct MetadataCache {
    view: RwLock<ClusterView>,
    /// Bumped on every applied change so waiters (topic auto-creation, the
    /// replica manager) can wake.
    version: watch::Sender<u64>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self {
            view: RwLock::new(ClusterView::default()),
            version: watch::Sender::new(0),
        }
    }
}

impl MetadataCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A consistent snapshot-read of the view.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterView) -> R) -> R {
        f(&self.view.read())
    }

    pub fn topic(&self, name: &str) -> Option<TopicView> {
        self.view.read().topics.get(name).cloned()
    }

    /// The name of the topic with id `id` (Kafka clients may name topics by
    /// id).
    pub fn topic_name_by_id(&self, id: &str) -> Option<String> {
        self.read(|v| v.topic_ids.get(id).cloned())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Everything at one revision, as a view to [`Self::install`], and the
    /// revision so the watch can resume there.
    pub async fn load(store: &dyn MetadataStore) -> Result<(ClusterView, i64), BrokerError> {
        let (kvs, rev) = store
            .range("")
            .await
            .map_err(|source| BrokerError::MetadataStore {
                action: "load cluster metadata",
                source,
            })?;
        let mut view = ClusterView::default();
        for kv in kvs {
            apply_put(&mut view, &kv);
        }
        Ok((view, rev))
    }

    /// The view after one batch of watch events, built on a copy: readers
    /// keep the current view until [`Self::install`].
    pub fn next_view(&self, events: &[WatchEvent]) -> ClusterView {
        let mut view = self.view.read().clone();
        for ev in events {
            match ev.kind {
                EventKind::Put => apply_put(&mut view, &ev.kv),
                EventKind::Delete => apply_delete(&mut view, &ev.kv.key),
            }
        }
        view
    }

    /// Makes `view` the one readers see. The caller applies it to the local
    /// replicas first, so a client that sees a topic in Metadata finds its
    /// replicas ready on this broker; the lock is held only for the swap.
    pub fn install(&self, view: ClusterView) {
        *self.view.write() = view;
        self.version.send_modify(|v| *v += 1);
    }
}

fn decode_or_warn<T: for<'de> serde::Deserialize<'de>>(kv: &KeyValue) -> Option<T> {
    match meta::decode(&kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(key = %kv.key, error = %e, "ignoring undecodable metadata record");
            None
        }
    }
}

fn apply_put(view: &mut ClusterView, kv: &KeyValue) {
    let key = kv.key.as_str();
    if let Some(name) = key.strip_prefix(meta::TOPICS_PREFIX) {
        let Some(record) = decode_or_warn::<TopicRecord>(kv) else {
            return;
        };
        let topic = view
            .topics
            .entry(name.to_string())
            .or_insert_with(|| TopicView {
                record: record.clone(),
                partitions: BTreeMap::new(),
            });
        if topic.record.topic_id != record.topic_id {
            // Deleted and re-created: the old partition states are gone.
            topic.partitions.clear();
            view.topic_ids.remove(&topic.record.topic_id);
        }
        view.topic_ids
            .insert(record.topic_id.clone(), name.to_string());
        topic.record = record;
        let parked: Vec<_> = view
            .pending_partitions
            .keys()
            .filter(|(t, _)| t == name)
            .cloned()
            .collect();
        for k in parked {
            if let Some(state) = view.pending_partitions.remove(&k)
                && let Some(t) = view.topics.get_mut(name)
            {
                t.partitions.insert(k.1, state);
            }
        }
    } else if let Some((topic, p)) = meta::parse_partition_key(key) {
        let Some(state) = decode_or_warn::<PartitionState>(kv) else {
            return;
        };
        match view.topics.get_mut(topic) {
            Some(t) => {
                t.partitions.insert(p, state);
            }
            None => {
                view.pending_partitions
                    .insert((topic.to_string(), p), state);
            }
        }
    } else if key.starts_with(meta::BROKERS_PREFIX) {
        if let Some(mut b) = decode_or_warn::<BrokerRegistration>(kv) {
            b.epoch = kv.create_revision;
            view.brokers.insert(b.broker_id, b);
        }
    } else if key == meta::CONTROLLER_INFO_KEY {
        view.controller = decode_or_warn(kv);
    } else if key == meta::CLUSTER_ID_KEY {
        view.cluster_id = String::from_utf8_lossy(&kv.value).into_owned();
    } else if key.starts_with(meta::COORDINATORS_PREFIX) {
        if let Some(c) = decode_or_warn::<CoordinatorRegistration>(kv) {
            view.coordinators.insert(c.coordinator_id, c);
        }
    } else if let Some(p) = meta::parse_offsets_owner_key(key)
        && let Some(o) = decode_or_warn::<OffsetsOwner>(kv)
    {
        view.offsets_owners.insert(p, o);
    }
}

fn apply_delete(view: &mut ClusterView, key: &str) {
    if let Some(name) = key.strip_prefix(meta::TOPICS_PREFIX) {
        if let Some(t) = view.topics.remove(name) {
            view.topic_ids.remove(&t.record.topic_id);
        }
        view.pending_partitions.retain(|(t, _), _| t != name);
    } else if let Some((topic, p)) = meta::parse_partition_key(key) {
        if let Some(t) = view.topics.get_mut(topic) {
            t.partitions.remove(&p);
        }
        view.pending_partitions.remove(&(topic.to_string(), p));
    } else if let Some(id) = key.strip_prefix(meta::BROKERS_PREFIX) {
        if let Ok(id) = id.parse::<i32>() {
            view.brokers.remove(&id);
        }
    } else if key == meta::CONTROLLER_INFO_KEY {
        view.controller = None;
    } else if let Some(id) = key.strip_prefix(meta::COORDINATORS_PREFIX) {
        if let Ok(id) = id.parse::<i32>() {
            view.coordinators.remove(&id);
        }
    } else if let Some(p) = meta::parse_offsets_owner_key(key) {
        view.offsets_owners.remove(&p);
    }
}
