//! Controller configuration, with Kafka's key names where Kafka has one.

use serde::{Deserialize, Serialize};
use sluice_server::config::ConfigError;
use sluice_server::security::SecurityConfig;

/// Settings of one controller. Every field has Kafka's default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// `controller.id`: this controller's id, shown in metadata.
    #[serde(rename = "controller.id")]
    pub controller_id: i32,
    /// `advertised.listeners`: where brokers and clients reach this
    /// controller (`HOST:PORT`); defaults to `listeners`.
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    /// `num.partitions`: partitions of a topic created without a count.
    #[serde(rename = "num.partitions")]
    pub num_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without one.
    #[serde(rename = "default.replication.factor")]
    pub default_replication_factor: i32,
    /// Lease time-to-live in milliseconds: how long after a crash another
    /// controller takes over.
    #[serde(rename = "controller.lease.ms")]
    pub lease_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    #[serde(rename = "offsets.topic.num.partitions")]
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: replicas of `__consumer_offsets`
    /// (3), capped by the live brokers when it is created, with a warning.
    #[serde(rename = "offsets.topic.replication.factor")]
    pub offsets_topic_replication_factor: i32,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets`
    /// (100 MiB, as Kafka: small segments let compaction work sooner).
    #[serde(rename = "offsets.topic.segment.bytes")]
    pub offsets_topic_segment_bytes: i64,
    /// `listeners`: where the controller's gRPC server binds (`HOST:PORT`,
    /// as every service parses it: `sluice_server::config::parse_listener`).
    pub listeners: String,
    /// `auto.leader.rebalance.enable`: move leadership back to each
    /// partition's preferred replica once it is in sync again (true).
    #[serde(rename = "auto.leader.rebalance.enable")]
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often the controller
    /// looks for partitions led by a non-preferred replica (300).
    #[serde(rename = "leader.imbalance.check.interval.seconds")]
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: share of a broker's preferred
    /// partitions that may be led elsewhere before it gets them back (10).
    #[serde(rename = "leader.imbalance.per.broker.percentage")]
    pub leader_imbalance_per_broker_percentage: u32,
    /// `crash.detection.enable`: revoke the registration lease of a broker,
    /// coordinator or active controller as soon as its process is gone (its
    /// connection to the controller broke and its port refuses connections),
    /// rather than waiting for the lease to expire (true). Hung processes and
    /// lost hosts still wait for the lease. See `crate::crash_watch`.
    #[serde(rename = "crash.detection.enable")]
    pub crash_detection_enable: bool,
    /// `etcd.endpoints`: comma-separated etcd client URLs.
    #[serde(rename = "etcd.endpoints")]
    pub etcd_endpoints: String,
    /// `cluster.name`: namespace of this cluster's keys in etcd.
    #[serde(rename = "cluster.name")]
    pub cluster_name: String,
    /// TLS: the listener's (`SSL://` in `listeners`) and the one this
    /// service reaches the others with; see [`SecurityConfig`].
    #[serde(flatten)]
    pub security: SecurityConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            security: SecurityConfig::default(),
            controller_id: 1,
            advertised_listeners: None,
            num_partitions: 1,
            default_replication_factor: 1,
            lease_ms: 6000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 100 << 20,
            listeners: "127.0.0.1:9093".into(),
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            crash_detection_enable: true,
            etcd_endpoints: "http://127.0.0.1:2379".into(),
            cluster_name: "sluice".into(),
        }
    }
}

impl ControllerConfig {
    /// Where brokers and clients reach this controller.
    pub fn advertised(&self) -> Result<(String, u16), ConfigError> {
        sluice_server::config::advertised_endpoint(
            &self.listeners,
            self.advertised_listeners.as_deref(),
        )
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        sluice_server::config::parse_listener("listeners", &self.listeners)?;
        self.security.validate(&self.listeners)?;
        self.security.validate_etcd(&self.etcd_endpoints)?;
        self.advertised()?;
        if self.num_partitions < 1 {
            return Err(ConfigError::invalid("num.partitions", "must be at least 1"));
        }
        if self.default_replication_factor < 1 {
            return Err(ConfigError::invalid(
                "default.replication.factor",
                "must be at least 1",
            ));
        }
        if self.lease_ms < 1000 {
            return Err(ConfigError::invalid(
                "controller.lease.ms",
                "must be at least 1000 (etcd leases have one-second granularity)",
            ));
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err(ConfigError::invalid(
                "offsets.topic.num.partitions",
                "must be at least 1",
            ));
        }
        if self.offsets_topic_replication_factor < 1 {
            return Err(ConfigError::invalid(
                "offsets.topic.replication.factor",
                "must be at least 1",
            ));
        }
        if self.offsets_topic_segment_bytes < 1024 {
            return Err(ConfigError::invalid(
                "offsets.topic.segment.bytes",
                "must be at least 1024",
            ));
        }
        if self.leader_imbalance_check_interval_seconds < 1 {
            return Err(ConfigError::invalid(
                "leader.imbalance.check.interval.seconds",
                "must be at least 1",
            ));
        }
        if self.leader_imbalance_per_broker_percentage > 100 {
            return Err(ConfigError::invalid(
                "leader.imbalance.per.broker.percentage",
                "must be between 0 and 100",
            ));
        }
        Ok(())
    }
}
