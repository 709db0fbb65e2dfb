//! The member's identity in the group (member id, generation, whether a
//! rejoin is due, whether it was fenced) as a small state machine without
//! I/O: JoinGroup, SyncGroup, LeaveGroup and error answers move it, and the
//! heartbeat task's per-tick decision (`max.poll.interval.ms`) is here too,
//! so the rules are unit-tested without a coordinator.

use std::time::Duration;

use sluice_types::{ApiError, ErrorCode};

/// Errors that end this member's generation.
pub(super) fn generation_over(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId
    )
}

/// The member's identity in the group, shared with the heartbeat task.
#[derive(Debug, Clone, Default)]
pub(super) struct Membership {
    pub(super) member_id: String,
    pub(super) generation: i32,
    /// Set when the current generation is over (heartbeat said so, or an
    /// error), so the next `poll` rejoins.
    pub(super) rejoin: bool,
    /// Set when a newer consumer with our `group.instance.id` replaced this
    /// one: fatal, as Kafka's FencedInstanceIdException.
    pub(super) fenced: Option<ApiError>,
}

impl Membership {
    /// A member that has not joined yet: no id, no generation, join due.
    pub(super) fn new() -> Self {
        Membership {
            member_id: String::new(),
            generation: -1,
            rejoin: true,
            fenced: None,
        }
    }

    /// Whether the next `poll` must (re)join. A member id without a
    /// generation is out of the group whatever the flag says.
    pub(super) fn must_rejoin(&self) -> bool {
        self.rejoin || (!self.member_id.is_empty() && self.generation < 0)
    }

    /// The member id and generation to commit under; `None` outside a
    /// generation (before the first join, after an error reset it, after
    /// leaving).
    pub(super) fn current(&self) -> Option<(String, i32)> {
        (!self.member_id.is_empty() && self.generation >= 0)
            .then(|| (self.member_id.clone(), self.generation))
    }

    /// What a heartbeat is sent as: the current generation, unless fenced.
    pub(super) fn heartbeat_target(&self) -> Option<(String, i32)> {
        if self.fenced.is_some() {
            return None;
        }
        self.current()
    }

    /// JoinGroup answered MEMBER_ID_REQUIRED with the id to join with.
    pub(super) fn member_id_required(&mut self, member_id: String) {
        self.member_id = member_id;
    }

    /// JoinGroup succeeded: a member of `generation` (not settled until
    /// SyncGroup answers, so `rejoin` stays as it is).
    pub(super) fn joined(&mut self, member_id: String, generation: i32) {
        self.member_id = member_id;
        self.generation = generation;
    }

    /// SyncGroup answered for (`member_id`, `generation`): settled, unless
    /// something ended that very generation meanwhile (a late answer must
    /// not clear a rejoin an error asked for since).
    pub(super) fn synced(&mut self, member_id: &str, generation: i32) {
        if self.member_id == member_id && self.generation == generation {
            self.rejoin = false;
        }
    }

    /// Leaves the generation; returns the member id given up (empty when
    /// there was none), which the LeaveGroup request names.
    pub(super) fn leave(&mut self) -> String {
        self.rejoin = true;
        self.generation = -1;
        std::mem::take(&mut self.member_id)
    }

    /// Notes a coded error from a coordinator answer to a request sent as
    /// `sent` (member id, generation). A generation error only counts while
    /// the membership is still the one the request used: a late answer must
    /// not undo a join that completed meanwhile. Returns true when this
    /// answer newly fenced the member.
    pub(super) fn on_error(&mut self, e: &ApiError, sent: (&str, i32)) -> bool {
        if e.code == ErrorCode::FencedInstanceId {
            let newly = self.fenced.is_none();
            self.fenced = Some(e.clone());
            return newly;
        }
        if generation_over(e.code) {
            if self.member_id != sent.0 || self.generation != sent.1 {
                return false;
            }
            self.rejoin = true;
            if e.code == ErrorCode::UnknownMemberId || e.code == ErrorCode::IllegalGeneration {
                self.generation = -1;
            }
            if e.code == ErrorCode::UnknownMemberId {
                self.member_id.clear();
            }
        }
        false
    }
}

/// What the heartbeat task does on one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeartbeatTick {
    /// Send a heartbeat (it is skipped when there is no generation).
    Heartbeat,
    /// The application stopped polling: leave so the group moves on.
    Leave,
    /// Poll timed out, but this member is not in the group: nothing to do.
    Idle,
}

/// The heartbeat task's decision: a member whose application has not called
/// `poll` within `max.poll.interval.ms` leaves the group (as Kafka's does),
/// except while `poll` itself is rejoining, which may legitimately wait up
/// to the rebalance timeout.
pub(super) fn heartbeat_tick(
    idle: Duration,
    max_poll_interval: Duration,
    rejoining: bool,
    in_group: bool,
) -> HeartbeatTick {
    if idle > max_poll_interval && !rejoining {
        if in_group {
            HeartbeatTick::Leave
        } else {
            HeartbeatTick::Idle
        }
    } else {
        HeartbeatTick::Heartbeat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ErrorCode) -> ApiError {
        ApiError::new(code, "test")
    }

    /// A member settled in generation `generation` as "m-1".
    fn settled(generation: i32) -> Membership {
        let mut m = Membership::new();
        m.joined("m-1".into(), generation);
        m.synced("m-1", generation);
        m
    }

    #[test]
    fn a_new_member_must_join_and_has_no_generation() {
        let m = Membership::new();
        assert!(m.must_rejoin());
        assert_eq!(m.current(), None);
        assert_eq!(m.heartbeat_target(), None);
    }

    #[test]
    fn join_then_sync_settles_the_member() {
        let mut m = Membership::new();
        m.joined("m-1".into(), 3);
        // Joined but not synced: still rejoining, yet the generation is known.
        assert!(m.must_rejoin());
        assert_eq!(m.current(), Some(("m-1".into(), 3)));
        m.synced("m-1", 3);
        assert!(!m.must_rejoin());
        assert_eq!(m.heartbeat_target(), Some(("m-1".into(), 3)));
    }

    #[test]
    fn sync_of_an_older_generation_does_not_settle() {
        let mut m = Membership::new();
        m.joined("m-1".into(), 3);
        // The heartbeat learned generation 3 is over before SyncGroup answered.
        m.on_error(&err(ErrorCode::IllegalGeneration), ("m-1", 3));
        m.synced("m-1", 3);
        assert!(m.must_rejoin());
        // And a sync answer for another member id settles nothing either.
        let mut m = Membership::new();
        m.joined("m-2".into(), 4);
        m.synced("m-1", 4);
        assert!(m.must_rejoin());
    }

    #[test]
    fn rebalance_in_progress_keeps_the_generation_for_a_last_commit() {
        let mut m = settled(5);
        assert!(!m.on_error(&err(ErrorCode::RebalanceInProgress), ("m-1", 5)));
        assert!(m.must_rejoin());
        // Eager rebalancing commits in on_partitions_revoked: the generation
        // must still be usable.
        assert_eq!(m.current(), Some(("m-1".into(), 5)));
    }

    #[test]
    fn illegal_generation_drops_the_generation_but_keeps_the_id() {
        let mut m = settled(5);
        m.on_error(&err(ErrorCode::IllegalGeneration), ("m-1", 5));
        assert!(m.must_rejoin());
        assert_eq!(m.member_id, "m-1");
        assert_eq!(m.generation, -1);
        assert_eq!(m.current(), None);
    }

    #[test]
    fn unknown_member_id_drops_id_and_generation() {
        let mut m = settled(5);
        m.on_error(&err(ErrorCode::UnknownMemberId), ("m-1", 5));
        assert!(m.must_rejoin());
        assert!(m.member_id.is_empty());
        assert_eq!(m.generation, -1);
    }

    #[test]
    fn a_late_error_about_an_old_generation_is_ignored() {
        let mut m = settled(5);
        // A commit sent in generation 4 is answered after the join to 5.
        m.on_error(&err(ErrorCode::UnknownMemberId), ("m-1", 4));
        m.on_error(&err(ErrorCode::IllegalGeneration), ("m-0", 5));
        assert!(!m.must_rejoin());
        assert_eq!(m.current(), Some(("m-1".into(), 5)));
    }

    #[test]
    fn other_errors_leave_the_membership_alone() {
        for code in [
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorNotAvailable,
            ErrorCode::RequestTimedOut,
            ErrorCode::InvalidGroupId,
        ] {
            let mut m = settled(2);
            assert!(!m.on_error(&err(code), ("m-1", 2)), "{code:?}");
            assert!(!m.must_rejoin(), "{code:?}");
            assert_eq!(m.current(), Some(("m-1".into(), 2)), "{code:?}");
        }
    }

    #[test]
    fn fencing_is_reported_once_and_stops_heartbeats() {
        let mut m = settled(7);
        // Fencing counts whatever generation the request was sent in.
        assert!(m.on_error(&err(ErrorCode::FencedInstanceId), ("old", 1)));
        assert!(!m.on_error(&err(ErrorCode::FencedInstanceId), ("m-1", 7)));
        assert_eq!(
            m.fenced.as_ref().map(|e| e.code),
            Some(ErrorCode::FencedInstanceId)
        );
        assert_eq!(m.heartbeat_target(), None);
        // The generation itself is untouched (no rejoin: fencing is fatal).
        assert!(!m.must_rejoin());
        assert_eq!(m.current(), Some(("m-1".into(), 7)));
    }

    #[test]
    fn leave_gives_up_the_id_once() {
        let mut m = settled(3);
        assert_eq!(m.leave(), "m-1");
        assert!(m.must_rejoin());
        assert_eq!(m.current(), None);
        assert_eq!(m.leave(), "");
    }

    #[test]
    fn an_id_without_a_generation_must_rejoin_even_without_the_flag() {
        let mut m = Membership::new();
        m.member_id_required("m-9".into());
        m.rejoin = false;
        assert!(m.must_rejoin());
        assert_eq!(m.current(), None);
    }

    #[test]
    fn heartbeat_tick_leaves_only_after_max_poll_interval_outside_a_rejoin() {
        let max = Duration::from_secs(5);
        let over = Duration::from_secs(6);
        assert_eq!(
            heartbeat_tick(Duration::from_secs(1), max, false, true),
            HeartbeatTick::Heartbeat
        );
        // Exactly at the limit is still in time.
        assert_eq!(
            heartbeat_tick(max, max, false, true),
            HeartbeatTick::Heartbeat
        );
        assert_eq!(heartbeat_tick(over, max, false, true), HeartbeatTick::Leave);
        assert_eq!(heartbeat_tick(over, max, false, false), HeartbeatTick::Idle);
        // A long join inside poll is not the application failing to poll.
        assert_eq!(
            heartbeat_tick(over, max, true, true),
            HeartbeatTick::Heartbeat
        );
    }
}
