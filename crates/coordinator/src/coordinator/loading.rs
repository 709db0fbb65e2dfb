//! Loading a `__consumer_offsets` partition this coordinator was given: write
//! an `owner` marker in its epoch, read the partition up to the marker and
//! replay it into groups (see [`crate::records`]). The partition answers
//! COORDINATOR_LOAD_IN_PROGRESS until the load is installed, and a load that
//! finishes after the partition moved (or moved away and back) is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_client::ProducerRecord;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tracing::{debug, info, warn};

use super::{Coordinator, GroupHome, Owned, State};
use crate::error::CoordinatorError;
use crate::group::Group;
use crate::records::{self, OwnerValue, RecordKey};

/// The marker a new owner writes before it loads partition `p` in `epoch`:
/// everything before it is the state to load, and a deposed owner's writes
/// after it are ignored by every later load.
pub(super) fn owner_marker(coordinator_id: i32, p: i32, epoch: i64) -> ProducerRecord {
    ProducerRecord::new(
        CONSUMER_OFFSETS_TOPIC,
        records::encode(&OwnerValue {
            coordinator_id,
            owner_epoch: epoch,
        }),
    )
    .with_key(
        RecordKey::Owner {
            partition: p,
            epoch,
        }
        .encode(),
    )
    .with_partition(p)
}

impl State {
    /// Installs the groups a load of `p` in `epoch` built, numbering the load
    /// from `loads`, if `p` is still loading in that epoch. Returns whether it
    /// was installed.
    pub(super) fn finish_load(
        &mut self,
        p: i32,
        epoch: i64,
        groups: BTreeMap<String, Group>,
        loads: &AtomicU64,
    ) -> bool {
        match self.partitions.get_mut(&p) {
            Some(o @ Owned::Loading { .. }) if o.epoch() == epoch => {
                *o = Owned::Active {
                    epoch,
                    load: loads.fetch_add(1, Ordering::Relaxed) + 1,
                    groups,
                };
                true
            }
            _ => false,
        }
    }
}

impl Coordinator {
    fn still_loading(&self, p: i32, epoch: i64) -> bool {
        matches!(self.state.lock().partitions.get(&p), Some(Owned::Loading { epoch: e }) if *e == epoch)
    }

    /// Loads one partition, retrying while it is still ours to load.
    pub(super) async fn load_partition(self: Arc<Self>, p: i32, epoch: i64) {
        let started = Instant::now();
        while self.still_loading(p, epoch) && !self.shutdown.is_cancelled() {
            // A load reads through this node's own brokers: on shutdown they
            // stop answering, so stop waiting for them at once.
            let loaded = tokio::select! {
                r = self.try_load(p, epoch) => r,
                _ = self.shutdown.cancelled() => return,
            };
            match loaded {
                Ok(groups) => {
                    let n = groups.len();
                    if self.state.lock().finish_load(p, epoch, groups, &self.loads) {
                        info!(
                            partition = p,
                            epoch,
                            groups = n,
                            ms = started.elapsed().as_millis() as u64,
                            "loaded __consumer_offsets partition"
                        );
                    }
                    return;
                }
                Err(e) => {
                    warn!(partition = p, epoch, error = %e, "cannot load __consumer_offsets partition yet; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
    }

    async fn try_load(
        &self,
        p: i32,
        epoch: i64,
    ) -> Result<BTreeMap<String, Group>, CoordinatorError> {
        let marker = owner_marker(self.config.coordinator_id, p, epoch);
        let recs = self.log.read_to_marker(p, marker).await?;
        debug!(
            partition = p,
            records = recs.len(),
            "replaying __consumer_offsets partition"
        );
        let replayed = records::replay(
            recs.iter()
                .map(|(k, v, e)| (k.as_deref(), v.as_deref(), *e)),
            self.config.group_settings(),
            Instant::now(),
            epoch,
        );
        if !replayed.rewrite.is_empty() {
            // Written before the load is installed: once served, a later
            // compaction can no longer leave a deposed owner's record as the
            // only one of its key.
            let keys = replayed.rewrite.len();
            let home = GroupHome {
                partition: p,
                epoch,
                load: 0,
            };
            let acks = self
                .log
                .append(p, super::writer::producer_records(home, replayed.rewrite))
                .await?;
            for ack in acks {
                ack.await?;
            }
            info!(
                partition = p,
                epoch,
                keys,
                "rewrote keys whose latest record was a deposed coordinator's, so compaction keeps the valid ones"
            );
        }
        Ok(replayed.groups)
    }
}
