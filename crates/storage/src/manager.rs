//! LogManager: the broker's log dirs, the partition directories in them,
//! and the broker-level checkpoint files.
//!
//! It only places, opens and checkpoints logs; the broker owns the
//! `PartitionLog`s and their locking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::{
    LOG_START_CHECKPOINT, OffsetMap, RECOVERY_POINT_CHECKPOINT, REPLICATION_CHECKPOINT,
    read_offsets, write_offsets,
};
use crate::config::LogConfig;
use crate::error::{StorageError, io_err};
use crate::log::PartitionLog;

/// A partition log found on disk by [`LogManager::open`].
pub struct RecoveredLog {
    pub topic: String,
    pub partition: i32,
    pub log: PartitionLog,
}

pub struct LogManager {
    log_dirs: Vec<PathBuf>,
    default_config: LogConfig,
    /// Which log dir (index into `log_dirs`) holds each partition.
    placement: HashMap<(String, i32), usize>,
}

/// Splits `<topic>-<partition>` at the last '-' (topic names may contain '-').
pub fn parse_log_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    if topic.is_empty() || partition < 0 {
        return None;
    }
    Some((topic.to_string(), partition))
}

/// The directory name of a partition log.
pub fn log_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

impl LogManager {
    /// Opens every partition log under `log_dirs` (creating missing dirs),
    /// recovering each after its checkpointed recovery point.
    pub fn open(
        log_dirs: Vec<PathBuf>,
        default_config: LogConfig,
    ) -> Result<(LogManager, Vec<RecoveredLog>), StorageError> {
        if log_dirs.is_empty() {
            return Err(StorageError::NoLogDirs);
        }
        let mut placement = HashMap::new();
        let mut recovered = Vec::new();
        for (i, root) in log_dirs.iter().enumerate() {
            std::fs::create_dir_all(root).map_err(io_err("create log dir", root))?;
            let recovery_points = read_offsets(&root.join(RECOVERY_POINT_CHECKPOINT))?;
            let log_starts = read_offsets(&root.join(LOG_START_CHECKPOINT))?;
            let mut entries: Vec<_> = std::fs::read_dir(root)
                .map_err(io_err("list log dir", root))?
                .collect::<Result<_, _>>()
                .map_err(io_err("list log dir", root))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                if !entry.path().is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some((topic, partition)) = parse_log_dir_name(&name) else {
                    tracing::warn!(dir = %entry.path().display(), "skipping directory that is not <topic>-<partition>");
                    continue;
                };
                let recovery_point = recovery_points
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0);
                let mut log =
                    PartitionLog::open(entry.path(), default_config.clone(), recovery_point)?;
                // DeleteRecords may have moved the start inside a segment.
                if let Some(start) = log_starts.get(&(topic.clone(), partition)) {
                    log.advance_log_start(*start)?;
                }
                placement.insert((topic.clone(), partition), i);
                recovered.push(RecoveredLog {
                    topic,
                    partition,
                    log,
                });
            }
        }
        Ok((
            LogManager {
                log_dirs,
                default_config,
                placement,
            },
            recovered,
        ))
    }

    pub fn log_dirs(&self) -> &[PathBuf] {
        &self.log_dirs
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    /// Creates a new partition log in the log dir with the fewest partitions.
    pub fn create_log(
        &mut self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<PartitionLog, StorageError> {
        if topic.is_empty() || topic.contains('/') || topic == "." || topic == ".." {
            return Err(StorageError::InvalidTopic {
                topic: topic.to_string(),
            });
        }
        let key = (topic.to_string(), partition);
        if self.placement.contains_key(&key) {
            return Err(StorageError::LogExists {
                topic: topic.to_string(),
                partition,
            });
        }
        let mut counts = vec![0usize; self.log_dirs.len()];
        for i in self.placement.values() {
            counts[*i] += 1;
        }
        let (idx, _) = counts
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .expect("at least one log dir");
        let dir = self.log_dirs[idx].join(log_dir_name(topic, partition));
        let log = PartitionLog::open(dir, config, 0)?;
        self.placement.insert(key, idx);
        Ok(log)
    }

    /// Deletes a partition log and forgets it.
    pub fn delete_log(
        &mut self,
        topic: &str,
        partition: i32,
        log: PartitionLog,
    ) -> Result<(), StorageError> {
        self.placement.remove(&(topic.to_string(), partition));
        log.delete()
    }

    /// The log dir holding a partition, if known.
    pub fn log_dir_of(&self, topic: &str, partition: i32) -> Option<&Path> {
        self.placement
            .get(&(topic.to_string(), partition))
            .map(|i| self.log_dirs[*i].as_path())
    }

    /// Writes `recovery-point-offset-checkpoint` in every log dir.
    pub fn checkpoint_recovery_points(
        &self,
        entries: &[(&str, i32, i64)],
    ) -> Result<(), StorageError> {
        self.write_per_dir(RECOVERY_POINT_CHECKPOINT, entries)
    }

    /// Writes `replication-offset-checkpoint` (high watermarks) in every log dir.
    pub fn checkpoint_high_watermarks(
        &self,
        entries: &[(&str, i32, i64)],
    ) -> Result<(), StorageError> {
        self.write_per_dir(REPLICATION_CHECKPOINT, entries)
    }

    /// Writes `log-start-offset-checkpoint` in every log dir.
    pub fn checkpoint_log_starts(&self, entries: &[(&str, i32, i64)]) -> Result<(), StorageError> {
        self.write_per_dir(LOG_START_CHECKPOINT, entries)
    }

    /// High watermarks from every log dir's `replication-offset-checkpoint`.
    pub fn read_high_watermarks(&self) -> Result<OffsetMap, StorageError> {
        let mut out = HashMap::new();
        for root in &self.log_dirs {
            out.extend(read_offsets(&root.join(REPLICATION_CHECKPOINT))?);
        }
        Ok(out)
    }

    /// Each dir gets the entries of the partitions it holds (unknown
    /// partitions are skipped: they have no log here).
    fn write_per_dir(&self, file: &str, entries: &[(&str, i32, i64)]) -> Result<(), StorageError> {
        let mut per_dir: Vec<Vec<(&str, i32, i64)>> = vec![Vec::new(); self.log_dirs.len()];
        for &(t, p, o) in entries {
            if let Some(i) = self.placement.get(&(t.to_string(), p)) {
                per_dir[*i].push((t, p, o));
            }
        }
        for (root, entries) in self.log_dirs.iter().zip(per_dir) {
            write_offsets(&root.join(file), &entries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names() {
        assert_eq!(
            parse_log_dir_name("my-topic-12"),
            Some(("my-topic".into(), 12))
        );
        assert_eq!(parse_log_dir_name("t-0"), Some(("t".into(), 0)));
        assert_eq!(parse_log_dir_name("t"), None);
        assert_eq!(parse_log_dir_name("-3"), None);
        assert_eq!(parse_log_dir_name("t-x"), None);
        assert_eq!(log_dir_name("a-b", 3), "a-b-3");
    }

    #[test]
    fn log_starts_moved_by_delete_records_survive_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().to_path_buf()];
        let (mut mgr, _) = LogManager::open(dirs.clone(), LogConfig::default()).unwrap();
        let mut log = mgr.create_log("t", 0, LogConfig::default()).unwrap();
        let recs: Vec<sluice_records::Record> = (0..10)
            .map(|i| sluice_records::Record {
                key: None,
                value: Some(bytes::Bytes::from(vec![b'x'; 10])),
                headers: vec![],
                timestamp: i,
                offset: 0,
            })
            .collect();
        let batch = sluice_records::encode_batch(&recs, Default::default()).unwrap();
        log.append_as_leader(bytes::BytesMut::from(&batch[..]), 0)
            .unwrap();
        assert_eq!(log.advance_log_start(6).unwrap(), 6);
        mgr.checkpoint_log_starts(&[("t", 0, 6)]).unwrap();
        log.close().unwrap();
        let (_, recovered) = LogManager::open(dirs, LogConfig::default()).unwrap();
        assert_eq!(recovered[0].log.log_start_offset(), 6);
        assert_eq!(recovered[0].log.log_end_offset(), 10);
    }

    #[test]
    fn create_reopen_and_checkpoints() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let (mut mgr, recovered) = LogManager::open(dirs.clone(), LogConfig::default()).unwrap();
        assert!(recovered.is_empty());
        let a = mgr.create_log("a-b", 0, LogConfig::default()).unwrap();
        let b = mgr.create_log("a-b", 1, LogConfig::default()).unwrap();
        // Spread over both dirs.
        assert_ne!(a.dir().parent(), b.dir().parent());
        assert!(matches!(
            mgr.create_log("a-b", 0, LogConfig::default()),
            Err(StorageError::LogExists { .. })
        ));
        mgr.checkpoint_high_watermarks(&[("a-b", 0, 7), ("a-b", 1, 9), ("zz", 0, 1)])
            .unwrap();
        mgr.checkpoint_recovery_points(&[("a-b", 0, 0), ("a-b", 1, 0)])
            .unwrap();
        let hw = mgr.read_high_watermarks().unwrap();
        assert_eq!(hw.len(), 2);
        assert_eq!(hw[&("a-b".to_string(), 1)], 9);
        a.close().unwrap();
        b.close().unwrap();
        std::fs::create_dir(d1.path().join("not_a_log")).unwrap();
        let (mgr2, mut recovered) = LogManager::open(dirs, LogConfig::default()).unwrap();
        recovered.sort_by_key(|r| r.partition);
        let ids: Vec<(String, i32)> = recovered
            .iter()
            .map(|r| (r.topic.clone(), r.partition))
            .collect();
        assert_eq!(ids, vec![("a-b".to_string(), 0), ("a-b".to_string(), 1)]);
        assert_eq!(
            mgr2.read_high_watermarks().unwrap()[&("a-b".to_string(), 0)],
            7
        );
    }
}
