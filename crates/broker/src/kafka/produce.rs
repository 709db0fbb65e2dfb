//! Produce: record batches pass through to the core's append as the client
//! sent them (RecordBatch v2; the log refuses other magics), no per-record
//! decoding.

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use sluice_proto::broker as pb;
use sluice_types::ErrorCode;

use super::{NO_TRANSACTIONS, api_code, code, codes, message, str_bytes};
use crate::BrokerService;
use sluice_server::access::Rights;

/// A produce's outcome; acks=0 gets no response, and a failed one closes
/// the connection.
pub(super) enum Answer {
    Respond(ProduceResponse),
    /// acks=0: no answer (the quota throttle still mutes the connection).
    Nothing(i32),
    Failed,
}

pub(super) async fn produce(
    svc: &BrokerService,
    rights: &Rights,
    req: ProduceRequest,
    version: i16,
) -> Answer {
    let acks = req.acks;
    let answer = |resp: ProduceResponse| {
        if acks != 0 {
            Answer::Respond(resp)
        } else if resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0)
        {
            Answer::Failed
        } else {
            Answer::Nothing(resp.throttle_time_ms)
        }
    };
    if req.transactional_id.is_some() {
        return answer(every_partition(
            &req,
            codes::INVALID_REQUEST,
            NO_TRANSACTIONS,
        ));
    }
    let core = pb::ProduceRequest {
        acks: acks as i32,
        timeout_ms: req.timeout_ms,
        topics: req
            .topic_data
            .iter()
            .map(|t| pb::TopicProduceData {
                name: t.name.to_string(),
                partitions: t
                    .partition_data
                    .iter()
                    .map(|p| pb::PartitionProduceData {
                        partition: p.index,
                        records: Vec::new(),
                        record_batches: p.records.clone().unwrap_or_default(),
                        // Kafka clients ask for delays by record header.
                        deliver_at_ms: None,
                    })
                    .collect(),
            })
            .collect(),
    };
    let resp = match crate::service::produce::produce(svc, rights, core).await {
        Ok(r) => r,
        Err(e) => {
            // A request-level refusal (bad acks): every partition gets it.
            return answer(every_partition(&req, api_code(&e), &e.to_string()));
        }
    };
    let mut leaders = Vec::new();
    let topics = resp
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out = PartitionProduceResponse::default()
                        .with_index(p.partition)
                        .with_error_code(code(p.error.as_ref()))
                        .with_base_offset(p.base_offset)
                        .with_log_append_time_ms(p.log_append_time_ms)
                        .with_log_start_offset(p.log_start_offset)
                        .with_error_message(message(p.error.as_ref()));
                    let not_leader = p
                        .error
                        .as_ref()
                        .is_some_and(|e| e.code == ErrorCode::NotLeaderOrFollower as i32);
                    // KIP-951: tell the client the new leader at once.
                    if not_leader && p.current_leader_id >= 0 && version >= 10 {
                        out = out.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(p.current_leader_id))
                                .with_leader_epoch(p.current_leader_epoch),
                        );
                        leaders.push(p.current_leader_id);
                    }
                    out
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(str_bytes(t.name).into())
                .with_partition_responses(partitions)
        })
        .collect();
    answer(
        ProduceResponse::default()
            .with_throttle_time_ms(resp.throttle_time_ms)
            .with_responses(topics)
            .with_node_endpoints(node_endpoints(svc, leaders)),
    )
}

/// The endpoints of `leaders`, for KIP-951 answers.
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

fn every_partition(req: &ProduceRequest, error_code: i16, why: &str) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        req.topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(error_code)
                                    .with_base_offset(-1)
                                    .with_error_message(Some(str_bytes(why)))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
