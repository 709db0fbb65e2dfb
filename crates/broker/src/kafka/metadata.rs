//! Metadata: brokers, topics, partitions, leaders and ISR, from the core's
//! Metadata answer.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use sluice_proto::broker as pb;

use super::{code, codes, str_bytes, topic_uuid};
use crate::BrokerService;
use sluice_server::access::Rights;

pub(super) async fn metadata(
    svc: &BrokerService,
    rights: &Rights,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0: an empty list means every topic; v1+: null means every topic and
    // an empty list none.
    let (wanted, all) = match &req.topics {
        None => (Vec::new(), true),
        Some(t) if t.is_empty() => (Vec::new(), version == 0),
        Some(t) => (t.iter().map(|t| topic_name(svc, t)).collect(), false),
    };
    let names: Vec<String> = wanted.iter().filter_map(|w| w.clone().ok()).collect();
    let core = if all || !names.is_empty() {
        Some(
            crate::service::metadata::metadata(
                svc,
                rights,
                pb::MetadataRequest {
                    topics: names,
                    // Before v4 the request had no flag and brokers created
                    // topics when configured to.
                    allow_auto_topic_creation: version < 4 || req.allow_auto_topic_creation,
                    include_internal: true,
                },
            )
            .await,
        )
    } else {
        None
    };
    let me = svc.broker.config.broker_id;
    let (brokers, cluster_id, mut topics) = match core {
        Some(c) => (
            c.brokers,
            c.cluster_id,
            c.topics.into_iter().map(topic).collect::<Vec<_>>(),
        ),
        None => svc.broker.metadata.read(|v| {
            (
                v.brokers
                    .values()
                    .map(crate::service::metadata::endpoint)
                    .collect(),
                v.cluster_id.clone(),
                Vec::new(),
            )
        }),
    };
    // Topics asked for by an id we do not know.
    for w in wanted {
        if let Err(id) = w {
            topics.push(
                MetadataResponseTopic::default()
                    .with_error_code(codes::UNKNOWN_TOPIC_ID)
                    .with_topic_id(id),
            );
        }
    }
    MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.broker_id))
                        .with_host(str_bytes(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(cluster_id)))
        // Kafka clients send admin requests to the "controller"; this broker
        // forwards them to the active controller (as KRaft brokers do).
        .with_controller_id(BrokerId(me))
        .with_topics(topics)
}

/// A requested topic's name, or its unknown id.
fn topic_name(
    svc: &BrokerService,
    t: &kafka_protocol::messages::metadata_request::MetadataRequestTopic,
) -> Result<String, uuid::Uuid> {
    if let Some(name) = &t.name {
        return Ok(name.to_string());
    }
    svc.broker
        .metadata
        .topic_name_by_id(&t.topic_id.to_string())
        .ok_or(t.topic_id)
}

fn topic(t: pb::TopicMetadata) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code(t.error.as_ref()))
        .with_topic_id(topic_uuid(&t.topic_id))
        .with_is_internal(t.is_internal)
        .with_partitions(
            t.partitions
                .into_iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_error_code(code(p.error.as_ref()))
                        .with_partition_index(p.partition)
                        .with_leader_id(BrokerId(p.leader_id))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.into_iter().map(BrokerId).collect())
                        .with_isr_nodes(p.isr.into_iter().map(BrokerId).collect())
                        .with_offline_replicas(
                            p.offline_replicas.into_iter().map(BrokerId).collect(),
                        )
                })
                .collect(),
        )
        .with_name(Some(TopicName(str_bytes(t.name))))
}
