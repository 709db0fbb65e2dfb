//! The coordinator runtime over the in-memory metadata store and an
//! in-memory `__consumer_offsets` ([`MemLog`]): loading and unloading as
//! ownership changes, the write queue, confirmation, and the pure steps
//! (`State::reconcile`, `State::finish_load`, `State::tick_groups`) with
//! explicit instants.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::ClientError;
use sluice_types::meta;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use sluice_types::{ApiError, ErrorCode};

use super::testing::{MemLog, TestCluster, eventually};
use super::writer::producer_records;
use super::{Coordinator, GroupHome, Owned, State};
use crate::error::{CoordinatorError, LogOp, NotServed};
use crate::group::{
    CommittedOffset, Group, GroupSettings, GroupState, JoinOutcome, JoinReply, JoinRequest,
};
use crate::records::{self, OffsetValue, RecordKey};

fn join_req(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
    }
}

/// A member of `g` whose join is parked (in the initial rebalance delay).
fn parked_join(g: &mut Group, now: Instant) -> JoinReply {
    let (mut rx, _) = g.join(join_req(""), now);
    let Ok(Ok(JoinOutcome::MemberIdRequired(id))) = rx.try_recv() else {
        panic!("expected MEMBER_ID_REQUIRED");
    };
    let (mut rx, _) = g.join(join_req(&id), now);
    assert!(rx.try_recv().is_err(), "the join waits out the delay");
    rx
}

/// The error a parked call ended with.
async fn failed_with(rx: JoinReply) -> CoordinatorError {
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(Err(e))) => e,
        _ => panic!("expected the parked join to fail"),
    }
}

fn offset_record(
    group: &str,
    partition: i32,
    offset: i64,
    epoch: i64,
) -> (RecordKey, Option<Vec<u8>>) {
    (
        RecordKey::Offset {
            group: group.into(),
            topic: "t".into(),
            partition,
        },
        Some(records::encode(&OffsetValue {
            offset: CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            },
            owner_epoch: epoch,
        })),
    )
}

fn home(partition: i32, epoch: i64) -> GroupHome {
    GroupHome {
        partition,
        epoch,
        load: 0,
    }
}

/// Starts coordinator 1 owning partition 0 (of 1) in `epoch`, loaded.
async fn loaded(cl: &TestCluster, epoch: i64) -> Arc<Coordinator> {
    loaded_with(cl, TestCluster::config(1), epoch).await
}

async fn loaded_with(
    cl: &TestCluster,
    config: crate::CoordinatorConfig,
    epoch: i64,
) -> Arc<Coordinator> {
    let c = cl.start(config).await;
    cl.set_owner(0, 1, epoch).await;
    eventually("partition 0 loads", || c.home("g").is_ok()).await;
    c
}

fn code<T>(r: Result<T, CoordinatorError>) -> ErrorCode {
    match r {
        Ok(_) => ErrorCode::None,
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn a_partition_given_to_the_coordinator_is_loaded_from_the_log() {
    let cl = TestCluster::new(1).await;
    // What the previous owner (epoch 1) wrote.
    cl.log.push(producer_records(
        home(0, 1),
        vec![offset_record("g", 0, 42, 1)],
    ));
    let c = cl.start(TestCluster::config(1)).await;
    assert_eq!(code(c.home("g")), ErrorCode::NotCoordinator);
    // Another coordinator's partition is not loaded.
    cl.set_owner(0, 2, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(code(c.home("g")), ErrorCode::NotCoordinator);
    assert_eq!(cl.log.loads(), 0);

    cl.set_owner(0, 1, 3).await;
    eventually("partition 0 loads", || c.home("g").is_ok()).await;
    let h = c.home("g").unwrap();
    assert_eq!((h.partition, h.epoch), (0, 3));
    assert!(c.is_ready());
    let offset = c
        .with_group("g", false, |g, _| {
            g.map(|g| g.offsets[&("t".into(), 0)].offset)
        })
        .unwrap();
    assert_eq!(offset, Some(42));
    // The load wrote its marker, in its epoch, after what it read.
    assert_eq!(
        cl.log.keys(0).last(),
        Some(&RecordKey::Owner {
            partition: 0,
            epoch: 3
        })
    );
    c.close().await;
}

#[tokio::test]
async fn a_loading_partition_answers_load_in_progress() {
    let cl = TestCluster::new(1).await;
    cl.log.hold_loads(true);
    let c = cl.start(TestCluster::config(1)).await;
    cl.set_owner(0, 1, 1).await;
    eventually("the load starts", || cl.log.loads() == 1).await;
    assert_eq!(code(c.home("g")), ErrorCode::CoordinatorLoadInProgress);
    assert_eq!(
        code(c.with_group("g", true, |_, _| ())),
        ErrorCode::CoordinatorLoadInProgress
    );
    assert!(!c.is_ready(), "not ready while a partition loads");
    cl.log.hold_loads(false);
    eventually("the load completes", || c.is_ready() && c.home("g").is_ok()).await;
    c.close().await;
}

#[tokio::test]
async fn a_moved_partition_fails_parked_calls_and_a_return_loads_it_again() {
    let cl = TestCluster::new(1).await;
    let config = crate::CoordinatorConfig {
        group_initial_rebalance_delay_ms: 10_000,
        ..TestCluster::config(1)
    };
    let c = loaded_with(&cl, config, 1).await;
    let first = c.home("g").unwrap().load;
    let rx = c
        .with_group("g", true, |g, _| parked_join(g.unwrap(), Instant::now()))
        .unwrap();

    cl.set_owner(0, 2, 2).await;
    let e = failed_with(rx).await;
    assert!(
        matches!(
            &e,
            CoordinatorError::NotCoordinator {
                group,
                why: NotServed::Moved { partition: 0 },
            } if group == "g"
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::NotCoordinator);
    eventually("partition 0 is dropped", || {
        code(c.home("g")) == ErrorCode::NotCoordinator
    })
    .await;
    let mut groups = 0;
    c.for_each_group(|_| groups += 1);
    assert_eq!(groups, 0);

    cl.set_owner(0, 1, 3).await;
    eventually("partition 0 loads again", || c.home("g").is_ok()).await;
    let again = c.home("g").unwrap();
    assert_eq!(again.epoch, 3);
    assert!(again.load > first);
    // The group never wrote anything, so nothing of it comes back.
    assert!(c.with_group("g", false, |g, _| g.is_none()).unwrap());
    c.close().await;
}

#[tokio::test]
async fn losing_the_lease_unloads_every_group_and_registers_again() {
    let cl = TestCluster::new(1).await;
    let config = crate::CoordinatorConfig {
        group_initial_rebalance_delay_ms: 10_000,
        ..TestCluster::config(1)
    };
    let c = loaded_with(&cl, config, 1).await;
    let first = c.home("g").unwrap().load;
    let rx = c
        .with_group("g", true, |g, _| parked_join(g.unwrap(), Instant::now()))
        .unwrap();
    let registered = cl
        .store
        .get(&meta::coordinator_key(1))
        .await
        .unwrap()
        .expect("registered");
    cl.store.revoke_lease(registered.lease).await.unwrap();

    let e = failed_with(rx).await;
    assert!(
        matches!(
            &e,
            CoordinatorError::NotCoordinator {
                why: NotServed::LeaseLost,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::NotCoordinator);
    // Registered again under a new lease, and the partition (still ours)
    // loaded again.
    eventually("reloaded", || {
        c.home("g").is_ok_and(|h| h.load > first) && *c.subscribe_registered().borrow()
    })
    .await;
    let again = cl.store.get(&meta::coordinator_key(1)).await.unwrap();
    assert!(again.is_some_and(|kv| kv.lease != registered.lease));
    assert_eq!(c.home("g").unwrap().epoch, 1);
    c.close().await;
}

#[test]
fn reconcile_drops_moved_partitions_and_loads_new_ones() {
    let now = Instant::now();
    let settings = GroupSettings::default(); // a 3 s initial delay
    let mut moving = Group::new("m".into(), settings.clone());
    let rx = parked_join(&mut moving, now);
    let mut st = State::default();
    st.partitions.insert(
        0,
        Owned::Active {
            epoch: 1,
            load: 1,
            groups: BTreeMap::from([("g".into(), Group::new("g".into(), settings))]),
        },
    );
    st.partitions.insert(1, Owned::Loading { epoch: 1 });
    st.partitions.insert(
        2,
        Owned::Active {
            epoch: 1,
            load: 2,
            groups: BTreeMap::from([("m".into(), moving)]),
        },
    );
    // 0 stays, 1 is ours in a new epoch, 2 moved away, 3 is new.
    let mine = HashMap::from([(0, 1), (1, 2), (3, 5)]);
    let mut to_load = st.reconcile(&mine);
    to_load.sort();
    assert_eq!(to_load, vec![(1, 2), (3, 5)]);
    assert!(matches!(
        st.partitions.get(&0),
        Some(Owned::Active { load: 1, groups, .. }) if groups.contains_key("g")
    ));
    assert!(matches!(
        st.partitions.get(&1),
        Some(Owned::Loading { epoch: 2 })
    ));
    assert!(!st.partitions.contains_key(&2));
    assert!(matches!(
        st.partitions.get(&3),
        Some(Owned::Loading { epoch: 5 })
    ));
    let mut rx = rx;
    assert_eq!(
        rx.try_recv().unwrap().unwrap_err().code(),
        ErrorCode::NotCoordinator
    );
    // Nothing changes when nothing did.
    assert!(st.reconcile(&mine).is_empty());
    assert_eq!(st.partitions.len(), 3);
}

#[test]
fn a_load_is_installed_only_while_its_partition_loads_in_its_epoch() {
    let loads = AtomicU64::new(7);
    let groups = || {
        BTreeMap::from([(
            "g".to_string(),
            Group::new("g".into(), GroupSettings::default()),
        )])
    };
    let mut st = State::default();
    // Moved away while loading.
    assert!(!st.finish_load(0, 1, groups(), &loads));
    assert!(st.partitions.is_empty());
    // Moved away and back (a newer epoch is loading).
    st.partitions.insert(0, Owned::Loading { epoch: 2 });
    assert!(!st.finish_load(0, 1, groups(), &loads));
    assert!(matches!(
        st.partitions.get(&0),
        Some(Owned::Loading { epoch: 2 })
    ));
    assert!(st.finish_load(0, 2, groups(), &loads));
    assert!(matches!(
        st.partitions.get(&0),
        Some(Owned::Active { epoch: 2, load: 8, groups }) if groups.contains_key("g")
    ));
    // A second load of the same epoch does not replace the live groups.
    assert!(!st.finish_load(0, 2, BTreeMap::new(), &loads));
    assert!(matches!(
        st.partitions.get(&0),
        Some(Owned::Active { load: 8, groups, .. }) if groups.len() == 1
    ));
    assert_eq!(
        loads.load(Ordering::Relaxed),
        8,
        "only installed loads count"
    );
}

#[test]
fn tick_groups_drops_unused_groups_and_returns_what_expiry_decided() {
    let now = Instant::now();
    let settings = GroupSettings {
        initial_rebalance_delay: Duration::ZERO,
        ..Default::default()
    };
    // One member, settled in generation 1, with a 10 s session.
    let mut g = Group::new("g".into(), settings.clone());
    let (mut rx, _) = g.join(join_req(""), now);
    let Ok(Ok(JoinOutcome::MemberIdRequired(id))) = rx.try_recv() else {
        panic!("expected MEMBER_ID_REQUIRED");
    };
    let _ = g.join(join_req(&id), now);
    let (_sync, eff) = g.sync(&id, 1, vec![(id.clone(), Bytes::from_static(b"a"))], now);
    assert!(eff.persist.is_some());
    g.assignment_persisted(1, Ok(()), now);
    assert_eq!(g.state, GroupState::Stable);

    let mut st = State::default();
    st.partitions.insert(
        3,
        Owned::Active {
            epoch: 7,
            load: 2,
            groups: BTreeMap::from([
                ("g".to_string(), g),
                ("idle".to_string(), Group::new("idle".into(), settings)),
            ]),
        },
    );
    st.partitions.insert(4, Owned::Loading { epoch: 1 });
    assert!(
        st.tick_groups(&Default::default(), now + Duration::from_secs(5))
            .is_empty()
    );
    let Some(Owned::Active { groups, .. }) = st.partitions.get(&3) else {
        panic!("partition 3 is active");
    };
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["g"], "idle is dropped");

    let out = st.tick_groups(&Default::default(), now + Duration::from_secs(11));
    assert_eq!(out.len(), 1);
    let (group, h, rec) = &out[0];
    assert_eq!(group, "g");
    assert_eq!((h.partition, h.epoch, h.load), (3, 7, 2));
    assert_eq!(rec.generation, 2);
    assert!(rec.members.is_empty(), "the expired member is gone");
}

#[test]
fn records_carry_their_partition_and_the_writer_epoch() {
    let tombstone = (RecordKey::Group { group: "g".into() }, None);
    let recs = producer_records(home(5, 9), vec![offset_record("g", 1, 3, 9), tombstone]);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r.topic, CONSUMER_OFFSETS_TOPIC);
        assert_eq!(r.partition, Some(5));
        // The header fences a deposed owner's records, tombstones included.
        assert_eq!(records::header_epoch(&r.headers), Some(9));
    }
    assert_eq!(
        recs[1].key.as_deref(),
        Some(RecordKey::Group { group: "g".into() }.encode().as_slice())
    );
    assert!(recs[1].value.is_none());
    assert!(recs[0].value.is_some());
}

#[tokio::test]
async fn writes_reach_the_log_in_submission_order_and_confirm_in_any() {
    let cl = TestCluster::new(1).await;
    let c = loaded(&cl, 1).await;
    let h = c.home("g").unwrap();
    let before = cl.log.partition(0).len();
    cl.log.hold_acks(true);
    let base = c.last_write_number();
    let a = c.submit(
        h,
        vec![offset_record("g", 0, 1, 1), offset_record("g", 1, 1, 1)],
    );
    let b = c.submit(h, vec![(RecordKey::Group { group: "g".into() }, None)]);
    let d = c.submit(h, vec![offset_record("g", 2, 1, 1)]);
    assert_eq!(
        (a.number, b.number, d.number),
        (base + 1, base + 2, base + 3)
    );
    assert_eq!(c.last_write_number(), base + 3);
    eventually("all four records are queued", || cl.log.held_acks() == 4).await;
    let offset = |partition| RecordKey::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition,
    };
    assert_eq!(
        cl.log.keys(0)[before..],
        [
            offset(0),
            offset(1),
            RecordKey::Group { group: "g".into() },
            offset(2)
        ]
    );

    let confirm = |s| {
        let c = c.clone();
        tokio::spawn(async move { c.confirm("g", h, s).await })
    };
    let (a, b, d) = (confirm(a), confirm(b), confirm(d));
    // The last write is acknowledged first.
    cl.log.release_ack(3);
    assert!(d.await.unwrap().is_ok());
    assert!(!a.is_finished() && !b.is_finished());
    cl.log.release_ack(2);
    assert!(b.await.unwrap().is_ok());
    cl.log.release_ack(1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!a.is_finished(), "a write waits for all its records");
    cl.log.release_ack(0);
    assert!(a.await.unwrap().is_ok());
    c.close().await;
}

#[tokio::test]
async fn a_write_acknowledged_after_the_partition_moved_is_refused() {
    let cl = TestCluster::new(1).await;
    let c = loaded(&cl, 1).await;
    let h = c.home("g").unwrap();
    cl.log.hold_acks(true);
    let s = c.submit(h, vec![offset_record("g", 0, 1, 1)]);
    eventually("queued", || cl.log.held_acks() == 1).await;
    cl.set_owner(0, 2, 2).await;
    cl.log.release_ack(0);
    let e = c.confirm("g", h, s).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotCoordinator);
    c.close().await;
}

#[tokio::test]
async fn a_write_from_before_a_reload_is_refused() {
    let cl = TestCluster::new(1).await;
    let c = loaded(&cl, 1).await;
    let h = c.home("g").unwrap();
    cl.log.hold_acks(true);
    let s = c.submit(h, vec![offset_record("g", 0, 1, 1)]);
    eventually("queued", || cl.log.held_acks() == 1).await;
    // The lease is lost and regained: same owner, same epoch, a new load.
    let kv = cl
        .store
        .get(&meta::coordinator_key(1))
        .await
        .unwrap()
        .unwrap();
    cl.store.revoke_lease(kv.lease).await.unwrap();
    eventually("reloaded", || {
        c.home("g").is_ok_and(|now| now.load > h.load)
    })
    .await;
    cl.log.release_ack(0);
    let e = c.confirm("g", h, s).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CoordinatorError::NotCoordinator {
                group,
                why: NotServed::ChangedDuringWrite,
            } if group == "g"
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::NotCoordinator);
    assert!(e.to_string().contains("during the write"), "{e}");
    c.close().await;
}

#[tokio::test]
async fn a_write_not_acknowledged_in_time_fails() {
    let cl = TestCluster::new(1).await;
    let config = crate::CoordinatorConfig {
        offsets_commit_timeout_ms: 100,
        ..TestCluster::config(1)
    };
    let c = loaded_with(&cl, config, 1).await;
    let h = c.home("g").unwrap();
    cl.log.hold_acks(true);
    let s = c.submit(h, vec![offset_record("g", 0, 1, 1)]);
    let e = c.confirm("g", h, s).await.unwrap_err();
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        (
            ErrorCode::CoordinatorNotAvailable,
            "writing to __consumer_offsets-0 took over offsets.commit.timeout.ms (100 ms)"
        )
    );
    c.close().await;
}

#[tokio::test]
async fn a_write_the_log_refuses_fails_and_so_does_one_after_close() {
    let cl = TestCluster::new(1).await;
    let c = loaded(&cl, 1).await;
    let h = c.home("g").unwrap();
    // What the cluster's producer fails with: the brokers' code stays the cause.
    cl.log.fail_appends(Some(CoordinatorError::OffsetsLog {
        op: LogOp::Write { partition: 0 },
        source: ClientError::Api(ApiError::new(ErrorCode::NotEnoughReplicas, "no broker")),
    }));
    let s = c.submit(h, vec![offset_record("g", 0, 1, 1)]);
    let e = c.confirm("g", h, s).await.unwrap_err();
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        (
            ErrorCode::CoordinatorNotAvailable,
            "cannot write to __consumer_offsets-0: NOT_ENOUGH_REPLICAS: no broker"
        )
    );

    cl.log.fail_appends(None);
    c.close().await;
    let s = c.submit(h, vec![offset_record("g", 0, 1, 1)]);
    let e = c.confirm("g", h, s).await.unwrap_err();
    assert!(matches!(e, CoordinatorError::ShuttingDown), "{e:?}");
    assert_eq!(e.code(), ErrorCode::CoordinatorNotAvailable);
    assert_eq!(
        code(c.home("g")),
        ErrorCode::NotCoordinator,
        "close drops the groups"
    );
}

#[tokio::test]
async fn a_second_coordinator_takes_over_what_the_first_wrote() {
    let cl = TestCluster::new(1).await;
    let c1 = loaded(&cl, 1).await;
    let h = c1.home("g").unwrap();
    let s = c1.submit(h, vec![offset_record("g", 0, 7, 1)]);
    c1.confirm("g", h, s).await.unwrap();

    let c2 = cl.start(TestCluster::config(2)).await;
    cl.set_owner(0, 2, 2).await;
    eventually("coordinator 2 loads", || c2.home("g").is_ok()).await;
    eventually("coordinator 1 lets go", || {
        code(c1.home("g")) == ErrorCode::NotCoordinator
    })
    .await;
    let offset = c2
        .with_group("g", false, |g, _| {
            g.map(|g| g.offsets[&("t".into(), 0)].offset)
        })
        .unwrap();
    assert_eq!(offset, Some(7));
    // A deposed owner's late write is refused, and the next load ignores it.
    let late = c1.submit(h, vec![offset_record("g", 0, 99, 1)]);
    assert_eq!(
        code(c1.confirm("g", h, late).await),
        ErrorCode::NotCoordinator
    );
    let reloaded = records::replay(
        cl.log
            .partition(0)
            .iter()
            .map(|r| {
                (
                    r.key.as_deref(),
                    r.value.as_deref(),
                    records::header_epoch(&r.headers),
                )
            })
            .collect::<Vec<_>>(),
        GroupSettings::default(),
        Instant::now(),
        9,
    )
    .groups;
    assert_eq!(reloaded["g"].offsets[&("t".into(), 0)].offset, 7);
    c1.close().await;
    c2.close().await;
}

/// `MemLog` itself: a test double that lost records would pass the tests above.
#[tokio::test]
async fn mem_log_returns_a_partition_up_to_its_marker() {
    use super::offsets_log::OffsetsLog;
    let log = MemLog::new();
    log.push(producer_records(
        home(0, 1),
        vec![offset_record("g", 0, 1, 1)],
    ));
    log.push(producer_records(
        home(1, 1),
        vec![offset_record("h", 0, 1, 1)],
    ));
    let marker = super::loading::owner_marker(1, 0, 2);
    let recs = log.read_to_marker(0, marker).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].2, Some(1));
    assert_eq!(recs[1].2, None, "the marker's epoch is in its value");
}
