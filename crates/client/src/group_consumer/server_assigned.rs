//! The consumer protocol (KIP-848, `group.protocol=consumer`): the
//! coordinator computes the assignment; this member heartbeats its
//! subscription and what it owns, and takes what it is given.
//!
//! The heartbeat task talks to the coordinator and leaves new assignments
//! in [`Reconciliation::pending`]; `poll` applies them on the application's
//! task (callbacks there, as in the classic protocol): it gives up only the
//! partitions that left the assignment (committing them first with
//! auto-commit, then `on_partitions_revoked`), takes the new ones at their
//! committed offsets, and has the heartbeat task acknowledge at once. The
//! other partitions keep being fetched throughout: a rebalance stops no one.
//!
//! A fenced member (its epoch superseded, or removed) loses its partitions
//! without committing and joins again, but only once `poll` has dropped
//! them: the join says it owns nothing, so it must be true.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_proto::coordinator as pb;
use sluice_types::{ApiError, ErrorCode};
use tracing::{debug, info, warn};

use super::commit::{Committer, commit, fetch_committed};
use super::coordinator::Shared;
use super::rebalance::committed_positions;
use super::{GroupConsumer, timed};
use crate::error::Result;
use crate::types::TopicPartition;

/// The member's side of reconciliation, shared by `poll` and the heartbeat
/// task.
#[derive(Debug, Default)]
pub(super) struct Reconciliation {
    /// The subscribed topics (`subscribe`).
    pub(super) subscription: Vec<String>,
    /// The subscription the coordinator has.
    sent_subscription: Option<Vec<String>>,
    /// What `poll` has applied: the partitions this member owns.
    pub(super) owned: BTreeSet<TopicPartition>,
    /// Partitions a reconciliation is taking right now: owned as far as the
    /// coordinator must know (it may not give them to anyone else).
    taking: BTreeSet<TopicPartition>,
    /// The latest assignment from the coordinator, not applied yet.
    pending: Option<BTreeSet<TopicPartition>>,
    /// `owned` changed: acknowledge it with the next heartbeat.
    ack: bool,
    /// Send every field next (after joining or a coordinator change).
    full: bool,
    /// Fenced or removed: `poll` drops everything before the member joins
    /// again.
    lost: bool,
    /// An error that ends the member (an unknown assignor, a group using the
    /// classic protocol, ...): `poll` returns it.
    fatal: Option<ApiError>,
    /// The coordinator's heartbeat interval.
    interval: Option<Duration>,
}

impl Reconciliation {
    pub(super) fn subscribe(&mut self, topics: &[String]) {
        self.subscription = topics.to_vec();
    }
}

/// Errors after which the member cannot go on.
fn fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UnsupportedAssignor
            | ErrorCode::InvalidRegularExpression
            | ErrorCode::GroupMaxSizeReached
            | ErrorCode::InvalidRequest
            | ErrorCode::GroupIdNotFound
            | ErrorCode::InconsistentGroupProtocol
            | ErrorCode::GroupAuthorizationFailed
    )
}

fn to_proto(tps: &BTreeSet<TopicPartition>) -> pb::MemberAssignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    pb::MemberAssignment {
        topics: by_topic
            .into_iter()
            .map(|(t, partitions)| pb::TopicPartitions {
                topic: t.to_string(),
                partitions,
                topic_id: String::new(),
            })
            .collect(),
    }
}

fn from_proto(a: pb::MemberAssignment) -> BTreeSet<TopicPartition> {
    a.topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partitions
                .into_iter()
                .map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect()
}

/// The heartbeat task: heartbeats every interval the coordinator names, at
/// once when `poll` has something to acknowledge; leaves when `poll` is not
/// called within `max.poll.interval.ms`.
pub(super) async fn run(shared: Arc<Shared>) {
    let cfg = shared.cluster.config.clone();
    while !shared.closed.load(Ordering::Relaxed) {
        let idle = shared.last_poll.lock().elapsed();
        let wait = if idle > cfg.max_poll_interval {
            if shared.membership.lock().generation > 0 {
                warn!(
                    group = %shared.group,
                    idle_ms = idle.as_millis() as u64,
                    "poll was not called within max.poll.interval.ms; leaving the group"
                );
                leave(&shared, "consumer poll timeout has expired").await;
                shared.reconciliation.lock().lost = true;
            }
            cfg.heartbeat_interval
        } else {
            match beat(&shared).await {
                Ok(()) => shared
                    .reconciliation
                    .lock()
                    .interval
                    .unwrap_or(cfg.heartbeat_interval),
                Err(e) => {
                    debug!(group = %shared.group, error = %e, "consumer group heartbeat");
                    cfg.retry_backoff.max(Duration::from_millis(50))
                }
            }
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One ConsumerGroupHeartbeat.
async fn beat(shared: &Shared) -> Result<()> {
    let cfg = &shared.cluster.config;
    let (member_id, epoch) = {
        let m = shared.membership.lock();
        if m.fenced.is_some() {
            return Ok(());
        }
        (m.member_id.clone(), m.generation.max(0))
    };
    let (req, sent_owned) = {
        let mut r = shared.reconciliation.lock();
        if r.lost || r.fatal.is_some() {
            // `poll` drops the partitions first; a fatal error ends it.
            return Ok(());
        }
        let joining = epoch == 0;
        let full = joining || r.full;
        let subscribe = full || r.sent_subscription.as_ref() != Some(&r.subscription);
        let owned: BTreeSet<TopicPartition> = if joining {
            BTreeSet::new()
        } else {
            // What it owns, is taking, or may still take: an assignment
            // not applied yet must not count as given up.
            let mut owned: BTreeSet<TopicPartition> = r.owned.union(&r.taking).cloned().collect();
            owned.extend(r.pending.iter().flatten().cloned());
            owned
        };
        let req = pb::ConsumerGroupHeartbeatRequest {
            group_id: shared.group.clone(),
            member_id: member_id.clone(),
            member_epoch: epoch,
            instance_id: cfg.group_instance_id.clone().filter(|_| full),
            rack_id: None,
            rebalance_timeout_ms: if full {
                cfg.max_poll_interval.as_millis() as i32
            } else {
                -1
            },
            subscribed_topic_names: subscribe.then(|| pb::TopicNames {
                names: r.subscription.clone(),
            }),
            subscribed_topic_regex: None,
            server_assignor: cfg.group_remote_assignor.clone().filter(|_| full),
            owned: (full || r.ack).then(|| to_proto(&owned)),
            client_id: cfg.client_id.clone(),
            client_host: String::new(),
        };
        if subscribe {
            r.sent_subscription = None;
        }
        (req, (full || r.ack).then_some(owned))
    };
    let sent_subscription = req.subscribed_topic_names.clone();
    let answer = async {
        let mut c = shared.coordinator().await?;
        c.consumer_group_heartbeat(timed(req, cfg.request_timeout))
            .await
            .map_err(|s| shared.status(s))
    }
    .await;
    let resp = match answer {
        Ok(r) => r.into_inner(),
        Err(e) => {
            shared.reconciliation.lock().full = true;
            return Err(e);
        }
    };
    if let Some(e) = ApiError::from_proto(resp.error.as_ref()) {
        on_error(shared, &e);
        return Err(e.into());
    }
    {
        let mut m = shared.membership.lock();
        if !resp.member_id.is_empty() {
            m.member_id = resp.member_id;
        }
        if m.generation != resp.member_epoch {
            debug!(group = %shared.group, epoch = resp.member_epoch, "member epoch");
        }
        m.generation = resp.member_epoch;
        m.rejoin = false;
    }
    let mut r = shared.reconciliation.lock();
    r.full = false;
    if let Some(names) = sent_subscription {
        r.sent_subscription = Some(names.names);
    }
    if sent_owned.as_ref() == Some(&r.owned) && r.taking.is_empty() && r.pending.is_none() {
        r.ack = false;
    }
    if resp.heartbeat_interval_ms > 0 {
        r.interval = Some(Duration::from_millis(resp.heartbeat_interval_ms as u64));
    }
    if let Some(a) = resp.assignment {
        // Always the latest: `poll` compares it with what it holds then.
        r.pending = Some(from_proto(a));
    }
    Ok(())
}

/// Notes a heartbeat error.
fn on_error(shared: &Shared, e: &ApiError) {
    match e.code {
        ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
            info!(group = %shared.group, error = %e, "fenced; giving up the partitions and joining again");
            shared.membership.lock().generation = 0;
            let mut r = shared.reconciliation.lock();
            r.lost = true;
            r.pending = None;
        }
        ErrorCode::FencedInstanceId | ErrorCode::UnreleasedInstanceId => {
            warn!(group = %shared.group, error = %e, "another consumer holds this group.instance.id");
            shared.membership.lock().fenced = Some(e.clone());
        }
        code if fatal(code) => {
            warn!(group = %shared.group, error = %e, "the group refused this member");
            shared.reconciliation.lock().fatal = Some(e.clone());
        }
        _ => {
            // Coordinator moves: find it again and send everything.
            shared.note_coordinator(e);
            shared.reconciliation.lock().full = true;
        }
    }
}

/// Leaves the group (epoch -1; -2 for a static member, which keeps its
/// partitions for its next incarnation until the session timeout).
pub(super) async fn leave(shared: &Shared, reason: &str) {
    let member_id = {
        let mut m = shared.membership.lock();
        m.generation = 0;
        m.member_id.clone()
    };
    // Sent even after a fence: the coordinator may still hold the member
    // and its partitions until the session timeout.
    if member_id.is_empty() {
        return;
    }
    let cfg = &shared.cluster.config;
    let Ok(mut c) = shared.coordinator().await else {
        return;
    };
    let req = pb::ConsumerGroupHeartbeatRequest {
        group_id: shared.group.clone(),
        member_id: member_id.clone(),
        member_epoch: if cfg.group_instance_id.is_some() {
            -2
        } else {
            -1
        },
        instance_id: cfg.group_instance_id.clone(),
        rebalance_timeout_ms: -1,
        client_id: cfg.client_id.clone(),
        ..Default::default()
    };
    match c
        .consumer_group_heartbeat(timed(req, cfg.request_timeout))
        .await
    {
        Ok(_) => info!(group = %shared.group, member = %member_id, reason, "left the group"),
        Err(s) => {
            warn!(group = %shared.group, error = %s, "leaving failed; the session timeout will remove the member")
        }
    }
}

impl GroupConsumer {
    /// Applies what the heartbeat task learned: drops everything after a
    /// fence, or moves to the latest assignment, giving up only what left it.
    pub(super) async fn reconcile(&mut self) -> Result<()> {
        let fatal = self.shared.reconciliation.lock().fatal.clone();
        if let Some(e) = fatal {
            return Err(e.into());
        }
        self.drop_if_lost().await;
        let (target, revoked, added) = {
            let mut r = self.shared.reconciliation.lock();
            let Some(target) = r.pending.take() else {
                return Ok(());
            };
            let revoked: Vec<TopicPartition> = r.owned.difference(&target).cloned().collect();
            let added: Vec<TopicPartition> = target.difference(&r.owned).cloned().collect();
            // Reported as owned from this moment, so a newer target cannot
            // hand them to another member before this one lets them go.
            r.taking.extend(added.iter().cloned());
            (target, revoked, added)
        };
        if revoked.is_empty() && added.is_empty() {
            self.shared.reconciliation.lock().ack = true;
            return Ok(());
        }
        if !revoked.is_empty() {
            self.give_up(&revoked).await;
        }
        if !added.is_empty() {
            let committed = match fetch_committed(&self.shared, &added).await {
                Ok(c) => c,
                Err(e) => {
                    // Taken at the next poll: without committed offsets the
                    // positions could skip records. What was given up is
                    // acknowledged meanwhile.
                    let mut r = self.shared.reconciliation.lock();
                    r.taking.clear();
                    r.pending.get_or_insert(target);
                    r.ack = true;
                    self.shared.wake.notify_one();
                    return Err(e);
                }
            };
            if self.shared.reconciliation.lock().lost {
                // Fenced meanwhile: the partitions may be someone else's.
                self.shared.reconciliation.lock().taking.clear();
                self.drop_if_lost().await;
                return Ok(());
            }
            self.inner.incremental_assign(added.clone());
            for (tp, o) in committed_positions(&added, &committed) {
                self.inner.seek(&tp, o)?;
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_assigned(&added).await;
            }
        }
        info!(
            group = %self.shared.group,
            revoked = revoked.len(),
            assigned = added.len(),
            owned = target.len(),
            "reconciled the assignment"
        );
        {
            let mut r = self.shared.reconciliation.lock();
            r.owned = target;
            r.taking.clear();
            r.ack = true;
        }
        self.shared.wake.notify_one();
        // A fence during the callbacks: nothing of it may be read.
        self.drop_if_lost().await;
        Ok(())
    }

    /// After a fence: every partition is gone, uncommitted (another member
    /// may own it already); the heartbeat task then joins again.
    async fn drop_if_lost(&mut self) {
        let lost = std::mem::take(&mut self.shared.reconciliation.lock().lost);
        if !lost {
            return;
        }
        let owned = self.inner.assignment();
        if !owned.is_empty() {
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_lost(&owned).await;
            }
            self.inner.assign(Vec::new());
            self.consumed.clear();
        }
        {
            let mut r = self.shared.reconciliation.lock();
            r.owned.clear();
            r.taking.clear();
            r.pending = None;
        }
        self.shared.wake.notify_one();
    }

    /// Gives up partitions that left the assignment: commits what was read
    /// of them (auto-commit), tells the listener, stops fetching them.
    async fn give_up(&mut self, revoked: &[TopicPartition]) {
        if self.shared.cluster.config.enable_auto_commit {
            let offsets: BTreeMap<TopicPartition, i64> = self
                .consumed
                .snapshot()
                .into_iter()
                .filter(|(tp, _)| revoked.contains(tp))
                .collect();
            if let Err(e) = commit(&self.shared, &offsets).await {
                warn!(group = %self.shared.group, error = %e, "commit before revoking failed");
            }
        }
        if let Some(l) = self.listener.as_mut() {
            let mut committer = Committer {
                shared: self.shared.clone(),
            };
            l.on_partitions_revoked(&mut committer, revoked).await;
        }
        self.inner.incremental_unassign(revoked);
        self.consumed.forget(revoked);
        // Owned no more: acknowledged with the next heartbeat.
        let mut r = self.shared.reconciliation.lock();
        for tp in revoked {
            r.owned.remove(tp);
        }
        r.ack = true;
    }
}
