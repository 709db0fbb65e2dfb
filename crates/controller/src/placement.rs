//! Replica placement: which brokers hold each partition's replicas.
//!
//! Kafka's rack-unaware algorithm: partition leaders go round-robin over the
//! brokers from a random start, and followers follow the leader at a shift that
//! grows every time the partitions wrap around the brokers, so the followers of
//! one broker's leaders are spread over the others.

use crate::error::{ControllerError, Result};

/// Places `num_partitions` new partitions, numbered from `first_partition`, with
/// `replication_factor` replicas each, over `brokers` (sorted ids of live brokers).
/// `start` and `shift` are the random offsets Kafka uses; tests pass fixed ones.
pub fn assign_replicas(
    brokers: &[i32],
    first_partition: i32,
    num_partitions: i32,
    replication_factor: i32,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>> {
    let n = brokers.len();
    if replication_factor < 1 {
        return Err(ControllerError::ReplicationFactorTooSmall { replication_factor });
    }
    if replication_factor as usize > n {
        return Err(ControllerError::ReplicationFactorAboveLiveBrokers {
            replication_factor,
            live: n,
        });
    }
    let mut out = Vec::with_capacity(num_partitions.max(0) as usize);
    let mut shift = shift;
    for i in 0..num_partitions as usize {
        let p = first_partition as usize + i;
        if p > 0 && p.is_multiple_of(n) {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..(replication_factor as usize - 1) {
            // Kafka's replicaIndex: never lands on the leader itself.
            let s = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + s) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Rack-aware placement (Kafka's when `broker.rack` is set): brokers are
/// ordered alternating racks, leaders go round-robin over that order, and each
/// partition's followers are the next brokers on racks the partition does not
/// use yet, so replicas spread over as many racks as possible.
pub fn assign_replicas_rack_aware(
    brokers: &[(i32, String)],
    first_partition: i32,
    num_partitions: i32,
    replication_factor: i32,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>> {
    let ids: Vec<i32> = brokers.iter().map(|b| b.0).collect();
    // Validates the replication factor against the broker count.
    assign_replicas(&ids, first_partition, 0, replication_factor, 0, 0)?;
    let mut racks: Vec<&str> = brokers.iter().map(|b| b.1.as_str()).collect();
    racks.sort_unstable();
    racks.dedup();
    // Alternate racks: rack A's first broker, rack B's first, ..., A's second, ...
    let mut by_rack: Vec<Vec<(i32, &str)>> = racks
        .iter()
        .map(|r| {
            let mut v: Vec<(i32, &str)> = brokers
                .iter()
                .filter(|b| b.1 == *r)
                .map(|b| (b.0, b.1.as_str()))
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut ordered = Vec::with_capacity(brokers.len());
    let mut i = 0;
    while ordered.len() < brokers.len() {
        for rack in &mut by_rack {
            if i < rack.len() {
                ordered.push(rack[i]);
            }
        }
        i += 1;
    }
    let n = ordered.len();
    let mut out = Vec::with_capacity(num_partitions.max(0) as usize);
    for k in 0..num_partitions as usize {
        let p = first_partition as usize + k;
        let lead = (p + start) % n;
        let mut replicas = vec![ordered[lead].0];
        let mut used_racks = vec![ordered[lead].1];
        let offset = 1 + (shift + p / n) % n.max(1);
        // First pass: new racks only; second pass: any broker not yet used.
        for allow_same_rack in [false, true] {
            for j in 0..n {
                if replicas.len() == replication_factor as usize {
                    break;
                }
                let (id, rack) = ordered[(lead + offset + j) % n];
                if replicas.contains(&id) || (!allow_same_rack && used_racks.contains(&rack)) {
                    continue;
                }
                replicas.push(id);
                used_racks.push(rack);
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rf_above_live_brokers_is_refused() {
        let e = assign_replicas(&[1], 0, 3, 2, 0, 0).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidReplicationFactor);
        assert_eq!(e.to_string(), "replication factor 2 exceeds 1 live broker");
    }

    #[test]
    fn leaders_are_round_robin() {
        let a = assign_replicas(&[1, 2, 3], 0, 6, 3, 0, 0).unwrap();
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn rack_aware_spreads_replicas_over_racks() {
        let brokers: Vec<(i32, String)> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
                .iter()
                .map(|(id, r)| (*id, r.to_string()))
                .collect();
        let rack = |id: i32| brokers.iter().find(|b| b.0 == id).unwrap().1.clone();
        for start in 0..6 {
            for shift in 0..6 {
                let a = assign_replicas_rack_aware(&brokers, 0, 12, 3, start, shift).unwrap();
                for r in &a {
                    let mut racks: Vec<String> = r.iter().map(|b| rack(*b)).collect();
                    racks.sort();
                    racks.dedup();
                    assert_eq!(racks.len(), 3, "{r:?} uses one rack twice");
                }
                let mut leaders = [0; 6];
                for r in &a {
                    leaders[(r[0] - 1) as usize] += 1;
                }
                assert!(leaders.iter().all(|l| *l == 2), "{leaders:?}");
            }
        }
        // More replicas than racks: racks repeat only when they must.
        let a = assign_replicas_rack_aware(&brokers, 0, 6, 4, 0, 0).unwrap();
        assert!(a.iter().all(|r| r.len() == 4));
        let e = assign_replicas_rack_aware(&brokers, 0, 1, 7, 0, 0).unwrap_err();
        assert_eq!(e.code(), sluice_types::ErrorCode::InvalidReplicationFactor);
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_balanced(n in 1usize..8, parts in 1i32..40, rf_seed in 0i32..8, start in 0usize..8, shift in 0usize..8) {
            let brokers: Vec<i32> = (1..=n as i32).collect();
            let rf = 1 + rf_seed % n as i32;
            let a = assign_replicas(&brokers, 0, parts, rf, start, shift).unwrap();
            prop_assert_eq!(a.len(), parts as usize);
            let mut leaders = vec![0usize; n];
            for r in &a {
                prop_assert_eq!(r.len(), rf as usize);
                let mut s = r.clone();
                s.sort();
                s.dedup();
                prop_assert_eq!(s.len(), rf as usize, "duplicate replica in {:?}", r);
                leaders[(r[0] - 1) as usize] += 1;
            }
            let (lo, hi) = (leaders.iter().min().unwrap(), leaders.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "leaders unbalanced: {:?}", leaders);
        }
    }
}
