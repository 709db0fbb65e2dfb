//! Consumer-group administration on [`Admin`]: list, describe, read and
//! reset committed offsets, delete (what `kafka-consumer-groups.sh` does).
//!
//! Listing asks every live coordinator (from DescribeCluster); everything
//! else goes to the group's coordinator, found through any broker, retrying
//! coordinator moves and loads until `request.timeout.ms`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use crate::cluster::Channel;
use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_types::{ApiError, ErrorCode};

use crate::admin::Admin;
use crate::error::{ClientError, Result};
use crate::group_consumer::{
    backoff, commit_topics_with_metadata, coordinator_client, find_coordinator,
};
use crate::types::TopicPartition;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// "classic" (JoinGroup/SyncGroup) or "consumer" (KIP-848).
    pub group_type: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// Its partitions (decoded from the consumer protocol assignment).
    pub assignment: Vec<TopicPartition>,
    /// A consumer-protocol member's epoch and target assignment.
    pub consumer: Option<ConsumerMemberState>,
}

/// Where a consumer-protocol (KIP-848) member stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberState {
    pub member_epoch: i32,
    /// What it is moving to (equal to `assignment` once reconciled).
    pub target: Vec<TopicPartition>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state names: Empty, Stable, PreparingRebalance, ... Dead.
    pub state: String,
    /// The assignor in use.
    pub protocol: String,
    pub generation: i32,
    /// The coordinator serving it (`HOST:PORT`).
    pub coordinator: String,
    pub members: Vec<MemberDescription>,
    /// "classic" or "consumer".
    pub group_type: String,
    /// For a consumer-protocol group: the epoch its target assignment was
    /// computed for (`generation` is its group epoch).
    pub assignment_epoch: Option<i32>,
}

fn retriable(e: &ClientError) -> bool {
    e.is_retriable()
        || matches!(
            e.code(),
            ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::CoordinatorLoadInProgress
        )
}

impl Admin {
    /// Runs `f` against the group's coordinator, finding it again on
    /// coordinator moves, until `request.timeout.ms`.
    async fn with_group_coordinator<T, F, Fut>(&self, group: &str, f: F) -> Result<T>
    where
        F: Fn(String, GroupCoordinatorClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cluster = self.cluster();
        let deadline = Instant::now() + cluster.config.request_timeout;
        loop {
            let attempt = async {
                let (addr, c) = find_coordinator(cluster, group).await?;
                f(addr, c).await
            }
            .await;
            match attempt {
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    backoff(cluster).await;
                }
                other => return other,
            }
        }
    }

    /// Every group of every live coordinator, sorted by id.
    pub async fn list_consumer_groups(&self) -> Result<Vec<GroupListing>> {
        let cluster = self.describe_cluster().await?;
        let mut out = Vec::new();
        for c in cluster.coordinators {
            let addr = format!("{}:{}", c.host, c.port);
            let resp = coordinator_client(&addr, self.cluster())?
                .list_groups(pb::ListGroupsRequest::default())
                .await
                .map_err(|s| ClientError::from_status(&addr, &s))?
                .into_inner();
            if let Some(e) = ApiError::from_proto(resp.error.as_ref()) {
                return Err(e.into());
            }
            out.extend(resp.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id,
                state: g.group_state,
                protocol_type: g.protocol_type,
                group_type: g.group_type,
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// Describes one group (state Dead when it does not exist).
    pub async fn describe_consumer_group(&self, group: &str) -> Result<GroupDescription> {
        self.with_group_coordinator(group, |addr, mut c| async move {
            let mut c2 = c.clone();
            let resp = c
                .describe_groups(pb::DescribeGroupsRequest {
                    group_ids: vec![group.to_string()],
                })
                .await
                .map_err(|s| ClientError::from_status(&addr, &s))?
                .into_inner();
            let g = resp.groups.into_iter().next().ok_or_else(|| {
                ClientError::Api(ApiError::new(
                    ErrorCode::UnknownServerError,
                    "empty DescribeGroups answer",
                ))
            })?;
            if let Some(e) = ApiError::from_proto(g.error.as_ref()) {
                return Err(e.into());
            }
            let mut d = GroupDescription {
                group_id: g.group_id,
                state: g.group_state,
                protocol: g.protocol_data,
                generation: g.generation_id,
                coordinator: addr.clone(),
                members: g
                    .members
                    .into_iter()
                    .map(|m| MemberDescription {
                        assignment: decode_assignment(m.member_assignment),
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        host: m.client_host,
                        consumer: None,
                    })
                    .collect(),
                group_type: g.group_type,
                assignment_epoch: None,
            };
            if d.group_type == "consumer" {
                let resp = c2
                    .consumer_group_describe(pb::ConsumerGroupDescribeRequest {
                        group_ids: vec![group.to_string()],
                    })
                    .await
                    .map_err(|s| ClientError::from_status(&addr, &s))?
                    .into_inner();
                if let Some(cg) = resp.groups.into_iter().next()
                    && cg.error.is_none()
                {
                    add_consumer_state(&mut d, cg);
                }
            }
            Ok(d)
        })
        .await
    }

    /// Every offset the group has committed.
    pub async fn list_consumer_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        Ok(self
            .group_offsets_with_metadata(group)
            .await?
            .into_iter()
            .map(|(tp, (o, _))| (tp, o))
            .collect())
    }

    /// Every offset the group has committed, with its metadata string.
    pub(crate) async fn group_offsets_with_metadata(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, (i64, String)>> {
        self.with_group_coordinator(group, |addr, mut c| async move {
            let resp = c
                .offset_fetch(pb::OffsetFetchRequest {
                    group_id: group.to_string(),
                    topics: Vec::new(),
                })
                .await
                .map_err(|s| ClientError::from_status(&addr, &s))?
                .into_inner();
            if let Some(e) = ApiError::from_proto(resp.error.as_ref()) {
                return Err(e.into());
            }
            Ok(resp
                .topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions
                        .into_iter()
                        .filter(|p| p.committed_offset >= 0)
                        .map(move |p| {
                            (
                                TopicPartition::new(name.clone(), p.partition),
                                (p.committed_offset, p.metadata),
                            )
                        })
                })
                .collect())
        })
        .await
    }

    /// Sets committed offsets of a group with no active members (Kafka's
    /// `--reset-offsets --execute`); an active group answers UNKNOWN_MEMBER_ID.
    pub async fn alter_consumer_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let with_metadata = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), (*o, String::new())))
            .collect();
        self.alter_group_offsets_with_metadata(group, &with_metadata)
            .await
    }

    /// [`Admin::alter_consumer_group_offsets`] with a metadata string per offset.
    pub(crate) async fn alter_group_offsets_with_metadata(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
    ) -> Result<()> {
        let topics = commit_topics_with_metadata(offsets);
        self.with_group_coordinator(group, |addr, mut c| {
            let topics = topics.clone();
            async move {
                let resp = c
                    .offset_commit(pb::OffsetCommitRequest {
                        group_id: group.to_string(),
                        generation_id: -1,
                        member_id: String::new(),
                        group_instance_id: None,
                        topics,
                    })
                    .await
                    .map_err(|s| ClientError::from_status(&addr, &s))?
                    .into_inner();
                match resp
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .find_map(|p| ApiError::from_proto(p.error.as_ref()))
                {
                    Some(e) if e.code == ErrorCode::UnknownMemberId => Err(ApiError::new(
                        ErrorCode::NonEmptyGroup,
                        format!("group \"{group}\" has active members; stop them before resetting offsets"),
                    )
                    .into()),
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                }
            }
        })
        .await
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_consumer_group(&self, group: &str) -> Result<()> {
        self.with_group_coordinator(group, |addr, mut c| async move {
            let resp = c
                .delete_groups(pb::DeleteGroupsRequest {
                    group_ids: vec![group.to_string()],
                })
                .await
                .map_err(|s| ClientError::from_status(&addr, &s))?
                .into_inner();
            match resp
                .results
                .first()
                .and_then(|r| ApiError::from_proto(r.error.as_ref()))
            {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        })
        .await
    }
}

/// Epochs and target assignments from ConsumerGroupDescribe.
fn add_consumer_state(d: &mut GroupDescription, cg: pb::DescribedConsumerGroup) {
    d.assignment_epoch = Some(cg.assignment_epoch);
    let flat = |a: Option<pb::MemberAssignment>| -> Vec<TopicPartition> {
        a.unwrap_or_default()
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect()
    };
    for m in cg.members {
        if let Some(md) = d.members.iter_mut().find(|x| x.member_id == m.member_id) {
            md.consumer = Some(ConsumerMemberState {
                member_epoch: m.member_epoch,
                target: flat(m.target_assignment),
            });
        }
    }
}

fn decode_assignment(bytes: bytes::Bytes) -> Vec<TopicPartition> {
    crate::consumer_protocol::decode_assignment(bytes)
        .unwrap_or_default()
        .into_iter()
        .map(|(t, p)| TopicPartition::new(t, p))
        .collect()
}
