//! Tests of the three assignors: Kafka's documented examples, the sticky
//! assignor's claim and move rules, and property tests that every assignment
//! is valid, independent of member order and (where promised) balanced.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use proptest::prelude::*;

fn ppt(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
    topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

fn member(id: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_owned(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

fn owning(mut m: MemberSubscription, generation: i32, owned: &[(&str, i32)]) -> MemberSubscription {
    m.generation_id = generation;
    m.owned_partitions = owned.iter().map(|&(t, p)| (t.to_owned(), p)).collect();
    m
}

/// One expected member: its id and `(topic, partitions)` pairs.
type Row<'a> = (&'a str, &'a [(&'a str, &'a [i32])]);

/// Builds an expected assignment from one row per member.
fn expect(rows: &[Row<'_>]) -> Assignment {
    rows.iter()
        .map(|(m, topics)| {
            let topics = topics
                .iter()
                .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                .collect();
            ((*m).to_owned(), topics)
        })
        .collect()
}

fn flat(a: &BTreeMap<String, Vec<i32>>) -> BTreeSet<(String, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
        .collect()
}

fn count(a: &Assignment, m: &str) -> usize {
    a[m].values().map(Vec::len).sum()
}

/// Previous assignment as each member's owned partitions, all at `generation`.
fn with_owned(
    members: &[MemberSubscription],
    prev: &Assignment,
    generation: i32,
) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| {
            let owned: Vec<(String, i32)> = prev
                .get(&m.member_id)
                .map(|a| flat(a).into_iter().collect())
                .unwrap_or_default();
            MemberSubscription {
                owned_partitions: owned,
                generation_id: generation,
                ..m.clone()
            }
        })
        .collect()
}

#[test]
fn by_name_knows_the_three_protocols() {
    assert_eq!(by_name("range").unwrap().name(), "range");
    assert_eq!(by_name("roundrobin").unwrap().name(), "roundrobin");
    assert_eq!(by_name("sticky").unwrap().name(), "sticky");
    assert!(by_name("cooperative-sticky").is_none());
    assert!(by_name("Range").is_none());
}

#[test]
fn range_ten_partitions_three_consumers() {
    let members = [
        member("c0", &["t"]),
        member("c1", &["t"]),
        member("c2", &["t"]),
    ];
    let got = RangeAssignor.assign(&ppt(&[("t", 10)]), &members);
    let want = expect(&[
        ("c0", &[("t", &[0, 1, 2, 3])]),
        ("c1", &[("t", &[4, 5, 6])]),
        ("c2", &[("t", &[7, 8, 9])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn roundrobin_ten_partitions_three_consumers() {
    // Input order must not matter: members are sorted by id.
    let members = [
        member("c2", &["t"]),
        member("c0", &["t"]),
        member("c1", &["t"]),
    ];
    let got = RoundRobinAssignor.assign(&ppt(&[("t", 10)]), &members);
    let want = expect(&[
        ("c0", &[("t", &[0, 3, 6, 9])]),
        ("c1", &[("t", &[1, 4, 7])]),
        ("c2", &[("t", &[2, 5, 8])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn uneven_counts() {
    let members = [
        member("a", &["t"]),
        member("b", &["t"]),
        member("c", &["t"]),
    ];
    let topics = ppt(&[("t", 7)]);
    let range = RangeAssignor.assign(&topics, &members);
    assert_eq!(
        range,
        expect(&[
            ("a", &[("t", &[0, 1, 2])]),
            ("b", &[("t", &[3, 4])]),
            ("c", &[("t", &[5, 6])])
        ])
    );
    let rr = RoundRobinAssignor.assign(&topics, &members);
    assert_eq!(
        rr,
        expect(&[
            ("a", &[("t", &[0, 3, 6])]),
            ("b", &[("t", &[1, 4])]),
            ("c", &[("t", &[2, 5])])
        ])
    );
    let sticky = StickyAssignor.assign(&topics, &members);
    let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&sticky, m)).collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 2, 3]);
}

#[test]
fn range_assigns_per_topic() {
    // Kafka's javadoc example: 2 topics x 3 partitions, 2 consumers.
    let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
    let got = RangeAssignor.assign(&ppt(&[("t0", 3), ("t1", 3)]), &members);
    let want = expect(&[
        ("c0", &[("t0", &[0, 1]), ("t1", &[0, 1])]),
        ("c1", &[("t0", &[2]), ("t1", &[2])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn roundrobin_interleaves_topics() {
    // Kafka's javadoc example: C0 [t0p0, t0p2, t1p1], C1 [t0p1, t1p0, t1p2].
    let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
    let got = RoundRobinAssignor.assign(&ppt(&[("t0", 3), ("t1", 3)]), &members);
    let want = expect(&[
        ("c0", &[("t0", &[0, 2]), ("t1", &[1])]),
        ("c1", &[("t0", &[1]), ("t1", &[0, 2])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn different_subscriptions() {
    // Kafka's roundrobin javadoc: t0, t1, t2 with 1, 2, 3 partitions;
    // C0 subscribes t0, C1 t0+t1, C2 t0+t1+t2.
    let members = [
        member("c0", &["t0"]),
        member("c1", &["t0", "t1"]),
        member("c2", &["t0", "t1", "t2"]),
    ];
    let topics = ppt(&[("t0", 1), ("t1", 2), ("t2", 3)]);
    let rr = RoundRobinAssignor.assign(&topics, &members);
    assert_eq!(
        rr,
        expect(&[
            ("c0", &[("t0", &[0])]),
            ("c1", &[("t1", &[0])]),
            ("c2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
        ])
    );
    let range = RangeAssignor.assign(&topics, &members);
    assert_eq!(
        range,
        expect(&[
            ("c0", &[("t0", &[0])]),
            ("c1", &[("t1", &[0])]),
            ("c2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
        ])
    );
    // Kafka's sticky javadoc: C0 [t0p0], C1 [t1p0, t1p1], C2 [t2p0..2].
    let sticky = StickyAssignor.assign(&topics, &members);
    let want_sticky = expect(&[
        ("c0", &[("t0", &[0])]),
        ("c1", &[("t1", &[0, 1])]),
        ("c2", &[("t2", &[0, 1, 2])]),
    ]);
    assert_eq!(sticky, want_sticky);

    // Then C0 leaves: sticky keeps everything and gives t0p0 to C1.
    let rest = with_owned(&members[1..], &sticky, 1);
    let got = StickyAssignor.assign(&topics, &rest);
    assert_eq!(
        got,
        expect(&[
            ("c1", &[("t0", &[0]), ("t1", &[0, 1])]),
            ("c2", &[("t2", &[0, 1, 2])]),
        ])
    );
}

#[test]
fn missing_and_unsubscribed_topics_are_skipped() {
    let members = [member("a", &["t", "gone"]), member("b", &["t"])];
    let topics = ppt(&[("t", 2), ("nobody", 4), ("empty", 0)]);
    for assignor in [by_name("range"), by_name("roundrobin"), by_name("sticky")] {
        let assignor = assignor.unwrap();
        let got = assignor.assign(&topics, &members);
        assert_eq!(
            got,
            expect(&[("a", &[("t", &[0])]), ("b", &[("t", &[1])])]),
            "{}",
            assignor.name()
        );
    }
    let lonely = [member("a", &["gone"]), member("b", &["empty"])];
    for assignor in [by_name("range"), by_name("roundrobin"), by_name("sticky")] {
        let got = assignor.unwrap().assign(&topics, &lonely);
        assert_eq!(got, expect(&[("a", &[]), ("b", &[])]));
    }
}

#[test]
fn more_members_than_partitions() {
    let members: Vec<_> = ["m0", "m1", "m2", "m3"]
        .iter()
        .map(|m| member(m, &["t"]))
        .collect();
    let topics = ppt(&[("t", 2)]);
    let want = expect(&[
        ("m0", &[("t", &[0])]),
        ("m1", &[("t", &[1])]),
        ("m2", &[]),
        ("m3", &[]),
    ]);
    assert_eq!(RangeAssignor.assign(&topics, &members), want);
    assert_eq!(RoundRobinAssignor.assign(&topics, &members), want);
    assert_eq!(StickyAssignor.assign(&topics, &members), want);

    // Sticky with owners: the two owners keep their partition.
    let members = vec![
        owning(member("m0", &["t"]), 3, &[]),
        owning(member("m1", &["t"]), 3, &[("t", 1)]),
        owning(member("m2", &["t"]), 3, &[("t", 0)]),
        owning(member("m3", &["t"]), -1, &[]),
    ];
    let want = expect(&[
        ("m0", &[]),
        ("m1", &[("t", &[1])]),
        ("m2", &[("t", &[0])]),
        ("m3", &[]),
    ]);
    assert_eq!(StickyAssignor.assign(&topics, &members), want);
}

#[test]
fn static_members_order_by_instance_id() {
    let mut a = member("a", &["t"]);
    a.group_instance_id = Some("z".into());
    let mut b = member("b", &["t"]);
    b.group_instance_id = Some("y".into());
    let c = member("c", &["t"]); // dynamic: after the static ones
    let members = [a, b, c];
    let topics = ppt(&[("t", 5)]);
    assert_eq!(
        RangeAssignor.assign(&topics, &members),
        expect(&[
            ("b", &[("t", &[0, 1])]),
            ("a", &[("t", &[2, 3])]),
            ("c", &[("t", &[4])])
        ])
    );
    assert_eq!(
        RoundRobinAssignor.assign(&topics, &members),
        expect(&[
            ("b", &[("t", &[0, 3])]),
            ("a", &[("t", &[1, 4])]),
            ("c", &[("t", &[2])])
        ])
    );
}

/// Kafka's sticky javadoc: three consumers on t0..t3 with 2 partitions each.
fn four_topics() -> BTreeMap<String, i32> {
    ppt(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)])
}

#[test]
fn sticky_initial_assignment_matches_kafka() {
    let all = ["t0", "t1", "t2", "t3"];
    let members = [member("c0", &all), member("c1", &all), member("c2", &all)];
    let got = StickyAssignor.assign(&four_topics(), &members);
    let want = expect(&[
        ("c0", &[("t0", &[0]), ("t1", &[1]), ("t3", &[0])]),
        ("c1", &[("t0", &[1]), ("t2", &[0]), ("t3", &[1])]),
        ("c2", &[("t1", &[0]), ("t2", &[1])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn sticky_member_leaves_only_its_partitions_move() {
    let all = ["t0", "t1", "t2", "t3"];
    let members = [member("c0", &all), member("c1", &all), member("c2", &all)];
    let before = StickyAssignor.assign(&four_topics(), &members);
    let rest = with_owned(&[members[0].clone(), members[2].clone()], &before, 1);
    let after = StickyAssignor.assign(&four_topics(), &rest);
    for m in ["c0", "c2"] {
        assert!(
            flat(&before[m]).is_subset(&flat(&after[m])),
            "{m} lost a partition"
        );
        assert_eq!(count(&after, m), 4);
    }
    // Constrained path: c1's t0p1, t2p0, t3p1 dealt round-robin to c0, c2, c2.
    // (Kafka's javadoc shows the older general-path result for this case.)
    let want = expect(&[
        ("c0", &[("t0", &[0, 1]), ("t1", &[1]), ("t3", &[0])]),
        ("c2", &[("t1", &[0]), ("t2", &[0, 1]), ("t3", &[1])]),
    ]);
    assert_eq!(after, want);
}

#[test]
fn sticky_member_joins_minimum_moves() {
    let topics = ppt(&[("t", 7)]);
    let members = [
        owning(
            member("a", &["t"]),
            1,
            &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
        ),
        owning(member("b", &["t"]), 1, &[("t", 4), ("t", 5), ("t", 6)]),
        owning(member("c", &["t"]), -1, &[]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    // 7 over 3 is 3/2/2: c needs two, and they can only come from the
    // surplus of a (4 -> 3) and b (3 -> 2).
    let want = expect(&[
        ("a", &[("t", &[0, 1, 2])]),
        ("b", &[("t", &[4, 5])]),
        ("c", &[("t", &[3, 6])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn sticky_member_joins_with_different_subscription() {
    // General path: a owns all of t0, b all of t1; c joins on t1 only.
    let topics = ppt(&[("t0", 4), ("t1", 4)]);
    let t0: Vec<_> = (0..4).map(|p| ("t0", p)).collect();
    let t1: Vec<_> = (0..4).map(|p| ("t1", p)).collect();
    let members = [
        owning(member("a", &["t0", "t1"]), 2, &t0),
        owning(member("b", &["t0", "t1"]), 2, &t1),
        owning(member("c", &["t1"]), -1, &[]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    let mut counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&got, m)).collect();
    counts.sort_unstable();
    assert_eq!(counts, [2, 3, 3]);
    assert!(got["c"].keys().all(|t| t == "t1"));
    // c needs two of b's, and a must hand one to b: three moves minimum.
    let kept = flat(&got["a"]).iter().filter(|tp| tp.0 == "t0").count()
        + flat(&got["b"]).iter().filter(|tp| tp.0 == "t1").count();
    assert_eq!(8 - kept, 3);
}

#[test]
fn sticky_conflicting_claims_go_to_the_highest_generation() {
    let topics = ppt(&[("t", 4)]);
    // a is current (gen 5); b still claims t-1 from generation 4.
    let members = [
        owning(member("a", &["t"]), 5, &[("t", 0), ("t", 1)]),
        owning(member("b", &["t"]), 4, &[("t", 1), ("t", 2)]),
    ];
    let want = expect(&[("a", &[("t", &[0, 1])]), ("b", &[("t", &[2, 3])])]);
    assert_eq!(StickyAssignor.assign(&topics, &members), want);

    // Same claims, generations swapped: now b keeps t-1.
    let members = [
        owning(member("a", &["t"]), 4, &[("t", 0), ("t", 1)]),
        owning(member("b", &["t"]), 5, &[("t", 1), ("t", 2)]),
    ];
    let want = expect(&[("a", &[("t", &[0, 3])]), ("b", &[("t", &[1, 2])])]);
    assert_eq!(StickyAssignor.assign(&topics, &members), want);

    // Same generation: the claim is invalid and neither keeps t-1, so it
    // is dealt like a free partition (a: [t-1], b: [t-0] would keep it).
    let members = [
        owning(member("a", &["t"]), 5, &[("t", 1)]),
        owning(member("b", &["t"]), 5, &[("t", 0), ("t", 1)]),
    ];
    let want = expect(&[("a", &[("t", &[1, 3])]), ("b", &[("t", &[0, 2])])]);
    assert_eq!(StickyAssignor.assign(&topics, &members), want);
}

#[test]
fn sticky_general_path_returns_partitions_to_an_older_generation_owner() {
    // a (generation 3) holds all of t0 plus t1; b's stale claim on t0-0
    // from generation 2 lost to a, but when a must shed partitions, t0-0
    // goes back to b rather than to the emptier newcomer c.
    let topics = ppt(&[("t0", 6), ("t1", 1), ("t2", 2)]);
    let t0: Vec<_> = (0..6).map(|p| ("t0", p)).collect();
    let members = [
        owning(member("a", &["t0", "t1"]), 3, &t0),
        owning(
            member("b", &["t0", "t2"]),
            2,
            &[("t0", 0), ("t2", 0), ("t2", 1)],
        ),
        owning(member("c", &["t0"]), -1, &[]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    let want = expect(&[
        ("a", &[("t0", &[4, 5]), ("t1", &[0])]),
        ("b", &[("t0", &[0]), ("t2", &[0, 1])]),
        ("c", &[("t0", &[1, 2, 3])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn sticky_general_path_moves_new_partitions_before_owned_ones() {
    // a ends up with s-0 (owned), u-0 and v-2 (new) and must shed one to
    // b. Moving the new u-0 keeps every owned partition where it was;
    // walking all partitions in order would have moved s-0 instead.
    let topics = ppt(&[("s", 2), ("u", 1), ("v", 3)]);
    let members = [
        owning(member("a", &["s", "u", "v"]), 1, &[("s", 0)]),
        owning(member("b", &["s", "u"]), 1, &[("s", 1)]),
        owning(member("c", &["v"]), 1, &[("v", 0), ("v", 1)]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    let want = expect(&[
        ("a", &[("s", &[0]), ("v", &[2])]),
        ("b", &[("s", &[1]), ("u", &[0])]),
        ("c", &[("v", &[0, 1])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn sticky_general_path_undoes_moves_rather_than_making_new_ones() {
    // c owns t0-1, t0-3, t1-0, t1-1; d joins on t0 and t1, a and b on t1.
    // Balancing first moves t0-1 from c to d, and later needs one t0
    // partition from d back to c: t0-1 goes home instead of c taking t0-0.
    let topics = ppt(&[("t0", 4), ("t1", 2)]);
    let owned = [("t0", 1), ("t0", 3), ("t1", 0), ("t1", 1)];
    let members = [
        owning(member("a", &["t1"]), 1, &[]),
        owning(member("b", &["t1"]), 1, &[]),
        owning(member("c", &["t0", "t1"]), 1, &owned),
        owning(member("d", &["t0", "t1"]), 1, &[]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    let want = expect(&[
        ("a", &[("t1", &[0])]),
        ("b", &[("t1", &[1])]),
        ("c", &[("t0", &[1, 3])]),
        ("d", &[("t0", &[0, 2])]),
    ]);
    assert_eq!(got, want);
}

#[test]
fn sticky_drops_partitions_of_gone_or_unsubscribed_topics() {
    let topics = ppt(&[("t", 4), ("other", 2)]);
    let members = [
        owning(member("a", &["t"]), 1, &[("gone", 0), ("t", 3), ("t", 9)]),
        owning(member("b", &["t", "other"]), 1, &[("t", 0), ("other", 1)]),
    ];
    // General path (subscriptions differ): b keeps t-0 and other-1, a keeps
    // t-3; out-of-range and deleted-topic claims are ignored.
    let got = StickyAssignor.assign(&topics, &members);
    assert!(flat(&got["a"]).contains(&("t".to_owned(), 3)));
    assert!(flat(&got["b"]).is_superset(&[("t".to_owned(), 0), ("other".to_owned(), 1)].into()));
    assert_eq!(count(&got, "a") + count(&got, "b"), 6);
    assert!(got["a"].keys().all(|t| t == "t"));

    // b drops "other": its claim on other-1 is revoked (nobody subscribes).
    let members = [
        owning(member("a", &["t"]), 1, &[("t", 3)]),
        owning(member("b", &["t"]), 1, &[("t", 0), ("other", 1)]),
    ];
    let got = StickyAssignor.assign(&topics, &members);
    assert_eq!(
        got,
        expect(&[("a", &[("t", &[1, 3])]), ("b", &[("t", &[0, 2])])])
    );
}

/// Random topics (plus one nobody subscribes to and one that is missing),
/// members with random subscriptions, ownership claims and generations.
fn scenario() -> impl Strategy<Value = (BTreeMap<String, i32>, Vec<MemberSubscription>)> {
    (
        prop::collection::vec(0i32..9, 1..5),
        1usize..7,
        any::<bool>(),
    )
        .prop_flat_map(|(counts, n_members, same_subscription)| {
            let n_topics = counts.len();
            // Index n_topics stands for a topic missing from the metadata.
            let one = (
                prop::collection::vec(any::<bool>(), n_topics + 1),
                prop::collection::vec((0..=n_topics, -1i32..10), 0..8),
                -1i32..4,
                prop::option::of(0u8..4),
            );
            (
                Just(counts),
                prop::collection::vec(one, n_members),
                Just(same_subscription),
            )
        })
        .prop_map(|(counts, raw, same_subscription)| {
            let name = |i: usize, n: usize| {
                if i == n {
                    "missing".to_owned()
                } else {
                    format!("t{i}")
                }
            };
            let n = counts.len();
            let mut topics: BTreeMap<String, i32> = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (name(i, n), c))
                .collect();
            topics.insert("unsubscribed".into(), 3);
            let first_subs = raw[0].0.clone();
            let members = raw
                .into_iter()
                .enumerate()
                .map(|(i, (subs, owned, generation, instance))| {
                    let subs = if same_subscription {
                        first_subs.clone()
                    } else {
                        subs
                    };
                    MemberSubscription {
                        member_id: format!("m{}", (i * 5) % 7),
                        group_instance_id: instance.map(|x| format!("i{x}")),
                        topics: (0..=n).filter(|&t| subs[t]).map(|t| name(t, n)).collect(),
                        owned_partitions: owned.into_iter().map(|(t, p)| (name(t, n), p)).collect(),
                        generation_id: generation,
                        rack_id: None,
                    }
                })
                .collect();
            (topics, members)
        })
}

/// Partition counts per member.
fn counts(a: &Assignment) -> Vec<usize> {
    a.values().map(|t| t.values().map(Vec::len).sum()).collect()
}

fn check_valid(
    name: &str,
    topics: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    got: &Assignment,
) -> Result<(), TestCaseError> {
    let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    let got_ids: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    prop_assert_eq!(ids, got_ids, "{}: members", name);
    let mut seen: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for m in members {
        for (t, ps) in &got[&m.member_id] {
            prop_assert!(
                m.topics.contains(t),
                "{}: {} got unsubscribed {}",
                name,
                m.member_id,
                t
            );
            prop_assert!(!ps.is_empty(), "{}: empty topic entry", name);
            for &p in ps {
                let n = topics.get(t).copied().unwrap_or(0);
                prop_assert!((0..n).contains(&p), "{}: {}-{} does not exist", name, t, p);
                *seen.entry((t.clone(), p)).or_default() += 1;
            }
        }
    }
    for (t, &n) in topics {
        let subscribed = members.iter().any(|m| m.topics.contains(t));
        for p in 0..n {
            let times = seen.get(&(t.clone(), p)).copied().unwrap_or(0);
            prop_assert_eq!(
                times,
                usize::from(subscribed),
                "{}: {}-{} assigned {} times",
                name,
                t,
                p,
                times
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn assignments_are_valid_and_balanced((topics, members) in scenario()) {
        let identical = members.windows(2).all(|w| {
            let a: BTreeSet<_> = w[0].topics.iter().collect();
            let b: BTreeSet<_> = w[1].topics.iter().collect();
            a == b
        });
        for name in ["range", "roundrobin", "sticky"] {
            let assignor = by_name(name).unwrap();
            let got = assignor.assign(&topics, &members);
            check_valid(name, &topics, &members, &got)?;

            let mut reversed = members.clone();
            reversed.reverse();
            prop_assert_eq!(&assignor.assign(&topics, &reversed), &got, "{}: depends on member order", name);

            if name == "range" {
                // Range balances each topic over its subscribers.
                for t in topics.keys() {
                    let per: Vec<usize> = members
                        .iter()
                        .filter(|m| m.topics.contains(t))
                        .map(|m| got[&m.member_id].get(t).map_or(0, Vec::len))
                        .collect();
                    if let (Some(max), Some(min)) = (per.iter().max(), per.iter().min()) {
                        prop_assert!(max - min <= 1, "range: {} split {:?}", t, per);
                    }
                }
            } else if identical {
                let c = counts(&got);
                let (max, min) = (c.iter().max().unwrap(), c.iter().min().unwrap());
                prop_assert!(max - min <= 1, "{}: counts {:?}", name, c);
            }
            if name == "sticky" {
                // Near balance: no partition could move to a subscriber
                // of its topic with two fewer partitions.
                for owner in &members {
                    let load = count(&got, &owner.member_id);
                    for t in got[&owner.member_id].keys() {
                        for other in members.iter().filter(|m| m.topics.contains(t)) {
                            prop_assert!(
                                load <= count(&got, &other.member_id) + 1,
                                "sticky: {} ({}) could give {} to {}", owner.member_id, load, t, other.member_id
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sticky_keeps_owned_partitions_up_to_quota(
        topic_sizes in prop::collection::vec(1i32..8, 1..4),
        n_members in 1usize..6,
        owners in prop::collection::vec(prop::option::of(0usize..6), 0..28),
    ) {
        let topics: BTreeMap<String, i32> =
            topic_sizes.iter().enumerate().map(|(i, &c)| (format!("t{i}"), c)).collect();
        let all: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
            .collect();
        let subs: Vec<&str> = topics.keys().map(String::as_str).collect();
        let mut members: Vec<MemberSubscription> =
            (0..n_members).map(|i| owning(member(&format!("m{i}"), &subs), 7, &[])).collect();
        // A conflict-free previous assignment (some partitions unowned).
        for (tp, owner) in all.iter().zip(&owners) {
            if let Some(o) = owner.filter(|&o| o < n_members) {
                members[o].owned_partitions.push(tp.clone());
            }
        }
        let got = StickyAssignor.assign(&topics, &members);
        check_valid("sticky", &topics, &members, &got)?;
        let min_quota = all.len() / n_members;
        let c = counts(&got);
        prop_assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "counts {:?}", c);
        for m in &members {
            let owned: BTreeSet<(String, i32)> = m.owned_partitions.iter().cloned().collect();
            let kept = flat(&got[&m.member_id]).intersection(&owned).count();
            prop_assert!(kept >= owned.len().min(min_quota), "{} kept {} of {:?}", m.member_id, kept, owned);
        }
    }
}
