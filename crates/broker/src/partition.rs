//! One local partition replica.

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use sluice_storage::{AppendInfo, PartitionLog, StorageError};
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::watch;

/// The offsets a long-polling Fetch or an acks=all Produce waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOffsets {
    pub log_start: i64,
    /// Log end offset: the next offset to be written.
    pub leo: i64,
    /// High watermark: consumers read below it.
    pub hw: i64,
}

/// This replica's role, from the metadata store.
#[derive(Debug, Clone, Default)]
pub struct Role {
    pub topic_id: String,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
}

pub struct Partition {
    pub topic: String,
    pub partition: i32,
    broker_id: i32,
    /// A read/write lock so fetches read concurrently; appends hold the write
    /// side only for the page-cache write (no fsync unless configured, no await).
    log: RwLock<PartitionLog>,
    role: RwLock<Role>,
    offsets: watch::Sender<LogOffsets>,
}

pub(crate) fn storage_err(topic: &str, partition: i32, e: StorageError) -> ApiError {
    let code = match &e {
        StorageError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        StorageError::CorruptMessage(_) | StorageError::InvalidRecord { .. } => {
            ErrorCode::CorruptMessage
        }
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::Io { .. } => ErrorCode::KafkaStorageError,
        _ => ErrorCode::UnknownServerError,
    };
    ApiError::new(code, format!("{topic}-{partition}: {e}"))
}

impl Partition {
    pub fn new(topic: String, partition: i32, broker_id: i32, log: PartitionLog, hw: i64) -> Self {
        let leo = log.log_end_offset();
        let offsets = LogOffsets {
            log_start: log.log_start_offset(),
            leo,
            hw: hw.clamp(log.log_start_offset(), leo),
        };
        Self {
            topic,
            partition,
            broker_id,
            log: RwLock::new(log),
            role: RwLock::new(Role::default()),
            offsets: watch::Sender::new(offsets),
        }
    }

    pub fn role(&self) -> Role {
        self.role.read().clone()
    }

    pub fn topic_id(&self) -> Option<String> {
        self.log.read().topic_id().map(str::to_string)
    }

    pub fn offsets(&self) -> LogOffsets {
        *self.offsets.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<LogOffsets> {
        self.offsets.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        self.role.read().leader == self.broker_id
    }

    /// Applies the role from metadata. On becoming leader in a new epoch, the
    /// epoch's start offset is recorded in the leader-epoch checkpoint.
    pub fn set_role(&self, role: Role) -> Result<(), ApiError> {
        let leading = role.leader == self.broker_id;
        if leading {
            let mut log = self.log.write();
            if log.latest_epoch().is_none_or(|e| e < role.leader_epoch) {
                let leo = log.log_end_offset();
                log.assign_epoch_start(role.leader_epoch, leo)
                    .map_err(|e| storage_err(&self.topic, self.partition, e))?;
            }
            if log.topic_id().is_none() && !role.topic_id.is_empty() {
                log.set_topic_id(&role.topic_id)
                    .map_err(|e| storage_err(&self.topic, self.partition, e))?;
            }
        }
        let sole = role.isr.len() == 1 && role.isr[0] == self.broker_id;
        *self.role.write() = role;
        if leading && sole {
            // Alone in the ISR, the high watermark is the log end.
            self.offsets.send_modify(|o| o.hw = o.leo);
        }
        Ok(())
    }

    fn not_leader(&self, role: &Role) -> ApiError {
        ApiError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "broker {} is not the leader of {}-{} (leader is {})",
                self.broker_id, self.topic, self.partition, role.leader
            ),
        )
    }

    /// Leader append. Checks leadership and `min.insync.replicas` for acks=all
    /// before writing, so a refused write appends nothing.
    pub fn append_as_leader(
        &self,
        batches: BytesMut,
        acks: i32,
        min_insync: i32,
    ) -> Result<AppendInfo, ApiError> {
        let role = self.role.read().clone();
        if role.leader != self.broker_id {
            return Err(self.not_leader(&role));
        }
        if acks == -1 && (role.isr.len() as i32) < min_insync {
            return Err(ApiError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "{}-{} has {} in-sync replicas, min.insync.replicas is {min_insync}",
                    self.topic,
                    self.partition,
                    role.isr.len()
                ),
            ));
        }
        let sole = role.isr.len() == 1 && role.isr[0] == self.broker_id;
        let mut log = self.log.write();
        let info = log
            .append_as_leader(batches, role.leader_epoch)
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        let leo = log.log_end_offset();
        let log_start = log.log_start_offset();
        drop(log);
        self.offsets.send_modify(|o| {
            o.leo = leo;
            o.log_start = log_start;
            if sole {
                o.hw = leo;
            }
        });
        Ok(info)
    }

    /// Reads whole batches from `offset` up to the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        require_leader: bool,
    ) -> Result<(Bytes, LogOffsets), ApiError> {
        if require_leader {
            let role = self.role.read();
            if role.leader != self.broker_id {
                let role = role.clone();
                return Err(self.not_leader(&role));
            }
        }
        let offsets = self.offsets();
        if offset >= offsets.hw && offset <= offsets.leo {
            // Nothing visible yet: the long poll waits for the watermark.
            return Ok((Bytes::new(), offsets));
        }
        let log = self.log.read();
        let data = log
            .read(offset, max_bytes, offsets.hw, min_one)
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        Ok((data, offsets))
    }

    /// The first offset with a timestamp at or after `ts`, below the watermark.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, ApiError> {
        let hw = self.offsets().hw;
        let found = self
            .log
            .read()
            .offset_for_timestamp(ts)
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        Ok(found.filter(|(o, _)| *o < hw))
    }

    pub fn leader_epoch_of(&self, offset: i64) -> i32 {
        let log = self.log.read();
        log.epoch_entries()
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map_or(-1, |(e, _)| *e)
    }

    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, ApiError> {
        let mut log = self.log.write();
        let n = log
            .enforce_retention(now_ms)
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        let log_start = log.log_start_offset();
        drop(log);
        if n > 0 {
            self.offsets.send_modify(|o| o.log_start = log_start);
        }
        Ok(n)
    }

    pub fn flush(&self) -> Result<i64, ApiError> {
        let mut log = self.log.write();
        log.flush()
            .map_err(|e| storage_err(&self.topic, self.partition, e))?;
        Ok(log.recovery_point())
    }

    pub fn recovery_point(&self) -> i64 {
        self.log.read().recovery_point()
    }

    /// Takes the log out for closing or deletion; the partition is unusable after.
    pub fn into_log(self) -> PartitionLog {
        self.log.into_inner()
    }
}
