//! The group state machine driven by hand, with explicit instants.

use sluice_types::ErrorCode;

use super::*;

fn settings() -> GroupSettings {
    GroupSettings {
        initial_rebalance_delay: Duration::ZERO,
        ..Default::default()
    }
}

fn req(id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(p.to_string())))
            .collect(),
    }
}

/// Joins with an empty id, then with the id the group handed out.
fn first_join(g: &mut Group, now: Instant) -> (String, JoinReply) {
    let id = new_id(g, &["range"], now);
    let (rx, eff) = g.join(req(&id, &["range"]), now);
    assert!(eff.persist.is_none());
    (id, rx)
}

fn new_id(g: &mut Group, protocols: &[&str], now: Instant) -> String {
    let (mut rx, _) = g.join(req("", protocols), now);
    match rx.try_recv().unwrap().unwrap() {
        JoinOutcome::MemberIdRequired(id) => id,
        other => panic!("{other:?}"),
    }
}

/// The completed join's result.
fn joined(rx: &mut JoinReply) -> JoinResult {
    match rx.try_recv().unwrap().unwrap() {
        JoinOutcome::Joined(r) => r,
        other => panic!("{other:?}"),
    }
}

fn static_req(id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..req(id, &["range"])
    }
}

/// Two static members, "ia" (the leader) and "ib", settled in generation 1
/// with assignments "A" and "B".
fn static_pair(now: Instant) -> (Group, String, String) {
    let mut g = Group::new("g".into(), settings());
    // No MEMBER_ID_REQUIRED round for a static member.
    let (mut ra, _) = g.join(static_req("", "ia"), now);
    let a = joined(&mut ra).member_id;
    let (sa, _) = g.sync(&a, 1, vec![], now);
    drop(sa);
    let (mut rb, _) = g.join(static_req("", "ib"), now);
    let b_pending = rb.try_recv();
    assert!(b_pending.is_err(), "waits for the leader to rejoin");
    let (mut ra, _) = g.join(static_req(&a, "ia"), now);
    let ja = joined(&mut ra);
    let b = joined(&mut rb).member_id;
    assert_eq!((ja.generation, ja.leader.as_str()), (2, a.as_str()));
    let _ = g.sync(&b, 2, vec![], now);
    let (_, eff) = g.sync(
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
        now,
    );
    assert!(eff.persist.is_some());
    g.assignment_persisted(2, Ok(()), now);
    assert_eq!(g.state, GroupState::Stable);
    (g, a, b)
}

#[test]
fn a_restarted_static_follower_gets_its_assignment_without_a_rebalance() {
    let now = Instant::now();
    let (mut g, a, old_b) = static_pair(now);
    let (mut rb, eff) = g.join(static_req("", "ib"), now);
    let jb = joined(&mut rb);
    assert_ne!(jb.member_id, old_b);
    assert_eq!(jb.generation, 2, "same generation: no rebalance");
    assert_eq!(g.state, GroupState::Stable);
    let rec = eff.persist.expect("the new member id is persisted");
    assert!(rec.members.iter().any(|m| m.member_id == jb.member_id));
    let (mut sb, _) = g.sync(&jb.member_id, 2, vec![], now);
    assert_eq!(sb.try_recv().unwrap().unwrap(), Bytes::from_static(b"B"));
    // The old incarnation is fenced, the leader is untouched.
    assert_eq!(
        g.check_instance(&old_b, Some("ib")).unwrap_err().code(),
        ErrorCode::FencedInstanceId
    );
    g.check_instance(&jb.member_id, Some("ib")).unwrap();
    g.heartbeat(&a, 2, now).unwrap();
    // A join naming the old id with the instance id is fenced too.
    let (mut r, _) = g.join(static_req(&old_b, "ib"), now);
    assert_eq!(
        r.try_recv().unwrap().unwrap_err().code(),
        ErrorCode::FencedInstanceId
    );
}

#[test]
fn restarted_static_leader_or_changed_follower_needs_no_rebalance() {
    let now = Instant::now();
    let (mut g, old_a, b) = static_pair(now);
    let (mut ra, _) = g.join(static_req("", "ia"), now);
    let ja = joined(&mut ra);
    assert_ne!(ja.member_id, old_a);
    assert_eq!(
        (ja.generation, ja.leader.as_str()),
        (2, ja.member_id.as_str())
    );
    assert_eq!(ja.members.len(), 2, "the leader gets the members back");
    assert_eq!(g.state, GroupState::Stable);
    // In Stable the leader's SyncGroup returns the stored assignment.
    let (mut sa, eff) = g.sync(
        &ja.member_id,
        2,
        vec![(ja.member_id.clone(), Bytes::from_static(b"ignored"))],
        now,
    );
    assert!(eff.persist.is_none());
    assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"A"));
    g.heartbeat(&b, 2, now).unwrap();

    // A follower with another subscription but the same assignor comes
    // back at once; its new subscription is stored for the leader.
    let (mut g, _a, _b) = static_pair(now);
    let mut changed = static_req("", "ib");
    changed.protocols = vec![("range".into(), Bytes::from_static(b"other topics"))];
    let (mut rb, eff) = g.join(changed, now);
    let jb = joined(&mut rb);
    assert_eq!(g.state, GroupState::Stable);
    let rec = eff.persist.unwrap();
    let m = rec.members.iter().find(|m| m.member_id == jb.member_id);
    assert_eq!(m.unwrap().metadata, b"other topics");
}

#[test]
fn a_static_member_replaced_while_the_leader_assigns_rebalances() {
    let now = Instant::now();
    let (mut g, a, b) = static_pair(now);
    // A third static member: generation 3 is being assigned.
    let (mut rc, _) = g.join(static_req("", "ic"), now);
    let (mut ra, _) = g.join(static_req(&a, "ia"), now);
    let (mut rb, _) = g.join(static_req(&b, "ib"), now);
    for r in [&mut ra, &mut rb, &mut rc] {
        assert_eq!(joined(r).generation, 3);
    }
    assert_eq!(g.state, GroupState::CompletingRebalance);
    // "ib" restarts before the leader's SyncGroup: the plan the leader
    // is making names the old id, so the group starts over.
    let (mut rb2, _) = g.join(static_req("", "ib"), now);
    assert!(rb2.try_recv().is_err());
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn an_absent_static_member_keeps_its_place_through_a_rebalance() {
    let now = Instant::now();
    let (mut g, a, b) = static_pair(now);
    // Static members usually run with a session timeout longer than
    // the rebalance timeout, so a restart fits in it.
    let m = g.members.get_mut(&b).unwrap();
    m.session_timeout = Duration::from_secs(60);
    m.heartbeat_deadline = now + m.session_timeout;
    // "ic" arrives; "ib" is restarting and does not rejoin in time.
    let (mut rc, _) = g.join(static_req("", "ic"), now);
    let (mut ra, _) = g.join(static_req(&a, "ia"), now);
    assert!(
        ra.try_recv().is_err(),
        "waits for ib up to the rebalance timeout"
    );
    let later = now + Duration::from_secs(31);
    let _ = g.tick(later);
    let ja = joined(&mut ra);
    let jc = joined(&mut rc);
    assert_eq!((ja.generation, ja.leader.as_str()), (3, a.as_str()));
    assert_eq!(jc.generation, 3);
    assert_eq!(ja.members.len(), 3, "ib is still a member and gets a share");
    assert!(g.members.contains_key(&b));
    // Its session still runs out as usual.
    let _ = g.tick(now + Duration::from_secs(61));
    assert!(!g.members.contains_key(&b));
}

#[test]
fn a_static_member_is_removed_by_its_instance_id() {
    let now = Instant::now();
    let (mut g, _a, b) = static_pair(now);
    assert_eq!(
        g.leave("someone-else", Some("ib"), now).unwrap_err().code(),
        ErrorCode::FencedInstanceId
    );
    assert_eq!(
        g.leave("", Some("nobody"), now).unwrap_err().code(),
        ErrorCode::UnknownMemberId
    );
    let _ = g.leave("", Some("ib"), now).unwrap();
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn two_members_rebalance_and_the_first_leads() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), settings());
    let (a, mut ra) = first_join(&mut g, now);
    // Alone: the join completes at once (no initial delay here).
    let ja = joined(&mut ra);
    assert_eq!((ja.generation, ja.leader.as_str()), (1, a.as_str()));
    assert_eq!(ja.members.len(), 1);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let (mut sa, eff) = g.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"all"))], now);
    assert!(eff.persist.is_some());
    g.assignment_persisted(1, Ok(()), now);
    assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"all"));
    assert_eq!(g.state, GroupState::Stable);

    // B joins: A learns from its heartbeat, rejoins, both get generation 2.
    let (b, mut rb) = first_join(&mut g, now);
    assert!(rb.try_recv().is_err(), "waits for A");
    assert_eq!(
        g.heartbeat(&a, 1, now).unwrap_err().code(),
        ErrorCode::RebalanceInProgress
    );
    let (mut ra, _) = g.join(req(&a, &["range"]), now);
    let ja = joined(&mut ra);
    let jb = joined(&mut rb);
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "only the leader gets the members");
    // B syncs first and waits for the leader's assignment.
    let (mut sb, eff) = g.sync(&b, 2, vec![], now);
    assert!(eff.persist.is_none());
    assert!(sb.try_recv().is_err());
    let (mut sa, eff) = g.sync(
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
        now,
    );
    assert_eq!(eff.persist.unwrap().members.len(), 2);
    g.assignment_persisted(2, Ok(()), now);
    assert_eq!(sa.try_recv().unwrap().unwrap(), Bytes::from_static(b"A"));
    assert_eq!(sb.try_recv().unwrap().unwrap(), Bytes::from_static(b"B"));
    g.heartbeat(&b, 2, now).unwrap();
    assert_eq!(
        g.heartbeat(&b, 1, now).unwrap_err().code(),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        g.heartbeat("nobody", 2, now).unwrap_err().code(),
        ErrorCode::UnknownMemberId
    );
}

fn stable_pair(now: Instant) -> (Group, String, String) {
    let mut g = Group::new("g".into(), settings());
    let (a, _) = first_join(&mut g, now);
    let (_s, _e) = g.sync(&a, 1, vec![], now);
    g.assignment_persisted(1, Ok(()), now);
    let (b, mut rb) = first_join(&mut g, now);
    let (_ra, _) = g.join(req(&a, &["range"]), now);
    joined(&mut rb);
    let (_sa, _) = g.sync(&a, 2, vec![], now);
    g.assignment_persisted(2, Ok(()), now);
    assert_eq!(g.state, GroupState::Stable);
    (g, a, b)
}

#[test]
fn missed_session_timeout_removes_the_member_and_rebalances() {
    let now = Instant::now();
    let (mut g, a, b) = stable_pair(now);
    let later = now + Duration::from_secs(8);
    g.heartbeat(&a, 2, later).unwrap();
    // B stops heartbeating; at 10 s its session expires.
    let _ = g.tick(now + Duration::from_secs(11));
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (mut ra, _) = g.join(req(&a, &["range"]), now + Duration::from_secs(11));
    let ja = joined(&mut ra);
    assert_eq!(ja.generation, 3);
    assert_eq!(ja.members.len(), 1);
}

#[test]
fn leave_rebalances_at_once_and_last_leave_empties_the_group() {
    let now = Instant::now();
    let (mut g, a, b) = stable_pair(now);
    let _ = g.leave(&b, None, now).unwrap();
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (mut ra, _) = g.join(req(&a, &["range"]), now);
    assert_eq!(joined(&mut ra).generation, 3);
    let eff = g.leave(&a, None, now).unwrap();
    // Nobody left to rejoin: the join phase completes empty at once.
    assert_eq!(eff.persist.unwrap().members.len(), 0);
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(
        g.leave(&a, None, now).unwrap_err().code(),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn parked_calls_of_a_member_that_goes_are_answered_naming_it() {
    let now = Instant::now();
    // A leaves while its JoinGroup waits for B.
    let (mut g, a, _b) = stable_pair(now);
    let (mut ra, _) = g.join(req(&a, &["range"]), now);
    assert!(ra.try_recv().is_err(), "waits for B");
    let _ = g.leave(&a, None, now).unwrap();
    let e = ra.try_recv().unwrap().unwrap_err();
    assert_eq!(
        (e.code(), e.to_string()),
        (
            ErrorCode::UnknownMemberId,
            format!("member {a} left group g")
        )
    );

    // A's session expires while its SyncGroup waits for the group record.
    let mut g = Group::new("g".into(), settings());
    let (a, mut ra) = first_join(&mut g, now);
    joined(&mut ra);
    let (mut sa, eff) = g.sync(&a, 1, vec![], now);
    assert!(eff.persist.is_some());
    let _ = g.tick(now + Duration::from_secs(11));
    let e = sa.try_recv().unwrap().unwrap_err();
    assert_eq!(
        (e.code(), e.to_string()),
        (
            ErrorCode::UnknownMemberId,
            format!("member {a} of group g: session timed out")
        )
    );
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let now = Instant::now();
    let (mut g, a, b) = stable_pair(now);
    let (mut ra, _) = g.join(req(&a, &["range", "roundrobin"]), now);
    assert!(ra.try_recv().is_err(), "waits for B to rejoin");
    g.heartbeat(&b, 2, now).unwrap_err();
    let _ = g.tick(now + Duration::from_secs(31));
    let ja = joined(&mut ra);
    assert_eq!(ja.members.len(), 1);
    assert!(!g.members.contains_key(&b));
}

#[test]
fn initial_delay_collects_members_before_the_first_generation() {
    let now = Instant::now();
    let mut g = Group::new(
        "g".into(),
        GroupSettings {
            initial_rebalance_delay: Duration::from_secs(3),
            ..Default::default()
        },
    );
    let (_a, mut ra) = first_join(&mut g, now);
    assert!(ra.try_recv().is_err());
    let (_b, mut rb) = first_join(&mut g, now + Duration::from_secs(2));
    // The second arrival pushes the check to 5 s.
    let _ = g.tick(now + Duration::from_secs(4));
    assert!(ra.try_recv().is_err());
    let _ = g.tick(now + Duration::from_secs(5));
    assert_eq!(joined(&mut ra).members.len(), 2);
    assert_eq!(joined(&mut rb).generation, 1);
}

#[test]
fn protocol_is_chosen_by_vote_among_common_ones() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), settings());
    let (a, _) = first_join(&mut g, now);
    let _ = g.sync(&a, 1, vec![], now);
    g.assignment_persisted(1, Ok(()), now);
    // "sticky" alone shares nothing with A's "range".
    let (mut rc, _) = g.join(req("", &["sticky"]), now);
    assert_eq!(
        rc.try_recv().unwrap().unwrap_err().code(),
        ErrorCode::InconsistentGroupProtocol
    );
    let id = new_id(&mut g, &["roundrobin", "range"], now);
    let (mut rd, _) = g.join(req(&id, &["roundrobin", "range"]), now);
    let (mut ra, _) = g.join(req(&a, &["range", "roundrobin"]), now);
    let ja = joined(&mut ra);
    let jd = joined(&mut rd);
    assert_eq!(ja.protocol, jd.protocol);
    assert!(ja.protocol == "range" || ja.protocol == "roundrobin");
}

#[test]
fn commits_are_fenced_by_generation_and_member() {
    let now = Instant::now();
    let (g, a, _b) = stable_pair(now);
    g.check_commit(&a, 2).unwrap();
    assert_eq!(
        g.check_commit(&a, 1).unwrap_err().code(),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        g.check_commit("x", 2).unwrap_err().code(),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        g.check_commit("", -1).unwrap_err().code(),
        ErrorCode::UnknownMemberId
    );
    let empty = Group::new("e".into(), settings());
    empty.check_commit("", -1).unwrap();
}

#[test]
fn commits_acknowledged_out_of_order_keep_the_last_written() {
    let at = |offset| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    let tp = |p| ("t".to_string(), p);
    let mut g = Group::new("g".into(), settings());
    g.write_floor = 3;
    // Submitted before the group was (re)created: a tombstone followed.
    g.apply_commit(3, [(tp(0), at(1))]);
    assert!(g.offsets.is_empty());
    // Write 5 is acknowledged before write 4, which must not undo it;
    // partition 1 only ever saw write 4.
    g.apply_commit(5, [(tp(0), at(50))]);
    g.apply_commit(4, [(tp(0), at(40)), (tp(1), at(41))]);
    assert_eq!(g.offsets[&tp(0)].offset, 50);
    assert_eq!(g.offsets[&tp(1)].offset, 41);
    g.apply_commit(6, [(tp(0), at(60))]);
    assert_eq!(g.offsets[&tp(0)].offset, 60);
}

#[test]
fn a_group_being_deleted_refuses_joins_and_commits() {
    let now = Instant::now();
    let mut g = Group::new("g".into(), settings());
    g.check_commit("", -1).unwrap();
    g.state = GroupState::Dead;
    assert_eq!(
        g.check_commit("", -1).unwrap_err().code(),
        ErrorCode::CoordinatorNotAvailable
    );
    let (mut rx, _) = g.join(req("", &["range"]), now);
    assert_eq!(
        rx.try_recv().unwrap().unwrap_err().code(),
        ErrorCode::CoordinatorNotAvailable
    );
}

#[test]
fn restored_group_keeps_members_and_assignments() {
    let now = Instant::now();
    let (g, a, b) = stable_pair(now);
    let rec = g.snapshot();
    let mut r = Group::new("g".into(), settings());
    r.restore(rec.clone(), now);
    assert_eq!(r.state, GroupState::Stable);
    assert_eq!(r.generation, 2);
    r.heartbeat(&a, 2, now).unwrap();
    r.heartbeat(&b, 2, now).unwrap();
    assert_eq!(r.snapshot(), rec);
}
