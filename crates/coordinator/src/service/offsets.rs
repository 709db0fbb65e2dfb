//! Committed offsets: OffsetCommit (fenced by the group's generation and
//! member, written to `__consumer_offsets` before it is answered) and
//! OffsetFetch.

use std::collections::BTreeMap;

use sluice_proto::coordinator as pb;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::{CoordinatorService, check_group_id, err_proto};
use crate::coordinator::now_ms;
use crate::error::CoordinatorError;
use crate::group::CommittedOffset;
use crate::records::{self, OffsetValue, RecordKey};

pub(super) async fn offset_commit(
    svc: &CoordinatorService,
    rights: &Rights,
    mut req: pb::OffsetCommitRequest,
) -> pb::OffsetCommitResponse {
    let topics = req.topics.clone();
    // Offsets of topics the caller may not read are not committed (Kafka:
    // TOPIC_AUTHORIZATION_FAILED for those, the rest go through).
    let refused: BTreeMap<String, sluice_proto::common::Error> = topics
        .iter()
        .filter_map(|t| {
            let e = rights.topic(Operation::Read, &t.name).err()?;
            Some((t.name.clone(), e.to_proto()))
        })
        .collect();
    req.topics.retain(|t| !refused.contains_key(&t.name));
    let error = if req.topics.is_empty() && !refused.is_empty() {
        None
    } else {
        commit(svc, req).await.err()
    };
    pb::OffsetCommitResponse {
        topics: topics
            .into_iter()
            .map(|t| pb::OffsetCommitTopicResponse {
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| pb::OffsetCommitPartitionResponse {
                        partition: p.partition,
                        error: match refused.get(&t.name) {
                            Some(e) => Some(e.clone()),
                            None => error.as_ref().and_then(err_proto),
                        },
                    })
                    .collect(),
                name: t.name,
            })
            .collect(),
    }
}

async fn commit(
    svc: &CoordinatorService,
    req: pb::OffsetCommitRequest,
) -> Result<(), CoordinatorError> {
    check_group_id(&req.group_id)?;
    let c = &svc.coordinator;
    let group = req.group_id.clone();
    let simple = req.generation_id < 0 && req.member_id.is_empty();
    let now = now_ms();
    let offsets: Vec<((String, i32), CommittedOffset)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.clone(), p.partition),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.metadata.clone(),
                        commit_timestamp_ms: now,
                    },
                )
            })
        })
        .collect();
    // Checked and submitted under the group lock, so commits reach the
    // log in the order they were accepted.
    let (home, submitted) = c.with_group(&group, simple, |g, home| {
        let Some(g) = g else {
            return Err(CoordinatorError::UnknownMember {
                group: group.clone(),
                member: req.member_id.clone(),
            });
        };
        g.check_instance(&req.member_id, req.group_instance_id.as_deref())?;
        g.check_commit(&req.member_id, req.generation_id)?;
        g.commit_submitted(offsets.iter().map(|(tp, _)| tp.clone()));
        let recs = offsets
            .iter()
            .map(|((topic, partition), o)| {
                (
                    RecordKey::Offset {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Some(records::encode(&OffsetValue {
                        offset: o.clone(),
                        owner_epoch: home.epoch,
                    })),
                )
            })
            .collect();
        Ok((home, c.submit(home, recs)))
    })??;
    let write = submitted.number;
    let confirmed = c.confirm(&group, home, submitted).await;
    // A group deleted meanwhile stays deleted: its tombstones came later.
    c.with_group(&group, false, |g, _| {
        if let Some(g) = g {
            g.commit_finished(offsets.iter().map(|(tp, _)| tp));
            if confirmed.is_ok() {
                g.apply_commit(write, offsets);
            }
        }
    })?;
    confirmed
}

pub(super) fn offset_fetch(
    svc: &CoordinatorService,
    rights: &Rights,
    req: pb::OffsetFetchRequest,
) -> pb::OffsetFetchResponse {
    let res = check_group_id(&req.group_id).and_then(|()| {
        svc.coordinator.with_group(&req.group_id, false, |g, _| {
            g.map(|g| g.offsets.clone()).unwrap_or_default()
        })
    });
    let offsets = match res {
        Ok(o) => o,
        Err(e) => {
            return pb::OffsetFetchResponse {
                error: err_proto(&e),
                topics: Vec::new(),
            };
        }
    };
    let part = |topic: &str, p: i32| {
        let o = offsets.get(&(topic.to_string(), p));
        pb::OffsetFetchPartitionResponse {
            partition: p,
            committed_offset: o.map_or(-1, |o| o.offset),
            committed_leader_epoch: o.map_or(-1, |o| o.leader_epoch),
            metadata: o.map(|o| o.metadata.clone()).unwrap_or_default(),
            error: None,
        }
    };
    let topics = if req.topics.is_empty() {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in offsets.keys() {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .into_iter()
            // All topics: only those the caller may describe.
            .filter(|(t, _)| rights.sees_topic(t))
            .map(|(t, ps)| pb::OffsetFetchTopicResponse {
                name: t.to_string(),
                partitions: ps.into_iter().map(|p| part(t, p)).collect(),
            })
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| match rights.topic(Operation::Describe, &t.name) {
                Ok(()) => pb::OffsetFetchTopicResponse {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| part(&t.name, *p)).collect(),
                },
                Err(e) => pb::OffsetFetchTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| pb::OffsetFetchPartitionResponse {
                            partition: *p,
                            committed_offset: -1,
                            committed_leader_epoch: -1,
                            metadata: String::new(),
                            error: Some(e.to_proto()),
                        })
                        .collect(),
                },
            })
            .collect()
    };
    pb::OffsetFetchResponse {
        error: None,
        topics,
    }
}
