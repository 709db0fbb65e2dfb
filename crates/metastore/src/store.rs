//! The [`MetadataStore`] trait and the [`LeaseKeeper`] handle it hands out.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{KeyValue, LeaderKey, LeaseId, MetaError, Txn, TxnResult, WatchStream};

/// Cluster metadata: a revisioned key-value store with transactions, prefix watches,
/// leases and leader election. Implemented by [`EtcdMetadataStore`](crate::EtcdMetadataStore)
/// and [`EmbeddedMetadataStore`](crate::EmbeddedMetadataStore); both pass the same suite.
#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError>;

    /// All keys under prefix, sorted by key, plus the store revision they were read at.
    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), MetaError>;

    /// Writes `key`, bound to `lease` unless it is 0. Returns the new store revision.
    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<i64, MetaError>;

    /// Deletes `key`; `true` if it existed.
    async fn delete(&self, key: &str) -> Result<bool, MetaError>;

    /// Deletes every key under `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, MetaError>;

    async fn txn(&self, txn: Txn) -> Result<TxnResult, MetaError>;

    /// Every change under prefix with revision >= from_revision (0 = from now).
    /// MetaError::Compacted if history is gone (returned here or as the stream's first item).
    async fn watch_prefix(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<WatchStream, MetaError>;

    /// Grants a lease that expires `ttl` after its last refresh. etcd rounds up to whole
    /// seconds and enforces its own minimum.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError>;

    /// Keeps the lease alive on a background task (refresh every ttl/3) until the returned
    /// handle is dropped or the lease revoked. `LeaseKeeper::lost()` resolves when the lease
    /// expires/is gone (keep-alive failed, TTL reached 0): the holder must step down at once.
    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseKeeper, MetaError>;

    /// Revokes the lease, deleting every key bound to it.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError>;

    /// Blocks until this candidate is the leader of `election` (key bound to `lease`).
    /// Leader = the candidate key with the lowest create revision under the election prefix.
    /// Cancelling the future leaves the candidate key in place: resign or revoke the lease
    /// to withdraw.
    async fn campaign(
        &self,
        election: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<LeaderKey, MetaError>;

    /// The current leader's key, if any candidate exists.
    async fn leader(&self, election: &str) -> Result<Option<KeyValue>, MetaError>;

    /// Gives up leadership (deletes the leader key if it is still ours).
    async fn resign(&self, leader: &LeaderKey) -> Result<(), MetaError>;
}

/// Keeps a lease alive while held; dropping it stops the refreshes (the lease then expires
/// after its TTL unless revoked first).
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: LeaseId,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// `lost` must turn `true` (or its sender drop) once the lease is gone; `task` is the
    /// refresh loop, aborted on drop.
    pub(crate) fn new(lease: LeaseId, lost: watch::Receiver<bool>, task: JoinHandle<()>) -> Self {
        Self { lease, lost, task }
    }

    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether the lease is already known to be gone.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.task.is_finished()
    }

    /// Resolves once the lease has expired or been revoked (or keep-alive gave up).
    pub async fn lost(&self) {
        lost_signal(self.lost.clone()).await
    }

    /// Like [`lost`](Self::lost) but not tied to `&self`, for moving into another task.
    pub fn lost_owned(&self) -> impl Future<Output = ()> + Send + 'static {
        lost_signal(self.lost.clone())
    }
}

async fn lost_signal(mut rx: watch::Receiver<bool>) {
    // A dropped sender means the refresh loop ended: nobody keeps the lease alive any more.
    let _ = rx.wait_for(|lost| *lost).await;
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Kafka's ephemeral node: writes `key` bound to a fresh lease of `ttl`, kept
/// alive, once nobody holds the key. `value` gets the lease id. Returns the
/// keeper and the key's create revision: the registration's epoch, larger
/// for every registration (Kafka's broker epoch, KIP-380). A process
/// restarted right after a crash finds its previous registration until that
/// lease expires, so this waits up to `wait` for the key to free; `None` when
/// it is still held then (another live process has it).
pub async fn register_ephemeral(
    store: &dyn MetadataStore,
    key: String,
    ttl: Duration,
    wait: Duration,
    value: impl Fn(LeaseId) -> Vec<u8>,
) -> Result<Option<(LeaseKeeper, i64)>, MetaError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let lease = store.grant_lease(ttl).await?;
        let keeper = store.keep_alive(lease).await?;
        let res = store
            .txn(
                Txn::new()
                    .when(crate::Compare::absent(key.clone()))
                    .and_then(crate::Op::Put {
                        key: key.clone(),
                        value: value(lease),
                        lease,
                    }),
            )
            .await?;
        if res.succeeded {
            return Ok(Some((keeper, res.revision)));
        }
        let _ = store.revoke_lease(lease).await;
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tracing::warn!(%key, "still registered (a previous run's lease?); waiting for it to expire");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
