//! The `uniform` assignor: every partition of the subscribed topics goes to
//! one of its subscribers, spreading them as evenly as the subscriptions
//! allow. Sticky: members keep the partitions they had; free partitions go to
//! the least loaded subscriber; then a partition moves only from a member
//! holding at least two more than another subscriber of its topic. With equal
//! subscriptions that means counts differ by at most one and a member loses
//! partitions only when it holds more than its share.

use std::collections::{BTreeMap, BTreeSet};

use super::AssignInput;

type Partition = (String, i32);

/// The owner of each partition.
pub(super) fn assign(input: &AssignInput<'_>) -> BTreeMap<Partition, String> {
    let mut owner: BTreeMap<Partition, &str> = BTreeMap::new();
    let mut held: BTreeMap<&str, BTreeSet<Partition>> = input
        .members
        .keys()
        .map(|m| (m.as_str(), BTreeSet::new()))
        .collect();
    // Stickiness: what members had and may still have stays theirs.
    for m in input.members.keys() {
        for (t, p) in input.still_valid(m) {
            let tp = (t.to_string(), p);
            if !owner.contains_key(&tp) {
                owner.insert(tp.clone(), m);
                held.get_mut(m.as_str()).expect("member").insert(tp);
            }
        }
    }
    let subscribers: BTreeMap<&str, Vec<&str>> = input
        .topics
        .keys()
        .map(|t| (t.as_str(), input.subscribers(t)))
        .collect();
    // Free partitions to the least loaded subscriber (ties: lowest id).
    for (t, n) in input.topics {
        let subs = &subscribers[t.as_str()];
        for p in 0..*n {
            let tp = (t.clone(), p);
            if owner.contains_key(&tp) {
                continue;
            }
            if let Some(m) = least_loaded(subs, &held, None) {
                owner.insert(tp.clone(), m);
                held.get_mut(m).expect("member").insert(tp);
            }
        }
    }
    // Balance: move one partition at a time from a heavy member to a
    // subscriber with two fewer; each move lowers the sum of squared counts,
    // so this ends.
    while let Some((from, tp, to)) = next_move(&subscribers, &held) {
        held.get_mut(from).expect("member").remove(&tp);
        held.get_mut(to).expect("member").insert(tp.clone());
        owner.insert(tp, to);
    }
    owner
        .into_iter()
        .map(|(tp, m)| (tp, m.to_string()))
        .collect()
}

/// The subscriber in `subs` (other than `except`) holding the fewest.
fn least_loaded<'a>(
    subs: &[&'a str],
    held: &BTreeMap<&str, BTreeSet<Partition>>,
    except: Option<&str>,
) -> Option<&'a str> {
    subs.iter()
        .copied()
        .filter(|m| Some(*m) != except)
        .min_by_key(|m| (held[m].len(), *m))
}

/// A partition to move for balance: from the most loaded member that has one
/// movable, its highest partition whose topic has a subscriber with at least
/// two fewer.
fn next_move<'a>(
    subscribers: &BTreeMap<&str, Vec<&'a str>>,
    held: &BTreeMap<&'a str, BTreeSet<Partition>>,
) -> Option<(&'a str, Partition, &'a str)> {
    let mut order: Vec<(&'a str, usize)> = held.iter().map(|(m, h)| (*m, h.len())).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (m, count) in order {
        for tp in held[m].iter().rev() {
            let to = least_loaded(&subscribers[tp.0.as_str()], held, Some(m));
            if let Some(to) = to
                && held[to].len() + 1 < count
            {
                return Some((m, tp.clone(), to));
            }
        }
    }
    None
}
