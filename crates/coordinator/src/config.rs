//! Coordinator configuration, with Kafka's key names where Kafka has one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_server::config::ConfigError;
use sluice_server::security::SecurityConfig;

use crate::consumer_group::{Assignor, ConsumerSettings, MigrationPolicy};
use crate::group::GroupSettings;

/// Settings of one coordinator. Every field has Kafka's default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// `coordinator.id`: this coordinator's id, unique in the cluster.
    #[serde(rename = "coordinator.id")]
    pub coordinator_id: i32,
    /// `listeners`: where the gRPC server binds (`HOST:PORT`, as every
    /// service parses it: `sluice_server::config::parse_listener`).
    pub listeners: String,
    /// `advertised.listeners`: where clients reach this coordinator
    /// (FindCoordinator answers); defaults to `listeners`.
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    /// `etcd.endpoints`: comma-separated etcd client URLs.
    #[serde(rename = "etcd.endpoints")]
    pub etcd_endpoints: String,
    /// `cluster.name`: namespace of this cluster's keys in etcd.
    #[serde(rename = "cluster.name")]
    pub cluster_name: String,
    /// Registration lease in ms: this long after a crash, the controller
    /// moves this coordinator's groups to another one.
    #[serde(rename = "coordinator.lease.ms")]
    pub lease_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// empty group waits for more members (3000).
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` (6000) and `group.max.session.timeout.ms`
    /// (1800000): the session timeouts members may ask for.
    #[serde(rename = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: u64,
    #[serde(rename = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: u64,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member that
    /// does not heartbeat for this long is removed (45000; the coordinator
    /// sets it, not the member).
    #[serde(rename = "group.consumer.session.timeout.ms")]
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol
    /// members heartbeat (5000).
    #[serde(rename = "group.consumer.heartbeat.interval.ms")]
    pub group_consumer_heartbeat_interval_ms: u64,
    /// `group.consumer.assignors`: the server-side assignors members may ask
    /// for, the default first ("uniform,range").
    #[serde(rename = "group.consumer.assignors")]
    pub group_consumer_assignors: String,
    /// `group.consumer.max.size`: the most members a consumer-protocol group
    /// may have (2147483647).
    #[serde(rename = "group.consumer.max.size")]
    pub group_consumer_max_size: u32,
    /// `group.consumer.migration.policy`: whether a group with members may
    /// move between the classic and the consumer protocol online
    /// (`disabled`, `upgrade`, `downgrade`, `bidirectional`; Kafka's default
    /// `bidirectional`).
    #[serde(rename = "group.consumer.migration.policy")]
    pub group_consumer_migration_policy: String,
    /// `offsets.commit.timeout.ms`: how long a write to `__consumer_offsets`
    /// may take before the request fails (5000).
    #[serde(rename = "offsets.commit.timeout.ms")]
    pub offsets_commit_timeout_ms: u64,
    /// TLS: the listener's (`SSL://` in `listeners`) and the one this
    /// service reaches the others with; see [`SecurityConfig`].
    #[serde(flatten)]
    pub security: SecurityConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            security: SecurityConfig::default(),
            coordinator_id: 1,
            listeners: "127.0.0.1:9094".into(),
            advertised_listeners: None,
            etcd_endpoints: "http://127.0.0.1:2379".into(),
            cluster_name: "sluice".into(),
            lease_ms: 6000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            offsets_commit_timeout_ms: 5000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_assignors: "uniform,range".into(),
            group_consumer_max_size: i32::MAX as u32,
            group_consumer_migration_policy: "bidirectional".into(),
        }
    }
}

impl CoordinatorConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_ms < 1000 {
            return Err(ConfigError::invalid(
                "coordinator.lease.ms",
                "must be at least 1000 (etcd leases have one-second granularity)",
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(ConfigError::invalid(
                "group.min.session.timeout.ms",
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        if self.offsets_commit_timeout_ms < 1 {
            return Err(ConfigError::invalid(
                "offsets.commit.timeout.ms",
                "must be at least 1",
            ));
        }
        if self.group_consumer_heartbeat_interval_ms == 0
            || self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms
        {
            return Err(ConfigError::invalid(
                "group.consumer.heartbeat.interval.ms",
                "must be above 0 and below group.consumer.session.timeout.ms",
            ));
        }
        if self.group_consumer_session_timeout_ms > i32::MAX as u64 {
            return Err(ConfigError::invalid(
                "group.consumer.session.timeout.ms",
                "must be at most 2147483647",
            ));
        }
        if self.group_consumer_max_size == 0 {
            return Err(ConfigError::invalid(
                "group.consumer.max.size",
                "must be at least 1",
            ));
        }
        self.assignors()?;
        self.migration_policy()?;
        sluice_server::config::parse_listener("listeners", &self.listeners)?;
        self.security.validate(&self.listeners)?;
        self.security.validate_etcd(&self.etcd_endpoints)?;
        self.advertised()?;
        Ok(())
    }

    /// The advertised (host, port).
    pub fn advertised(&self) -> Result<(String, u16), ConfigError> {
        sluice_server::config::advertised_endpoint(
            &self.listeners,
            self.advertised_listeners.as_deref(),
        )
    }

    fn migration_policy(&self) -> Result<MigrationPolicy, ConfigError> {
        MigrationPolicy::parse(&self.group_consumer_migration_policy).ok_or_else(|| {
            ConfigError::invalid(
                "group.consumer.migration.policy",
                "expected disabled, upgrade, downgrade or bidirectional",
            )
        })
    }

    /// `group.consumer.assignors`, parsed.
    fn assignors(&self) -> Result<Vec<Assignor>, ConfigError> {
        let mut out = Vec::new();
        for name in self.group_consumer_assignors.split(',').map(str::trim) {
            let a = Assignor::parse(name).ok_or_else(|| {
                ConfigError::invalid(
                    "group.consumer.assignors",
                    format!("unknown assignor \"{name}\"; known: uniform, range"),
                )
            })?;
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub fn group_settings(&self) -> GroupSettings {
        GroupSettings {
            consumer: ConsumerSettings {
                session_timeout: Duration::from_millis(self.group_consumer_session_timeout_ms),
                heartbeat_interval: Duration::from_millis(
                    self.group_consumer_heartbeat_interval_ms,
                ),
                // Validated at start.
                assignors: self.assignors().unwrap_or_else(|_| Assignor::ALL.to_vec()),
                max_size: self.group_consumer_max_size as usize,
                migration: self
                    .migration_policy()
                    .unwrap_or(MigrationPolicy::Bidirectional),
            },
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            min_session_timeout: Duration::from_millis(self.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(self.group_max_session_timeout_ms),
        }
    }
}
