//! [`Cluster`]: bootstrap, the metadata cache and one gRPC channel per broker.
//!
//! Channels are created lazily (tonic `connect_lazy`) with the settings the
//! data path needs: TCP nodelay, large HTTP/2 windows so multi-MiB batches do
//! not stall on flow control, and message limits above `fetch.max.bytes`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::broker::{MetadataRequest, MetadataResponse};
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_types::{ApiError, ErrorCode};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

/// A connection to a Sluice server, sending this client's credentials (if
/// any) with every request.
pub type Channel = InterceptedService<tonic::transport::Channel, Credentials>;

/// What every request says of its client: the `authorization` header
/// (`Bearer <token>` or `Basic <user:password>`, from `sluice.token` or
/// `sasl.username`; none without them) and `client.id` (for quotas).
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
    client_id: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    pub fn of(config: &ClientConfig) -> Result<Self> {
        use base64::Engine as _;
        let value = match (&config.token, &config.sasl_username, &config.sasl_password) {
            (Some(t), _, _) => format!("Bearer {}", t.0),
            (None, Some(u), Some(p)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.0))
            ),
            _ => String::new(),
        };
        let authorization = if value.is_empty() {
            None
        } else {
            Some(value.parse().map_err(|_| {
                ClientError::config("sasl.username", "credentials must be printable ASCII")
            })?)
        };
        Ok(Credentials {
            authorization,
            // A client id that is not a header value is simply not sent.
            client_id: config.client_id.parse().ok(),
        })
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.client_id {
            req.metadata_mut().insert("sluice-client-id", v.clone());
        }
        Ok(req)
    }
}

use crate::TopicPartition;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};

/// Largest gRPC message the client sends or accepts.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// How long a producer waits for a topic that Metadata says does not exist,
/// before failing with `UNKNOWN_TOPIC_OR_PARTITION` (Kafka waits `max.block.ms`).
pub const UNKNOWN_TOPIC_WAIT: Duration = Duration::from_millis(1500);

/// A partition as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    /// The leader's broker id, or -1.
    pub leader: i32,
    pub leader_epoch: i32,
}

/// The cached view of one topic.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub partitions: Vec<PartitionLeader>,
    /// The topic's UUID: a re-created topic's epochs start over.
    pub topic_id: String,
}

#[derive(Default)]
struct Cache {
    brokers: HashMap<i32, String>,
    controller: Option<String>,
    topics: HashMap<String, TopicInfo>,
    /// Channel per `host:port`.
    channels: HashMap<String, Channel>,
}

/// Shared connection and metadata state of one client.
pub struct Cluster {
    pub(crate) config: ClientConfig,
    /// TLS for every channel (`security.protocol=SSL`), built once.
    tls: Option<sluice_tls::ClientTls>,
    /// What every request carries to say who the client is.
    credentials: Credentials,
    // A std-style lock: nothing awaits while holding it.
    cache: parking_lot::Mutex<Cache>,
    /// Rotates which broker a metadata refresh asks first, so a broker with
    /// a stale view (cut off from the cluster, still answering) is not asked
    /// first every time.
    next_metadata: std::sync::atomic::AtomicUsize,
}

impl Cluster {
    pub fn new(config: ClientConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let tls = config.client_tls()?;
        let credentials = Credentials::of(&config)?;
        Ok(Arc::new(Cluster {
            config,
            tls,
            credentials,
            cache: parking_lot::Mutex::new(Cache::default()),
            next_metadata: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The TLS configuration of this client's connections, if any.
    pub fn tls(&self) -> Option<&sluice_tls::ClientTls> {
        self.tls.as_ref()
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut cache = self.cache.lock();
        if let Some(c) = cache.channels.get(addr) {
            return Ok(c.clone());
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri).map_err(|e| {
            ClientError::config("bootstrap.servers", format!("bad address \"{addr}\": {e}"))
        })?;
        let endpoint = endpoint
            .tcp_nodelay(true)
            .connect_timeout(self.config.request_timeout.min(Duration::from_secs(10)))
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(30));
        let channel = self.connect_lazy(endpoint);
        cache.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A channel to `endpoint` that connects on first use, with this
    /// client's TLS and credentials.
    pub(crate) fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        let channel = if self.config.internal {
            sluice_tls::internal_channel(endpoint, self.tls.as_ref())
        } else {
            sluice_tls::lazy_channel(endpoint, self.tls.as_ref())
        };
        InterceptedService::new(channel, self.credentials.clone())
    }

    /// A Broker client for `host:port`.
    pub fn broker_at(&self, addr: &str) -> Result<BrokerClient<Channel>> {
        Ok(BrokerClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// The address of a broker by id, from the cache.
    pub fn broker_addr(&self, id: i32) -> Option<String> {
        self.cache.lock().brokers.get(&id).cloned()
    }

    /// A Broker client for a broker id.
    pub fn broker(&self, id: i32) -> Result<(String, BrokerClient<Channel>)> {
        let addr = self.broker_addr(id).ok_or_else(|| {
            ClientError::api(
                ErrorCode::LeaderNotAvailable,
                format!("broker {id} is not in the cluster metadata"),
            )
        })?;
        let c = self.broker_at(&addr)?;
        Ok((addr, c))
    }

    /// A Controller client for the active controller, refreshing metadata
    /// when it is not known.
    pub async fn controller(&self) -> Result<(String, ControllerClient<Channel>)> {
        let mut addr = self.cache.lock().controller.clone();
        if addr.is_none() {
            self.refresh(&[]).await?;
            addr = self.cache.lock().controller.clone();
        }
        let addr = addr.ok_or_else(|| {
            ClientError::api(ErrorCode::NotController, "no active controller right now")
        })?;
        let c = ControllerClient::new(self.channel(&addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok((addr, c))
    }

    /// Sends Metadata to a known broker or a bootstrap server (the first that
    /// answers) and updates the cache with the answer.
    pub async fn metadata(
        &self,
        topics: &[String],
        include_internal: bool,
    ) -> Result<MetadataResponse> {
        // As Kafka's producers and consumers do: the broker creates missing
        // topics only when its `auto.create.topics.enable` is on (off by
        // default in Sluice).
        self.metadata_for(topics, include_internal, !topics.is_empty())
            .await
    }

    /// [`Cluster::metadata`], saying whether a missing topic may be
    /// auto-created: admin calls never do (Kafka's describeTopics neither).
    pub async fn metadata_for(
        &self,
        topics: &[String],
        include_internal: bool,
        auto_create: bool,
    ) -> Result<MetadataResponse> {
        let mut candidates: Vec<String> = self.cache.lock().brokers.values().cloned().collect();
        candidates.sort();
        for b in &self.config.bootstrap_servers {
            if !candidates.contains(b) {
                candidates.push(b.clone());
            }
        }
        if !candidates.is_empty() {
            let first = self
                .next_metadata
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n = candidates.len();
            candidates.rotate_left(first % n);
        }
        let req = MetadataRequest {
            topics: topics.to_vec(),
            allow_auto_topic_creation: auto_create,
            include_internal,
        };
        let mut last: Option<ClientError> = None;
        for addr in candidates {
            let mut client = self.broker_at(&addr)?;
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(self.config.request_timeout);
            match tokio::time::timeout(self.config.request_timeout, client.metadata(r)).await {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    self.update(&resp);
                    return Ok(resp);
                }
                Ok(Err(status)) => {
                    tracing::debug!(broker = %addr, %status, "metadata failed");
                    last = Some(ClientError::from_status(&addr, &status));
                }
                Err(_) => {
                    last = Some(ClientError::api(
                        ErrorCode::RequestTimedOut,
                        format!("broker {addr}: metadata timed out"),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::config("bootstrap.servers", "no server to ask")))
    }

    /// KIP-951: a NOT_LEADER_OR_FOLLOWER answer names the partition's
    /// current leader. Takes it when it is newer than what the cache holds
    /// and the leader's address is known, so a retry can go there at once
    /// instead of after a backoff and a metadata round trip. Returns whether
    /// the cache changed.
    pub fn learn_leader(&self, tp: &TopicPartition, leader: i32, leader_epoch: i32) -> bool {
        if leader < 0 {
            return false;
        }
        let mut cache = self.cache.lock();
        if !cache.brokers.contains_key(&leader) {
            return false;
        }
        let Some(slot) = cache.topics.get_mut(&tp.topic).and_then(|t| {
            usize::try_from(tp.partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        }) else {
            return false;
        };
        if leader_epoch <= slot.leader_epoch {
            return false;
        }
        *slot = PartitionLeader {
            leader,
            leader_epoch,
        };
        true
    }

    /// Refreshes the cache for `topics` (empty: brokers and controller only).
    pub async fn refresh(&self, topics: &[String]) -> Result<()> {
        self.metadata(topics, false).await.map(|_| ())
    }

    fn update(&self, resp: &MetadataResponse) {
        let mut cache = self.cache.lock();
        if !resp.brokers.is_empty() {
            cache.brokers = resp
                .brokers
                .iter()
                .map(|b| (b.broker_id, format!("{}:{}", b.host, b.port)))
                .collect();
        }
        cache.controller = resp
            .controller
            .as_ref()
            .map(|c| format!("{}:{}", c.host, c.port));
        for t in &resp.topics {
            match ApiError::from_proto(t.error.as_ref()) {
                None => {
                    let mut partitions = vec![
                        PartitionLeader {
                            leader: -1,
                            leader_epoch: -1
                        };
                        t.partitions.len()
                    ];
                    // A broker with a stale view (cut off from the cluster) must
                    // not undo what a fresher answer taught us: per partition,
                    // the higher leader epoch wins, as in Kafka's clients
                    // (KIP-320), unless the topic was re-created.
                    let known = cache
                        .topics
                        .get(&t.name)
                        .filter(|old| old.topic_id == t.topic_id);
                    for p in &t.partitions {
                        let i = usize::try_from(p.partition).ok();
                        let newer = PartitionLeader {
                            leader: p.leader_id,
                            leader_epoch: p.leader_epoch,
                        };
                        let kept = i
                            .and_then(|i| known.and_then(|k| k.partitions.get(i)))
                            .filter(|old| old.leader_epoch > p.leader_epoch)
                            .copied()
                            .unwrap_or(newer);
                        if let Some(slot) = i.and_then(|i| partitions.get_mut(i)) {
                            *slot = kept;
                        }
                    }
                    cache.topics.insert(
                        t.name.clone(),
                        TopicInfo {
                            partitions,
                            topic_id: t.topic_id.clone(),
                        },
                    );
                }
                Some(_) => {
                    cache.topics.remove(&t.name);
                }
            }
        }
    }

    /// The cached view of a topic.
    pub fn topic(&self, topic: &str) -> Option<TopicInfo> {
        self.cache.lock().topics.get(topic).cloned()
    }

    /// The cached leader of a partition (-1 when unknown).
    pub fn leader(&self, topic: &str, partition: i32) -> PartitionLeader {
        self.cache
            .lock()
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize).cloned())
            .unwrap_or(PartitionLeader {
                leader: -1,
                leader_epoch: -1,
            })
    }

    /// The partition count of `topic`, fetching metadata when it is not cached.
    /// A topic Metadata reports as missing is retried for
    /// [`UNKNOWN_TOPIC_WAIT`] (it may have just been created), then fails fast
    /// with `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn partition_count(&self, topic: &str) -> Result<i32> {
        // Read in place: this runs once per produced record.
        let cached = self
            .cache
            .lock()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32);
        if let Some(n) = cached {
            return Ok(n);
        }
        let deadline = Instant::now() + UNKNOWN_TOPIC_WAIT;
        let topics = [topic.to_string()];
        loop {
            let resp = self.metadata(&topics, false).await?;
            let err = resp
                .topics
                .iter()
                .find(|t| t.name == topic)
                .and_then(|t| ApiError::from_proto(t.error.as_ref()));
            if let Some(t) = self.topic(topic)
                && !t.partitions.is_empty()
            {
                return Ok(t.partitions.len() as i32);
            }
            let err = err.unwrap_or_else(|| ApiError::unknown_topic(topic));
            if err.code == ErrorCode::InvalidTopicException || Instant::now() >= deadline {
                return Err(err.into());
            }
            tokio::time::sleep(self.config.retry_backoff.min(Duration::from_millis(250))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::broker::{PartitionMetadata, TopicMetadata};
    use sluice_proto::common::BrokerEndpoint;

    use super::*;

    fn answer(topic_id: &str, leader: i32, epoch: i32) -> MetadataResponse {
        MetadataResponse {
            brokers: (1..=3)
                .map(|id| BrokerEndpoint {
                    broker_id: id,
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    ..Default::default()
                })
                .collect(),
            topics: vec![TopicMetadata {
                name: "t".into(),
                topic_id: topic_id.into(),
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader_id: leader,
                    leader_epoch: epoch,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn leader(c: &Cluster) -> PartitionLeader {
        c.cache.lock().topics["t"].partitions[0]
    }

    #[test]
    fn a_stale_answer_does_not_undo_a_newer_leader() {
        let c = Cluster::new(ClientConfig::new("127.0.0.1:9091")).unwrap();
        c.update(&answer("a", 1, 5));
        c.update(&answer("a", 2, 4));
        assert_eq!(leader(&c).leader, 1, "epoch 4 is older than 5");
        c.update(&answer("a", 2, 6));
        assert_eq!(leader(&c).leader, 2);
        // A re-created topic starts its epochs over.
        c.update(&answer("b", 3, 0));
        assert_eq!(leader(&c).leader, 3);
    }

    #[test]
    fn a_leader_hint_is_taken_only_when_newer_and_reachable() {
        let c = Cluster::new(ClientConfig::new("127.0.0.1:9091")).unwrap();
        c.update(&answer("a", 1, 5));
        let tp = TopicPartition::new("t", 0);
        assert!(!c.learn_leader(&tp, 2, 5), "same epoch");
        assert!(!c.learn_leader(&tp, 9, 6), "unknown broker");
        assert!(!c.learn_leader(&tp, -1, 6), "no leader");
        assert!(c.learn_leader(&tp, 2, 6));
        assert_eq!(
            leader(&c),
            PartitionLeader {
                leader: 2,
                leader_epoch: 6
            }
        );
    }
}
