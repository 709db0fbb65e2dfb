use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{AssignInput, Assignment, Assignor};

type Members = BTreeMap<String, BTreeSet<String>>;
type Targets = BTreeMap<String, Assignment>;

fn members(spec: &[(&str, &[&str])]) -> Members {
    spec.iter()
        .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
        .collect()
}

fn topics(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
    spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn run(a: Assignor, m: &Members, t: &BTreeMap<String, i32>, prev: &Targets) -> Targets {
    a.assign(&AssignInput {
        members: m,
        topics: t,
        previous: prev,
    })
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn flat(a: &Assignment) -> BTreeSet<(String, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .collect()
}

/// Every partition with a subscriber is assigned once, to a subscriber.
fn check_complete(m: &Members, t: &BTreeMap<String, i32>, out: &Targets) {
    let mut seen = BTreeSet::new();
    for (member, a) in out {
        for (topic, p) in flat(a) {
            assert!(
                m[member].contains(&topic),
                "{member} got unsubscribed {topic}"
            );
            assert!(p >= 0 && p < t[&topic], "{topic}-{p} does not exist");
            assert!(
                seen.insert((topic.clone(), p)),
                "{topic}-{p} assigned twice"
            );
        }
    }
    for (topic, n) in t {
        if m.values().any(|s| s.contains(topic)) {
            for p in 0..*n {
                assert!(seen.contains(&(topic.clone(), p)), "{topic}-{p} unassigned");
            }
        }
    }
}

/// Uniform balance: no partition could go to a subscriber with two fewer.
fn check_uniform_balance(m: &Members, out: &Targets) {
    for (member, a) in out {
        for topic in a.keys() {
            for (other, subs) in m {
                if other != member && subs.contains(topic) {
                    assert!(
                        count(&out[other]) + 1 >= count(a),
                        "{member} holds {} while {other} (subscribed to {topic}) holds {}",
                        count(a),
                        count(&out[other])
                    );
                }
            }
        }
    }
}

/// Range balance: per topic, subscribers' counts differ by at most one.
fn check_range_balance(m: &Members, t: &BTreeMap<String, i32>, out: &Targets) {
    for topic in t.keys() {
        let counts: Vec<usize> = m
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(id, _)| out[id].get(topic).map_or(0, BTreeSet::len))
            .collect();
        if let (Some(lo), Some(hi)) = (counts.iter().min(), counts.iter().max()) {
            assert!(hi - lo <= 1, "{topic}: counts {counts:?}");
        }
    }
}

#[test]
fn uniform_spreads_evenly_and_a_fourth_member_takes_only_what_moves() {
    let t = topics(&[("orders", 12)]);
    let three = members(&[("a", &["orders"]), ("b", &["orders"]), ("c", &["orders"])]);
    let first = run(Assignor::Uniform, &three, &t, &BTreeMap::new());
    check_complete(&three, &t, &first);
    assert!(first.values().all(|a| count(a) == 4));
    let mut four = three.clone();
    four.insert("d".into(), ["orders".to_string()].into());
    let second = run(Assignor::Uniform, &four, &t, &first);
    check_complete(&four, &t, &second);
    assert!(second.values().all(|a| count(a) == 3));
    for m in ["a", "b", "c"] {
        // Each old member gives up exactly one partition and gains none.
        assert!(flat(&second[m]).is_subset(&flat(&first[m])), "{m} gained");
    }
}

#[test]
fn uniform_heterogeneous_subscriptions_respect_what_each_member_reads() {
    let t = topics(&[("x", 6), ("y", 2)]);
    let m = members(&[("a", &["x"]), ("b", &["x", "y"]), ("c", &["y"])]);
    let out = run(Assignor::Uniform, &m, &t, &BTreeMap::new());
    check_complete(&m, &t, &out);
    check_uniform_balance(&m, &out);
    assert_eq!(count(&out["a"]) + count(&out["b"]) + count(&out["c"]), 8);
}

#[test]
fn range_gives_contiguous_ranges_and_co_partitions() {
    let t = topics(&[("x", 7), ("y", 7)]);
    let m = members(&[("a", &["x", "y"]), ("b", &["x", "y"]), ("c", &["x", "y"])]);
    let out = run(Assignor::Range, &m, &t, &BTreeMap::new());
    check_complete(&m, &t, &out);
    assert_eq!(out["a"]["x"], [0, 1, 2].into());
    assert_eq!(out["b"]["x"], [3, 4].into());
    assert_eq!(out["c"]["x"], [5, 6].into());
    for id in ["a", "b", "c"] {
        assert_eq!(out[id]["x"], out[id]["y"], "{id} not co-partitioned");
    }
}

#[test]
fn members_without_a_subscribed_topic_get_an_empty_assignment() {
    let t = topics(&[("x", 2)]);
    let m = members(&[("a", &["x"]), ("b", &["missing"])]);
    for a in Assignor::ALL {
        let out = run(a, &m, &t, &BTreeMap::new());
        assert_eq!(count(&out["a"]), 2);
        assert!(out["b"].is_empty());
    }
}

#[test]
fn assignors_are_named_as_in_kafka() {
    assert_eq!(Assignor::parse("uniform"), Some(Assignor::Uniform));
    assert_eq!(Assignor::parse("range"), Some(Assignor::Range));
    assert_eq!(Assignor::parse("sticky"), None);
}

/// Random groups: up to 8 members, up to 4 topics of up to 20 partitions,
/// each member subscribed to a non-empty subset, and a previous target from
/// another random membership.
fn group() -> impl Strategy<Value = (Members, BTreeMap<String, i32>, Members)> {
    let topics = proptest::collection::vec(1i32..20, 1..5);
    topics.prop_flat_map(|counts| {
        let n = counts.len();
        let subs = proptest::collection::vec(1u32..(1 << n), 1..9);
        let before = proptest::collection::vec(1u32..(1 << n), 1..9);
        (Just(counts), subs, before).prop_map(|(counts, subs, before)| {
            let names: Vec<String> = (0..counts.len()).map(|i| format!("t{i}")).collect();
            let mk = |masks: &[u32], offset: usize| -> Members {
                masks
                    .iter()
                    .enumerate()
                    .map(|(i, mask)| {
                        let s = names
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| mask & (1 << j) != 0)
                            .map(|(_, t)| t.clone())
                            .collect();
                        (format!("m{}", i + offset), s)
                    })
                    .collect()
            };
            let t = names.iter().cloned().zip(counts).collect();
            // Overlapping ids: some members stay, some leave, some join.
            (mk(&subs, 0), t, mk(&before, 2))
        })
    })
}

proptest! {
    #[test]
    fn uniform_is_complete_balanced_and_stable((m, t, before) in group()) {
        let prev = run(Assignor::Uniform, &before, &t, &BTreeMap::new());
        let out = run(Assignor::Uniform, &m, &t, &prev);
        check_complete(&m, &t, &out);
        check_uniform_balance(&m, &out);
        // Run again from its own result: nothing moves.
        prop_assert_eq!(&run(Assignor::Uniform, &m, &t, &out), &out);
    }

    #[test]
    fn range_is_complete_balanced_and_stable((m, t, before) in group()) {
        let prev = run(Assignor::Range, &before, &t, &BTreeMap::new());
        let out = run(Assignor::Range, &m, &t, &prev);
        check_complete(&m, &t, &out);
        check_range_balance(&m, &t, &out);
        prop_assert_eq!(&run(Assignor::Range, &m, &t, &out), &out);
    }

    /// With equal subscriptions a member loses partitions only when it held
    /// more than it ends with: every move is one balance requires.
    #[test]
    fn uniform_moves_only_what_balance_requires(
        before in 1usize..8, after in 1usize..8, n in 1i32..40,
    ) {
        let t = topics(&[("x", n)]);
        let mk = |k: usize, from: usize| -> Members {
            (from..from + k).map(|i| (format!("m{i:02}"), ["x".to_string()].into())).collect()
        };
        let old = mk(before, 0);
        let new = mk(after, before / 2);
        let prev = run(Assignor::Uniform, &old, &t, &BTreeMap::new());
        let out = run(Assignor::Uniform, &new, &t, &prev);
        for (id, a) in &out {
            let had = prev.get(id).map(flat).unwrap_or_default();
            let kept = had.intersection(&flat(a)).count();
            prop_assert_eq!(kept, had.len().min(count(a)), "{} lost more than needed", id);
        }
    }
}
