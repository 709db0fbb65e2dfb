//! FindCoordinator: which coordinator serves a group. A group lives in
//! `__consumer_offsets` partition `abs(java_hash(group)) % partitions`
//! (Kafka's formula) and is served by that partition's owner, which the
//! controller records in the metadata store. The first request asks the
//! controller to create `__consumer_offsets`, as Kafka does on first need.

use std::time::Duration;

use sluice_proto::broker as pb;
use sluice_proto::controller::EnsureOffsetsTopicRequest;
use sluice_types::ApiError;
use sluice_types::hash::group_offsets_partition;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tracing::warn;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::{BrokerError, ControllerCall};
use crate::metadata::ClusterView;

/// How long a first FindCoordinator waits for the topic and its owners.
const FIRST_NEED_WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn find_coordinator(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::FindCoordinatorRequest,
) -> pb::FindCoordinatorResponse {
    let metadata = &svc.broker.metadata;
    // Checked first: a refused caller does not get __consumer_offsets
    // created or wait for it.
    let denied: Vec<_> = req
        .keys
        .iter()
        .map(|k| rights.group(Operation::Describe, k).err())
        .collect();
    let allowed: Vec<&String> = req
        .keys
        .iter()
        .zip(&denied)
        .filter(|(_, d)| d.is_none())
        .map(|(k, _)| k)
        .collect();
    let needed = |v: &ClusterView| {
        let Some(t) = v.topics.get(CONSUMER_OFFSETS_TOPIC) else {
            return true;
        };
        let n = t.record.num_partitions();
        allowed.iter().any(|k| {
            let p = group_offsets_partition(k, n);
            v.offsets_owners
                .get(&p)
                .is_none_or(|o| !v.coordinators.contains_key(&o.coordinator_id))
        })
    };
    if !allowed.is_empty() && metadata.read(needed) {
        if !metadata.read(|v| v.topics.contains_key(CONSUMER_OFFSETS_TOPIC))
            && let Err(e) = ensure_offsets_topic(svc).await
        {
            warn!(error = %e, "cannot have {CONSUMER_OFFSETS_TOPIC} created");
        }
        // Wait (bounded) for the topic and owners to reach this broker.
        let mut rx = metadata.subscribe();
        let _ = tokio::time::timeout(FIRST_NEED_WAIT, async {
            while metadata.read(needed) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    metadata.read(|v| pb::FindCoordinatorResponse {
        coordinators: req
            .keys
            .iter()
            .zip(denied)
            .map(|(k, denied)| match denied {
                Some(e) => pb::Coordinator {
                    key: k.clone(),
                    error: Some(e.to_proto()),
                    node_id: -1,
                    offsets_partition: -1,
                    ..Default::default()
                },
                None => answer(v, k),
            })
            .collect(),
    })
}

fn answer(v: &ClusterView, key: &str) -> pb::Coordinator {
    let unavailable = |p: i32, e: BrokerError| pb::Coordinator {
        key: key.to_string(),
        error: Some(e.to_proto()),
        node_id: -1,
        offsets_partition: p,
        ..Default::default()
    };
    if key.is_empty() {
        return unavailable(-1, BrokerError::EmptyGroupId);
    }
    let Some(t) = v.topics.get(CONSUMER_OFFSETS_TOPIC) else {
        return unavailable(-1, BrokerError::NoOffsetsTopic);
    };
    let p = group_offsets_partition(key, t.record.num_partitions());
    let Some(owner) = v.offsets_owners.get(&p) else {
        return unavailable(p, BrokerError::OffsetsPartitionUnowned { partition: p });
    };
    let Some(c) = v.coordinators.get(&owner.coordinator_id) else {
        return unavailable(
            p,
            BrokerError::CoordinatorNotAlive {
                coordinator: owner.coordinator_id,
                partition: p,
            },
        );
    };
    pb::Coordinator {
        key: key.to_string(),
        error: None,
        node_id: c.coordinator_id,
        host: c.host.clone(),
        port: c.port,
        offsets_partition: p,
    }
}

async fn ensure_offsets_topic(svc: &BrokerService) -> Result<(), BrokerError> {
    const CALL: ControllerCall = ControllerCall::CreateOffsetsTopic;
    let own = |source| BrokerError::Downstream { call: CALL, source };
    let mut client = svc.controller(CALL).await?;
    let resp = client
        .ensure_offsets_topic(EnsureOffsetsTopicRequest {
            broker_id: svc.broker.config.broker_id,
        })
        .await
        .map_err(|s| own(ApiError::from_status(&s)))?
        .into_inner();
    match ApiError::from_proto(resp.error.as_ref()) {
        Some(e) => Err(own(e)),
        None => Ok(()),
    }
}
