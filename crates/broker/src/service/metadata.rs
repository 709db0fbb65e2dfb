//! Metadata: brokers, topics, partitions and the active controller.

use sluice_proto::{broker as pb, common};
use sluice_types::names::{is_internal_topic, validate_topic_name};
use tracing::instrument;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::BrokerError;
use crate::metadata::{ClusterView, TopicView};

#[instrument(skip_all, fields(topics = req.topics.len()))]
pub(crate) async fn metadata(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::MetadataRequest,
) -> pb::MetadataResponse {
    let broker = &svc.broker;
    // A topic named but not describable is refused whether or not it
    // exists, so the answer reveals nothing about it.
    let refused: std::collections::HashMap<&str, common::Error> = req
        .topics
        .iter()
        .filter_map(|t| {
            let e = rights.topic(Operation::Describe, t).err()?;
            Some((t.as_str(), e.to_proto()))
        })
        .collect();
    let mut auto_create_error = None;
    if req.allow_auto_topic_creation && broker.config.auto_create_topics_enable {
        let missing: Vec<String> = broker.metadata.read(|v| {
            req.topics
                .iter()
                .filter(|t| !v.topics.contains_key(*t) && validate_topic_name(t).is_ok())
                .filter(|t| !refused.contains_key(t.as_str()))
                .filter(|t| {
                    rights.has_cluster(Operation::Create) || rights.may_topic(Operation::Create, t)
                })
                .cloned()
                .collect()
        });
        if !missing.is_empty() {
            auto_create_error = svc
                .auto_create_topics(&missing)
                .await
                .err()
                .map(|e| e.to_proto());
        }
    }
    broker.metadata.read(|view| {
        let topics = if req.topics.is_empty() {
            view.topics
                .values()
                .filter(|t| req.include_internal || !t.record.internal)
                .filter(|t| rights.sees_topic(&t.record.name))
                .map(|t| topic_metadata(view, t))
                .collect()
        } else {
            req.topics
                .iter()
                .map(|name| match view.topics.get(name) {
                    _ if refused.contains_key(name.as_str()) => pb::TopicMetadata {
                        error: refused.get(name.as_str()).cloned(),
                        name: name.clone(),
                        ..Default::default()
                    },
                    Some(t) => topic_metadata(view, t),
                    None => {
                        let error = match validate_topic_name(name) {
                            Err(e) => super::invalid_topic_name(name, e).to_proto(),
                            Ok(()) => auto_create_error.clone().unwrap_or_else(|| {
                                BrokerError::UnknownTopic {
                                    topic: name.clone(),
                                }
                                .to_proto()
                            }),
                        };
                        pb::TopicMetadata {
                            error: Some(error),
                            name: name.clone(),
                            is_internal: is_internal_topic(name),
                            ..Default::default()
                        }
                    }
                })
                .collect()
        };
        pb::MetadataResponse {
            brokers: view.brokers.values().map(endpoint).collect(),
            cluster_id: view.cluster_id.clone(),
            controller_id: view.controller.as_ref().map_or(-1, |c| c.controller_id),
            controller: view.controller.as_ref().map(|c| common::BrokerEndpoint {
                broker_id: c.controller_id,
                host: c.host.clone(),
                port: c.port,
                rack: None,
            }),
            topics,
        }
    })
}

pub(crate) fn endpoint(b: &sluice_types::meta::BrokerRegistration) -> common::BrokerEndpoint {
    common::BrokerEndpoint {
        broker_id: b.broker_id,
        host: b.host.clone(),
        port: b.port,
        rack: b.rack.clone(),
    }
}

fn topic_metadata(view: &ClusterView, t: &TopicView) -> pb::TopicMetadata {
    let partitions = t
        .record
        .assignment
        .iter()
        .enumerate()
        .map(|(p, replicas)| {
            let p = p as i32;
            let offline: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| !view.brokers.contains_key(r))
                .collect();
            match t.partitions.get(&p) {
                Some(s) => pb::PartitionMetadata {
                    error: if s.leader < 0 || !view.brokers.contains_key(&s.leader) {
                        Some(
                            BrokerError::NoLiveLeader {
                                topic: t.record.name.clone(),
                                partition: p,
                                leader: s.leader,
                            }
                            .to_proto(),
                        )
                    } else {
                        None
                    },
                    partition: p,
                    leader_id: s.leader,
                    leader_epoch: s.leader_epoch,
                    replicas: replicas.clone(),
                    isr: s.isr.clone(),
                    offline_replicas: offline,
                },
                None => pb::PartitionMetadata {
                    error: Some(
                        BrokerError::PartitionBeingCreated {
                            topic: t.record.name.clone(),
                            partition: p,
                        }
                        .to_proto(),
                    ),
                    partition: p,
                    leader_id: -1,
                    leader_epoch: -1,
                    replicas: replicas.clone(),
                    isr: Vec::new(),
                    offline_replicas: offline,
                },
            }
        })
        .collect();
    pb::TopicMetadata {
        error: None,
        name: t.record.name.clone(),
        topic_id: t.record.topic_id.clone(),
        is_internal: t.record.internal,
        partitions,
        configs: t.record.configs.clone().into_iter().collect(),
    }
}
