//! Admin APIs: topics and partitions are forwarded to the active controller
//! (the same gRPC calls `sluice topics` makes); configs and the cluster are
//! answered from this broker's metadata; producer ids from the core.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::*;
use sluice_proto::controller as ctl;
use sluice_storage::CleanupPolicy;

use super::{api_code, code, codes, message, str_bytes, topic_uuid};
use crate::BrokerService;
use crate::error::{BrokerError, ControllerCall, Peer};
use crate::replica_manager::topic_log_config;
use sluice_auth::Operation;
use sluice_server::access::Rights;
use sluice_types::ErrorCode;

/// Calls `$method` on the active controller (as the broker's own gRPC calls
/// do): no controller to call is NOT_CONTROLLER; what the controller (or the
/// way to it) answers is relayed ([`BrokerError::Forwarded`]).
macro_rules! on_controller {
    ($svc:expr, $rights:expr, $method:ident($req:expr)) => {
        async {
            let mut c = $svc.controller(ControllerCall::ForwardAdmin).await?;
            // The controller checks the client's rights, not the broker's.
            let mut req = tonic::Request::new($req);
            $rights.caller().forward(&mut req);
            c.$method(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| BrokerError::forwarded(Peer::Controller, &s))
        }
        .await
    };
}

pub(super) async fn init_producer_id(
    svc: &BrokerService,
    rights: &Rights,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let r = crate::service::init_producer_id::init_producer_id(svc, rights).await;
    InitProducerIdResponse::default()
        .with_error_code(code(r.error.as_ref()))
        .with_producer_id(ProducerId(r.producer_id))
        .with_producer_epoch(r.producer_epoch as i16)
}

pub(super) async fn create_topics(
    svc: &BrokerService,
    rights: &Rights,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let core = ctl::CreateTopicsRequest {
        topics: req
            .topics
            .iter()
            .map(|t| ctl::CreatableTopic {
                name: t.name.to_string(),
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor as i32,
                assignments: t
                    .assignments
                    .iter()
                    .map(|a| ctl::ReplicaAssignment {
                        partition: a.partition_index,
                        broker_ids: a.broker_ids.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
                configs: t
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect(),
            })
            .collect(),
        timeout_ms: req.timeout_ms,
        validate_only: req.validate_only,
    };
    let resp: Result<_, BrokerError> = on_controller!(svc, rights, create_topics(core));
    if let Ok(r) = &resp
        && !req.validate_only
    {
        let created: Vec<String> = r
            .topics
            .iter()
            .filter(|t| t.error.is_none())
            .map(|t| t.name.clone())
            .collect();
        let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 60_000) as u64);
        svc.wait_for_topics(&created, timeout).await;
    }
    let results = match resp {
        Err(e) => req
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
        Ok(r) => r
            .topics
            .into_iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(str_bytes(t.name).into())
                    .with_topic_id(topic_uuid(&t.topic_id))
                    .with_error_code(code(t.error.as_ref()))
                    .with_error_message(message(t.error.as_ref()))
                    .with_num_partitions(if t.error.is_some() {
                        -1
                    } else {
                        t.num_partitions
                    })
                    .with_replication_factor(if t.error.is_some() {
                        -1
                    } else {
                        t.replication_factor as i16
                    })
            })
            .collect(),
    };
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) async fn delete_topics(
    svc: &BrokerService,
    rights: &Rights,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`, v6+ in `topics` (by name or id).
    let mut names: Vec<String> = req.topic_names.iter().map(|t| t.to_string()).collect();
    // Topics named only by id: a refusal must not tell their names.
    let mut by_id: Vec<(String, uuid::Uuid)> = Vec::new();
    for t in &req.topics {
        match &t.name {
            Some(n) => names.push(n.to_string()),
            None => {
                if let Some(n) = svc
                    .broker
                    .metadata
                    .topic_name_by_id(&t.topic_id.to_string())
                {
                    by_id.push((n.clone(), t.topic_id));
                    names.push(n);
                }
            }
        }
    }
    let delete = ctl::DeleteTopicsRequest {
        names: names.clone(),
        timeout_ms: req.timeout_ms,
    };
    let resp: Result<_, BrokerError> = on_controller!(svc, rights, delete_topics(delete));
    let responses = match resp {
        Err(e) => names
            .into_iter()
            .map(|n| {
                DeletableTopicResult::default()
                    .with_name(Some(str_bytes(n).into()))
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
        Ok(r) => r
            .topics
            .into_iter()
            .map(|t| {
                let out = DeletableTopicResult::default()
                    .with_error_code(code(t.error.as_ref()))
                    .with_error_message(message(t.error.as_ref()));
                let refused = t
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == ErrorCode::TopicAuthorizationFailed as i32);
                match by_id.iter().find(|(n, _)| *n == t.name) {
                    Some((_, id)) if refused => out.with_topic_id(*id),
                    Some((_, id)) => out
                        .with_topic_id(*id)
                        .with_name(Some(str_bytes(t.name).into())),
                    None => out.with_name(Some(str_bytes(t.name).into())),
                }
            })
            .collect(),
    };
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn create_partitions(
    svc: &BrokerService,
    rights: &Rights,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let core = ctl::CreatePartitionsRequest {
        topics: req
            .topics
            .iter()
            .map(|t| ctl::CreatePartitionsTopic {
                name: t.name.to_string(),
                count: t.count,
                // Kafka lists the new partitions' replicas in order; the
                // controller numbers them from the current count.
                assignments: t
                    .assignments
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, a)| ctl::ReplicaAssignment {
                        partition: i as i32,
                        broker_ids: a.broker_ids.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
            })
            .collect(),
        timeout_ms: req.timeout_ms,
        validate_only: req.validate_only,
    };
    let resp: Result<_, BrokerError> = on_controller!(svc, rights, create_partitions(core));
    let results = match resp {
        Err(e) => req
            .topics
            .iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
        Ok(r) => r
            .topics
            .into_iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(str_bytes(t.name).into())
                    .with_error_code(code(t.error.as_ref()))
                    .with_error_message(message(t.error.as_ref()))
            })
            .collect(),
    };
    CreatePartitionsResponse::default().with_results(results)
}

pub(super) async fn incremental_alter_configs(
    svc: &BrokerService,
    rights: &Rights,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    // Kafka's numbers: resource 2 topic, 4 broker; ops 0 set, 1 delete,
    // 2 append, 3 subtract (the same order as ConfigOperation).
    let resource = |t: i8| match t {
        RESOURCE_TOPIC => Some(ctl::ConfigResourceType::Topic),
        RESOURCE_BROKER => Some(ctl::ConfigResourceType::Broker),
        _ => None,
    };
    let mut answers: Vec<Option<AlterConfigsResourceResponse>> = Vec::new();
    let mut core = ctl::AlterConfigsRequest {
        resources: Vec::new(),
        validate_only: req.validate_only,
    };
    for r in &req.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        match resource(r.resource_type) {
            None => answers.push(Some(
                out.with_error_code(codes::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {} has no configs here",
                        r.resource_type
                    )))),
            )),
            Some(t) => {
                answers.push(None);
                core.resources.push(ctl::AlterConfigsResource {
                    resource_type: t as i32,
                    resource_name: r.resource_name.to_string(),
                    configs: r
                        .configs
                        .iter()
                        .map(|c| ctl::AlterableConfig {
                            name: c.name.to_string(),
                            operation: c.config_operation as i32,
                            value: c.value.as_ref().map(|v| v.to_string()),
                        })
                        .collect(),
                });
            }
        }
    }
    let resp: Result<_, BrokerError> = on_controller!(svc, rights, alter_configs(core));
    let (mut results, failure) = match resp {
        Ok(r) => (r.results.into_iter(), None),
        Err(e) => (Vec::new().into_iter(), Some(e)),
    };
    let responses = answers
        .into_iter()
        .zip(&req.resources)
        .map(|(answer, r)| {
            answer.unwrap_or_else(|| {
                let out = AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
                match (&failure, results.next()) {
                    (Some(e), _) => out
                        .with_error_code(api_code(e))
                        .with_error_message(Some(str_bytes(e.to_string()))),
                    (None, Some(res)) => out
                        .with_error_code(code(res.error.as_ref()))
                        .with_error_message(message(res.error.as_ref())),
                    (None, None) => out.with_error_code(-1),
                }
            })
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// DescribeConfigs resource types and config sources (Kafka's numbers).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub(super) fn describe_configs(
    svc: &BrokerService,
    rights: &Rights,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let denied = match r.resource_type {
                RESOURCE_TOPIC => rights.topic(Operation::DescribeConfigs, &name).err(),
                RESOURCE_BROKER => rights.cluster(Operation::DescribeConfigs).err(),
                _ => None,
            };
            let entries = match r.resource_type {
                _ if let Some(e) = &denied => Err((e.code as i16, e.message.clone())),
                RESOURCE_TOPIC => topic_configs(svc, &name),
                RESOURCE_BROKER => broker_configs(svc, &name),
                other => Err((
                    codes::INVALID_REQUEST,
                    format!("resource type {other} has no configs here"),
                )),
            };
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match entries {
                Err((code, why)) => out
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(why))),
                Ok(entries) => out.with_configs(
                    entries
                        .into_iter()
                        .filter(|(k, _, _)| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
                        })
                        .map(|(k, v, source)| {
                            DescribeConfigsResourceResult::default()
                                .with_config_type(config_type(&v))
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                                .with_read_only(source != SOURCE_TOPIC)
                                .with_config_source(source)
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Entries = Result<Vec<(String, String, i8)>, (i16, String)>;

/// A topic's effective log settings: its own overrides, and the broker's
/// defaults for the rest.
fn topic_configs(svc: &BrokerService, topic: &str) -> Entries {
    let Some(t) = svc.broker.metadata.topic(topic) else {
        return Err((
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {topic} does not exist"),
        ));
    };
    let overrides: &BTreeMap<String, String> = &t.record.configs;
    let c = topic_log_config(&svc.broker.config.log_config(), overrides);
    let policy = match c.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
        CleanupPolicy::CompactDelete => "compact,delete",
    };
    let min_insync = svc.broker.config.min_insync_replicas.to_string();
    let defaults: Vec<(&str, String)> = vec![
        ("cleanup.policy", policy.to_string()),
        ("retention.ms", c.retention_ms.to_string()),
        ("retention.bytes", c.retention_bytes.to_string()),
        ("segment.bytes", c.segment_bytes.to_string()),
        ("segment.ms", c.segment_ms.to_string()),
        ("max.message.bytes", c.max_message_bytes.to_string()),
        ("index.interval.bytes", c.index_interval_bytes.to_string()),
        ("delete.retention.ms", c.delete_retention_ms.to_string()),
        ("min.compaction.lag.ms", c.min_compaction_lag_ms.to_string()),
        (
            "min.cleanable.dirty.ratio",
            c.min_cleanable_dirty_ratio.to_string(),
        ),
        ("min.insync.replicas", min_insync),
        ("delivery.delay.ms", "0".to_string()),
        (
            "delivery.delay.max.ms",
            sluice_delay::DelayLimits::default().max_ms.to_string(),
        ),
    ];
    let mut out: BTreeMap<String, (String, i8)> = defaults
        .into_iter()
        .map(|(k, v)| (k.to_string(), (v, SOURCE_DEFAULT)))
        .collect();
    for (k, v) in overrides {
        out.insert(k.clone(), (v.clone(), SOURCE_TOPIC));
    }
    Ok(out.into_iter().map(|(k, (v, s))| (k, v, s)).collect())
}

/// This broker's configuration, as its config file and flags set it.
fn broker_configs(svc: &BrokerService, id: &str) -> Entries {
    let me = svc.broker.config.broker_id;
    if !id.is_empty() && id.parse::<i32>().ok() != Some(me) {
        return Err((
            codes::INVALID_REQUEST,
            format!("broker {id}'s configs are served by broker {id}; this is broker {me}"),
        ));
    }
    let value = serde_json::to_value(&svc.broker.config).unwrap_or_default();
    let entries = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v, SOURCE_STATIC_BROKER)
        })
        .collect();
    Ok(entries)
}

/// Kafka's config types: BOOLEAN 1, STRING 2, LONG 5, DOUBLE 6.
fn config_type(v: &str) -> i8 {
    if v == "true" || v == "false" {
        1
    } else if v.parse::<i64>().is_ok() {
        5
    } else if v.parse::<f64>().is_ok() {
        6
    } else {
        2
    }
}

pub(super) fn describe_cluster(
    svc: &BrokerService,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let me = svc.broker.config.broker_id;
    svc.broker.metadata.read(|v| {
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(v.cluster_id.clone()))
            .with_controller_id(BrokerId(me))
            .with_brokers(
                v.brokers
                    .values()
                    .map(|b| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(b.broker_id))
                            .with_host(str_bytes(b.host.clone()))
                            .with_port(b.port)
                            .with_rack(b.rack.clone().map(str_bytes))
                    })
                    .collect(),
            )
    })
}
