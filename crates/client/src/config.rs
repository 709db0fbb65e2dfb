//! [`ClientConfig`]: the client's settings under Kafka's property names.
//!
//! Properties are parsed from `key=value` pairs (`--producer-property`,
//! `--consumer-property`, Java-style `.properties` files). An unknown property is
//! an error that names it; a few Kafka properties that make no sense for a gRPC
//! client (serializers, socket buffers) are accepted and ignored.

use std::time::Duration;

use sluice_records::Compression;
use sluice_tls::{ClientTls, SecurityProtocol, TlsFiles};

use crate::error::{ClientError, Result};

/// Producer acknowledgements (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: fire and forget; deliveries resolve with offset -1.
    None,
    /// `acks=1`: the leader appended.
    Leader,
    /// `acks=all` / `acks=-1`: every in-sync replica has the records.
    All,
}

impl Acks {
    /// The wire value of `ProduceRequest.acks`.
    pub fn as_i32(self) -> i32 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Which group protocol a [`GroupConsumer`](crate::GroupConsumer) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// Kafka's classic protocol: JoinGroup, SyncGroup, the leader assigns.
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat, the coordinator assigns.
    Consumer,
}

/// What a consumer does without a valid position (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail with `OFFSET_OUT_OF_RANGE`.
    None,
}

/// Which offsets a consumer may read (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
}

/// How records without an explicit partition are routed (`partitioner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionerKind {
    /// Kafka's default: murmur2 of the key; null keys stick to one partition
    /// until its batch is sent.
    Default,
    /// Every record (keyed or not) goes to the next partition in turn.
    RoundRobin,
}

/// Settings shared by [`Admin`](crate::Admin), [`Producer`](crate::Producer)
/// and [`Consumer`](crate::Consumer). Field defaults are Kafka's.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` list.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `acks` (default `all`).
    pub acks: Acks,
    /// `linger.ms` (default 5).
    pub linger: Duration,
    /// `batch.size` in bytes per partition batch (default 16384; the perf
    /// test passes a larger one for throughput).
    pub batch_size: usize,
    /// `buffer.memory`: bytes of unsent records before `send` waits (32 MiB).
    pub buffer_memory: usize,
    /// `max.request.size`: bytes per Produce request and largest record (1 MiB).
    pub max_request_size: usize,
    /// `request.timeout.ms` (30000).
    pub request_timeout: Duration,
    /// `delivery.timeout.ms` (120000): bound on a record's send plus retries.
    pub delivery_timeout: Duration,
    /// `retries` (default unbounded within `delivery.timeout.ms`).
    pub retries: u32,
    /// `retry.backoff.ms` (100).
    pub retry_backoff: Duration,
    /// `enable.idempotence`: `Some` when set explicitly. Unset means on (Kafka
    /// 3's default) unless `acks` is not `all`, as in Kafka; see
    /// [`ClientConfig::idempotence`].
    pub enable_idempotence: Option<bool>,
    /// `max.in.flight.requests.per.connection` (5).
    pub max_in_flight: usize,
    /// `partitioner`: `default` or `round_robin`.
    pub partitioner: PartitionerKind,
    /// `compression.type` (none): how the producer compresses each batch
    /// (none, gzip, snappy, lz4, zstd). Consumers decompress whatever comes.
    pub compression_type: Compression,
    /// `group.id`: the consumer group [`crate::GroupConsumer`] joins.
    pub group_id: Option<String>,
    /// `group.instance.id`: static membership (KIP-345). The member keeps its
    /// place across a restart within `session.timeout.ms` (close does not
    /// leave the group), and a second consumer with the same id fences the
    /// first (FENCED_INSTANCE_ID).
    pub group_instance_id: Option<String>,
    /// `enable.auto.commit` (true): commit what `poll` returned, every
    /// `auto.commit.interval.ms` (5000), before a rebalance and on close.
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms` (45000): the coordinator removes a member that
    /// sends no heartbeat for this long.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (3000).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (300000): a member that does not call `poll`
    /// for this long leaves the group so its partitions move on.
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy`: assignors in preference order
    /// (`range`, `roundrobin`, `sticky`; default `range`).
    pub partition_assignment_strategy: Vec<String>,
    /// `group.protocol`: `classic` (the default: JoinGroup/SyncGroup, this
    /// member's assignor) or `consumer` (KIP-848: the coordinator assigns,
    /// rebalances move only the partitions that change hands).
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the coordinator's assignor a `consumer`
    /// protocol member asks for (`uniform` or `range`; the coordinator's
    /// default when unset).
    pub group_remote_assignor: Option<String>,
    /// `auto.offset.reset` (default `latest`).
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes` (1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms` (500).
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes` (50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `max.poll.records` (500).
    pub max_poll_records: usize,
    /// `isolation.level` (`read_uncommitted`).
    pub isolation_level: IsolationLevel,
    /// `max.delivery.attempts` (1): how often a group consumer's record is
    /// handed to the application before a `nack` sends it to the dead-letter
    /// topic. Above 1, the consumer also reads the retry topics, and a
    /// `nack` before the last attempt re-publishes the record there, delayed.
    pub max_delivery_attempts: u32,
    /// `delivery.retry.backoff.ms` (1000): the delay before the second
    /// attempt, doubled for each later one; 0 retries at once.
    pub delivery_retry_backoff: Duration,
    /// `delivery.retry.backoff.max.ms` (60000): the longest retry delay.
    pub delivery_retry_backoff_max: Duration,
    /// `retry.topic.suffix` (`.retry`): topic `T`'s retry topic is `T` plus this.
    pub retry_topic_suffix: String,
    /// `dead.letter.topic.suffix` (`.dlq`): topic `T`'s dead-letter topic.
    pub dead_letter_topic_suffix: String,
    /// `security.protocol` (`PLAINTEXT`): `SSL` connects over TLS.
    pub security_protocol: SecurityProtocol,
    /// `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`:
    /// the CA that signed the brokers' certificates (the system's CAs when
    /// unset), and this client's own certificate and key for mTLS.
    pub ssl_files: TlsFiles,
    /// `ssl.endpoint.identification.algorithm` (`https`): check that a
    /// broker's certificate names the host connected to; empty skips it.
    pub ssl_verify_hostname: bool,
    /// A TLS configuration built by the program (a service passes the one it
    /// reloads), used instead of building one from the settings above.
    pub tls: Option<ClientTls>,
    /// `sasl.username` / `sasl.password` with `security.protocol`
    /// `SASL_SSL` (or `SASL_PLAINTEXT`): the SCRAM user the client acts as
    /// (sent with each request, checked against the user's credential).
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    /// `sluice.token`: an API token (`sluice tokens --create`), sent as
    /// `authorization: Bearer` with each request instead of a password.
    pub token: Option<Secret>,
    /// Set by a Sluice service for its own client (never from properties):
    /// a connection to the service's own process is known there as the
    /// process's own ([`sluice_tls::internal_channel`]).
    pub internal: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: Vec::new(),
            client_id: "sluice-client".to_string(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            request_timeout: Duration::from_millis(30_000),
            delivery_timeout: Duration::from_millis(120_000),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            enable_idempotence: None,
            max_in_flight: 5,
            partitioner: PartitionerKind::Default,
            compression_type: Compression::None,
            group_id: None,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5000),
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(3000),
            max_poll_interval: Duration::from_millis(300_000),
            partition_assignment_strategy: vec!["range".to_string()],
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            max_poll_records: 500,
            isolation_level: IsolationLevel::ReadUncommitted,
            max_delivery_attempts: 1,
            delivery_retry_backoff: Duration::from_millis(1000),
            delivery_retry_backoff_max: Duration::from_millis(60_000),
            retry_topic_suffix: ".retry".to_string(),
            dead_letter_topic_suffix: ".dlq".to_string(),
            security_protocol: SecurityProtocol::Plaintext,
            ssl_files: TlsFiles::default(),
            ssl_verify_hostname: true,
            tls: None,
            sasl_username: None,
            sasl_password: None,
            token: None,
            internal: false,
        }
    }
}

/// Kafka properties accepted for compatibility and ignored.
pub const IGNORED_PROPERTIES: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "send.buffer.bytes",
    "receive.buffer.bytes",
    "metadata.max.age.ms",
    "max.block.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "connections.max.idle.ms",
];

/// A TLS error's reason without the key (the client error names it).
fn tls_reason(e: sluice_tls::TlsError) -> String {
    match e {
        sluice_tls::TlsError::Setting { message, .. } => message,
        other => other.to_string(),
    }
}

fn path(value: &str) -> Option<std::path::PathBuf> {
    Some(std::path::PathBuf::from(value)).filter(|_| !value.is_empty())
}

impl ClientConfig {
    /// The TLS configuration connections use: none for `PLAINTEXT`; the
    /// program's own ([`ClientConfig::tls`]) or one built from the `ssl.*`
    /// settings (read now, reloaded when the files change).
    pub fn client_tls(&self) -> Result<Option<ClientTls>> {
        if !self.security_protocol.is_tls() {
            return Ok(None);
        }
        if let Some(t) = &self.tls {
            return Ok(Some(t.clone()));
        }
        ClientTls::new(&self.ssl_files, self.ssl_verify_hostname)
            .map(Some)
            .map_err(|e| {
                let key = match &e {
                    sluice_tls::TlsError::Setting { key, .. }
                    | sluice_tls::TlsError::Read { key, .. }
                    | sluice_tls::TlsError::Pem { key, .. } => key.clone(),
                    sluice_tls::TlsError::Rustls { .. } => "ssl.certificate.location".into(),
                };
                ClientError::config(&key, tls_reason(e))
            })
    }

    /// Uses `tls` for every connection (a service's own, reloaded
    /// configuration); `None` keeps plaintext.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.security_protocol = if tls.is_some() {
            SecurityProtocol::Ssl
        } else {
            SecurityProtocol::Plaintext
        };
        self.tls = tls;
        self
    }

    /// Marks the client as a Sluice service's own (see
    /// [`ClientConfig::internal`]).
    pub fn as_service(mut self) -> Self {
        self.internal = true;
        self
    }

    /// A config with defaults and the given bootstrap servers.
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: split_list(bootstrap_servers),
            ..Default::default()
        }
    }

    /// Builder form of [`ClientConfig::set`].
    pub fn with(mut self, key: &str, value: &str) -> Result<Self> {
        self.set(key, value)?;
        Ok(self)
    }

    /// Parses `key=value` pairs (for example from `--producer-property`).
    pub fn from_pairs<I, S>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut c = ClientConfig::default();
        c.set_pairs(pairs)?;
        Ok(c)
    }

    /// Applies `key=value` pairs on top of this config.
    pub fn set_pairs<I, S>(&mut self, pairs: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in pairs {
            let (k, v) = split_pair(p.as_ref())?;
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Applies a Java `.properties` text: `key=value` lines, `#`/`!` comments.
    pub fn set_properties_text(&mut self, text: &str) -> Result<()> {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = split_pair(line)?;
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Sets one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.trim();
        let value = value.trim();
        match key {
            "bootstrap.servers" => self.bootstrap_servers = split_list(value),
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = match value {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(ClientError::config(key, "expected 0, 1, all or -1")),
                }
            }
            "linger.ms" => self.linger = millis(key, value)?,
            "batch.size" => self.batch_size = number::<usize>(key, value)?.max(1),
            "buffer.memory" => self.buffer_memory = number::<usize>(key, value)?.max(1024),
            "max.request.size" => self.max_request_size = number::<usize>(key, value)?.max(1),
            "request.timeout.ms" => self.request_timeout = millis(key, value)?,
            "delivery.timeout.ms" => self.delivery_timeout = millis(key, value)?,
            "retries" => self.retries = number(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
            "enable.idempotence" => self.enable_idempotence = Some(boolean(key, value)?),
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = number::<usize>(key, value)?.max(1)
            }
            "partitioner" | "partitioner.class" => {
                self.partitioner = match value {
                    "default"
                    | "murmur2"
                    | "sticky"
                    | "org.apache.kafka.clients.producer.internals.DefaultPartitioner" => {
                        PartitionerKind::Default
                    }
                    "round_robin"
                    | "roundrobin"
                    | "org.apache.kafka.clients.producer.RoundRobinPartitioner" => {
                        PartitionerKind::RoundRobin
                    }
                    _ => return Err(ClientError::config(key, "expected default or round_robin")),
                }
            }
            "compression.type" => {
                self.compression_type = match value {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(ClientError::config(
                            key,
                            "expected none, gzip, snappy, lz4 or zstd",
                        ));
                    }
                }
            }
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "group.instance.id" => {
                self.group_instance_id = Some(value.to_string()).filter(|g| !g.is_empty())
            }
            "enable.auto.commit" => self.enable_auto_commit = boolean(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = millis(key, value)?,
            "session.timeout.ms" => self.session_timeout = millis(key, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = millis(key, value)?,
            "max.poll.interval.ms" => self.max_poll_interval = millis(key, value)?,
            "partition.assignment.strategy" => {
                let mut names = Vec::new();
                for v in split_list(value) {
                    // Kafka's class names work too.
                    let short = match v.rsplit('.').next().unwrap_or(&v) {
                        "RangeAssignor" => "range",
                        "RoundRobinAssignor" => "roundrobin",
                        "StickyAssignor" => "sticky",
                        other => other,
                    }
                    .to_string();
                    if !["range", "roundrobin", "sticky"].contains(&short.as_str()) {
                        return Err(ClientError::config(
                            key,
                            format!(
                                "unknown assignor \"{v}\"; expected range, roundrobin or sticky"
                            ),
                        ));
                    }
                    names.push(short);
                }
                if names.is_empty() {
                    return Err(ClientError::config(key, "name at least one assignor"));
                }
                self.partition_assignment_strategy = names;
            }
            "group.protocol" => {
                self.group_protocol = match value {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(ClientError::config(key, "expected classic or consumer")),
                }
            }
            "group.remote.assignor" => {
                self.group_remote_assignor = Some(value.to_string()).filter(|v| !v.is_empty());
            }
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    _ => {
                        return Err(ClientError::config(
                            key,
                            "expected earliest, latest or none",
                        ));
                    }
                }
            }
            "security.protocol" => {
                let protocol = SecurityProtocol::parse(key, value)
                    .map_err(|e| ClientError::config(key, tls_reason(e)))?;
                self.security_protocol = protocol
            }
            // gRPC carries the password (or token) with each request, checked
            // against the user's SCRAM credential whatever the mechanism.
            "sasl.mechanism" | "sasl.mechanisms" => {
                if !matches!(
                    value.to_ascii_uppercase().as_str(),
                    "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
                ) {
                    return Err(ClientError::config(
                        key,
                        "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    ));
                }
            }
            "sasl.username" => self.sasl_username = Some(value.to_string()),
            "sasl.password" => self.sasl_password = Some(Secret(value.to_string())),
            "sluice.token" => self.token = Some(Secret(value.to_string())),
            "ssl.ca.location" => self.ssl_files.ca = path(value),
            "ssl.certificate.location" => self.ssl_files.certificate = path(value),
            "ssl.key.location" => self.ssl_files.key = path(value),
            "ssl.endpoint.identification.algorithm" => {
                self.ssl_verify_hostname = sluice_tls::settings::verify_hostname(key, value)
                    .map_err(|e| ClientError::config(key, tls_reason(e)))?
            }
            "fetch.min.bytes" => self.fetch_min_bytes = number(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = number(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = number(key, value)?,
            "max.poll.records" => self.max_poll_records = number::<usize>(key, value)?.max(1),
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => {
                        return Err(ClientError::config(
                            key,
                            "expected read_uncommitted or read_committed",
                        ));
                    }
                }
            }
            "max.delivery.attempts" => {
                self.max_delivery_attempts = number(key, value)?;
                if self.max_delivery_attempts == 0 {
                    return Err(ClientError::config(key, "must be at least 1"));
                }
            }
            "delivery.retry.backoff.ms" => {
                self.delivery_retry_backoff = millis(key, value)?;
                // Retries go through delayed delivery, whose shortest delay is 1 s.
                let ms = self.delivery_retry_backoff.as_millis();
                if ms != 0 && ms < 1000 {
                    return Err(ClientError::config(
                        key,
                        "must be 0 (retry at once) or at least 1000",
                    ));
                }
            }
            "delivery.retry.backoff.max.ms" => {
                self.delivery_retry_backoff_max = millis(key, value)?
            }
            "retry.topic.suffix" => self.retry_topic_suffix = suffix(key, value)?,
            "dead.letter.topic.suffix" => self.dead_letter_topic_suffix = suffix(key, value)?,
            k if IGNORED_PROPERTIES.contains(&k) => {}
            _ => return Err(ClientError::config(key, "unknown property")),
        }
        Ok(())
    }

    /// Checks what a client needs before it can connect.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(ClientError::config(
                "bootstrap.servers",
                "no bootstrap server given",
            ));
        }
        let credentials = self.sasl_username.is_some() || self.token.is_some();
        if credentials && !self.security_protocol.is_sasl() {
            return Err(ClientError::config(
                "security.protocol",
                "sasl.username or sluice.token is set: use SASL_SSL (or SASL_PLAINTEXT) to send it",
            ));
        }
        if self.security_protocol.is_sasl() && !credentials {
            return Err(ClientError::config(
                "sasl.username",
                "security.protocol is SASL_*: set sasl.username and sasl.password (or sluice.token)",
            ));
        }
        if self.sasl_username.is_some() != self.sasl_password.is_some() {
            return Err(ClientError::config(
                "sasl.password",
                "sasl.username and sasl.password go together",
            ));
        }
        if self.enable_idempotence == Some(true) && self.acks != Acks::All {
            return Err(ClientError::config(
                "enable.idempotence",
                "an idempotent producer needs acks=all",
            ));
        }
        Ok(())
    }

    /// Whether the producer is idempotent: explicitly set, or by default when
    /// `acks=all` (Kafka 3 turns the default off when other settings conflict).
    pub fn idempotence(&self) -> bool {
        self.enable_idempotence.unwrap_or(self.acks == Acks::All)
    }
}

/// A password or token: kept out of `Debug` output (logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

fn split_pair(pair: &str) -> Result<(&str, &str)> {
    pair.split_once('=')
        .ok_or_else(|| ClientError::config(pair, "expected key=value"))
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| ClientError::config(key, format!("\"{value}\" is not a valid number")))
}

fn suffix(key: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(ClientError::config(key, "must not be empty"));
    }
    Ok(value.to_string())
}

fn millis(key: &str, value: &str) -> Result<Duration> {
    Ok(Duration::from_millis(number::<u64>(key, value)?))
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ClientError::config(key, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = ClientConfig::default();
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.buffer_memory, 32 << 20);
        assert_eq!(c.max_poll_records, 500);
        assert_eq!(c.fetch_max_bytes, 50 << 20);
    }

    #[test]
    fn parses_pairs() {
        let c = ClientConfig::from_pairs([
            "bootstrap.servers=a:1, b:2",
            "acks=1",
            "linger.ms=20",
            "batch.size=1048576",
            "auto.offset.reset=earliest",
            "key.serializer=org.apache.kafka.common.serialization.StringSerializer",
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.batch_size, 1 << 20);
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(
            ClientConfig::from_pairs(["acks=-1"]).unwrap().acks,
            Acks::All
        );
        assert_eq!(
            ClientConfig::from_pairs(["acks=0"]).unwrap().acks,
            Acks::None
        );
    }

    #[test]
    fn unknown_property_is_named() {
        let e = ClientConfig::from_pairs(["lingr.ms=5"]).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidConfig);
        assert!(e.to_string().contains("lingr.ms"), "{e}");
        assert!(e.to_string().starts_with("INVALID_CONFIG: "), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(ClientConfig::from_pairs(["acks=2"]).is_err());
        assert!(ClientConfig::from_pairs(["linger.ms=soon"]).is_err());
        assert!(ClientConfig::from_pairs(["novalue"]).is_err());
        assert_eq!(
            ClientConfig::from_pairs(["compression.type=zstd"])
                .unwrap()
                .compression_type,
            Compression::Zstd
        );
        assert!(ClientConfig::from_pairs(["compression.type=brotli"]).is_err());
        assert!(ClientConfig::default().validate().is_err());
    }

    #[test]
    fn properties_text_skips_comments() {
        let mut c = ClientConfig::default();
        c.set_properties_text("# comment\n\nacks=1\n! other\nclient.id = me\n")
            .unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.client_id, "me");
    }
}
