//! [`GroupConsumer`]'s state handling without a coordinator: subscription
//! changes, fencing, giving partitions up at a rebalance (callbacks, the
//! partitions remembered for the sticky assignor, consumed offsets dropped),
//! taking new ones at their committed offsets, and commits refused outside a
//! generation. The consumers point at a port nothing listens on; every path
//! tested here must finish without sending a request.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_types::{ApiError, ErrorCode};

use super::rebalance::join_subscription;
use super::{Committer, GroupConsumer, RebalanceListener};
use crate::config::ClientConfig;
use crate::consumer::ConsumerRecord;
use crate::types::TopicPartition;

/// What a [`Recorder`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Revoked(Vec<TopicPartition>),
    Assigned(Vec<TopicPartition>),
}

/// A listener that records its callbacks.
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        _committer: &'a mut Committer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        self.0.lock().push(Event::Revoked(partitions.to_vec()));
        Box::pin(async {})
    }

    fn on_partitions_assigned<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        self.0.lock().push(Event::Assigned(partitions.to_vec()));
        Box::pin(async {})
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn record(topic: &str, partition: i32, offset: i64) -> ConsumerRecord {
    ConsumerRecord {
        topic: topic.into(),
        partition,
        offset,
        timestamp: 0,
        key: None,
        value: None,
        headers: Vec::new(),
    }
}

/// A member of group "g" subscribed to "t" with a recording listener.
fn member(auto_commit: bool) -> (GroupConsumer, Arc<Mutex<Vec<Event>>>) {
    let config = ClientConfig::new("127.0.0.1:1")
        .with("group.id", "g")
        .unwrap()
        .with(
            "enable.auto.commit",
            if auto_commit { "true" } else { "false" },
        )
        .unwrap();
    let mut c = GroupConsumer::new(config).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    c.subscribe_with(&["t"], Box::new(Recorder(events.clone())));
    (c, events)
}

/// Puts `c` in generation `generation` as member "m", settled.
fn settle(c: &GroupConsumer, generation: i32) {
    let mut m = c.shared.membership.lock();
    m.joined("m".into(), generation);
    m.synced("m", generation);
}

fn must_rejoin(c: &GroupConsumer) -> bool {
    c.shared.membership.lock().must_rejoin()
}

#[test]
fn new_needs_a_group_id_and_a_heartbeat_below_the_session_timeout() {
    let e = GroupConsumer::new(ClientConfig::new("127.0.0.1:1"))
        .err()
        .expect("no group.id");
    assert!(e.to_string().contains("group.id"), "{e}");
    let config = ClientConfig::new("127.0.0.1:1")
        .with("group.id", "g")
        .unwrap()
        .with("session.timeout.ms", "6000")
        .unwrap()
        .with("heartbeat.interval.ms", "6000")
        .unwrap();
    let e = GroupConsumer::new(config)
        .err()
        .expect("heartbeat too slow");
    assert!(e.to_string().contains("heartbeat.interval.ms"), "{e}");
}

#[test]
fn subscribe_normalizes_and_rejoins_only_on_a_change() {
    let (mut c, _) = member(false);
    assert_eq!(c.member(), (String::new(), -1));
    c.subscribe(&["b", "a", "b"]);
    assert_eq!(c.subscription, ["a", "b"]);
    settle(&c, 1);
    assert_eq!(c.member(), ("m".to_string(), 1));
    assert!(!must_rejoin(&c));
    // The same topics in another order: no rebalance.
    c.subscribe(&["a", "b", "a"]);
    assert!(!must_rejoin(&c));
    c.subscribe(&["a"]);
    assert!(must_rejoin(&c));
    assert_eq!(c.subscription, ["a"]);
}

#[tokio::test]
async fn poll_needs_a_subscription() {
    let (mut c, _) = member(false);
    c.subscribe(&[]);
    let e = c.poll(std::time::Duration::ZERO).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn a_fenced_member_drops_its_partitions_and_poll_fails() {
    let (mut c, _) = member(false);
    settle(&c, 3);
    c.inner.assign(vec![tp("t", 0)]);
    c.consumed.record(&[record("t", 0, 9)]);
    let fenced = ApiError::new(
        ErrorCode::FencedInstanceId,
        "instance i-1 has a newer member",
    );
    c.shared.note(&fenced, ("m", 3));
    let e = c.poll(std::time::Duration::ZERO).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::FencedInstanceId);
    assert!(c.assignment().is_empty());
    assert!(c.consumed.snapshot().is_empty());
    // It stays fatal.
    let e = c.poll(std::time::Duration::ZERO).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::FencedInstanceId);
}

#[tokio::test]
async fn revoking_gives_everything_up_and_remembers_it_for_the_sticky_assignor() {
    let (mut c, events) = member(false);
    settle(&c, 4);
    c.inner.assign(vec![tp("t", 0), tp("t", 1)]);
    c.consumed.record(&[record("t", 0, 10)]);
    c.revoke_assignment().await;
    assert_eq!(
        *events.lock(),
        [Event::Revoked(vec![tp("t", 0), tp("t", 1)])]
    );
    assert!(c.assignment().is_empty());
    assert!(c.consumed.snapshot().is_empty());
    assert_eq!(c.previous, (vec![tp("t", 0), tp("t", 1)], 4));
    // The next JoinGroup offers them, with the generation they were owned in.
    let s = join_subscription(&c.subscription, &c.previous);
    assert_eq!(s.owned_partitions, vec![("t".into(), 0), ("t".into(), 1)]);
    assert_eq!(s.generation_id, 4);
}

#[tokio::test]
async fn revoking_nothing_calls_nobody_and_keeps_what_was_given_up_before() {
    let (mut c, events) = member(false);
    c.previous = (vec![tp("t", 3)], 2);
    c.revoke_assignment().await;
    assert!(events.lock().is_empty());
    assert_eq!(c.previous, (vec![tp("t", 3)], 2));
}

#[tokio::test]
async fn a_failed_commit_before_the_rebalance_does_not_stop_it() {
    // Auto-commit on, offsets consumed, but no generation to commit them in:
    // the commit fails (without a request) and the partitions go anyway.
    let (mut c, events) = member(true);
    c.inner.assign(vec![tp("t", 0)]);
    c.consumed.record(&[record("t", 0, 1)]);
    c.revoke_assignment().await;
    assert_eq!(*events.lock(), [Event::Revoked(vec![tp("t", 0)])]);
    assert!(c.assignment().is_empty());
    assert!(c.consumed.snapshot().is_empty());
    assert_eq!(c.previous, (vec![tp("t", 0)], -1));
}

#[tokio::test]
async fn new_partitions_start_at_their_committed_offsets() {
    let (mut c, events) = member(false);
    let tps = vec![tp("t", 0), tp("t", 1), tp("t", 2)];
    let committed: BTreeMap<_, _> = [(tp("t", 0), 5), (tp("t", 1), -1)].into();
    c.take_assignment(tps.clone(), &committed).await.unwrap();
    assert_eq!(c.assignment(), tps);
    assert_eq!(c.position(&tp("t", 0)), Some(5));
    // No commit: auto.offset.reset decides on the first fetch.
    assert_eq!(c.position(&tp("t", 1)), None);
    assert_eq!(c.position(&tp("t", 2)), None);
    assert_eq!(*events.lock(), [Event::Assigned(tps)]);
}

#[tokio::test]
async fn an_empty_assignment_is_still_announced() {
    let (mut c, events) = member(false);
    c.inner.assign(vec![tp("t", 0)]);
    // Nothing to look up: no OffsetFetch is sent.
    c.apply_assignment(Vec::new()).await.unwrap();
    assert!(c.assignment().is_empty());
    assert_eq!(*events.lock(), [Event::Assigned(Vec::new())]);
}

#[tokio::test]
async fn a_rebalance_revokes_before_it_assigns() {
    let (mut c, events) = member(false);
    settle(&c, 1);
    c.inner.assign(vec![tp("t", 0), tp("t", 1)]);
    c.revoke_assignment().await;
    c.take_assignment(vec![tp("t", 1)], &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        *events.lock(),
        [
            Event::Revoked(vec![tp("t", 0), tp("t", 1)]),
            Event::Assigned(vec![tp("t", 1)]),
        ]
    );
    assert_eq!(c.assignment(), [tp("t", 1)]);
}

#[tokio::test]
async fn commits_outside_a_generation_are_refused_without_a_request() {
    let (mut c, _) = member(false);
    let offsets: BTreeMap<_, _> = [(tp("t", 0), 3)].into();
    let e = c.commit_offsets(&offsets).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RebalanceInProgress);
    let mut committer = Committer {
        shared: c.shared.clone(),
    };
    let e = committer.commit(&offsets).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RebalanceInProgress);
    // After the generation ends (UNKNOWN_MEMBER_ID), the same.
    settle(&c, 2);
    c.shared
        .note(&ApiError::new(ErrorCode::UnknownMemberId, "gone"), ("m", 2));
    let e = c.commit_offsets(&offsets).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RebalanceInProgress);
    // Nothing to commit is always fine.
    c.commit_sync().await.unwrap();
    c.commit_offsets(&BTreeMap::new()).await.unwrap();
}
