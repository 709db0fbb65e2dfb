//! Test support: [`MemLog`], an in-memory `__consumer_offsets` whose
//! acknowledgements, failures and loads a test controls, and [`TestCluster`],
//! coordinators over the in-memory metadata store and one shared `MemLog`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_client::ProducerRecord;
use sluice_metastore::{EmbeddedMetadataStore, MetadataStore};
use sluice_types::meta::{self, OffsetsOwner, TopicRecord};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::Coordinator;
use super::offsets_log::{Ack, OffsetsLog, StoredRecord};
use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;
use crate::records::{self, RecordKey};

/// An in-memory `__consumer_offsets`: records are in the log once appended,
/// and acknowledged at once unless acknowledgements are held.
pub(crate) struct MemLog {
    // parking_lot: never held across an `.await`.
    inner: Mutex<Inner>,
    /// True while loads wait.
    hold_loads: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    /// Every record, in log order (all partitions).
    records: Vec<ProducerRecord>,
    /// Appends fail with this.
    fail: Option<CoordinatorError>,
    hold_acks: bool,
    /// Held acknowledgements, in append order (`None` once released).
    held: Vec<Option<oneshot::Sender<Result<(), CoordinatorError>>>>,
    /// Loads started.
    loads: usize,
}

impl MemLog {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            hold_loads: watch::Sender::new(false),
        })
    }

    /// The records of partition `p`, in log order.
    pub(crate) fn partition(&self, p: i32) -> Vec<ProducerRecord> {
        let inner = self.inner.lock();
        inner
            .records
            .iter()
            .filter(|r| r.partition == Some(p))
            .cloned()
            .collect()
    }

    /// The keys of partition `p`'s records, decoded.
    pub(crate) fn keys(&self, p: i32) -> Vec<RecordKey> {
        self.partition(p)
            .iter()
            .map(|r| serde_json::from_slice(r.key.as_deref().expect("a key")).expect("a key"))
            .collect()
    }

    /// Appends records as an earlier owner wrote them.
    pub(crate) fn push(&self, records: Vec<ProducerRecord>) {
        self.inner.lock().records.extend(records);
    }

    pub(crate) fn fail_appends(&self, e: Option<CoordinatorError>) {
        self.inner.lock().fail = e;
    }

    pub(crate) fn hold_acks(&self, hold: bool) {
        self.inner.lock().hold_acks = hold;
    }

    /// Acknowledgements held so far (released ones included).
    pub(crate) fn held_acks(&self) -> usize {
        self.inner.lock().held.len()
    }

    /// Acknowledges the `i`th held record.
    pub(crate) fn release_ack(&self, i: usize) {
        let tx = self.inner.lock().held[i].take().expect("not released yet");
        let _ = tx.send(Ok(()));
    }

    pub(crate) fn hold_loads(&self, hold: bool) {
        self.hold_loads.send_replace(hold);
    }

    /// Loads started so far.
    pub(crate) fn loads(&self) -> usize {
        self.inner.lock().loads
    }
}

impl OffsetsLog for MemLog {
    fn append(
        &self,
        _p: i32,
        records: Vec<ProducerRecord>,
    ) -> BoxFuture<'_, Result<Vec<Ack>, CoordinatorError>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(records.len());
            for rec in records {
                // A producer queues record by record: let others run between.
                tokio::task::yield_now().await;
                let mut inner = self.inner.lock();
                if let Some(e) = &inner.fail {
                    return Err(e.clone());
                }
                inner.records.push(rec);
                let ack: Ack = if inner.hold_acks {
                    let (tx, rx) = oneshot::channel();
                    inner.held.push(Some(tx));
                    // A dropped sender: the log went away with the test.
                    Box::pin(async move { rx.await.unwrap_or(Err(CoordinatorError::ShuttingDown)) })
                } else {
                    Box::pin(async { Ok(()) })
                };
                acks.push(ack);
            }
            Ok(acks)
        })
    }

    fn read_to_marker(
        &self,
        p: i32,
        marker: ProducerRecord,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, CoordinatorError>> {
        Box::pin(async move {
            self.inner.lock().loads += 1;
            let mut hold = self.hold_loads.subscribe();
            let _ = hold.wait_for(|held| !*held).await;
            self.inner.lock().records.push(marker);
            Ok(self
                .partition(p)
                .into_iter()
                .map(|r| {
                    let epoch = records::header_epoch(&r.headers);
                    (r.key, r.value, epoch)
                })
                .collect())
        })
    }
}

/// The in-memory metadata store with a `__consumer_offsets` topic, and one
/// [`MemLog`] for every coordinator started on it.
pub(crate) struct TestCluster {
    pub store: Arc<dyn MetadataStore>,
    pub log: Arc<MemLog>,
    shutdown: CancellationToken,
}

impl TestCluster {
    pub(crate) async fn new(partitions: i32) -> Self {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let topic = TopicRecord {
            name: CONSUMER_OFFSETS_TOPIC.into(),
            topic_id: "offsets".into(),
            assignment: vec![vec![1]; partitions as usize],
            configs: Default::default(),
            internal: true,
        };
        store
            .put(
                &meta::topic_key(CONSUMER_OFFSETS_TOPIC),
                meta::encode(&topic),
                0,
            )
            .await
            .unwrap();
        Self {
            store,
            log: MemLog::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Coordinator `id`'s settings: no initial rebalance delay, and session
    /// timeouts down to 10 ms allowed.
    pub(crate) fn config(id: i32) -> CoordinatorConfig {
        CoordinatorConfig {
            coordinator_id: id,
            group_initial_rebalance_delay_ms: 0,
            group_min_session_timeout_ms: 10,
            ..Default::default()
        }
    }

    pub(crate) async fn start(&self, config: CoordinatorConfig) -> Arc<Coordinator> {
        Coordinator::start_with_log(
            config,
            self.store.clone(),
            self.log.clone(),
            self.shutdown.child_token(),
        )
        .await
        .unwrap()
    }

    /// What the controller does: gives partition `p` to `coordinator_id`.
    pub(crate) async fn set_owner(&self, p: i32, coordinator_id: i32, epoch: i64) {
        let owner = OffsetsOwner {
            coordinator_id,
            epoch,
        };
        self.store
            .put(&meta::offsets_owner_key(p), meta::encode(&owner), 0)
            .await
            .unwrap();
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits (up to 10 s) until `cond` holds.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
