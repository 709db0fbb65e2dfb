//! SyncGroup: the leader hands in the assignment, which is written before
//! anyone gets their share ([`Group::assignment_persisted`]).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Effects, Group, GroupState, SyncReply};
use crate::error::CoordinatorError;

impl Group {
    /// SyncGroup. The leader's call carries the assignment; the returned
    /// effects ask for the group record to be written, after which the caller
    /// runs [`Group::assignment_persisted`].
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (SyncReply, Effects) {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.check_member(member_id, generation) {
            let _ = tx.send(Err(e));
            return (rx, Effects::default());
        }
        let m = self.members.get_mut(member_id).expect("checked");
        m.heartbeat_deadline = now + m.session_timeout;
        match self.state {
            GroupState::PreparingRebalance => {
                let _ = tx.send(Err(CoordinatorError::RebalanceInProgress {
                    group: self.id.clone(),
                }));
            }
            GroupState::Stable => {
                let _ = tx.send(Ok(m.assignment.clone()));
            }
            GroupState::CompletingRebalance => {
                m.sync_waiter = Some(tx);
                if self.leader.as_deref() == Some(member_id) {
                    let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                    }
                    return (
                        rx,
                        Effects {
                            persist: Some(self.snapshot()),
                        },
                    );
                }
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = tx.send(Err(CoordinatorError::NoMembers {
                    group: self.id.clone(),
                }));
            }
        }
        (rx, Effects::default())
    }

    /// After the leader's assignment for `generation` was written (or failed
    /// to be): answers the parked syncs and settles the group.
    pub fn assignment_persisted(
        &mut self,
        generation: i32,
        result: Result<(), CoordinatorError>,
        now: Instant,
    ) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return; // a newer rebalance already took over
        }
        match result {
            Ok(()) => {
                self.state = GroupState::Stable;
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Ok(m.assignment.clone()));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                self.prepare_rebalance(now);
            }
        }
    }
}
