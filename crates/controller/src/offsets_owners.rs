//! Which coordinator owns each `__consumer_offsets` partition (pure logic).
//!
//! Owners that stay alive keep their partitions; partitions of dead or missing
//! owners go to the least-loaded live coordinator; then partitions move one at
//! a time from the most to the least loaded until counts differ by at most one,
//! so a coordinator that (re)joins takes its share. Every move bumps the
//! partition's ownership epoch.

use std::collections::{BTreeMap, BTreeSet};

use sluice_types::meta::OffsetsOwner;

/// The ownership entries to write (only the changed ones).
pub fn assign_owners(
    num_partitions: i32,
    current: &BTreeMap<i32, OffsetsOwner>,
    live: &BTreeSet<i32>,
) -> BTreeMap<i32, OffsetsOwner> {
    if live.is_empty() || num_partitions < 1 {
        return BTreeMap::new();
    }
    let mut owned: BTreeMap<i32, BTreeSet<i32>> =
        live.iter().map(|c| (*c, BTreeSet::new())).collect();
    let mut orphans = Vec::new();
    for p in 0..num_partitions {
        match current.get(&p) {
            Some(o) if live.contains(&o.coordinator_id) => {
                owned.get_mut(&o.coordinator_id).expect("live").insert(p);
            }
            _ => orphans.push(p),
        }
    }
    let least = |owned: &BTreeMap<i32, BTreeSet<i32>>| {
        *owned
            .iter()
            .min_by_key(|(id, ps)| (ps.len(), **id))
            .expect("live is not empty")
            .0
    };
    let mut moved = BTreeSet::new();
    for p in orphans {
        let c = least(&owned);
        owned.get_mut(&c).expect("live").insert(p);
        moved.insert(p);
    }
    loop {
        let most = *owned
            .iter()
            .max_by_key(|(id, ps)| (ps.len(), std::cmp::Reverse(**id)))
            .expect("live is not empty")
            .0;
        let fewest = least(&owned);
        if owned[&most].len() <= owned[&fewest].len() + 1 {
            break;
        }
        let p = *owned[&most].iter().next_back().expect("not empty");
        owned.get_mut(&most).expect("live").remove(&p);
        owned.get_mut(&fewest).expect("live").insert(p);
        moved.insert(p);
    }
    let mut out = BTreeMap::new();
    for (c, ps) in owned {
        for p in ps.into_iter().filter(|p| moved.contains(p)) {
            let epoch = current.get(&p).map_or(1, |o| o.epoch + 1);
            out.insert(
                p,
                OffsetsOwner {
                    coordinator_id: c,
                    epoch,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(cur: &mut BTreeMap<i32, OffsetsOwner>, changes: BTreeMap<i32, OffsetsOwner>) {
        cur.extend(changes);
    }

    fn counts(cur: &BTreeMap<i32, OffsetsOwner>) -> BTreeMap<i32, usize> {
        let mut m = BTreeMap::new();
        for o in cur.values() {
            *m.entry(o.coordinator_id).or_default() += 1;
        }
        m
    }

    #[test]
    fn spreads_evenly_then_moves_only_what_it_must() {
        let mut cur = BTreeMap::new();
        let changes = assign_owners(50, &cur, &BTreeSet::from([1]));
        apply(&mut cur, changes);
        assert_eq!(counts(&cur), BTreeMap::from([(1, 50)]));
        assert!(cur.values().all(|o| o.epoch == 1));
        // A second coordinator joins: it takes half, nothing else moves.
        let changes = assign_owners(50, &cur, &BTreeSet::from([1, 2]));
        assert_eq!(changes.len(), 25);
        assert!(
            changes
                .values()
                .all(|o| o.coordinator_id == 2 && o.epoch == 2)
        );
        apply(&mut cur, changes);
        // Stable: nothing to do.
        assert!(assign_owners(50, &cur, &BTreeSet::from([1, 2])).is_empty());
        // Coordinator 1 dies: only its partitions move, with new epochs.
        let before = cur.clone();
        let changes = assign_owners(50, &cur, &BTreeSet::from([2]));
        assert_eq!(changes.len(), 25);
        for (p, o) in &changes {
            assert_eq!(before[p].coordinator_id, 1);
            assert_eq!(o.epoch, before[p].epoch + 1);
        }
        apply(&mut cur, changes);
        assert_eq!(counts(&cur), BTreeMap::from([(2, 50)]));
    }

    #[test]
    fn nobody_alive_changes_nothing() {
        let cur = BTreeMap::from([(
            0,
            OffsetsOwner {
                coordinator_id: 1,
                epoch: 3,
            },
        )]);
        assert!(assign_owners(1, &cur, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn uneven_counts_differ_by_at_most_one() {
        let mut cur = BTreeMap::new();
        let changes = assign_owners(10, &cur, &BTreeSet::from([1, 2, 3]));
        apply(&mut cur, changes);
        let c = counts(&cur);
        assert_eq!(c.values().sum::<usize>(), 10);
        assert!(
            c.values().max().unwrap() - c.values().min().unwrap() <= 1,
            "{c:?}"
        );
    }
}
