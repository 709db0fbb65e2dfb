//! [`EmbeddedMetadataStore`]: the whole metadata store inside this process, for standalone
//! mode and fast tests. Same semantics as etcd (revisions, txns, prefix watches, leases,
//! elections), one node, optionally persisted under a directory.

mod state;
mod wal;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::election;
use crate::store::LeaseKeeper;
use crate::{
    EventKind, KeyValue, LeaderKey, LeaseId, MetaError, MetadataStore, Op, Txn, TxnResult,
    WatchEvent, WatchStream,
};
use state::{Replay, State};
use wal::Wal;

/// Tuning for [`EmbeddedMetadataStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions kept for `watch_prefix(from_revision)` replay; older ones are `Compacted`.
    pub history_revisions: usize,
    /// Fold the log into a snapshot once it exceeds this many bytes.
    pub snapshot_after_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            history_revisions: 10_000,
            snapshot_after_bytes: 4 << 20,
        }
    }
}

/// In-process metadata store. Cheap to clone (clones share one store); the store shuts
/// down when the last clone is dropped: watches then end with `Closed` and keepers report
/// their leases lost.
#[derive(Clone)]
pub struct EmbeddedMetadataStore {
    shared: Arc<Shared>,
}

struct Shared {
    // A std Mutex: every critical section is short and synchronous (no .await inside).
    // The log append and fsync happen under it on purpose: a revision must be durable
    // before anyone can observe it, and log order must equal revision order. Metadata
    // writes are rare enough that this serialization does not matter.
    inner: Mutex<Inner>,
    /// Latest committed revision; watchers wake on it and read the history ring.
    head: watch::Sender<i64>,
}

struct Inner {
    state: State,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    wal: Option<Wal>,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
    /// Set to `true` when the lease is revoked or expires; keepers wait on it.
    lost: watch::Sender<bool>,
}

impl std::fmt::Debug for EmbeddedMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("EmbeddedMetadataStore")
            .field("revision", &inner.state.revision)
            .field("keys", &inner.state.kvs.len())
            .field("leases", &inner.leases.len())
            .field("persistent", &inner.wal.is_some())
            .finish()
    }
}

impl EmbeddedMetadataStore {
    /// A store that lives only in memory.
    pub fn in_memory() -> Self {
        Self::in_memory_with(EmbeddedOptions::default())
    }

    pub fn in_memory_with(options: EmbeddedOptions) -> Self {
        Self::from_parts(
            State::new(Default::default(), 0, options.history_revisions),
            None,
        )
    }

    /// Opens (or creates) a store persisted under `dir`. Keys bound to leases are not
    /// restored: every lease died with the process that held it. Only one store may have
    /// a directory open at a time.
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, MetaError> {
        let (wal, mut recovered) = Wal::open(dir, options.snapshot_after_bytes)?;
        recovered.kvs.retain(|_, kv| kv.lease == 0);
        let state = State::new(recovered.kvs, recovered.revision, options.history_revisions);
        Ok(Self::from_parts(state, Some(wal)))
    }

    fn from_parts(state: State, wal: Option<Wal>) -> Self {
        let (head, _) = watch::channel(state.revision);
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    state,
                    leases: HashMap::new(),
                    next_lease: 1,
                    wal,
                }),
                head,
            }),
        }
    }

    /// Current store revision.
    pub fn revision(&self) -> i64 {
        self.shared.lock().state.revision
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a critical section may have left the state half-updated; refuse
        // to continue from it rather than serve inconsistent metadata.
        self.inner
            .lock()
            .expect("embedded metadata state poisoned by a panic")
    }

    /// Evaluates and applies a txn atomically. Returns the result and how many changes it
    /// made.
    fn txn(&self, txn: &Txn) -> Result<(TxnResult, usize), MetaError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let succeeded = txn
            .compares
            .iter()
            .all(|c| c.evaluate(inner.state.kvs.get(c.key())));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let Op::Put { lease, .. } = op
                && *lease != 0
                && !inner.leases.contains_key(lease)
            {
                return Err(MetaError::LeaseNotFound { lease: *lease });
            }
        }
        let rev = inner.state.revision + 1;
        let events = inner.state.plan(ops, rev);
        let changes = events.len();
        if changes > 0 {
            if let Some(wal) = &mut inner.wal {
                wal.append(rev, &events)?;
            }
            inner.commit(rev, events, &self.head);
        }
        let revision = inner.state.revision;
        Ok((
            TxnResult {
                succeeded,
                revision,
            },
            changes,
        ))
    }

    /// Removes a lease and its keys (revoke or expiry).
    fn drop_lease(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(lease) = inner.leases.remove(&id) else {
            return Err(MetaError::LeaseNotFound { lease: id });
        };
        let ops: Vec<Op> = lease.keys.iter().map(Op::delete).collect();
        let rev = inner.state.revision + 1;
        let events = inner.state.plan(&ops, rev);
        if !events.is_empty() {
            if let Some(wal) = &mut inner.wal
                && let Err(e) = wal.append(rev, &events)
            {
                // Lease-bound keys are never restored on reopen, so these deletes need not
                // be durable: apply them anyway rather than keep a dead lease's keys.
                tracing::warn!(lease = id, error = %e, "could not log lease expiry deletes");
            }
            inner.commit(rev, events, &self.head);
        }
        lease.lost.send_replace(true);
        Ok(())
    }
}

impl Inner {
    fn commit(&mut self, rev: i64, events: Vec<WatchEvent>, head: &watch::Sender<i64>) {
        for event in &events {
            let key = &event.kv.key;
            let prev_lease = self.state.kvs.get(key).map_or(0, |kv| kv.lease);
            if prev_lease != 0
                && let Some(lease) = self.leases.get_mut(&prev_lease)
            {
                lease.keys.remove(key);
            }
            if event.kind == EventKind::Put
                && event.kv.lease != 0
                && let Some(lease) = self.leases.get_mut(&event.kv.lease)
            {
                lease.keys.insert(key.clone());
            }
            self.state.apply(event);
        }
        self.state.record(rev, events);
        head.send_replace(rev);
        if let Some(wal) = &mut self.wal
            && wal.wants_snapshot()
        {
            let kvs = self.state.kvs.values().filter(|kv| kv.lease == 0);
            if let Err(e) = wal.snapshot(rev, kvs) {
                // The log is still intact; try again after the next write.
                tracing::warn!(error = %e, "could not snapshot the metadata log");
            }
        }
    }
}

/// Expires lease `id` once its deadline passes without a refresh.
async fn expire_when_due(shared: Weak<Shared>, id: LeaseId, mut deadline: Instant) {
    loop {
        tokio::time::sleep_until(deadline).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let due = {
            let inner = shared.lock();
            match inner.leases.get(&id) {
                None => return,
                Some(lease) if lease.deadline <= Instant::now() => true,
                Some(lease) => {
                    deadline = lease.deadline;
                    false
                }
            }
        };
        if due {
            tracing::debug!(lease = id, "lease expired");
            // Already gone means a concurrent revoke won: nothing left to do.
            let _ = shared.drop_lease(id);
            return;
        }
    }
}

/// Refreshes lease `id` every ttl/3 until aborted or the lease is gone.
async fn refresh_until_gone(shared: Weak<Shared>, id: LeaseId, ttl: Duration) {
    let period = (ttl / 3).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut inner = shared.lock();
        match inner.leases.get_mut(&id) {
            Some(lease) => lease.deadline = Instant::now() + lease.ttl,
            None => return,
        }
    }
}

struct WatchState {
    shared: Weak<Shared>,
    head: watch::Receiver<i64>,
    prefix: String,
    next: i64,
    done: bool,
}

impl WatchState {
    async fn next_batch(&mut self) -> Option<Result<Vec<WatchEvent>, MetaError>> {
        if self.done {
            return None;
        }
        loop {
            // Mark the head seen *before* reading, so a commit racing with the read wakes
            // the `changed()` below instead of being missed.
            self.head.borrow_and_update();
            let replay = match self.shared.upgrade() {
                Some(shared) => shared.lock().state.replay(&self.prefix, self.next),
                None => Err(MetaError::Closed),
            };
            match replay {
                Ok(Replay::Batch(rev, events)) => {
                    self.next = rev + 1;
                    return Some(Ok(events));
                }
                Ok(Replay::CaughtUp(rev)) => {
                    self.next = self.next.max(rev + 1);
                    if self.head.changed().await.is_err() {
                        self.done = true;
                        return Some(Err(MetaError::Closed));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl MetadataStore for EmbeddedMetadataStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError> {
        Ok(self.shared.lock().state.kvs.get(key).cloned())
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), MetaError> {
        let inner = self.shared.lock();
        Ok((inner.state.range(prefix), inner.state.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<i64, MetaError> {
        let txn = Txn::new().and_then(Op::put_with_lease(key, value, lease));
        Ok(self.shared.txn(&txn)?.0.revision)
    }

    async fn delete(&self, key: &str) -> Result<bool, MetaError> {
        Ok(self.shared.txn(&Txn::new().and_then(Op::delete(key)))?.1 > 0)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, MetaError> {
        let txn = Txn::new().and_then(Op::delete_prefix(prefix));
        Ok(self.shared.txn(&txn)?.1 as u64)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, MetaError> {
        Ok(self.shared.txn(&txn)?.0)
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<WatchStream, MetaError> {
        let head = self.shared.head.subscribe();
        let next = {
            let inner = self.shared.lock();
            let next = if from_revision <= 0 {
                inner.state.revision + 1
            } else {
                from_revision
            };
            // Fail fast on compacted history rather than on the first item.
            inner.state.replay(prefix, next)?;
            next
        };
        let state = WatchState {
            shared: Arc::downgrade(&self.shared),
            head,
            prefix: prefix.to_owned(),
            next,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move { st.next_batch().await.map(|item| (item, st)) },
        )))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let deadline = Instant::now() + ttl;
        let id = {
            let mut inner = self.shared.lock();
            let id = inner.next_lease;
            inner.next_lease += 1;
            let (lost, _) = watch::channel(false);
            inner.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline,
                    keys: BTreeSet::new(),
                    lost,
                },
            );
            id
        };
        tokio::spawn(expire_when_due(Arc::downgrade(&self.shared), id, deadline));
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseKeeper, MetaError> {
        let (lost, ttl) = {
            let mut inner = self.shared.lock();
            let entry = inner
                .leases
                .get_mut(&lease)
                .ok_or(MetaError::LeaseNotFound { lease })?;
            // Refresh at once, as etcd's keep-alive does on its first request.
            entry.deadline = Instant::now() + entry.ttl;
            (entry.lost.subscribe(), entry.ttl)
        };
        let task = tokio::spawn(refresh_until_gone(Arc::downgrade(&self.shared), lease, ttl));
        Ok(LeaseKeeper::new(lease, lost, task))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        self.shared.drop_lease(lease)
    }

    async fn campaign(
        &self,
        election: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<LeaderKey, MetaError> {
        election::campaign(self, election, value, lease).await
    }

    async fn leader(&self, election: &str) -> Result<Option<KeyValue>, MetaError> {
        election::leader(self, election).await
    }

    async fn resign(&self, leader: &LeaderKey) -> Result<(), MetaError> {
        election::resign(self, leader).await
    }
}
