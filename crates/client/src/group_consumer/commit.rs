//! Offsets: the [`Committer`] handed to rebalance callbacks, OffsetCommit
//! (bound to the generation the offsets were consumed in) and OffsetFetch,
//! the member's own commit calls (`commit_sync`, `commit_async`,
//! auto-commit), and [`Consumed`], the bookkeeping of what `poll` has
//! returned and not yet committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use sluice_proto::coordinator as pb;
use sluice_types::{ApiError, ErrorCode};
use tracing::warn;

use super::coordinator::Shared;
use super::membership::generation_over;
use super::{GroupConsumer, api, backoff, timed};
use crate::config::GroupProtocol;
use crate::consumer::ConsumerRecord;
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

/// Commits offsets for the group; handed to rebalance callbacks too.
pub struct Committer {
    pub(super) shared: Arc<Shared>,
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

/// What `poll` has returned and not yet committed: per partition, the next
/// offset to read (the last returned offset + 1).
#[derive(Debug, Default)]
pub(super) struct Consumed(BTreeMap<TopicPartition, i64>);

impl Consumed {
    /// Notes records `poll` returns (in offset order per partition).
    pub(super) fn record(&mut self, records: &[ConsumerRecord]) {
        for r in records {
            self.0
                .insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
        }
    }

    /// The offsets to commit now.
    pub(super) fn snapshot(&self) -> BTreeMap<TopicPartition, i64> {
        self.0.clone()
    }

    /// Makes `tp`'s next offset to commit at most `offset` (a record to be
    /// read again must not be committed past).
    pub(super) fn rewind(&mut self, tp: &TopicPartition, offset: i64) {
        let next = self.0.entry(tp.clone()).or_insert(offset);
        *next = (*next).min(offset);
    }

    /// Hands everything over (to a background commit).
    pub(super) fn take(&mut self) -> BTreeMap<TopicPartition, i64> {
        std::mem::take(&mut self.0)
    }

    /// `offsets` were committed: forget the partitions that have not moved
    /// on since, so they are not committed again.
    pub(super) fn committed(&mut self, offsets: &BTreeMap<TopicPartition, i64>) {
        for (tp, o) in offsets {
            if self.0.get(tp) == Some(o) {
                self.0.remove(tp);
            }
        }
    }

    /// These partitions were given up: their offsets are not ours to commit.
    pub(super) fn forget(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.0.remove(tp);
        }
    }

    /// The partitions were given up: their offsets are not ours to commit.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// OffsetCommit's topics for `offsets` (the next offset per partition).
pub(crate) fn commit_topics(offsets: &BTreeMap<TopicPartition, i64>) -> Vec<pb::OffsetCommitTopic> {
    group_by_topic(offsets.iter().map(|(tp, o)| (tp, *o, String::new())))
}

/// [`commit_topics`] with a metadata string per offset.
pub(crate) fn commit_topics_with_metadata(
    offsets: &BTreeMap<TopicPartition, (i64, String)>,
) -> Vec<pb::OffsetCommitTopic> {
    group_by_topic(offsets.iter().map(|(tp, (o, m))| (tp, *o, m.clone())))
}

fn group_by_topic<'a>(
    offsets: impl Iterator<Item = (&'a TopicPartition, i64, String)>,
) -> Vec<pb::OffsetCommitTopic> {
    let mut by_topic: BTreeMap<&str, Vec<pb::OffsetCommitPartition>> = BTreeMap::new();
    for (tp, o, metadata) in offsets {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push(pb::OffsetCommitPartition {
                partition: tp.partition,
                committed_offset: o,
                committed_leader_epoch: -1,
                metadata,
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

pub(super) async fn commit(shared: &Shared, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let topics = commit_topics(offsets);
    let deadline = Instant::now() + shared.cluster.config.request_timeout;
    // The generation these offsets were consumed in, read once: a retry after
    // a rebalance must not commit them under the next generation, when the
    // partitions may belong to another member.
    let current = shared.membership.lock().current();
    // A consumer-protocol member at epoch 0 is joining: not in the group.
    let current = current.filter(|(_, g)| shared.protocol == GroupProtocol::Classic || *g > 0);
    let Some((member_id, mut generation)) = current else {
        return Err(api(
            ErrorCode::RebalanceInProgress,
            format!(
                "cannot commit for group {}: the member is not in a generation (rejoining)",
                shared.group
            ),
        ));
    };
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
            // The consumer protocol: the member's epoch moved on (a
            // heartbeat answer is on its way). The member keeps the
            // partitions it is committing across epochs until it revokes
            // them, so it commits again under its new epoch.
            Err(e) if e.code() == ErrorCode::StaleMemberEpoch && Instant::now() < deadline => {
                shared.wake.notify_one();
                backoff(&shared.cluster).await;
                let now = shared.membership.lock().current();
                match now {
                    Some((id, epoch)) if id == member_id && epoch > 0 => generation = epoch,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn fetch_committed(
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

impl GroupConsumer {
    pub(super) async fn maybe_auto_commit(&mut self) {
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
    pub(super) async fn commit_consumed(&mut self) -> Result<()> {
        let offsets = self.consumed.snapshot();
        commit(&self.shared, &offsets).await?;
        // Committed offsets need not be committed again.
        self.consumed.committed(&offsets);
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
        let offsets = self.consumed.take();
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    #[test]
    fn consumed_keeps_the_next_offset_per_partition() {
        let mut c = Consumed::default();
        c.record(&[record("t", 0, 0), record("t", 0, 1), record("t", 1, 7)]);
        c.record(&[record("t", 0, 2), record("u", 0, 40)]);
        let want: BTreeMap<_, _> = [(tp("t", 0), 3), (tp("t", 1), 8), (tp("u", 0), 41)].into();
        assert_eq!(c.snapshot(), want);
    }

    #[test]
    fn committed_forgets_only_partitions_that_did_not_move_on() {
        let mut c = Consumed::default();
        c.record(&[record("t", 0, 4), record("t", 1, 9)]);
        let sent = c.snapshot();
        // More of t-0 was returned after the snapshot was sent.
        c.record(&[record("t", 0, 5)]);
        c.committed(&sent);
        let want: BTreeMap<_, _> = [(tp("t", 0), 6)].into();
        assert_eq!(c.snapshot(), want);
        // Committing what is left empties it.
        c.committed(&want);
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn rewind_never_moves_the_commit_point_forward() {
        let mut c = Consumed::default();
        c.record(&[record("t", 0, 9)]);
        c.rewind(&tp("t", 0), 4);
        c.rewind(&tp("t", 0), 7);
        // A partition with nothing pending gets the rewound offset itself.
        c.rewind(&tp("t", 1), 3);
        assert_eq!(c.snapshot(), [(tp("t", 0), 4), (tp("t", 1), 3)].into());
    }

    #[test]
    fn take_and_clear_empty_the_bookkeeping() {
        let mut c = Consumed::default();
        c.record(&[record("t", 0, 1)]);
        assert_eq!(c.take(), [(tp("t", 0), 2)].into());
        assert!(c.snapshot().is_empty());
        c.record(&[record("t", 0, 2)]);
        c.clear();
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn commit_topics_groups_partitions_by_topic() {
        let offsets: BTreeMap<_, _> = [(tp("b", 1), 10), (tp("a", 0), 5), (tp("b", 0), 7)].into();
        let topics = commit_topics(&offsets);
        /// (partition, committed offset, committed leader epoch)
        type Committed = (i32, i64, i32);
        let got: Vec<(&str, Vec<Committed>)> = topics
            .iter()
            .map(|t| {
                let ps = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.committed_offset, p.committed_leader_epoch))
                    .collect();
                (t.name.as_str(), ps)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", vec![(0, 5, -1)]),
                ("b", vec![(0, 7, -1), (1, 10, -1)])
            ]
        );
    }
}
