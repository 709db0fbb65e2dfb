//! [`EtcdMetadataStore`]: the [`MetadataStore`] trait on a real etcd cluster through the
//! `etcd-client` crate. Every key is stored under a namespace prefix (one per Sluice
//! cluster), added on the way in and stripped on the way out.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    LeaseKeepAliveStream, PutOptions, TlsOptions, TxnOp, WatchOptions,
};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::election;
use crate::store::LeaseKeeper;
use crate::{
    CmpOp, Compare, EventKind, KeyValue, LeaderKey, LeaseId, MetaError, MetadataStore, Op, Txn,
    TxnResult, WatchEvent, WatchStream,
};

/// A [`MetadataStore`] backed by etcd. Cheap to clone: clones share the gRPC channel.
#[derive(Clone)]
pub struct EtcdMetadataStore {
    client: Client,
    namespace: String,
    /// For error messages.
    endpoints: String,
}

impl std::fmt::Debug for EtcdMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMetadataStore")
            .field("endpoints", &self.endpoints)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// TLS to etcd (`etcd.ssl.*`, PEM files): the CA that signed etcd's
/// certificate, and this service's client certificate for etcd's
/// `--client-cert-auth`. Used with `https://` endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    fn options(&self) -> Result<TlsOptions, MetaError> {
        let read = |key: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| MetaError::TlsConfig {
                key: key.to_string(),
                message: format!("cannot read {}: {e}", p.display()),
            })
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("etcd.ssl.ca.location", ca)?));
        }
        match (&self.certificate, &self.key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read("etcd.ssl.certificate.location", c)?,
                    read("etcd.ssl.key.location", k)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(MetaError::TlsConfig {
                    key: "etcd.ssl.certificate.location".into(),
                    message: "etcd.ssl.certificate.location and etcd.ssl.key.location go together"
                        .into(),
                });
            }
        }
        Ok(tls)
    }
}

impl EtcdMetadataStore {
    /// Connects the way every Sluice service does: `endpoints` is the
    /// comma-separated `etcd.endpoints` value (`https://` with `tls`), and
    /// the cluster's keys live under `/sluice/<cluster_name>/`.
    pub async fn connect_cluster(
        endpoints: &str,
        cluster_name: &str,
        tls: Option<&EtcdTls>,
    ) -> Result<Self, MetaError> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        // Services may start before etcd (a whole cluster started at once, or
        // etcd restarting): keep trying for a while, like Kafka with ZooKeeper.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match Self::connect_with(
                &endpoints,
                &format!("/sluice/{cluster_name}/"),
                Duration::from_secs(5),
                tls,
            )
            .await
            {
                Ok(store) => return Ok(store),
                Err(e) if crate::is_retriable(&e) && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "etcd not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects to etcd and checks that it answers within `connect_timeout`.
    ///
    /// `namespace_prefix` (e.g. `/sluice/<cluster>/`) is prepended to every key and
    /// stripped from returned keys, so several clusters can share one etcd.
    pub async fn connect(
        endpoints: &[String],
        namespace_prefix: &str,
        connect_timeout: Duration,
    ) -> Result<Self, MetaError> {
        Self::connect_with(endpoints, namespace_prefix, connect_timeout, None).await
    }

    /// [`EtcdMetadataStore::connect`], over TLS when `tls` is given.
    pub async fn connect_with(
        endpoints: &[String],
        namespace_prefix: &str,
        connect_timeout: Duration,
        tls: Option<&EtcdTls>,
    ) -> Result<Self, MetaError> {
        let joined = endpoints.join(",");
        let unavailable = |source: crate::error::BoxError| MetaError::Unavailable {
            endpoints: joined.clone(),
            source,
        };
        if endpoints.is_empty() {
            return Err(unavailable("no etcd endpoints configured".into()));
        }
        // No per-request timeout: it would also cut long-lived watch and keep-alive
        // streams. HTTP/2 keep-alives detect dead connections instead, and require_leader
        // makes a member cut off from its quorum fail requests instead of hanging.
        let options = ConnectOptions::new()
            .with_connect_timeout(connect_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let options = match tls {
            Some(tls) => options.with_tls(tls.options()?),
            None => options,
        };
        let client =
            match tokio::time::timeout(connect_timeout, Client::connect(endpoints, Some(options)))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(unavailable(Box::new(e))),
                Err(_) => {
                    return Err(unavailable(
                        format!("no answer within {connect_timeout:?}").into(),
                    ));
                }
            };
        let store = Self {
            client,
            namespace: namespace_prefix.to_owned(),
            endpoints: joined,
        };
        // The channel connects lazily; one cheap read proves etcd is there and has a leader.
        let mut kv = store.client.kv_client();
        let probe = kv.get(
            store.namespace.clone(),
            Some(GetOptions::new().with_count_only()),
        );
        match tokio::time::timeout(connect_timeout, probe).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(store.unavailable(e)),
            Err(_) => Err(store.unavailable_msg(format!("no answer within {connect_timeout:?}"))),
        }
    }

    /// The namespace prefix every key is stored under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying client, for operations the trait does not cover (e.g. compaction).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.namespace, key)
    }

    fn unavailable(&self, e: etcd_client::Error) -> MetaError {
        MetaError::Unavailable {
            endpoints: self.endpoints.clone(),
            source: Box::new(e),
        }
    }

    fn unavailable_msg(&self, msg: String) -> MetaError {
        MetaError::Unavailable {
            endpoints: self.endpoints.clone(),
            source: msg.into(),
        }
    }

    /// Classifies an etcd-client error; `lease` is the lease the request used, if any.
    fn map_err(&self, e: etcd_client::Error, lease: LeaseId) -> MetaError {
        use etcd_client::Error as E;
        match &e {
            E::TransportError(_) | E::IoError(_) => self.unavailable(e),
            E::LeaseKeepAliveError(msg) if msg.contains("lease not found") => {
                MetaError::LeaseNotFound { lease }
            }
            E::GRpcStatus(status) => {
                let msg = status.message();
                if msg.contains("lease not found") {
                    MetaError::LeaseNotFound { lease }
                } else if is_unavailable_code(status.code() as i32)
                    || msg.contains("no leader")
                    // tonic attaches a source only to statuses it made from a local
                    // transport failure (broken pipe, reset, h2 error), never to one
                    // etcd sent.
                    || std::error::Error::source(status).is_some()
                {
                    self.unavailable(e)
                } else {
                    MetaError::Etcd(e)
                }
            }
            _ => MetaError::Etcd(e),
        }
    }

    fn kv_from(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: self.strip(kv.key()),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }

    fn strip(&self, key: &[u8]) -> String {
        let key = key.strip_prefix(self.namespace.as_bytes()).unwrap_or(key);
        // Sluice only writes UTF-8 keys; a foreign key is shown, not rejected.
        String::from_utf8_lossy(key).into_owned()
    }

    fn compare(&self, c: &Compare) -> etcd_client::Compare {
        let op = |op: &CmpOp| match op {
            CmpOp::Equal => CompareOp::Equal,
            CmpOp::NotEqual => CompareOp::NotEqual,
            CmpOp::Greater => CompareOp::Greater,
            CmpOp::Less => CompareOp::Less,
        };
        match c {
            Compare::Value { key, value } => {
                etcd_client::Compare::value(self.full_key(key), CompareOp::Equal, value.clone())
            }
            Compare::ModRevision {
                key,
                op: o,
                revision,
            } => etcd_client::Compare::mod_revision(self.full_key(key), op(o), *revision),
            Compare::CreateRevision {
                key,
                op: o,
                revision,
            } => etcd_client::Compare::create_revision(self.full_key(key), op(o), *revision),
            Compare::Version {
                key,
                op: o,
                version,
            } => etcd_client::Compare::version(self.full_key(key), op(o), *version),
        }
    }

    fn op(&self, op: &Op) -> TxnOp {
        match op {
            Op::Put { key, value, lease } => TxnOp::put(
                self.full_key(key),
                value.clone(),
                Some(PutOptions::new().with_lease(*lease)),
            ),
            Op::Delete { key } => TxnOp::delete(self.full_key(key), None),
            Op::DeletePrefix { prefix } => TxnOp::delete(
                self.full_key(prefix),
                Some(DeleteOptions::new().with_prefix()),
            ),
        }
    }
}

/// gRPC UNAVAILABLE (14) and DEADLINE_EXCEEDED (4): the request may succeed elsewhere or
/// later. Numeric so this crate needs no direct tonic dependency.
fn is_unavailable_code(code: i32) -> bool {
    code == 14 || code == 4
}

/// Groups a watch response's events by revision, preserving order.
fn group_by_revision(events: Vec<WatchEvent>, out: &mut VecDeque<Vec<WatchEvent>>) {
    let mut current: Vec<WatchEvent> = Vec::new();
    for event in events {
        if current
            .last()
            .is_some_and(|last| last.kv.mod_revision != event.kv.mod_revision)
        {
            out.push_back(std::mem::take(&mut current));
        }
        current.push(event);
    }
    if !current.is_empty() {
        out.push_back(current);
    }
}

struct EtcdWatch {
    store: EtcdMetadataStore,
    // Holds the request sender too: dropping it would end the watch.
    stream: etcd_client::WatchStream,
    pending: VecDeque<Vec<WatchEvent>>,
    done: bool,
}

impl EtcdWatch {
    async fn next_batch(&mut self) -> Option<Result<Vec<WatchEvent>, MetaError>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            // Any failure ends the stream after one error item: the consumer re-lists and
            // watches again from the listed revision, which also covers missed events.
            self.done = true;
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Some(Err(self
                        .store
                        .unavailable_msg("watch stream closed by etcd".to_owned())));
                }
                Err(e) => return Some(Err(self.store.map_err(e, 0))),
            };
            if resp.compact_revision() > 0 {
                return Some(Err(MetaError::Compacted {
                    revision: resp.compact_revision(),
                }));
            }
            if resp.canceled() {
                return Some(Err(self.store.unavailable_msg(format!(
                    "watch canceled by etcd: {}",
                    resp.cancel_reason()
                ))));
            }
            self.done = false;
            let events = resp
                .events()
                .iter()
                .filter_map(|e| {
                    let kv = e.kv()?;
                    let kind = match e.event_type() {
                        etcd_client::EventType::Put => EventKind::Put,
                        etcd_client::EventType::Delete => EventKind::Delete,
                    };
                    Some(WatchEvent {
                        kind,
                        kv: self.store.kv_from(kv),
                    })
                })
                .collect();
            group_by_revision(events, &mut self.pending);
        }
    }
}

/// Refreshes `lease` every ttl/3 and reports it lost once etcd says it is gone or no
/// refresh has been confirmed for a whole TTL (reconnecting the stream meanwhile).
async fn keep_alive_loop(
    store: EtcdMetadataStore,
    lease: LeaseId,
    ttl: Duration,
    conn: (etcd_client::LeaseKeeper, LeaseKeepAliveStream),
    lost: watch::Sender<bool>,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    // etcd just confirmed the lease when the keep-alive stream was opened.
    let mut deadline = Instant::now() + ttl;
    let mut conn = Some(conn);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        match conn.as_mut() {
            Some((keeper, responses)) => {
                tokio::select! {
                    _ = tick.tick() => {
                        if keeper.keep_alive().await.is_err() {
                            conn = None;
                        }
                    }
                    msg = responses.message() => match msg {
                        Ok(Some(resp)) if resp.ttl() > 0 => {
                            deadline = Instant::now() + Duration::from_secs(resp.ttl() as u64);
                        }
                        Ok(Some(_)) => {
                            tracing::warn!(lease, "lease expired or revoked");
                            break;
                        }
                        Ok(None) | Err(_) => conn = None,
                    },
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => {
                let mut client = store.client.lease_client();
                tokio::select! {
                    res = client.keep_alive(lease) => match res {
                        Ok(c) => {
                            deadline = Instant::now() + ttl;
                            conn = Some(c);
                        }
                        Err(e) => {
                            if let MetaError::LeaseNotFound { .. } = store.map_err(e, lease) {
                                tracing::warn!(lease, "lease expired while reconnecting");
                                break;
                            }
                            tokio::time::sleep(period.min(Duration::from_millis(500))).await;
                        }
                    },
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(lease, "no keep-alive confirmed within the lease TTL");
            break;
        }
    }
    lost.send_replace(true);
}

#[async_trait::async_trait]
impl MetadataStore for EtcdMetadataStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(self.full_key(key), None)
            .await
            .map_err(|e| self.map_err(e, 0))?;
        Ok(resp.kvs().first().map(|kv| self.kv_from(kv)))
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), MetaError> {
        let mut kv = self.client.kv_client();
        // etcd returns a range in key order unless asked to sort otherwise.
        let resp = kv
            .get(self.full_key(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.map_err(e, 0))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((
            resp.kvs().iter().map(|kv| self.kv_from(kv)).collect(),
            revision,
        ))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<i64, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .put(
                self.full_key(key),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| self.map_err(e, lease))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn delete(&self, key: &str) -> Result<bool, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .delete(self.full_key(key), None)
            .await
            .map_err(|e| self.map_err(e, 0))?;
        Ok(resp.deleted() > 0)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .delete(
                self.full_key(prefix),
                Some(DeleteOptions::new().with_prefix()),
            )
            .await
            .map_err(|e| self.map_err(e, 0))?;
        Ok(resp.deleted().max(0) as u64)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, MetaError> {
        // For a "lease not found" error, name the first lease the txn binds a key to.
        let lease = txn
            .success
            .iter()
            .chain(&txn.failure)
            .find_map(|op| match op {
                Op::Put { lease, .. } if *lease != 0 => Some(*lease),
                _ => None,
            })
            .unwrap_or(0);
        let request = etcd_client::Txn::new()
            .when(
                txn.compares
                    .iter()
                    .map(|c| self.compare(c))
                    .collect::<Vec<_>>(),
            )
            .and_then(txn.success.iter().map(|o| self.op(o)).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(|o| self.op(o)).collect::<Vec<_>>());
        let mut kv = self.client.kv_client();
        let resp = kv.txn(request).await.map_err(|e| self.map_err(e, lease))?;
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn watch_prefix(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<WatchStream, MetaError> {
        let mut options = WatchOptions::new().with_prefix();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision);
        }
        let mut client = self.client.watch_client();
        let mut stream = client
            .watch(self.full_key(prefix), Some(options))
            .await
            .map_err(|e| self.map_err(e, 0))?;
        // Wait for the server to register the watch, so that "0 = from now" really means
        // every change after this call returns.
        match stream.message().await {
            Ok(Some(resp)) if resp.created() && !resp.canceled() => {}
            Ok(Some(resp)) if resp.compact_revision() > 0 => {
                return Err(MetaError::Compacted {
                    revision: resp.compact_revision(),
                });
            }
            Ok(Some(resp)) => {
                return Err(self
                    .unavailable_msg(format!("etcd refused the watch: {}", resp.cancel_reason())));
            }
            Ok(None) => {
                return Err(self.unavailable_msg("watch stream closed by etcd".to_owned()));
            }
            Err(e) => return Err(self.map_err(e, 0)),
        }
        let watch = EtcdWatch {
            store: self.clone(),
            stream,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut w| async move { w.next_batch().await.map(|item| (item, w)) },
        )))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        // etcd leases have whole-second TTLs; round up so the lease never lives shorter.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let mut client = self.client.lease_client();
        let resp = client
            .grant(secs.max(1) as i64, None)
            .await
            .map_err(|e| self.map_err(e, 0))?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseKeeper, MetaError> {
        let mut client = self.client.lease_client();
        let info = client
            .time_to_live(lease, None)
            .await
            .map_err(|e| self.map_err(e, lease))?;
        if info.ttl() <= 0 {
            return Err(MetaError::LeaseNotFound { lease });
        }
        let ttl = Duration::from_secs(info.granted_ttl().max(1) as u64);
        let conn = client
            .keep_alive(lease)
            .await
            .map_err(|e| self.map_err(e, lease))?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let task = tokio::spawn(keep_alive_loop(self.clone(), lease, ttl, conn, lost_tx));
        Ok(LeaseKeeper::new(lease, lost_rx, task))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut client = self.client.lease_client();
        client
            .revoke(lease)
            .await
            .map_err(|e| self.map_err(e, lease))?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, rev: i64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Vec::new(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease: 0,
            },
        }
    }

    #[test]
    fn one_response_is_split_into_one_batch_per_revision() {
        let mut out = VecDeque::new();
        group_by_revision(
            vec![event("a", 5), event("b", 5), event("c", 6), event("d", 7)],
            &mut out,
        );
        let revs: Vec<Vec<i64>> = out
            .iter()
            .map(|b| b.iter().map(|e| e.kv.mod_revision).collect())
            .collect();
        assert_eq!(revs, [vec![5, 5], vec![6], vec![7]]);
        group_by_revision(Vec::new(), &mut out);
        assert_eq!(out.len(), 3);
    }
}
