//! Fetch: the core's long-polling fetch in stored-batch form; the bytes go
//! back as they are on disk. No fetch sessions (KIP-227): every answer says
//! session 0, which tells clients to send full requests.

use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use sluice_proto::broker::{self as pb, RecordFormat};
use sluice_types::ErrorCode;

use super::{api_code, code, codes, str_bytes};
use crate::BrokerService;
use sluice_server::access::Rights;

pub(super) async fn fetch(
    svc: &BrokerService,
    rights: &Rights,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    // An incremental fetch names a session we never created.
    if req.session_id != 0 {
        return FetchResponse::default().with_error_code(codes::FETCH_SESSION_ID_NOT_FOUND);
    }
    // v13+ names topics by id only; resolve ids to names (and back below).
    let by_id = version >= 13;
    let mut unknown_ids = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = if by_id {
            match svc
                .broker
                .metadata
                .topic_name_by_id(&t.topic_id.to_string())
            {
                Some(n) => n,
                None => {
                    unknown_ids.push(t);
                    continue;
                }
            }
        } else {
            t.topic.to_string()
        };
        topics.push((
            t.topic_id,
            pb::FetchTopic {
                name,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| pb::FetchPartition {
                        partition: p.partition,
                        fetch_offset: p.fetch_offset,
                        partition_max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                    })
                    .collect(),
            },
        ));
    }
    let ids: Vec<uuid::Uuid> = topics.iter().map(|(id, _)| *id).collect();
    let core = pb::FetchRequest {
        max_wait_ms: req.max_wait_ms,
        min_bytes: req.min_bytes,
        max_bytes: if req.max_bytes > 0 { req.max_bytes } else { 0 },
        isolation_level: req.isolation_level as i32,
        format: RecordFormat::RecordBatches as i32,
        topics: topics.into_iter().map(|(_, t)| t).collect(),
    };
    let resp = match crate::service::fetch::fetch(svc, rights, core).await {
        Ok(r) => r,
        Err(e) => return FetchResponse::default().with_error_code(api_code(&e)),
    };
    let mut leaders = Vec::new();
    let mut responses: Vec<FetchableTopicResponse> = resp
        .topics
        .into_iter()
        .zip(ids)
        .map(|(t, id)| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(code(p.error.as_ref()))
                        .with_high_watermark(p.high_watermark)
                        .with_last_stable_offset(p.last_stable_offset)
                        .with_log_start_offset(p.log_start_offset)
                        .with_aborted_transactions(Some(Vec::new()))
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(p.record_batches));
                    let moved = p.error.as_ref().is_some_and(|e| {
                        e.code == ErrorCode::NotLeaderOrFollower as i32
                            || e.code == ErrorCode::FencedLeaderEpoch as i32
                    });
                    if moved
                        && version >= 12
                        && let Some((leader, epoch)) = leader_of(svc, &t.name, p.partition)
                    {
                        out = out.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch),
                        );
                        leaders.push(leader);
                    }
                    out
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes(t.name)))
                .with_topic_id(id)
                .with_partitions(partitions)
        })
        .collect();
    for t in unknown_ids {
        responses.push(
            FetchableTopicResponse::default()
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(codes::UNKNOWN_TOPIC_ID)
                                .with_high_watermark(-1)
                                .with_records(Some(Default::default()))
                        })
                        .collect(),
                ),
        );
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_throttle_time_ms(resp.throttle_time_ms)
        .with_responses(responses)
        .with_node_endpoints(node_endpoints(svc, leaders))
}

fn leader_of(svc: &BrokerService, topic: &str, partition: i32) -> Option<(i32, i32)> {
    svc.broker.metadata.read(|v| {
        v.topics
            .get(topic)
            .and_then(|t| t.partitions.get(&partition))
            .filter(|s| s.leader >= 0)
            .map(|s| (s.leader, s.leader_epoch))
    })
}

fn node_endpoints(svc: &BrokerService, leaders: Vec<i32>) -> Vec<NodeEndpoint> {
    super::endpoints(svc, leaders)
        .into_iter()
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(host)
                .with_port(port)
                .with_rack(rack)
        })
        .collect()
}
