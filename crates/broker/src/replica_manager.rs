//! Every local partition replica: creation and deletion following metadata,
//! appends and reads, retention and checkpoints.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_storage::{CleanupPolicy, LogConfig, LogManager};
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metadata::ClusterView;
use crate::partition::{Partition, Role};

type Key = (String, i32);

pub struct ReplicaManager {
    broker_id: i32,
    config: BrokerConfig,
    /// Creation and deletion of logs are rare and synchronous; a plain mutex.
    logs: Mutex<LogManager>,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
}

/// A topic's log settings: the broker's defaults with the topic's overrides.
pub fn topic_log_config(
    base: &LogConfig,
    overrides: &std::collections::BTreeMap<String, String>,
) -> LogConfig {
    let mut c = base.clone();
    let num = |k: &str| overrides.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(v) = num("retention.ms") {
        c.retention_ms = v;
    }
    if let Some(v) = num("retention.bytes") {
        c.retention_bytes = v;
    }
    if let Some(v) = num("segment.bytes") {
        c.segment_bytes = v.max(1024) as u64;
    }
    if let Some(v) = num("segment.ms") {
        c.segment_ms = v;
    }
    if let Some(v) = num("max.message.bytes") {
        c.max_message_bytes = v.clamp(0, u32::MAX as i64) as u32;
    }
    if let Some(v) = num("index.interval.bytes") {
        c.index_interval_bytes = v.clamp(0, u32::MAX as i64) as u32;
    }
    if let Some(v) = num("flush.messages") {
        c.flush_messages = Some(v.max(1) as u64);
    }
    if let Some(v) = num("flush.ms") {
        c.flush_ms = Some(v.max(0) as u64);
    }
    if let Some(p) = overrides
        .get("cleanup.policy")
        .and_then(|v| CleanupPolicy::parse(v))
    {
        c.cleanup_policy = p;
    }
    if let Some(v) = num("delete.retention.ms") {
        c.delete_retention_ms = v.max(0);
    }
    if let Some(v) = num("min.compaction.lag.ms") {
        c.min_compaction_lag_ms = v.max(0);
    }
    if let Some(v) = overrides
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
    {
        c.min_cleanable_dirty_ratio = v.clamp(0.0, 1.0);
    }
    c
}

impl ReplicaManager {
    /// Opens (and recovers) every log under `log.dirs`.
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>, BrokerError> {
        let open_logs = |source| BrokerError::OpenLogs { source };
        let (logs, recovered) =
            LogManager::open(config.log_dir_paths(), config.log_config()).map_err(open_logs)?;
        let hws = logs.read_high_watermarks().map_err(open_logs)?;
        let mut partitions = HashMap::new();
        for r in recovered {
            let hw = hws
                .get(&(r.topic.clone(), r.partition))
                .copied()
                .unwrap_or(0);
            info!(topic = %r.topic, partition = r.partition, log_end = r.log.log_end_offset(), "loaded log");
            let p = Partition::new(r.topic.clone(), r.partition, config.broker_id, r.log, hw);
            partitions.insert((r.topic, r.partition), Arc::new(p));
        }
        Ok(Arc::new(Self {
            broker_id: config.broker_id,
            config,
            logs: Mutex::new(logs),
            partitions: RwLock::new(partitions),
        }))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The configured `log.dirs`.
    pub fn log_dirs(&self) -> Vec<std::path::PathBuf> {
        self.logs.lock().log_dirs().to_vec()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Leaders this broker replicates from.
    pub fn followed_leaders(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .partitions
            .read()
            .values()
            .map(|p| p.role().leader)
            .filter(|l| *l >= 0 && *l != self.broker_id)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Partitions this broker follows from `leader`.
    pub fn followed_from(&self, leader: i32) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.role().leader == leader && leader != self.broker_id)
            .cloned()
            .collect()
    }

    /// Makes local replicas match metadata: creates logs for partitions assigned
    /// here, applies roles, deletes logs of topics that are gone (or were
    /// re-created with a new id).
    pub fn reconcile(&self, view: &ClusterView) {
        let mut wanted: HashMap<Key, (Role, LogConfig)> = HashMap::new();
        for (name, topic) in &view.topics {
            let log_config = topic_log_config(&self.config.log_config(), &topic.record.configs);
            for (p, replicas) in topic.record.assignment.iter().enumerate() {
                if !replicas.contains(&self.broker_id) {
                    continue;
                }
                let p = p as i32;
                let Some(state) = topic.partitions.get(&p) else {
                    continue;
                };
                let role = Role {
                    topic_id: topic.record.topic_id.clone(),
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    isr: state.isr.clone(),
                    replicas: replicas.clone(),
                    partition_epoch: state.partition_epoch,
                };
                wanted.insert((name.clone(), p), (role, log_config.clone()));
            }
        }
        // Delete what metadata no longer has, or has under a new topic id.
        let stale: Vec<Key> = {
            let parts = self.partitions.read();
            parts
                .iter()
                .filter(|(k, p)| match wanted.get(*k) {
                    None => true,
                    Some((role, _)) => p.topic_id().is_some_and(|id| id != role.topic_id),
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        // A deleted (or re-created) partition's old log start must leave the
        // checkpoint at once, or a crash before the next periodic one would
        // apply it to a new log of the same name.
        let mut checkpoint = !stale.is_empty();
        for key in stale {
            self.delete_partition(&key);
        }
        for (key, (role, log_config)) in wanted {
            let existing = self.partitions.read().get(&key).cloned();
            let partition = match existing {
                Some(p) => {
                    // Logs found at startup were opened with the broker
                    // defaults; topic configs may also change.
                    p.set_log_config(log_config);
                    p
                }
                None => match self.create_partition(&key, log_config, &role.topic_id) {
                    Ok(p) => {
                        checkpoint = true;
                        p
                    }
                    Err(e) => {
                        warn!(topic = %key.0, partition = key.1, error = %e, "cannot create log");
                        continue;
                    }
                },
            };
            if let Err(e) = partition.set_role(role) {
                warn!(topic = %key.0, partition = key.1, error = %e, "cannot apply partition role");
            }
        }
        if checkpoint && let Err(e) = self.checkpoint_high_watermarks() {
            warn!(error = %e, "checkpoint after creating or deleting logs failed");
        }
    }

    fn create_partition(
        &self,
        key: &Key,
        config: LogConfig,
        topic_id: &str,
    ) -> Result<Arc<Partition>, BrokerError> {
        let storage_err = |source| BrokerError::Storage {
            topic: key.0.clone(),
            partition: key.1,
            source,
        };
        let mut log = self
            .logs
            .lock()
            .create_log(&key.0, key.1, config)
            .map_err(storage_err)?;
        log.set_topic_id(topic_id).map_err(storage_err)?;
        info!(topic = %key.0, partition = key.1, "created log");
        let p = Arc::new(Partition::new(key.0.clone(), key.1, self.broker_id, log, 0));
        self.partitions.write().insert(key.clone(), p.clone());
        Ok(p)
    }

    fn delete_partition(&self, key: &Key) {
        let Some(p) = self.partitions.write().remove(key) else {
            return;
        };
        info!(topic = %key.0, partition = key.1, "deleting log of deleted topic");
        // In-flight requests may still hold the partition for a moment; Linux lets
        // them finish reading from unlinked files, so the directory goes now.
        match Arc::try_unwrap(p) {
            Ok(p) => {
                let log = p.into_log();
                if let Err(e) = self.logs.lock().delete_log(&key.0, key.1, log) {
                    warn!(topic = %key.0, partition = key.1, error = %e, "cannot delete log");
                }
            }
            Err(p) => {
                let dir = self
                    .logs
                    .lock()
                    .log_dir_of(&key.0, key.1)
                    .map(|d| d.join(sluice_storage::log_dir_name(&key.0, key.1)));
                drop(p);
                if let Some(dir) = dir
                    && let Err(e) = std::fs::remove_dir_all(&dir)
                {
                    warn!(dir = %dir.display(), error = %e, "cannot delete log directory");
                }
            }
        }
    }

    /// Deletes old segments of every partition by time and size.
    pub fn enforce_retention(&self, now_ms: i64) {
        for p in self.all() {
            match p.enforce_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %p.topic, partition = p.partition, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, error = %e, "retention failed")
                }
            }
        }
    }

    /// One log-cleaner pass over every partition whose `cleanup.policy`
    /// includes compact; `stop` is checked between partitions so shutdown
    /// does not wait for the whole pass.
    pub fn compact_logs(&self, now_ms: i64, stop: impl Fn() -> bool) {
        for p in self.all() {
            if stop() {
                return;
            }
            match p.compact(now_ms) {
                Ok(s) if s.segments_before > 0 => {
                    info!(topic = %p.topic, partition = p.partition, segments = s.segments_before, bytes_before = s.bytes_before, bytes_after = s.bytes_after, "compacted log")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, error = %e, "log compaction failed")
                }
            }
        }
    }

    /// Writes the high-watermark checkpoint of every log dir.
    /// Writes the high-watermark and log-start checkpoints (the latter keeps
    /// what DeleteRecords removed from coming back after a restart).
    pub fn checkpoint_high_watermarks(&self) -> Result<(), BrokerError> {
        // Offsets are read under the lock: a writer that read them earlier
        // must not overwrite a newer log start (DeleteRecords) with its older
        // one.
        let logs = self.logs.lock();
        let parts = self.all();
        let offsets: Vec<_> = parts.iter().map(|p| p.offsets()).collect();
        let hws: Vec<(&str, i32, i64)> = parts
            .iter()
            .zip(&offsets)
            .map(|(p, o)| (p.topic.as_str(), p.partition, o.hw))
            .collect();
        let starts: Vec<(&str, i32, i64)> = parts
            .iter()
            .zip(&offsets)
            .map(|(p, o)| (p.topic.as_str(), p.partition, o.log_start))
            .collect();
        logs.checkpoint_high_watermarks(&hws)
            .map_err(|source| BrokerError::Checkpoint {
                checkpoint: "high watermark",
                source,
            })?;
        logs.checkpoint_log_starts(&starts)
            .map_err(|source| BrokerError::Checkpoint {
                checkpoint: "log start offset",
                source,
            })
    }

    /// Writes the recovery-point checkpoint (without flushing).
    pub fn checkpoint_recovery_points(&self) -> Result<(), BrokerError> {
        let parts = self.all();
        let entries: Vec<(&str, i32, i64)> = parts
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.recovery_point()))
            .collect();
        self.logs
            .lock()
            .checkpoint_recovery_points(&entries)
            .map_err(|source| BrokerError::Checkpoint {
                checkpoint: "recovery point",
                source,
            })
    }

    /// Clean shutdown: flush every log, then checkpoint recovery points and high
    /// watermarks so the next start skips recovery.
    pub fn shutdown(&self) {
        for p in self.all() {
            if let Err(e) = p.flush() {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "flush on shutdown failed");
            }
        }
        if let Err(e) = self.checkpoint_recovery_points() {
            warn!(error = %e, "recovery point checkpoint failed");
        }
        if let Err(e) = self.checkpoint_high_watermarks() {
            warn!(error = %e, "high watermark checkpoint failed");
        }
        info!("logs flushed and checkpointed");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compaction_overrides_reach_the_log_config() {
        let base = LogConfig::default();
        assert_eq!(topic_log_config(&base, &BTreeMap::new()), base);
        let c = topic_log_config(
            &base,
            &overrides(&[
                ("cleanup.policy", "compact"),
                ("delete.retention.ms", "5000"),
                ("min.cleanable.dirty.ratio", "0.25"),
                ("min.compaction.lag.ms", "100"),
            ]),
        );
        assert_eq!(c.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(c.delete_retention_ms, 5000);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(c.min_compaction_lag_ms, 100);
        let c = topic_log_config(&base, &overrides(&[("cleanup.policy", "delete,compact")]));
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
    }
}
