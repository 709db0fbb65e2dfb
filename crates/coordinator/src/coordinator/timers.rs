//! The group timers: every 100 ms each group's [`Group::tick`] runs (session
//! expiry, the initial delay, the rebalance timeout), groups left with
//! nothing are dropped, and the group records the timers decide are written.
//!
//! [`Group::tick`]: crate::group::Group::tick

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Coordinator, GroupHome, Owned, State};
use crate::consumer_group::TopicCounts;
use crate::group::GroupRecord;

impl State {
    /// Runs every served group's timers at `now`. Returns the group records
    /// to write, in the order they were decided.
    pub(super) fn tick_groups(
        &mut self,
        topics: &TopicCounts,
        now: Instant,
    ) -> Vec<(String, GroupHome, GroupRecord)> {
        let mut out = Vec::new();
        for (p, o) in self.partitions.iter_mut() {
            if let Owned::Active {
                groups,
                epoch,
                load,
            } = o
            {
                // Groups left with nothing (a refused first join) go.
                groups.retain(|_, g| !g.is_unused());
                for g in groups.values_mut() {
                    // Consumer-protocol groups wait for the topics: an
                    // assignment from none would revoke everything.
                    let effects = if g.is_consumer() {
                        if topics.version == 0 {
                            continue;
                        }
                        g.tick_consumer(topics, now)
                    } else {
                        g.tick(now)
                    };
                    if let Some(rec) = effects.persist {
                        let home = GroupHome {
                            partition: *p,
                            epoch: *epoch,
                            load: *load,
                        };
                        out.push((g.id.clone(), home, rec));
                    }
                }
            }
        }
        out
    }
}

impl Coordinator {
    /// Session expiry, initial delays and rebalance timeouts, every 100 ms.
    pub(super) async fn run_timers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let topics = self.topics();
            let mut st = self.state.lock();
            // Written under the lock where they were decided, as every group
            // record is (see `persist_group`).
            for (group, home, rec) in st.tick_groups(&topics, now) {
                self.persist_group(group, home, rec, None);
            }
        }
    }
}
