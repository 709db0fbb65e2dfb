//! Replica placement: which brokers hold each partition's replicas.
//!
//! Kafka's rack-unaware algorithm: partition leaders go round-robin over the
//! brokers from a random start, and followers follow the leader at a shift that
//! grows every time the partitions wrap around the brokers, so the followers of
//! one broker's leaders are spread over the others.

use sluice_types::{ApiError, ErrorCode};

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
) -> Result<Vec<Vec<i32>>, ApiError> {
    let n = brokers.len();
    if replication_factor < 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("replication factor must be at least 1, got {replication_factor}"),
        ));
    }
    if replication_factor as usize > n {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} exceeds {n} live broker{}",
                if n == 1 { "" } else { "s" }
            ),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rf_above_live_brokers_is_refused() {
        let e = assign_replicas(&[1], 0, 3, 2, 0, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidReplicationFactor);
        assert_eq!(e.message, "replication factor 2 exceeds 1 live broker");
    }

    #[test]
    fn leaders_are_round_robin() {
        let a = assign_replicas(&[1, 2, 3], 0, 6, 3, 0, 0).unwrap();
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
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
