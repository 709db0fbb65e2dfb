//! The write queue to `__consumer_offsets`. Writes are numbered and reach the
//! log in submission order, one job at a time, so a job's records stay
//! together; they are acknowledged in any order. [`Coordinator::confirm`]
//! waits for a write and checks the partition is still ours; group records
//! are written with [`Coordinator::persist_group`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::ProducerRecord;
use sluice_types::meta::{self, OffsetsOwner};
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::offsets_log::{Ack, OffsetsLog};
use super::{Coordinator, GroupHome, not_coordinator};
use crate::error::{CoordinatorError, NotServed};
use crate::group::{Effects, GroupRecord};
use crate::records::{self, GroupValue, RecordKey};

/// One write to `__consumer_offsets`: its records, and where to send their
/// acknowledgements once the log has them.
pub(super) struct WriteJob {
    /// The `__consumer_offsets` partition all of `records` go to.
    partition: i32,
    records: Vec<ProducerRecord>,
    queued: oneshot::Sender<Result<Vec<Ack>, CoordinatorError>>,
}

/// A write on its way to `__consumer_offsets`.
pub struct Submitted {
    /// Its place in the log order of this coordinator's writes.
    pub number: u64,
    queued: oneshot::Receiver<Result<Vec<Ack>, CoordinatorError>>,
}

/// Numbers writes and queues them for [`run_writer`].
pub(super) struct WriteQueue {
    jobs: mpsc::UnboundedSender<WriteJob>,
    number: AtomicU64,
}

impl WriteQueue {
    pub(super) fn new() -> (Self, mpsc::UnboundedReceiver<WriteJob>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let queue = Self {
            jobs,
            number: AtomicU64::new(0),
        };
        (queue, rx)
    }

    pub(super) fn submit(&self, partition: i32, records: Vec<ProducerRecord>) -> Submitted {
        let (tx, rx) = oneshot::channel();
        let number = self.number.fetch_add(1, Ordering::Relaxed) + 1;
        // The receiver lives as long as the writer task; if it is gone we are
        // shutting down and the dropped reply says so.
        let _ = self.jobs.send(WriteJob {
            partition,
            records,
            queued: tx,
        });
        Submitted { number, queued: rx }
    }

    pub(super) fn last_number(&self) -> u64 {
        self.number.load(Ordering::Relaxed)
    }
}

/// The records of one write to the group's partition. Each carries the
/// writer's ownership epoch in a header, which fences it on replay even when
/// it is a tombstone.
pub(super) fn producer_records(
    home: GroupHome,
    recs: Vec<(RecordKey, Option<Vec<u8>>)>,
) -> Vec<ProducerRecord> {
    recs.into_iter()
        .map(|(key, value)| ProducerRecord {
            topic: CONSUMER_OFFSETS_TOPIC.into(),
            partition: Some(home.partition),
            key: Some(Bytes::from(key.encode())),
            value: value.map(Bytes::from),
            headers: vec![records::epoch_header(home.epoch)],
            ..Default::default()
        })
        .collect()
}

/// Feeds queued writes to the log one job at a time, so a job's records stay
/// together and jobs keep their submission order.
pub(super) async fn run_writer(
    log: Arc<dyn OffsetsLog>,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let queued = log.append(job.partition, job.records).await;
        let _ = job.queued.send(queued);
    }
}

impl Coordinator {
    /// Queues records for the group's partition (acks=all) and numbers the
    /// write. Writes reach the log in the order they are submitted, so callers
    /// submit under the state lock, where they decide what to write: the log
    /// then ends with the last decision, not with whichever write won a race.
    pub fn submit(&self, home: GroupHome, recs: Vec<(RecordKey, Option<Vec<u8>>)>) -> Submitted {
        self.writes
            .submit(home.partition, producer_records(home, recs))
    }

    /// The last write number handed out (a new group's floor).
    pub fn last_write_number(&self) -> u64 {
        self.writes.last_number()
    }

    /// Waits for a submitted write to be acknowledged; fails with
    /// NOT_COORDINATOR if the partition moved meanwhile.
    pub async fn confirm(
        &self,
        group: &str,
        home: GroupHome,
        submitted: Submitted,
    ) -> Result<(), CoordinatorError> {
        let timeout = Duration::from_millis(self.config.offsets_commit_timeout_ms);
        let acked = tokio::time::timeout(timeout, async {
            // The writer task dropped the job: it stopped on shutdown.
            let pending = submitted
                .queued
                .await
                .map_err(|_| CoordinatorError::ShuttingDown)??;
            for f in pending {
                f.await?;
            }
            Ok::<_, CoordinatorError>(())
        })
        .await;
        match acked {
            Ok(r) => r?,
            Err(_) => {
                return Err(CoordinatorError::CommitTimeout {
                    partition: home.partition,
                    timeout_ms: self.config.offsets_commit_timeout_ms,
                });
            }
        }
        // Acknowledged, but only meaningful if we still own the partition:
        // first by our own view, then by the store itself, since our watch
        // may lag a move (a successor ignores our records after its marker).
        let now = self.home(group)?;
        if (now.partition, now.epoch, now.load) != (home.partition, home.epoch, home.load) {
            // A reload in between rebuilt the group without this write's
            // place in the order: the client retries through the new load.
            return Err(not_coordinator(group, NotServed::ChangedDuringWrite));
        }
        let owner = self
            .store
            .get(&meta::offsets_owner_key(home.partition))
            .await
            .map_err(|e| CoordinatorError::ConfirmOwnership {
                partition: home.partition,
                source: Arc::new(e),
            })?
            .and_then(|kv| meta::decode::<OffsetsOwner>(&kv.value).ok());
        if owner
            != Some(OffsetsOwner {
                coordinator_id: self.config.coordinator_id,
                epoch: home.epoch,
            })
        {
            return Err(not_coordinator(
                group,
                NotServed::Moved {
                    partition: home.partition,
                },
            ));
        }
        Ok(())
    }

    /// Queues a group record (see [`Self::submit`]).
    pub fn submit_group(&self, group: &str, home: GroupHome, rec: GroupRecord) -> Submitted {
        let value = records::encode(&GroupValue {
            group: rec,
            owner_epoch: home.epoch,
        });
        self.submit(
            home,
            vec![(
                RecordKey::Group {
                    group: group.to_string(),
                },
                Some(value),
            )],
        )
    }

    /// Writes a group record; then, when `settle` is set, tells the group.
    /// Call it where the record was decided, under the state lock, so group
    /// records reach the log in generation order.
    pub fn persist_group(
        self: &Arc<Self>,
        group: String,
        home: GroupHome,
        rec: GroupRecord,
        settle: Option<i32>,
    ) {
        let submitted = self.submit_group(&group, home, rec);
        let this = self.clone();
        self.tasks.spawn(async move {
            let res = this.confirm(&group, home, submitted).await;
            if let Err(e) = &res {
                warn!(group = %group, error = %e, "cannot persist group metadata");
            }
            if let Some(generation) = settle {
                let _ = this.with_group(&group, false, |g, _| {
                    if let Some(g) = g {
                        g.assignment_persisted(generation, res, Instant::now());
                    }
                });
            }
        });
    }

    /// Applies the effects of a group call made under [`Self::with_group`].
    pub fn apply(
        self: &Arc<Self>,
        group: &str,
        home: GroupHome,
        effects: Effects,
        settle: Option<i32>,
    ) {
        if let Some(rec) = effects.persist {
            self.persist_group(group.to_string(), home, rec, settle);
        }
    }
}
