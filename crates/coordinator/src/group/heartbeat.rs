//! How members stay and go: Heartbeat, LeaveGroup, and the timers
//! ([`Group::tick`]) that expire sessions and end join phases.

use std::time::Instant;

use super::{Effects, Group, GroupState};
use crate::error::CoordinatorError;

impl Group {
    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        if self.downgraded.get(member_id) == Some(&generation)
            && let Some(m) = self.members.get_mut(member_id)
        {
            // Moved back to the classic protocol: join again, keeping the
            // partitions until then.
            m.heartbeat_deadline = now + m.session_timeout;
            return Err(CoordinatorError::RebalanceInProgress {
                group: self.id.clone(),
            });
        }
        self.check_member(member_id, generation)?;
        let m = self.members.get_mut(member_id).expect("checked");
        m.heartbeat_deadline = now + m.session_timeout;
        if self.state == GroupState::PreparingRebalance {
            return Err(CoordinatorError::RebalanceInProgress {
                group: self.id.clone(),
            });
        }
        Ok(())
    }

    /// LeaveGroup for one member, named by its member id or (a static
    /// member, as an admin removes one) by its group.instance.id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<Effects, CoordinatorError> {
        let member_id = match instance {
            Some(i) => match self.static_member(i) {
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return Err(self.fenced(i, member_id));
                }
                Some(current) => current.to_string(),
                None => {
                    return Err(CoordinatorError::UnknownInstance {
                        group: self.id.clone(),
                        instance: i.to_string(),
                    });
                }
            },
            None => member_id.to_string(),
        };
        let member_id = member_id.as_str();
        if self.pending.remove(member_id).is_some() {
            return Ok(self.try_complete_join(now));
        }
        let Some(m) = self.members.remove(member_id) else {
            return Err(self.unknown_member(member_id));
        };
        let left = CoordinatorError::MemberLeft {
            group: self.id.clone(),
            member: m.id.clone(),
        };
        Self::fail_waiters(m, left);
        Ok(self.member_gone(now))
    }

    fn member_gone(&mut self, now: Instant) -> Effects {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => Effects::default(),
        }
    }

    /// Timers: session expiry, the initial delay and the rebalance timeout.
    /// Returns the effects to apply.
    pub fn tick(&mut self, now: Instant) -> Effects {
        self.pending.retain(|_, deadline| *deadline > now);
        // Members parked in JoinGroup are not expired: the join phase's own
        // timeout handles them.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            return self.try_complete_join(now);
        }
        for id in &expired {
            if let Some(m) = self.members.remove(id) {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                let expired = CoordinatorError::SessionExpired {
                    group: self.id.clone(),
                    member: m.id.clone(),
                };
                Self::fail_waiters(m, expired);
            }
        }
        self.member_gone(now)
    }
}
