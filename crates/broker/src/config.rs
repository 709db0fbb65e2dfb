//! Broker configuration, with Kafka's key names.
//!
//! `sluice-broker --config` takes YAML (deploy/config/broker.yaml) or a Kafka
//! `server.properties`; `sluice_server::config` reads both into these keys,
//! translating Kafka's other names for them (`log.dir`, `node.id`,
//! `log.retention.hours`, ...) and naming the Kafka keys a broker does not use
//! (`zookeeper.connect` is refused unless `etcd.endpoints` is set).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_server::config::ConfigError;
use sluice_server::security::SecurityConfig;
use sluice_storage::LogConfig;

/// Settings of one broker. Every field defaults to Kafka's default unless noted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `broker.id`: unique per cluster.
    #[serde(rename = "broker.id")]
    pub broker_id: i32,
    /// `listeners`: where the gRPC server binds, `HOST:PORT` (a Kafka-style
    /// `PLAINTEXT://HOST:PORT` is accepted too). One listener: gRPC and Kafka's
    /// protocol share it. `SSL://HOST:PORT` serves TLS (see `security`);
    /// `SASL_SSL://` and `SASL_PLAINTEXT://` make Kafka clients authenticate
    /// with SASL first (`sasl.enabled.mechanisms`).
    pub listeners: String,
    /// `advertised.listeners`: what clients are told to connect to; defaults to
    /// `listeners`.
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    /// `broker.rack`, for rack-aware placement.
    #[serde(rename = "broker.rack")]
    pub rack: Option<String>,
    /// `log.dirs`: comma-separated directories holding partition logs
    /// (Kafka's `log.dir` is read as this key).
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
    /// TLS: the listener's (`SSL://` in `listeners`) and the one this
    /// service reaches the others with; see [`SecurityConfig`].
    #[serde(flatten)]
    pub security: SecurityConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            security: SecurityConfig::default(),
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
        sluice_server::config::advertised_endpoint(
            &self.listeners,
            self.advertised_listeners.as_deref(),
        )
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.broker_id < 0 {
            return Err(ConfigError::invalid("broker.id", "must be >= 0"));
        }
        sluice_server::config::parse_listener("listeners", &self.listeners)?;
        self.security.validate(&self.listeners)?;
        self.security.validate_etcd(&self.etcd_endpoints)?;
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

    /// Kafka 1.1.0's config/server.properties (the notes' version), with the
    /// notes' edits for server-1.properties (broker.id, listeners, log.dir in
    /// place of log.dirs) and `edit` applied: (line prefix, replacement).
    fn notes_server_properties(edits: &[(&str, &str)]) -> String {
        let mut text = String::from(
            "# Licensed to the Apache Software Foundation (ASF) ...\n\
             # see kafka.server.KafkaConfig for additional details and defaults\n\
             \n\
             ############################# Server Basics #############################\n\
             \n\
             # The id of the broker. This must be set to a unique integer for each broker.\n\
             broker.id=1\n\
             \n\
             ############################# Socket Server Settings #############################\n\
             \n\
             #   FORMAT:\n\
             #     listeners = listener_name://host_name:port\n\
             listeners=PLAINTEXT://192.168.1.182:9092\n\
             #advertised.listeners=PLAINTEXT://your.host.name:9092\n\
             #listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n\
             num.network.threads=3\n\
             num.io.threads=8\n\
             socket.send.buffer.bytes=102400\n\
             socket.receive.buffer.bytes=102400\n\
             socket.request.max.bytes=104857600\n\
             \n\
             ############################# Log Basics #############################\n\
             \n\
             # A comma separated list of directories under which to store log files\n\
             log.dir=/usr/local/data/kafka-logs-1\n\
             num.partitions=1\n\
             num.recovery.threads.per.data.dir=1\n\
             \n\
             ############################# Internal Topic Settings  #############################\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             \n\
             ############################# Log Flush Policy #############################\n\
             #log.flush.interval.messages=10000\n\
             #log.flush.interval.ms=1000\n\
             \n\
             ############################# Log Retention Policy #############################\n\
             log.retention.hours=168\n\
             #log.retention.bytes=1073741824\n\
             log.segment.bytes=1073741824\n\
             log.retention.check.interval.ms=300000\n\
             \n\
             ############################# Zookeeper #############################\n\
             zookeeper.connect=localhost:2181\n\
             zookeeper.connection.timeout.ms=6000\n\
             \n\
             ############################# Group Coordinator Settings #############################\n\
             group.initial.rebalance.delay.ms=0\n",
        );
        for (prefix, with) in edits {
            let at = text
                .find(prefix)
                .unwrap_or_else(|| panic!("{prefix} not in the file"));
            let end = at + text[at..].find('\n').unwrap();
            text.replace_range(at..end, with);
        }
        text
    }

    fn load(text: &str) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server-1.properties");
        std::fs::write(&path, text).unwrap();
        sluice_server::config::load_layered_with_warnings(Some(&path), &[])
    }

    #[test]
    fn the_notes_server_properties_configures_a_broker() {
        // As the notes have it: ZooKeeper is refused, with what to write instead.
        let e = load(&notes_server_properties(&[])).unwrap_err().to_string();
        assert!(
            e.contains("server-1.properties: line 45: `zookeeper.connect`: Sluice keeps cluster metadata in etcd")
                && e.contains("replace it with etcd.endpoints=http://HOST:2379"),
            "{e}"
        );

        // zookeeper.connect replaced by etcd.endpoints, as the message says.
        let text = notes_server_properties(&[(
            "zookeeper.connect=",
            "etcd.endpoints=http://192.168.1.182:2379",
        )]);
        let (c, warnings) = load(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.broker_id, 1);
        assert_eq!(c.listeners, "PLAINTEXT://192.168.1.182:9092");
        assert_eq!(c.advertised().unwrap(), ("192.168.1.182".into(), 9092));
        assert_eq!(
            c.log_dir_paths(),
            vec![PathBuf::from("/usr/local/data/kafka-logs-1")]
        );
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.log_segment_bytes, 1_073_741_824);
        assert_eq!(c.log_retention_check_interval_ms, 300_000);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.etcd_endpoints, "http://192.168.1.182:2379");
        // Everything else is as by default.
        let d = BrokerConfig::default();
        assert_eq!(
            (
                c.min_insync_replicas,
                c.message_max_bytes,
                c.auto_create_topics_enable
            ),
            (
                d.min_insync_replicas,
                d.message_max_bytes,
                d.auto_create_topics_enable
            )
        );
        // Each key a Sluice broker does not use is named, with why.
        let ignored: Vec<&str> = warnings
            .iter()
            .map(|w| w.split('`').nth(1).unwrap_or(w))
            .collect();
        assert_eq!(
            ignored,
            [
                "num.network.threads",
                "num.io.threads",
                "socket.send.buffer.bytes",
                "socket.receive.buffer.bytes",
                "num.partitions",
                "num.recovery.threads.per.data.dir",
                "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr",
                "zookeeper.connection.timeout.ms",
                "group.initial.rebalance.delay.ms",
            ],
            "{warnings:#?}"
        );
        assert!(
            warnings.iter().any(|w| w.ends_with(
                "server-1.properties line 26: `num.partitions` ignored: in Sluice this is a setting \
                 of sluice-controller, which creates topics and elects leaders: set it in the \
                 controller's config (deploy/config/controller.yaml)"
            )),
            "{warnings:#?}"
        );

        // server-3.properties of the notes: a trailing blank after log.dir.
        let text = notes_server_properties(&[
            (
                "zookeeper.connect=",
                "etcd.endpoints=http://192.168.1.182:2379",
            ),
            ("broker.id=", "broker.id=3"),
            ("listeners=", "listeners=PLAINTEXT://192.168.1.182:9094"),
            ("log.dir=", "log.dir=/usr/local/data/kafka-logs-3 "),
        ]);
        let (c, _) = load(&text).unwrap();
        assert_eq!((c.broker_id, c.advertised().unwrap().1), (3, 9094));
        assert_eq!(c.log_dirs, "/usr/local/data/kafka-logs-3");

        // The other keys of the notes (Broker配置 and the producer section's
        // min.insync.replicas) and advertised.listeners.
        let text = notes_server_properties(&[
            ("zookeeper.connect=", "etcd.endpoints=http://e:2379"),
            (
                "#advertised.listeners=",
                "advertised.listeners=PLAINTEXT://kafka-1.example.com:9092",
            ),
            ("log.dir=", "log.dirs=/d1,/d2"),
            ("#log.flush.interval.messages", "min.insync.replicas=2"),
        ]);
        let (c, _) = load(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.advertised().unwrap(),
            ("kafka-1.example.com".into(), 9092)
        );
        assert_eq!(c.log_dir_paths().len(), 2);
        assert_eq!(c.min_insync_replicas, 2);
    }

    #[test]
    fn log_dir_and_log_dirs_must_agree() {
        // cp config/server.properties, then add log.dir below the copied log.dirs.
        let text = notes_server_properties(&[
            ("zookeeper.connect=", "etcd.endpoints=http://e:2379"),
            ("num.partitions=", "log.dirs=/tmp/kafka-logs"),
        ]);
        let e = load(&text).unwrap_err().to_string();
        assert!(
            e.contains("`log.dir=/usr/local/data/kafka-logs-1` (line 25)")
                && e.contains("`log.dirs=/tmp/kafka-logs` (line 26)")
                && e.contains("Kafka would use `log.dirs` and ignore `log.dir`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_unsupported_keys_are_named() {
        let text = notes_server_properties(&[
            ("zookeeper.connect=", "etcd.endpoints=http://e:2379"),
            ("num.io.threads", "brokr.rack=r1"),
            (
                "socket.send.buffer.bytes",
                "ssl.keystore.location=/etc/ks.jks",
            ),
            (
                "socket.receive.buffer.bytes",
                "unclean.leader.election.enable=true",
            ),
        ]);
        let e = load(&text).unwrap_err().to_string();
        for want in [
            "line 17: unknown key `brokr.rack`; did you mean `broker.rack`?",
            "line 18: `ssl.keystore.location`: Sluice reads PEM files, not Java keystores",
            "line 19: `unclean.leader.election.enable=true`: Sluice never elects a replica that is out of sync",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        // In a flag (and in YAML), a Kafka key a broker does not use is an error.
        let e =
            sluice_server::config::load_layered::<BrokerConfig>(None, &["num.partitions=3".into()])
                .unwrap_err()
                .to_string();
        assert!(e.contains("sluice-controller"), "{e}");
    }

    #[test]
    fn listeners_sluice_cannot_serve_are_refused() {
        let with = |l: &str| BrokerConfig {
            listeners: l.into(),
            ..BrokerConfig::default()
        };
        with("PLAINTEXT://192.168.1.182:9092").validate().unwrap();
        with("INTERNAL://10.0.0.1:9092").validate().unwrap();
        let e = |l: &str| with(l).validate().unwrap_err().to_string();
        assert!(e("PLAINTEXT://:9092,SSL://:9093").contains("several listeners"));
        with("SSL://h:9093").validate().unwrap();
        with("SASL_SSL://h:9093").validate().unwrap();
        with("SASL_PLAINTEXT://h:9093").validate().unwrap();
        assert!(e("PLAINTEXT://:9092").contains("has no host: write 0.0.0.0:PORT"));
        let c = |a: &str| BrokerConfig {
            advertised_listeners: Some(a.into()),
            ..BrokerConfig::default()
        };
        c("SASL_SSL://h:9092").validate().unwrap();
        assert!(
            c("PLAINTEXT://h")
                .validate()
                .unwrap_err()
                .to_string()
                .contains("advertised.listeners")
        );
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
