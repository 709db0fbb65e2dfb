//! CreateTopics, DeleteTopics, CreatePartitions: each topic succeeds or fails on
//! its own, like Kafka.

use sluice_proto::controller as pb;

use tracing::instrument;

use sluice_auth::Operation;
use sluice_server::access::{Rights, audit_change};

use crate::controller::NewTopic;
use crate::{Controller, ControllerError};

fn explicit_assignment(a: &[pb::ReplicaAssignment]) -> Option<Vec<Vec<i32>>> {
    if a.is_empty() {
        return None;
    }
    let mut sorted: Vec<_> = a.iter().collect();
    sorted.sort_by_key(|r| r.partition);
    Some(sorted.into_iter().map(|r| r.broker_ids.clone()).collect())
}

#[instrument(skip_all, fields(topics = req.topics.len()))]
pub(super) async fn create_topics(
    controller: &Controller,
    rights: &Rights,
    req: pb::CreateTopicsRequest,
) -> pb::CreateTopicsResponse {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.clone();
        if let Err(e) = rights.create_topic(&name) {
            out.push(pb::CreatableTopicResult {
                name,
                error: Some(e.to_proto()),
                ..Default::default()
            });
            continue;
        }
        let new = NewTopic {
            name: t.name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignment: explicit_assignment(&t.assignments),
            configs: t.configs.into_iter().collect(),
        };
        let created = controller.create_topic(new, req.validate_only).await;
        if created.is_ok() && !req.validate_only {
            audit_change(rights.caller(), "create-topic", &name);
        }
        out.push(match created {
            Ok(r) => pb::CreatableTopicResult {
                name,
                error: None,
                topic_id: r.topic_id.clone(),
                num_partitions: r.num_partitions(),
                replication_factor: r.replication_factor(),
                configs: r.configs.into_iter().collect(),
            },
            Err(e) => pb::CreatableTopicResult {
                name,
                error: Some(e.to_proto()),
                ..Default::default()
            },
        });
    }
    pb::CreateTopicsResponse { topics: out }
}

#[instrument(skip_all, fields(topics = req.names.len()))]
pub(super) async fn delete_topics(
    controller: &Controller,
    rights: &Rights,
    req: pb::DeleteTopicsRequest,
) -> pb::DeleteTopicsResponse {
    let mut out = Vec::with_capacity(req.names.len());
    for name in req.names {
        let error = match rights.topic(Operation::Delete, &name) {
            Err(e) => Some(e.to_proto()),
            Ok(()) => match controller.delete_topic(&name).await {
                Ok(()) => {
                    audit_change(rights.caller(), "delete-topic", &name);
                    None
                }
                Err(e) => Some(e.to_proto()),
            },
        };
        out.push(pb::DeletableTopicResult { name, error });
    }
    pb::DeleteTopicsResponse { topics: out }
}

#[instrument(skip_all, fields(topics = req.topics.len()))]
pub(super) async fn create_partitions(
    controller: &Controller,
    rights: &Rights,
    req: pb::CreatePartitionsRequest,
) -> pb::CreatePartitionsResponse {
    let mut out = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        if let Err(e) = rights.topic(Operation::Alter, &t.name) {
            out.push(pb::CreatePartitionsTopicResult {
                name: t.name,
                error: Some(e.to_proto()),
            });
            continue;
        }
        let assignment = if t.assignments.is_empty() {
            None
        } else {
            Some(t.assignments.iter().map(|a| a.broker_ids.clone()).collect())
        };
        let error = match controller
            .create_partitions(&t.name, t.count, assignment, req.validate_only)
            .await
        {
            Ok(()) => {
                if !req.validate_only {
                    let detail = format!("{} to {} partitions", t.name, t.count);
                    audit_change(rights.caller(), "create-partitions", &detail);
                }
                None
            }
            Err(e) => Some(ControllerError::to_proto(&e)),
        };
        out.push(pb::CreatePartitionsTopicResult {
            name: t.name,
            error,
        });
    }
    pb::CreatePartitionsResponse { topics: out }
}
