//! Partition leader election and ISR changes on broker liveness (pure logic).
//!
//! Unclean leader election is off: only an in-sync replica may lead, so a
//! partition whose in-sync replicas are all down has no leader (-1) until one of
//! them returns. A dead broker is removed from every ISR at once (as Kafka does
//! when a broker is fenced), unless it is the last member: the last in-sync
//! replica is remembered so it can lead again when it comes back.

use std::collections::HashSet;

use sluice_types::meta::PartitionState;

/// The state a partition should move to given the live brokers, or `None` when
/// it needs no change.
pub fn on_liveness(
    replicas: &[i32],
    state: &PartitionState,
    live: &HashSet<i32>,
) -> Option<PartitionState> {
    let live_isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|b| live.contains(b))
        .collect();
    let leader_alive = state.leader >= 0 && live.contains(&state.leader);
    if leader_alive {
        if live_isr.len() == state.isr.len() {
            return None;
        }
        // Shrink the ISR to the live members; the leader stays.
        return Some(PartitionState {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            isr: live_isr,
            partition_epoch: state.partition_epoch + 1,
        });
    }
    // The first replica in assignment order that is alive and in sync leads.
    let new_leader = replicas.iter().copied().find(|r| live_isr.contains(r));
    match new_leader {
        Some(leader) => Some(PartitionState {
            leader,
            leader_epoch: state.leader_epoch + 1,
            isr: live_isr,
            partition_epoch: state.partition_epoch + 1,
        }),
        None if state.leader == -1 => None,
        None => Some(PartitionState {
            leader: -1,
            leader_epoch: state.leader_epoch + 1,
            // Keep the last in-sync replica(s) so one of them can lead on return.
            isr: state.isr.clone(),
            partition_epoch: state.partition_epoch + 1,
        }),
    }
}

/// Like [`on_liveness`], when `restarted` brokers registered again since the
/// last look: new incarnations that may have lost what they had not flushed
/// (KIP-903). They leave the ISR as dead brokers do. When no other in-sync
/// replica is live, one of them must lead again: the previous leader if it is
/// among them (it holds the longest log), else the first in assignment
/// order, alone in the ISR and in a new epoch; the others rejoin through
/// AlterPartition once they have caught up with it.
pub fn on_restart(
    replicas: &[i32],
    state: &PartitionState,
    live: &HashSet<i32>,
    restarted: &HashSet<i32>,
) -> Option<PartitionState> {
    if !state.isr.iter().any(|b| restarted.contains(b)) {
        return on_liveness(replicas, state, live);
    }
    let steady: HashSet<i32> = live.difference(restarted).copied().collect();
    if state.isr.iter().any(|b| steady.contains(b)) {
        return on_liveness(replicas, state, &steady);
    }
    let candidate = |b: &i32| state.isr.contains(b) && restarted.contains(b) && live.contains(b);
    let leader = if candidate(&state.leader) {
        state.leader
    } else {
        match replicas.iter().copied().find(|r| candidate(r)) {
            Some(r) => r,
            None => return on_liveness(replicas, state, &steady),
        }
    };
    Some(PartitionState {
        leader,
        leader_epoch: state.leader_epoch + 1,
        isr: vec![leader],
        partition_epoch: state.partition_epoch + 1,
    })
}

/// Hands leadership back to the preferred replica (the first in the
/// assignment) when it is alive and in sync but does not lead (Kafka's
/// preferred leader election). `None` when nothing should change.
pub fn preferred_leader(
    replicas: &[i32],
    state: &PartitionState,
    live: &HashSet<i32>,
) -> Option<PartitionState> {
    let preferred = *replicas.first()?;
    if state.leader == preferred || !live.contains(&preferred) || !state.isr.contains(&preferred) {
        return None;
    }
    Some(PartitionState {
        leader: preferred,
        leader_epoch: state.leader_epoch + 1,
        isr: state.isr.clone(),
        partition_epoch: state.partition_epoch + 1,
    })
}

/// Brokers whose share of partitions led by someone else, among those they
/// are preferred for, exceeds `max_ratio` (Kafka's
/// `leader.imbalance.per.broker.percentage` / 100). Input: (preferred
/// replica, current leader) per partition.
pub fn imbalanced_brokers(partitions: &[(i32, i32)], max_ratio: f64) -> HashSet<i32> {
    let mut per_broker: std::collections::HashMap<i32, (usize, usize)> = Default::default();
    for &(preferred, leader) in partitions {
        let e = per_broker.entry(preferred).or_default();
        e.0 += 1;
        if leader != preferred {
            e.1 += 1;
        }
    }
    per_broker
        .into_iter()
        .filter(|(_, (total, off))| *off as f64 / *total as f64 > max_ratio)
        .map(|(b, _)| b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
            partition_epoch: 7,
        }
    }

    fn live(b: &[i32]) -> HashSet<i32> {
        b.iter().copied().collect()
    }

    #[test]
    fn nothing_changes_when_all_are_alive() {
        assert_eq!(
            on_liveness(&[1, 2, 3], &st(1, 0, &[1, 2, 3]), &live(&[1, 2, 3])),
            None
        );
    }

    #[test]
    fn dead_leader_is_replaced_by_first_live_isr_replica_in_assignment_order() {
        let s = on_liveness(&[1, 2, 3], &st(1, 4, &[3, 1, 2]), &live(&[2, 3])).unwrap();
        assert_eq!(s.leader, 2);
        assert_eq!(s.leader_epoch, 5);
        assert_eq!(s.isr, vec![3, 2]);
        assert_eq!(s.partition_epoch, 8);
    }

    #[test]
    fn out_of_sync_replica_never_leads() {
        // 3 is alive but not in the ISR: no leader (unclean election off).
        let s = on_liveness(&[1, 2, 3], &st(1, 4, &[1, 2]), &live(&[3])).unwrap();
        assert_eq!(s.leader, -1);
        assert_eq!(s.isr, vec![1, 2]);
        // Still nothing to do while they stay down.
        assert_eq!(on_liveness(&[1, 2, 3], &s, &live(&[3])), None);
        // The last in-sync replica returns and leads.
        let back = on_liveness(&[1, 2, 3], &s, &live(&[2, 3])).unwrap();
        assert_eq!(back.leader, 2);
        assert_eq!(back.isr, vec![2]);
        assert!(back.leader_epoch > s.leader_epoch);
    }

    #[test]
    fn dead_follower_leaves_the_isr_without_a_new_epoch() {
        let s = on_liveness(&[1, 2, 3], &st(1, 4, &[1, 2, 3]), &live(&[1, 2])).unwrap();
        assert_eq!((s.leader, s.leader_epoch), (1, 4));
        assert_eq!(s.isr, vec![1, 2]);
    }

    #[test]
    fn preferred_replica_takes_leadership_back_only_when_live_and_in_sync() {
        let s = preferred_leader(&[1, 2, 3], &st(2, 5, &[2, 3, 1]), &live(&[1, 2, 3])).unwrap();
        assert_eq!((s.leader, s.leader_epoch, s.partition_epoch), (1, 6, 8));
        assert_eq!(s.isr, vec![2, 3, 1]);
        // Already leading, not in sync, or dead: nothing to do.
        assert_eq!(
            preferred_leader(&[1, 2, 3], &st(1, 5, &[1, 2]), &live(&[1, 2])),
            None
        );
        assert_eq!(
            preferred_leader(&[1, 2, 3], &st(2, 5, &[2, 3]), &live(&[1, 2, 3])),
            None
        );
        assert_eq!(
            preferred_leader(&[1, 2, 3], &st(2, 5, &[2, 1]), &live(&[2, 3])),
            None
        );
    }

    #[test]
    fn imbalance_is_judged_per_preferred_broker() {
        // Broker 1 is preferred for 4 partitions and leads 3 (25% off);
        // broker 2 leads all 10 of its own.
        let mut parts = vec![(1, 1), (1, 1), (1, 1), (1, 3)];
        parts.extend(std::iter::repeat_n((2, 2), 10));
        assert_eq!(imbalanced_brokers(&parts, 0.10), HashSet::from([1]));
        assert!(imbalanced_brokers(&parts, 0.25).is_empty());
    }

    #[test]
    fn a_restarted_replica_leaves_the_isr_and_leads_alone_only_when_it_must() {
        let none = HashSet::new();
        // A restarted follower leaves; the leader stays.
        let next = on_restart(
            &[1, 2, 3],
            &st(1, 4, &[1, 2, 3]),
            &live(&[1, 2, 3]),
            &live(&[2]),
        )
        .unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr),
            (1, 4, vec![1, 3])
        );
        // A restarted leader hands over to a steady in-sync replica.
        let next = on_restart(
            &[1, 2, 3],
            &st(1, 4, &[1, 2]),
            &live(&[1, 2, 3]),
            &live(&[1]),
        )
        .unwrap();
        assert_eq!((next.leader, next.leader_epoch, next.isr), (2, 5, vec![2]));
        // Every in-sync replica restarted: the previous leader leads, alone.
        let next = on_restart(
            &[1, 2, 3],
            &st(2, 4, &[1, 2]),
            &live(&[1, 2, 3]),
            &live(&[1, 2]),
        )
        .unwrap();
        assert_eq!((next.leader, next.leader_epoch, next.isr), (2, 5, vec![2]));
        // Nothing restarted: the same as on_liveness.
        assert_eq!(
            on_restart(&[1, 2, 3], &st(1, 4, &[1, 2, 3]), &live(&[1, 2, 3]), &none),
            None
        );
    }
}
