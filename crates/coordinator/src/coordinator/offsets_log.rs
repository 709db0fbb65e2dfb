//! The coordinator's I/O on `__consumer_offsets`, behind [`OffsetsLog`]:
//! [`ClusterLog`] writes with an acks=all producer and reads with a consumer,
//! through the cluster's brokers; tests use an in-memory log
//! (`testing::MemLog`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use sluice_client::{
    ClientConfig, ClientError, Consumer, Producer, ProducerRecord, TopicPartition,
};
use sluice_metastore::MetadataStore;
use sluice_types::meta::{self, BrokerRegistration};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;

use crate::config::CoordinatorConfig;
use crate::error::{CoordinatorError, LogOp};
use crate::records;

/// Resolves when one record is acknowledged (acks=all), or has failed.
pub(crate) type Ack = BoxFuture<'static, Result<(), CoordinatorError>>;

/// How long a load may take to read its partition up to the marker.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A record read back: key, value, and the epoch its headers name.
pub(crate) type StoredRecord = (Option<Bytes>, Option<Bytes>, Option<i64>);

pub(crate) trait OffsetsLog: Send + Sync + 'static {
    /// Queues `records` (all for partition `p`) in order and returns one
    /// [`Ack`] per record once all are queued; fails at the first record
    /// that cannot be queued.
    fn append(
        &self,
        p: i32,
        records: Vec<ProducerRecord>,
    ) -> BoxFuture<'_, Result<Vec<Ack>, CoordinatorError>>;

    /// Writes `marker` to partition `p`, waits for its acknowledgement, and
    /// returns the partition's records from its start up to the marker
    /// (included).
    fn read_to_marker(
        &self,
        p: i32,
        marker: ProducerRecord,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, CoordinatorError>>;

    /// A consumer to read end offsets with (consumer lag), if there is one.
    fn lag_reader(&self) -> BoxFuture<'_, Option<Consumer>> {
        Box::pin(async { None })
    }
}

/// The client side the coordinator uses to read and write its partitions.
struct Clients {
    producer: Producer,
    config: ClientConfig,
}

/// `__consumer_offsets` through the cluster's brokers.
pub(crate) struct ClusterLog {
    config: CoordinatorConfig,
    store: Arc<dyn MetadataStore>,
    /// Bootstrap for the internal clients; `None`: the live brokers in the store.
    bootstrap: Option<String>,
    clients: tokio::sync::OnceCell<Clients>,
}

impl ClusterLog {
    pub(crate) fn new(
        config: CoordinatorConfig,
        store: Arc<dyn MetadataStore>,
        bootstrap: Option<String>,
    ) -> Self {
        Self {
            config,
            store,
            bootstrap,
            clients: tokio::sync::OnceCell::new(),
        }
    }

    async fn clients(&self) -> Result<&Clients, CoordinatorError> {
        self.clients
            .get_or_try_init(|| async {
                let bootstrap = match &self.bootstrap {
                    Some(b) => b.clone(),
                    None => {
                        let (kvs, _) =
                            self.store.range(meta::BROKERS_PREFIX).await.map_err(|e| {
                                CoordinatorError::FindBrokers {
                                    source: Arc::new(e),
                                }
                            })?;
                        let addrs: Vec<String> = kvs
                            .iter()
                            .filter_map(|kv| meta::decode::<BrokerRegistration>(&kv.value).ok())
                            .map(|b| format!("{}:{}", b.host, b.port))
                            .collect();
                        if addrs.is_empty() {
                            return Err(CoordinatorError::NoLiveBroker);
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
                .map_err(failed(LogOp::Open))?;
                // The brokers are reached like any other service is.
                let tls = self
                    .config
                    .security
                    .inter_service()
                    .map_err(|e| match e {
                        sluice_server::config::ConfigError::Invalid { key, message } => {
                            ClientError::Config {
                                property: key,
                                reason: message,
                            }
                        }
                        other => ClientError::Config {
                            property: "ssl".into(),
                            reason: other.to_string(),
                        },
                    })
                    .map_err(failed(LogOp::Open))?;
                let config = config.with_tls(tls).as_service();
                let producer = Producer::new(config.clone()).map_err(failed(LogOp::Open))?;
                Ok(Clients { producer, config })
            })
            .await
    }
}

impl OffsetsLog for ClusterLog {
    fn append(
        &self,
        p: i32,
        records: Vec<ProducerRecord>,
    ) -> BoxFuture<'_, Result<Vec<Ack>, CoordinatorError>> {
        let write = LogOp::Write { partition: p };
        Box::pin(async move {
            let clients = self.clients().await?;
            let mut pending = Vec::with_capacity(records.len());
            for rec in records {
                let delivery = clients.producer.send(rec).await.map_err(failed(write))?;
                let ack: Ack =
                    Box::pin(async move { delivery.await.map(|_| ()).map_err(failed(write)) });
                pending.push(ack);
            }
            Ok(pending)
        })
    }

    fn read_to_marker(
        &self,
        p: i32,
        marker: ProducerRecord,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, CoordinatorError>> {
        let (write, load) = (LogOp::Write { partition: p }, LogOp::Load { partition: p });
        Box::pin(async move {
            let clients = self.clients().await?;
            let marker = clients
                .producer
                .send(marker)
                .await
                .map_err(failed(write))?
                .await
                .map_err(failed(write))?
                .offset;
            let mut consumer =
                Consumer::new(clients.config.clone()).map_err(failed(LogOp::Open))?;
            let tp = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, p);
            consumer.assign(vec![tp.clone()]);
            consumer
                .seek_to_beginning(std::slice::from_ref(&tp))
                .await
                .map_err(failed(load))?;
            let mut recs: Vec<StoredRecord> = Vec::new();
            let deadline = Instant::now() + LOAD_TIMEOUT;
            while consumer.position(&tp).unwrap_or(0) <= marker {
                if Instant::now() > deadline {
                    return Err(CoordinatorError::LoadTimeout {
                        partition: p,
                        marker,
                        secs: LOAD_TIMEOUT.as_secs(),
                    });
                }
                for r in consumer
                    .poll(Duration::from_millis(200))
                    .await
                    .map_err(failed(load))?
                {
                    if r.offset <= marker {
                        let epoch = records::header_epoch(&r.headers);
                        recs.push((r.key, r.value, epoch));
                    }
                }
            }
            Ok(recs)
        })
    }

    fn lag_reader(&self) -> BoxFuture<'_, Option<Consumer>> {
        Box::pin(async move {
            let clients = self.clients().await.ok()?;
            Consumer::new(clients.config.clone()).ok()
        })
    }
}

/// A failure of the internal producer or consumer during `op`: the
/// coordinator's own error, with the client's as its cause (see
/// [`CoordinatorError::code`]).
fn failed(op: LogOp) -> impl Fn(ClientError) -> CoordinatorError {
    move |source| CoordinatorError::OffsetsLog { op, source }
}
