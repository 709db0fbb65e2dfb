//! [`GroupConsumer`]: a consumer in a consumer group (Kafka's `subscribe`).
//!
//! The classic protocol, eager rebalancing: on every rebalance the member
//! gives up all its partitions (commits first when auto-commit is on, then
//! calls [`RebalanceListener::on_partitions_revoked`]), rejoins, and gets its
//! new share from SyncGroup. The group leader runs the assignor. A background
//! task heartbeats every `heartbeat.interval.ms` and notices rebalances;
//! `poll` does the rejoining, so the application sees callbacks on its own
//! task. A member that does not call `poll` within `max.poll.interval.ms`
//! leaves the group, as Kafka's does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_proto::broker::{CoordinatorKeyType, FindCoordinatorRequest};
use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_types::{ApiError, ErrorCode};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::assignor::{self, MemberSubscription};
use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::consumer::{Consumer, ConsumerRecord};
use crate::consumer_protocol::{self, Subscription};
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

/// Called around rebalances, on the task that calls `poll`.
pub trait RebalanceListener: Send {
    /// Before the partitions are given up. `committer` commits offsets while
    /// the member still owns them (the generation is still valid).
    fn on_partitions_revoked<'a>(
        &'a mut self,
        committer: &'a mut Committer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()>;

    /// After the new assignment is in place (positions set from committed
    /// offsets or `auto.offset.reset`).
    fn on_partitions_assigned<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()>;
}

/// The member's identity in the group, shared with the heartbeat task.
#[derive(Debug, Clone, Default)]
struct Membership {
    member_id: String,
    generation: i32,
    /// Set when the current generation is over (heartbeat said so, or an
    /// error), so the next `poll` rejoins.
    rejoin: bool,
    /// Set when a newer consumer with our `group.instance.id` replaced this
    /// one: fatal, as Kafka's FencedInstanceIdException.
    fenced: Option<ApiError>,
}

struct Shared {
    cluster: Arc<Cluster>,
    group: String,
    membership: Mutex<Membership>,
    coordinator: Mutex<Option<(String, GroupCoordinatorClient<Channel>)>>,
    last_poll: Mutex<Instant>,
    /// Set while `poll` is rejoining: a join may wait up to the rebalance
    /// timeout, which is not the application failing to poll.
    rejoining: AtomicBool,
    closed: AtomicBool,
}

/// Commits offsets for the group; handed to rebalance callbacks too.
pub struct Committer {
    shared: Arc<Shared>,
}

fn api(code: ErrorCode, msg: impl Into<String>) -> ClientError {
    ClientError::Api(ApiError::new(code, msg))
}

/// A request with a deadline: a coordinator that vanished without closing
/// the connection must not hang the member.
fn timed<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// The pause between retries: `retry.backoff.ms`, at least 50 ms.
pub(crate) async fn backoff(cluster: &Cluster) {
    tokio::time::sleep(cluster.config.retry_backoff.max(Duration::from_millis(50))).await;
}

/// Errors that mean "find the coordinator again".
fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NetworkException
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::RequestTimedOut
    )
}

/// Errors that end this member's generation.
fn generation_over(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId
    )
}

impl Shared {
    /// The group's coordinator, looked up through any broker when unknown.
    async fn coordinator(&self) -> Result<GroupCoordinatorClient<Channel>> {
        if let Some((_, c)) = self.coordinator.lock().clone() {
            return Ok(c);
        }
        let deadline = Instant::now() + self.cluster.config.request_timeout;
        loop {
            let res = self.find_coordinator().await;
            match res {
                Ok((addr, c)) => {
                    debug!(group = %self.group, coordinator = %addr, "found the group coordinator");
                    *self.coordinator.lock() = Some((addr, c.clone()));
                    return Ok(c);
                }
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    debug!(group = %self.group, error = %e, "no coordinator yet; retrying");
                    backoff(&self.cluster).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_coordinator(&self) -> Result<(String, GroupCoordinatorClient<Channel>)> {
        find_coordinator(&self.cluster, &self.group).await
    }

    fn forget_coordinator(&self) {
        *self.coordinator.lock() = None;
    }

    /// Turns a gRPC failure into a coded error, forgetting the coordinator
    /// when it is unreachable.
    fn status(&self, s: tonic::Status) -> ClientError {
        let e = ClientError::from_status("coordinator", &s);
        if coordinator_moved(e.code())
            || s.code() == tonic::Code::Unavailable
            || s.code() == tonic::Code::Unknown
        {
            self.forget_coordinator();
            return api(ErrorCode::CoordinatorNotAvailable, e.to_string());
        }
        e
    }

    /// Notes a coded error from a coordinator answer to a request sent as
    /// `sent` (member id, generation). A generation error only counts while the
    /// membership is still the one the request used: a late answer must not
    /// undo a join that completed meanwhile.
    fn note(&self, e: &ApiError, sent: (&str, i32)) {
        if coordinator_moved(e.code) || e.code == ErrorCode::CoordinatorLoadInProgress {
            self.forget_coordinator();
        }
        if e.code == ErrorCode::FencedInstanceId {
            let mut m = self.membership.lock();
            if m.fenced.is_none() {
                warn!(group = %self.group, error = %e, "fenced by another consumer with the same group.instance.id");
            }
            m.fenced = Some(e.clone());
            return;
        }
        if generation_over(e.code) {
            let mut m = self.membership.lock();
            if m.member_id != sent.0 || m.generation != sent.1 {
                return;
            }
            m.rejoin = true;
            if e.code == ErrorCode::UnknownMemberId || e.code == ErrorCode::IllegalGeneration {
                m.generation = -1;
            }
            if e.code == ErrorCode::UnknownMemberId {
                m.member_id.clear();
            }
        }
    }

    async fn heartbeat_once(&self) -> Result<()> {
        let (member_id, generation, fenced) = {
            let m = self.membership.lock();
            (m.member_id.clone(), m.generation, m.fenced.is_some())
        };
        if member_id.is_empty() || generation < 0 || fenced {
            return Ok(());
        }
        let mut c = self.coordinator().await?;
        let r = c
            .heartbeat(timed(
                pb::HeartbeatRequest {
                    group_id: self.group.clone(),
                    generation_id: generation,
                    member_id: member_id.clone(),
                    group_instance_id: self.cluster.config.group_instance_id.clone(),
                },
                self.cluster.config.request_timeout,
            ))
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
            self.note(&e, (&member_id, generation));
            return Err(e.into());
        }
        Ok(())
    }

    async fn leave(&self, reason: &str) {
        let member_id = {
            let mut m = self.membership.lock();
            m.rejoin = true;
            m.generation = -1;
            std::mem::take(&mut m.member_id)
        };
        if member_id.is_empty() {
            return;
        }
        if self.cluster.config.group_instance_id.is_some() {
            // KIP-345: a static member stays in the group until its session
            // times out, so a restart within session.timeout.ms gets its
            // partitions back without a rebalance.
            info!(group = %self.group, member = %member_id, reason, "static member stops without leaving the group");
            return;
        }
        let Ok(mut c) = self.coordinator().await else {
            return;
        };
        let res = c
            .leave_group(timed(
                pb::LeaveGroupRequest {
                    group_id: self.group.clone(),
                    members: vec![pb::MemberIdentity {
                        member_id: member_id.clone(),
                        group_instance_id: self.cluster.config.group_instance_id.clone(),
                        reason: reason.to_string(),
                    }],
                },
                self.cluster.config.request_timeout,
            ))
            .await;
        match res {
            Ok(_) => info!(group = %self.group, member = %member_id, reason, "left the group"),
            Err(s) => {
                warn!(group = %self.group, error = %s, "LeaveGroup failed; the session timeout will remove the member")
            }
        }
    }
}

impl Committer {
    /// Commits `offsets` (the next offset to read, per partition) for the
    /// current generation, retrying coordinator moves until
    /// `request.timeout.ms`. Fails with REBALANCE_IN_PROGRESS,
    /// ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID when the generation is over
    /// (Kafka's CommitFailedException): the partitions may belong to another
    /// member by now.
    pub async fn commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        commit(&self.shared, offsets).await
    }
}

/// OffsetCommit's topics for `offsets` (the next offset per partition).
pub(crate) fn commit_topics(offsets: &BTreeMap<TopicPartition, i64>) -> Vec<pb::OffsetCommitTopic> {
    let mut by_topic: BTreeMap<&str, Vec<pb::OffsetCommitPartition>> = BTreeMap::new();
    for (tp, o) in offsets {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push(pb::OffsetCommitPartition {
                partition: tp.partition,
                committed_offset: *o,
                committed_leader_epoch: -1,
                metadata: String::new(),
            });
    }
    by_topic
        .into_iter()
        .map(|(t, partitions)| pb::OffsetCommitTopic {
            name: t.to_string(),
            partitions,
        })
        .collect()
}

async fn commit(shared: &Shared, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let topics = commit_topics(offsets);
    let deadline = Instant::now() + shared.cluster.config.request_timeout;
    // The generation these offsets were consumed in, read once: a retry after
    // a rebalance must not commit them under the next generation, when the
    // partitions may belong to another member.
    let (member_id, generation) = {
        let m = shared.membership.lock();
        (m.member_id.clone(), m.generation)
    };
    if member_id.is_empty() || generation < 0 {
        return Err(api(
            ErrorCode::RebalanceInProgress,
            format!(
                "cannot commit for group {}: the member is not in a generation (rejoining)",
                shared.group
            ),
        ));
    }
    loop {
        let member_id = member_id.clone();
        let attempt = async {
            let mut c = shared.coordinator().await?;
            let r = c
                .offset_commit(timed(
                    pb::OffsetCommitRequest {
                        group_id: shared.group.clone(),
                        generation_id: generation,
                        member_id: member_id.clone(),
                        group_instance_id: shared.cluster.config.group_instance_id.clone(),
                        topics: topics.clone(),
                    },
                    shared.cluster.config.request_timeout,
                ))
                .await
                .map_err(|s| shared.status(s))?
                .into_inner();
            let first = r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .find_map(|p| ApiError::from_proto(p.error.as_ref()));
            if let Some(e) = first {
                shared.note(&e, (&member_id, generation));
                return Err(ClientError::from(e));
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) => return Ok(()),
            Err(e)
                if e.is_retriable() && !generation_over(e.code()) && Instant::now() < deadline =>
            {
                backoff(&shared.cluster).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A consumer in a group: `subscribe`, `poll`, `commit`.
pub struct GroupConsumer {
    inner: Consumer,
    shared: Arc<Shared>,
    subscription: Vec<String>,
    listener: Option<Box<dyn RebalanceListener>>,
    heartbeat: Option<JoinHandle<()>>,
    last_auto_commit: Instant,
    /// Offsets `poll` has returned up to (the next offset), per partition.
    consumed: BTreeMap<TopicPartition, i64>,
    /// The leader's view at its last assignment: every topic any member
    /// subscribes to, and their partition counts, to notice new partitions
    /// (or a topic created later) in topics only other members read.
    assigned_counts: Option<(Vec<String>, BTreeMap<String, i32>)>,
    last_metadata_check: Instant,
    /// Set when this member is the group leader in the current generation.
    leader: bool,
    /// The partitions given up at the last rebalance and their generation,
    /// sent as `owned_partitions` so the sticky assignor can keep them here.
    previous: (Vec<TopicPartition>, i32),
}

/// How often the group leader checks subscribed topics for new partitions.
const PARTITION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl GroupConsumer {
    /// A group member; needs `group.id`. Joins on the first `poll`.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let group = config
            .group_id
            .clone()
            .ok_or_else(|| ClientError::config("group.id", "a group consumer needs group.id"))?;
        if config.heartbeat_interval >= config.session_timeout {
            return Err(ClientError::config(
                "heartbeat.interval.ms",
                "must be lower than session.timeout.ms",
            ));
        }
        let inner = Consumer::new(config)?;
        let shared = Arc::new(Shared {
            cluster: inner.cluster().clone(),
            group,
            membership: Mutex::new(Membership {
                member_id: String::new(),
                generation: -1,
                rejoin: true,
                fenced: None,
            }),
            coordinator: Mutex::new(None),
            last_poll: Mutex::new(Instant::now()),
            rejoining: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        Ok(Self {
            inner,
            shared,
            subscription: Vec::new(),
            listener: None,
            heartbeat: None,
            last_auto_commit: Instant::now(),
            consumed: BTreeMap::new(),
            assigned_counts: None,
            last_metadata_check: Instant::now(),
            leader: false,
            previous: (Vec::new(), -1),
        })
    }

    /// Subscribes to `topics`; a change of subscription rebalances the group.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let mut t: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
        t.sort();
        t.dedup();
        if t != self.subscription {
            self.subscription = t;
            self.shared.membership.lock().rejoin = true;
        }
    }

    /// Subscribes with rebalance callbacks.
    pub fn subscribe_with(&mut self, topics: &[&str], listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
        self.subscribe(topics);
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }

    /// This member's id and generation (empty / -1 outside a generation).
    pub fn member(&self) -> (String, i32) {
        let m = self.shared.membership.lock();
        (m.member_id.clone(), m.generation)
    }

    /// The next offset `poll` returns, per owned partition.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.inner.position(tp)
    }

    /// Polls for records, first (re)joining the group when a rebalance is due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let start = Instant::now();
        *self.shared.last_poll.lock() = start;
        if self.subscription.is_empty() {
            return Err(api(
                ErrorCode::InvalidRequest,
                "subscribe to at least one topic before poll",
            ));
        }
        let fenced = self.shared.membership.lock().fenced.clone();
        if let Some(e) = fenced {
            // Another process owns this instance id and its partitions now.
            self.inner.assign(Vec::new());
            self.consumed.clear();
            return Err(e.into());
        }
        self.ensure_heartbeat();
        self.maybe_check_partitions().await;
        let must_rejoin = {
            let m = self.shared.membership.lock();
            // A member id without a generation is out of the group whatever
            // the flag says.
            m.rejoin || (!m.member_id.is_empty() && m.generation < 0)
        };
        if must_rejoin {
            self.shared.rejoining.store(true, Ordering::Relaxed);
            let r = self
                .rejoin(start + timeout.max(self.shared.cluster.config.request_timeout))
                .await;
            self.shared.rejoining.store(false, Ordering::Relaxed);
            *self.shared.last_poll.lock() = Instant::now();
            r?;
        }
        self.maybe_auto_commit().await;
        let remaining = timeout.saturating_sub(start.elapsed());
        let records = match self.inner.poll(remaining).await {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        for r in &records {
            self.consumed
                .insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
        }
        Ok(records)
    }

    fn ensure_heartbeat(&mut self) {
        if self.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let shared = self.shared.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            let cfg = shared.cluster.config.clone();
            let mut tick = tokio::time::interval(cfg.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !shared.closed.load(Ordering::Relaxed) {
                tick.tick().await;
                if shared.closed.load(Ordering::Relaxed) {
                    return;
                }
                let idle = shared.last_poll.lock().elapsed();
                if idle > cfg.max_poll_interval && !shared.rejoining.load(Ordering::Relaxed) {
                    // The application stopped polling: let the group move on.
                    let in_group = !shared.membership.lock().member_id.is_empty();
                    if in_group {
                        warn!(
                            group = %shared.group,
                            idle_ms = idle.as_millis() as u64,
                            "poll was not called within max.poll.interval.ms; leaving the group"
                        );
                        shared.leave("consumer poll timeout has expired").await;
                    }
                    continue;
                }
                if let Err(e) = shared.heartbeat_once().await {
                    debug!(group = %shared.group, error = %e, "heartbeat");
                }
            }
        }));
    }

    /// The leader notices when a subscribed topic gains partitions.
    async fn maybe_check_partitions(&mut self) {
        if !self.leader || self.last_metadata_check.elapsed() < PARTITION_CHECK_INTERVAL {
            return;
        }
        self.last_metadata_check = Instant::now();
        let Some((topics, before)) = &self.assigned_counts else {
            return;
        };
        if self.shared.cluster.refresh(topics).await.is_err() {
            return;
        }
        let now = self.partition_counts(topics);
        if &now != before {
            info!(group = %self.shared.group, "subscribed topics changed partitions; rebalancing");
            self.shared.membership.lock().rejoin = true;
        }
    }

    fn partition_counts(&self, topics: &[String]) -> BTreeMap<String, i32> {
        topics
            .iter()
            .filter_map(|t| {
                self.shared
                    .cluster
                    .topic(t)
                    .map(|i| (t.clone(), i.partitions.len() as i32))
            })
            .collect()
    }

    async fn maybe_auto_commit(&mut self) {
        let cfg = &self.shared.cluster.config;
        if !cfg.enable_auto_commit || self.last_auto_commit.elapsed() < cfg.auto_commit_interval {
            return;
        }
        self.last_auto_commit = Instant::now();
        if let Err(e) = self.commit_consumed().await {
            warn!(group = %self.shared.group, error = %e, "auto-commit failed");
        }
    }

    /// Commits what `poll` has returned so far.
    async fn commit_consumed(&mut self) -> Result<()> {
        let offsets = self.consumed.clone();
        commit(&self.shared, &offsets).await?;
        // Committed offsets need not be committed again.
        for (tp, o) in offsets {
            if self.consumed.get(&tp) == Some(&o) {
                self.consumed.remove(&tp);
            }
        }
        Ok(())
    }

    /// Commits the offsets `poll` has returned (Kafka's `commitSync()`).
    pub async fn commit_sync(&mut self) -> Result<()> {
        self.commit_consumed().await
    }

    /// Commits explicit offsets (the next offset to read per partition).
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        commit(&self.shared, offsets).await
    }

    /// Commits what `poll` has returned in the background (Kafka's
    /// `commitAsync`); `callback` gets the outcome.
    pub fn commit_async(&mut self, callback: Option<Box<dyn FnOnce(Result<()>) + Send>>) {
        let offsets = std::mem::take(&mut self.consumed);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let r = commit(&shared, &offsets).await;
            match callback {
                Some(cb) => cb(r),
                None => {
                    if let Err(e) = r {
                        warn!(group = %shared.group, error = %e, "async commit failed");
                    }
                }
            }
        });
    }

    /// The committed offsets of `tps` (-1: none).
    pub async fn committed(&self, tps: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        fetch_committed(&self.shared, tps).await
    }

    /// Gives up the current assignment, then joins and syncs until this
    /// member has a new one.
    async fn rejoin(&mut self, deadline: Instant) -> Result<()> {
        let owned = self.inner.assignment();
        if !owned.is_empty() {
            if self.shared.cluster.config.enable_auto_commit
                && let Err(e) = self.commit_consumed().await
            {
                warn!(group = %self.shared.group, error = %e, "commit before rebalance failed");
            }
            if let Some(l) = self.listener.as_mut() {
                let mut committer = Committer {
                    shared: self.shared.clone(),
                };
                l.on_partitions_revoked(&mut committer, &owned).await;
            }
            self.previous = (owned, self.shared.membership.lock().generation);
            self.inner.assign(Vec::new());
            self.consumed.clear();
        }
        loop {
            match self.join_and_sync().await {
                Ok(tps) => {
                    self.apply_assignment(tps).await?;
                    return Ok(());
                }
                Err(e)
                    if (e.is_retriable()
                        || generation_over(e.code())
                        || e.code() == ErrorCode::MemberIdRequired)
                        && Instant::now() < deadline =>
                {
                    debug!(group = %self.shared.group, error = %e, "rejoining");
                    if !generation_over(e.code()) && e.code() != ErrorCode::MemberIdRequired {
                        backoff(&self.shared.cluster).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn join_and_sync(&mut self) -> Result<Vec<TopicPartition>> {
        let cfg = self.shared.cluster.config.clone();
        let subscription = consumer_protocol::encode_subscription(&Subscription {
            topics: self.subscription.clone(),
            owned_partitions: self
                .previous
                .0
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect(),
            generation_id: self.previous.1,
            rack_id: None,
        });
        let (member_id, sent_generation) = {
            let m = self.shared.membership.lock();
            (m.member_id.clone(), m.generation)
        };
        let mut c = self.shared.coordinator().await?;
        let r = c
            .join_group(timed(
                pb::JoinGroupRequest {
                    group_id: self.shared.group.clone(),
                    session_timeout_ms: cfg.session_timeout.as_millis() as i32,
                    rebalance_timeout_ms: cfg.max_poll_interval.as_millis() as i32,
                    member_id: member_id.clone(),
                    group_instance_id: cfg.group_instance_id.clone(),
                    protocol_type: "consumer".into(),
                    protocols: cfg
                        .partition_assignment_strategy
                        .iter()
                        .map(|name| pb::JoinGroupProtocol {
                            name: name.clone(),
                            metadata: subscription.clone(),
                        })
                        .collect(),
                    client_id: cfg.client_id.clone(),
                    reason: String::new(),
                    client_host: String::new(),
                },
                // The join may wait for every member, up to the rebalance timeout.
                cfg.max_poll_interval + Duration::from_secs(5),
            ))
            .await
            .map_err(|s| self.shared.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
            if e.code == ErrorCode::MemberIdRequired {
                self.shared.membership.lock().member_id = r.member_id;
                return Err(e.into());
            }
            self.shared.note(&e, (&member_id, sent_generation));
            return Err(e.into());
        }
        {
            let mut m = self.shared.membership.lock();
            m.member_id = r.member_id.clone();
            m.generation = r.generation_id;
        }
        self.leader = r.leader == r.member_id;
        let assignments = if self.leader {
            self.assign(&r.protocol_name, &r.members).await?
        } else {
            Vec::new()
        };
        let s = c
            .sync_group(timed(
                pb::SyncGroupRequest {
                    group_id: self.shared.group.clone(),
                    generation_id: r.generation_id,
                    member_id: r.member_id.clone(),
                    group_instance_id: cfg.group_instance_id.clone(),
                    protocol_type: "consumer".into(),
                    protocol_name: r.protocol_name.clone(),
                    assignments,
                },
                cfg.request_timeout,
            ))
            .await
            .map_err(|s| self.shared.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(s.error.as_ref()) {
            self.shared.note(&e, (&r.member_id, r.generation_id));
            return Err(e.into());
        }
        let assigned = consumer_protocol::decode_assignment(s.assignment).map_err(|e| {
            api(
                ErrorCode::CorruptMessage,
                format!("undecodable assignment: {e}"),
            )
        })?;
        {
            // Settled, unless something ended this very generation meanwhile.
            let mut m = self.shared.membership.lock();
            if m.member_id == r.member_id && m.generation == r.generation_id {
                m.rejoin = false;
            }
        }
        let mut tps: Vec<TopicPartition> = assigned
            .into_iter()
            .map(|(topic, p)| TopicPartition::new(topic, p))
            .collect();
        tps.sort();
        info!(
            group = %self.shared.group,
            generation = r.generation_id,
            leader = self.leader,
            partitions = tps.len(),
            "joined the group"
        );
        Ok(tps)
    }

    /// The leader's part: run the chosen assignor over every member's
    /// subscription.
    async fn assign(
        &mut self,
        protocol: &str,
        members: &[pb::JoinGroupMember],
    ) -> Result<Vec<pb::SyncGroupAssignment>> {
        let assignor = assignor::by_name(protocol).ok_or_else(|| {
            api(
                ErrorCode::InconsistentGroupProtocol,
                format!("unknown assignor \"{protocol}\""),
            )
        })?;
        let mut subs = Vec::with_capacity(members.len());
        let mut topics = BTreeSet::new();
        for m in members {
            let s = consumer_protocol::decode_subscription(m.metadata.clone()).map_err(|e| {
                api(
                    ErrorCode::CorruptMessage,
                    format!("undecodable subscription of {}: {e}", m.member_id),
                )
            })?;
            topics.extend(s.topics.iter().cloned());
            subs.push(MemberSubscription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                topics: s.topics,
                owned_partitions: s.owned_partitions,
                generation_id: s.generation_id,
                rack_id: s.rack_id,
            });
        }
        let topics: Vec<String> = topics.into_iter().collect();
        self.shared.cluster.refresh(&topics).await?;
        let counts = self.partition_counts(&topics);
        self.assigned_counts = Some((topics, counts.clone()));
        self.last_metadata_check = Instant::now();
        let plan = assignor.assign(&counts, &subs);
        Ok(subs
            .iter()
            .zip(members)
            .map(|(m, joined)| {
                let mine = plan.get(&m.member_id).cloned().unwrap_or_default();
                // Each member gets the encoding its subscription came in, so
                // a Sluice consumer from before Kafka's encoding still reads
                // its share during a rolling upgrade.
                let assignment = if consumer_protocol::is_kafka_encoded(&joined.metadata) {
                    consumer_protocol::encode_assignment(&mine)
                } else {
                    consumer_protocol::encode_assignment_protobuf(&mine)
                };
                pb::SyncGroupAssignment {
                    member_id: m.member_id.clone(),
                    assignment,
                }
            })
            .collect())
    }

    /// Takes the new partitions, positioned at their committed offsets (or
    /// `auto.offset.reset` where none is committed).
    async fn apply_assignment(&mut self, tps: Vec<TopicPartition>) -> Result<()> {
        if !tps.is_empty() {
            // Positions come from the committed offsets before the partitions
            // are taken: if they cannot be read, falling back to
            // auto.offset.reset (and auto-committing that) could skip
            // records, so give the assignment up and join again instead.
            let committed = match fetch_committed(&self.shared, &tps).await {
                Ok(c) => c,
                Err(e) => {
                    self.shared.membership.lock().rejoin = true;
                    return Err(e);
                }
            };
            self.inner.assign(tps.clone());
            for tp in &tps {
                if let Some(o) = committed.get(tp).filter(|o| **o >= 0) {
                    self.inner.seek(tp, *o)?;
                }
            }
        } else {
            self.inner.assign(Vec::new());
        }
        self.last_auto_commit = Instant::now();
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&tps).await;
        }
        Ok(())
    }

    /// Commits (with auto-commit on), leaves the group and stops heartbeating.
    pub async fn close(mut self) -> Result<()> {
        let result = if self.shared.cluster.config.enable_auto_commit {
            self.commit_consumed().await
        } else {
            Ok(())
        };
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.shared.leave("the consumer is being closed").await;
        result
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// Asks the brokers which coordinator serves `group` and connects (lazily)
/// to it. Retriable errors (no coordinator yet) are returned as they are.
pub(crate) async fn find_coordinator(
    cluster: &Cluster,
    group: &str,
) -> Result<(String, GroupCoordinatorClient<Channel>)> {
    cluster.refresh(&[]).await?;
    let mut last = None;
    for addr in cluster.config.bootstrap_servers.clone() {
        let mut b = match cluster.broker_at(&addr) {
            Ok(b) => b,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let resp = match b
            .find_coordinator(FindCoordinatorRequest {
                key_type: CoordinatorKeyType::Group as i32,
                keys: vec![group.to_string()],
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                last = Some(ClientError::from_status(&addr, &s));
                continue;
            }
        };
        let Some(c) = resp.coordinators.into_iter().next() else {
            last = Some(api(
                ErrorCode::CoordinatorNotAvailable,
                "empty FindCoordinator answer",
            ));
            continue;
        };
        if let Some(e) = ApiError::from_proto(c.error.as_ref()) {
            return Err(e.into());
        }
        let addr = format!("{}:{}", c.host, c.port);
        return Ok((addr.clone(), coordinator_client(&addr)?));
    }
    Err(last.unwrap_or_else(|| {
        api(
            ErrorCode::CoordinatorNotAvailable,
            "no broker answered FindCoordinator",
        )
    }))
}

/// A lazily connected client of the coordinator at `addr` (`HOST:PORT`).
pub(crate) fn coordinator_client(addr: &str) -> Result<GroupCoordinatorClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| {
            api(
                ErrorCode::InvalidConfig,
                format!("coordinator address {addr}: {e}"),
            )
        })?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        // Notice a coordinator host that vanished without closing the socket.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(GroupCoordinatorClient::new(channel))
}

async fn fetch_committed(
    shared: &Shared,
    tps: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let topics: Vec<pb::OffsetFetchTopic> = by_topic
        .into_iter()
        .map(|(t, partitions)| pb::OffsetFetchTopic {
            name: t.to_string(),
            partitions,
        })
        .collect();
    let deadline = Instant::now() + shared.cluster.config.request_timeout;
    loop {
        let attempt = async {
            let mut c = shared.coordinator().await?;
            let r = c
                .offset_fetch(timed(
                    pb::OffsetFetchRequest {
                        group_id: shared.group.clone(),
                        topics: topics.clone(),
                    },
                    shared.cluster.config.request_timeout,
                ))
                .await
                .map_err(|s| shared.status(s))?
                .into_inner();
            if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
                // OffsetFetch carries no generation: only coordinator moves count.
                shared.note(&e, ("", i32::MIN));
                return Err(ClientError::from(e));
            }
            let mut out = BTreeMap::new();
            for t in r.topics {
                for p in t.partitions {
                    out.insert(
                        TopicPartition::new(t.name.clone(), p.partition),
                        p.committed_offset,
                    );
                }
            }
            Ok(out)
        }
        .await;
        match attempt {
            Ok(o) => return Ok(o),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                backoff(&shared.cluster).await;
            }
            Err(e) => return Err(e),
        }
    }
}
