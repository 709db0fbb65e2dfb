//! The `range` assignor: per topic, the subscribers (by member id) take
//! contiguous ranges of partitions, the first ones one extra when the count
//! does not divide, so members subscribed to topics of equal partition counts
//! get the same partition numbers of each (co-partitioning). Sticky: a member
//! keeps the partitions it had up to its share, members that had more than
//! the even share get the extra slots first, and only the rest is dealt out.

use std::collections::{BTreeMap, BTreeSet};

use super::AssignInput;

/// The owner of each partition.
pub(super) fn assign(input: &AssignInput<'_>) -> BTreeMap<(String, i32), String> {
    let mut out = BTreeMap::new();
    for (topic, &n) in input.topics {
        let subs = input.subscribers(topic);
        if subs.is_empty() || n <= 0 {
            continue;
        }
        let k = subs.len();
        let share = n as usize / k;
        let mut extra = n as usize % k;
        let retained: Vec<Vec<i32>> = subs
            .iter()
            .map(|m| {
                input
                    .still_valid(m)
                    .filter(|(t, _)| *t == topic)
                    .map(|(_, p)| p)
                    .collect()
            })
            .collect();
        let mut quota = vec![share; k];
        for (q, r) in quota.iter_mut().zip(&retained) {
            if extra > 0 && r.len() > share {
                *q += 1;
                extra -= 1;
            }
        }
        for q in quota.iter_mut() {
            if extra > 0 && *q == share {
                *q += 1;
                extra -= 1;
            }
        }
        let mut taken = BTreeSet::new();
        let mut held: Vec<Vec<i32>> = vec![Vec::new(); k];
        for i in 0..k {
            for &p in retained[i].iter().take(quota[i]) {
                if taken.insert(p) {
                    held[i].push(p);
                }
            }
        }
        let mut free = (0..n).filter(|p| !taken.contains(p));
        for i in 0..k {
            while held[i].len() < quota[i] {
                match free.next() {
                    Some(p) => held[i].push(p),
                    None => break,
                }
            }
        }
        for (m, ps) in subs.iter().zip(held) {
            for p in ps {
                out.insert((topic.clone(), p), m.to_string());
            }
        }
    }
    out
}
