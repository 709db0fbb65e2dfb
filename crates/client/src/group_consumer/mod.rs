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
//!
//! # Layout
//! - this file: [`GroupConsumer`]'s public face (`subscribe`, `poll`,
//!   `close`), [`RebalanceListener`], and the heartbeat task.
//! - `membership`: the member id / generation / rejoin / fenced state
//!   machine, pure and unit-tested.
//! - `coordinator`: the state shared with the heartbeat task, finding the
//!   coordinator, heartbeats and LeaveGroup.
//! - `rebalance`: giving partitions up, JoinGroup/SyncGroup, the leader's
//!   assignment, and taking the new partitions at their committed offsets.
//! - `commit`: OffsetCommit/OffsetFetch, [`Committer`] and the bookkeeping of
//!   what `poll` returned.
//! - `nack`: [`GroupConsumer::nack`], retry and dead-letter topics.
//! - `tests`: the member's state handling through [`GroupConsumer`] itself,
//!   without a coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sluice_types::{ApiError, ErrorCode};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cluster::Cluster;
use crate::config::{ClientConfig, GroupProtocol};
use crate::consumer::{Consumer, ConsumerRecord};
use crate::dead_letter::Policy;
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

mod commit;
mod coordinator;
mod membership;
mod nack;
mod rebalance;
mod server_assigned;
#[cfg(test)]
mod tests;

pub use commit::Committer;
use commit::Consumed;
pub(crate) use commit::commit_topics_with_metadata;
use coordinator::Shared;
pub(crate) use coordinator::{coordinator_client, find_coordinator};
use membership::{HeartbeatTick, heartbeat_tick};
use nack::DeadLetters;
pub use nack::Nacked;

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
    /// offsets or `auto.offset.reset`). With `group.protocol=consumer`,
    /// `partitions` are only the ones added.
    fn on_partitions_assigned<'a>(
        &'a mut self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()>;

    /// The member was fenced or removed (`group.protocol=consumer`): the
    /// partitions may be another member's already, so nothing can be
    /// committed for them. Does nothing unless overridden.
    fn on_partitions_lost<'a>(&'a mut self, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }
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

/// A consumer in a group: `subscribe`, `poll`, `commit`.
pub struct GroupConsumer {
    inner: Consumer,
    shared: Arc<Shared>,
    subscription: Vec<String>,
    listener: Option<Box<dyn RebalanceListener>>,
    heartbeat: Option<JoinHandle<()>>,
    last_auto_commit: Instant,
    /// Offsets `poll` has returned up to (the next offset), per partition.
    consumed: Consumed,
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
    /// Where `nack`ed records go.
    dead_letters: DeadLetters,
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
        let dead_letters = DeadLetters::new(Policy::from_config(&config));
        let inner = Consumer::new(config)?;
        let shared = Arc::new(Shared::new(inner.cluster().clone(), group));
        Ok(Self {
            inner,
            shared,
            subscription: Vec::new(),
            listener: None,
            heartbeat: None,
            last_auto_commit: Instant::now(),
            consumed: Consumed::default(),
            assigned_counts: None,
            last_metadata_check: Instant::now(),
            leader: false,
            previous: (Vec::new(), -1),
            dead_letters,
        })
    }

    /// Subscribes to `topics`; a change of subscription rebalances the group.
    /// With `max.delivery.attempts` above 1, their retry topics too.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let mut t: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
        let policy = &self.dead_letters.policy;
        let retry: Vec<String> = t.iter().filter_map(|t| policy.retry_topic_of(t)).collect();
        t.extend(retry);
        t.sort();
        t.dedup();
        if t != self.subscription {
            self.shared.reconciliation.lock().subscribe(&t);
            self.shared.wake.notify_one();
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
        if self.shared.protocol == GroupProtocol::Consumer {
            // The coordinator assigns and notices new partitions.
            self.reconcile().await?;
        } else {
            self.rejoin_if_due(start, timeout).await?;
        }
        self.maybe_auto_commit().await;
        let remaining = timeout.saturating_sub(start.elapsed());
        let records = match self.inner.poll(remaining).await {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        self.consumed.record(&records);
        Ok(records)
    }

    /// The classic protocol: joins again when the group rebalances.
    async fn rejoin_if_due(&mut self, start: Instant, timeout: Duration) -> Result<()> {
        self.maybe_check_partitions().await;
        let must_rejoin = self.shared.membership.lock().must_rejoin();
        if must_rejoin {
            self.shared.rejoining.store(true, Ordering::Relaxed);
            let r = self
                .rejoin(start + timeout.max(self.shared.cluster.config.request_timeout))
                .await;
            self.shared.rejoining.store(false, Ordering::Relaxed);
            *self.shared.last_poll.lock() = Instant::now();
            r?;
        }
        Ok(())
    }

    fn ensure_heartbeat(&mut self) {
        if self.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let shared = self.shared.clone();
        if shared.protocol == GroupProtocol::Consumer {
            self.heartbeat = Some(tokio::spawn(server_assigned::run(shared)));
            return;
        }
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
                let rejoining = shared.rejoining.load(Ordering::Relaxed);
                let in_group = !shared.membership.lock().member_id.is_empty();
                match heartbeat_tick(idle, cfg.max_poll_interval, rejoining, in_group) {
                    HeartbeatTick::Leave => {
                        // The application stopped polling: let the group move on.
                        warn!(
                            group = %shared.group,
                            idle_ms = idle.as_millis() as u64,
                            "poll was not called within max.poll.interval.ms; leaving the group"
                        );
                        shared.leave("consumer poll timeout has expired").await;
                    }
                    HeartbeatTick::Idle => {}
                    HeartbeatTick::Heartbeat => {
                        if let Err(e) = shared.heartbeat_once().await {
                            debug!(group = %shared.group, error = %e, "heartbeat");
                        }
                    }
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

    /// Commits (with auto-commit on), leaves the group and stops heartbeating.
    pub async fn close(mut self) -> Result<()> {
        let result = if self.shared.cluster.config.enable_auto_commit {
            self.commit_consumed().await
        } else {
            Ok(())
        };
        self.dead_letters.close().await;
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        match self.shared.protocol {
            GroupProtocol::Consumer => {
                server_assigned::leave(&self.shared, "the consumer is being closed").await
            }
            GroupProtocol::Classic => self.shared.leave("the consumer is being closed").await,
        }
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
