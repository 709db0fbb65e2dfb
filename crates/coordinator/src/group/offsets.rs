//! Committed offsets: fencing an OffsetCommit by generation and member, and
//! keeping memory equal to the log when commits are acknowledged out of order.

use std::collections::BTreeSet;

use super::{CommittedOffset, Group, GroupState};
use crate::error::CoordinatorError;

impl Group {
    /// Notes the partitions of a commit being written.
    pub fn commit_submitted(&mut self, tps: impl IntoIterator<Item = (String, i32)>) {
        for tp in tps {
            *self.in_flight.entry(tp).or_default() += 1;
        }
    }

    /// A commit noted by [`Group::commit_submitted`] was answered, either way.
    pub fn commit_finished<'a>(&mut self, tps: impl IntoIterator<Item = &'a (String, i32)>) {
        for tp in tps {
            if let Some(n) = self.in_flight.get_mut(tp) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(tp);
                }
            }
        }
    }

    /// The partitions this group has offsets for, in memory or on the way.
    pub fn offset_keys(&self) -> impl Iterator<Item = &(String, i32)> {
        let mut keys: BTreeSet<&(String, i32)> = self.offsets.keys().collect();
        keys.extend(self.in_flight.keys());
        keys.into_iter()
    }

    /// Takes the offsets of an acknowledged commit, numbered `write` in log
    /// order, unless a later write of the same partition was applied first.
    pub fn apply_commit(
        &mut self,
        write: u64,
        offsets: impl IntoIterator<Item = ((String, i32), CommittedOffset)>,
    ) {
        if write <= self.write_floor {
            return;
        }
        for (tp, o) in offsets {
            if self.offset_writes.get(&tp).is_some_and(|w| *w > write) {
                continue;
            }
            self.offset_writes.insert(tp.clone(), write);
            self.offsets.insert(tp, o);
        }
    }

    /// Validates an OffsetCommit's generation and member.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), CoordinatorError> {
        if self.state == GroupState::Dead {
            return Err(CoordinatorError::GroupBeingDeleted {
                group: self.id.clone(),
            });
        }
        if let Some(c) = &self.consumer {
            return c.check_commit(member_id, generation);
        }
        if generation < 0 && member_id.is_empty() {
            // A "simple" commit by a tool or a manually assigned consumer.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(CoordinatorError::SimpleCommitToActiveGroup {
                    group: self.id.clone(),
                })
            };
        }
        if self.downgraded.get(member_id) == Some(&generation)
            && self.members.contains_key(member_id)
        {
            // Its partitions are still its own until it joins again.
            return Ok(());
        }
        self.check_member(member_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(CoordinatorError::CompletingRebalance {
                group: self.id.clone(),
            });
        }
        Ok(())
    }
}
