//! API key to handler. Every API in [`super::versions::TABLE`] has an arm
//! here (a test checks it).

use std::net::SocketAddr;

use kafka_protocol::messages::{RequestKind, ResponseKind, SaslHandshakeResponse};
use tracing::{debug, warn};

use super::frame::Request;
use super::{admin, codes, fetch, groups, log_dirs, metadata, offsets, produce, versions};
use crate::BrokerService;

/// What a connection does after a request.
pub(super) enum Outcome {
    Respond(Box<ResponseKind>),
    /// acks=0 produce: no response.
    Nothing,
    /// acks=0 produce that failed: Kafka closes the connection so the client
    /// notices (and refreshes metadata), since it gets no response.
    Close(&'static str),
}

/// Handles one request.
pub(super) async fn handle(svc: &BrokerService, req: Request, peer: SocketAddr) -> Outcome {
    let v = req.version;
    let client = req.header.client_id.as_deref().unwrap_or("").to_string();
    debug!(%peer, api = ?req.api_key, version = v, client, "Kafka request");
    metrics::counter!(
        "sluice_broker_kafka_requests_total",
        "api" => format!("{:?}", req.api_key),
    )
    .increment(1);
    Outcome::Respond(Box::new(match req.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(versions::api_versions(0)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::metadata(svc, r, v).await),
        RequestKind::Produce(r) => {
            return match produce::produce(svc, r, v).await {
                produce::Answer::Respond(r) => Outcome::Respond(Box::new(ResponseKind::Produce(r))),
                produce::Answer::Nothing => Outcome::Nothing,
                produce::Answer::Failed => Outcome::Close("an acks=0 produce failed"),
            };
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::fetch(svc, r, v).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(offsets::list_offsets(svc, r, v)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(svc, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(svc, r, v).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(svc, r, v, &client, peer).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(svc, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(svc, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(svc, r, v).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(svc, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(svc, r, v).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(svc, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(svc, r).await)
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(svc, r).await),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(admin::init_producer_id(svc, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(svc, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(svc, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(svc, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(svc, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(svc, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(log_dirs::delete_records(svc, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe_log_dirs(svc, r))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(svc, r))
        }
        // No SASL until the security work: say so with Kafka's code and an
        // empty mechanism list instead of dropping the connection.
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default().with_error_code(codes::UNSUPPORTED_SASL_MECHANISM),
        ),
        other => {
            // parse_request only lets served APIs through.
            warn!(%peer, api = ?req.api_key, "no handler for a served API; closing");
            drop(other);
            return Outcome::Close("no handler");
        }
    }))
}
