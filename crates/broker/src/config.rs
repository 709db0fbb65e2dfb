//! Broker configuration, with Kafka's key names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_server::config::ConfigError;
use sluice_storage::LogConfig;

/// Settings of one broker. Every field defaults to Kafka's default unless noted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `broker.id`: unique per cluster.
    #[serde(rename = "broker.id")]
    pub broker_id: i32,
    /// `listeners`: where the gRPC server binds, `HOST:PORT` (a Kafka-style
    /// `PLAINTEXT://HOST:PORT` is accepted too).
    pub listeners: String,
    /// `advertised.listeners`: what clients are told to connect to; defaults to
    /// `listeners`.
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    /// `broker.rack`, for rack-aware placement.
    #[serde(rename = "broker.rack")]
    pub rack: Option<String>,
    /// `log.dirs`: comma-separated directories holding partition logs.
    #[serde(rename = "log.dirs")]
    pub log_dirs: String,
    /// `message.max.bytes`: largest record batch accepted (Kafka's 1048588).
    #[serde(rename = "message.max.bytes")]
    pub message_max_bytes: u32,
    /// `auto.create.topics.enable`: create a missing topic on first produce or
    /// metadata request. Default false, unlike Kafka: a mistyped topic name should
    /// fail, not silently create a topic.
    #[serde(rename = "auto.create.topics.enable")]
    pub auto_create_topics_enable: bool,
    /// `log.segment.bytes`: roll a segment at this size (1 GiB).
    #[serde(rename = "log.segment.bytes")]
    pub log_segment_bytes: u64,
    /// `log.roll.ms`: roll a segment at this age (7 days).
    #[serde(rename = "log.roll.ms")]
    pub log_roll_ms: i64,
    /// `log.retention.ms`: delete segments older than this (7 days); -1 keeps forever.
    #[serde(rename = "log.retention.ms")]
    pub log_retention_ms: i64,
    /// `log.retention.bytes`: per-partition size cap; -1 (default) means none.
    #[serde(rename = "log.retention.bytes")]
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`: how often retention runs (5 minutes).
    #[serde(rename = "log.retention.check.interval.ms")]
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often the log cleaner looks for logs to
    /// compact (topics with `cleanup.policy` including compact; 15 s).
    #[serde(rename = "log.cleaner.backoff.ms")]
    pub log_cleaner_backoff_ms: u64,
    /// `log.index.interval.bytes`: bytes between offset-index entries (4096).
    #[serde(rename = "log.index.interval.bytes")]
    pub log_index_interval_bytes: u32,
    /// `log.flush.interval.messages`: fsync after this many records; unset (the
    /// default) leaves flushing to the OS, like Kafka.
    #[serde(rename = "log.flush.interval.messages")]
    pub log_flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`: fsync at least this often; unset by default.
    #[serde(rename = "log.flush.interval.ms")]
    pub log_flush_interval_ms: Option<u64>,
    /// `log.flush.offset.checkpoint.interval.ms`: how often the recovery point is
    /// checkpointed (60 s).
    #[serde(rename = "log.flush.offset.checkpoint.interval.ms")]
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often high watermarks
    /// are checkpointed (5 s).
    #[serde(rename = "replica.high.watermark.checkpoint.interval.ms")]
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `min.insync.replicas`: in-sync replicas an acks=all write needs (1).
    #[serde(rename = "min.insync.replicas")]
    pub min_insync_replicas: i32,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this
    /// long leaves the ISR (30 s in Kafka; 10 s here, so a stuck follower stops
    /// holding back acks=all writes sooner).
    #[serde(rename = "replica.lag.time.max.ms")]
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data.
    #[serde(rename = "replica.fetch.wait.max.ms")]
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes per partition per follower fetch (1 MiB).
    #[serde(rename = "replica.fetch.max.bytes")]
    pub replica_fetch_max_bytes: u32,
    /// `broker.lease.ms`: registration lease TTL; a crashed broker is noticed
    /// after this long (Sluice-specific, like ZooKeeper's session timeout).
    #[serde(rename = "broker.lease.ms")]
    pub lease_ms: u64,
    /// `controlled.shutdown.enable`: on SIGTERM, hand leadership over to other
    /// in-sync replicas before stopping (Kafka's default, true).
    #[serde(rename = "controlled.shutdown.enable")]
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.timeout.ms`: how long a controlled shutdown waits
    /// for leadership to move before stopping anyway (30 s).
    #[serde(rename = "controlled.shutdown.timeout.ms")]
    pub controlled_shutdown_timeout_ms: u64,
    /// `etcd.endpoints`: comma-separated etcd client URLs (in place of
    /// `zookeeper.connect`). Unused in standalone mode.
    #[serde(rename = "etcd.endpoints")]
    pub etcd_endpoints: String,
    /// `cluster.name`: namespace of this cluster's keys in etcd.
    #[serde(rename = "cluster.name")]
    pub cluster_name: String,
    /// `socket.request.max.bytes`: the largest Kafka-protocol request a
    /// connection may send (100 MiB); a larger size prefix closes it.
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            broker_id: 1,
            listeners: "127.0.0.1:9092".into(),
            socket_request_max_bytes: 104_857_600,
            advertised_listeners: None,
            rack: None,
            log_dirs: "/tmp/sluice-logs".into(),
            message_max_bytes: 1_048_588,
            auto_create_topics_enable: false,
            log_segment_bytes: log.segment_bytes,
            log_roll_ms: log.segment_ms,
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            log_index_interval_bytes: log.index_interval_bytes,
            log_flush_interval_messages: None,
            log_flush_interval_ms: None,
            log_flush_offset_checkpoint_interval_ms: 60_000,
            replica_high_watermark_checkpoint_interval_ms: 5_000,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 10_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1 << 20,
            lease_ms: 6_000,
            controlled_shutdown_enable: true,
            controlled_shutdown_timeout_ms: 30_000,
            etcd_endpoints: "http://127.0.0.1:2379".into(),
            cluster_name: "sluice".into(),
        }
    }
}

/// Strips an optional `SCHEME://` prefix from a listener.
pub fn strip_scheme(listener: &str) -> &str {
    listener.split_once("://").map_or(listener, |(_, a)| a)
}

/// Splits `HOST:PORT`.
pub fn host_port(listener: &str) -> Result<(String, u16), String> {
    let addr = strip_scheme(listener.trim());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} in {addr:?} is not a port number"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

impl BrokerConfig {
    /// The log settings every partition starts from (topic overrides apply on top).
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            index_interval_bytes: self.log_index_interval_bytes,
            max_message_bytes: self.message_max_bytes,
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms,
            // Compaction settings are per topic; Kafka's defaults here.
            ..LogConfig::default()
        }
    }

    pub fn log_dir_paths(&self) -> Vec<PathBuf> {
        self.log_dirs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// The advertised `HOST:PORT`.
    pub fn advertised(&self) -> Result<(String, u16), ConfigError> {
        let (key, v) = match &self.advertised_listeners {
            Some(a) => ("advertised.listeners", a.as_str()),
            None => ("listeners", self.listeners.as_str()),
        };
        host_port(v).map_err(|m| ConfigError::invalid(key, m))
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.broker_id < 0 {
            return Err(ConfigError::invalid("broker.id", "must be >= 0"));
        }
        host_port(&self.listeners).map_err(|m| ConfigError::invalid("listeners", m))?;
        self.advertised()?;
        if self.log_dir_paths().is_empty() {
            return Err(ConfigError::invalid(
                "log.dirs",
                "at least one directory is required",
            ));
        }
        if self.message_max_bytes < 64 {
            return Err(ConfigError::invalid(
                "message.max.bytes",
                "must be at least 64",
            ));
        }
        if self.log_segment_bytes < 1024 {
            return Err(ConfigError::invalid(
                "log.segment.bytes",
                "must be at least 1024",
            ));
        }
        if self.min_insync_replicas < 1 {
            return Err(ConfigError::invalid(
                "min.insync.replicas",
                "must be at least 1",
            ));
        }
        if self.lease_ms < 1000 {
            return Err(ConfigError::invalid(
                "broker.lease.ms",
                "must be at least 1000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_accept_kafka_scheme() {
        assert_eq!(host_port("PLAINTEXT://h:9092").unwrap(), ("h".into(), 9092));
        assert_eq!(host_port("127.0.0.1:1").unwrap(), ("127.0.0.1".into(), 1));
        assert!(host_port("nope").is_err());
    }

    #[test]
    fn yaml_keys_are_kafkas() {
        let c: BrokerConfig = sluice_server::config::parse_yaml(
            "broker.id: 3\nlog.dirs: /a,/b\nauto.create.topics.enable: true\nlog.cleaner.backoff.ms: 500\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.broker_id, 3);
        assert_eq!(c.log_cleaner_backoff_ms, 500);
        assert_eq!(BrokerConfig::default().log_cleaner_backoff_ms, 15_000);
        assert_eq!(c.log_dir_paths().len(), 2);
        assert!(c.auto_create_topics_enable);
        let e =
            sluice_server::config::parse_yaml::<BrokerConfig>("broker.idd: 3\n", "t").unwrap_err();
        assert!(e.to_string().contains("broker.idd"), "{e}");
    }
}
