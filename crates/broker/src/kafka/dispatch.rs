//! API key to handler. Every API in [`super::versions::TABLE`] has an arm
//! here (a test checks it).

use std::net::SocketAddr;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use sluice_server::access::Rights;
use tracing::{debug, warn};

use super::frame::Request;
use super::session::{Next, Session};
use super::{
    acls, admin, consumer_groups, fetch, groups, log_dirs, metadata, offsets, produce, versions,
};
use crate::BrokerService;

/// What a connection does after a request.
pub(super) enum Outcome {
    Respond(Box<ResponseKind>),
    /// Respond, then close (a failed SASL authentication).
    RespondAndClose(Box<ResponseKind>),
    /// acks=0 produce: no response (its quota throttle, ms).
    Nothing(i32),
    /// acks=0 produce that failed: Kafka closes the connection so the client
    /// notices (and refreshes metadata), since it gets no response.
    Close(&'static str),
}

/// Handles one request of a connection whose identity is `session`.
pub(super) async fn handle(
    svc: &BrokerService,
    session: &mut Session,
    req: Request,
    peer: SocketAddr,
) -> Outcome {
    let v = req.version;
    let client = req.header.client_id.as_deref().unwrap_or("").to_string();
    if !session.admits(req.api_key) {
        // Kafka closes a connection that skips authentication.
        warn!(%peer, api = ?req.api_key, "a request before SASL authentication; closing");
        return Outcome::Close("a request before SASL authentication");
    }
    match req.body {
        RequestKind::SaslHandshake(r) => Outcome::Respond(Box::new(ResponseKind::SaslHandshake(
            session.handshake(r, v),
        ))),
        RequestKind::SaslAuthenticate(r) => {
            let (resp, next) = session.authenticate(r);
            let resp = Box::new(ResponseKind::SaslAuthenticate(resp));
            match next {
                Next::Continue => Outcome::Respond(resp),
                Next::Close => Outcome::RespondAndClose(resp),
            }
        }
        body => {
            // The client id counts for its quotas.
            let rights = session.rights().with_client_id(&client);
            handle_api(svc, &rights, req.api_key, v, body, &client, peer).await
        }
    }
}

/// The APIs past authentication: the front door (the access table's
/// cluster-level requirement), then the handler.
async fn handle_api(
    svc: &BrokerService,
    rights: &Rights,
    api_key: ApiKey,
    v: i16,
    body: RequestKind,
    client: &str,
    peer: SocketAddr,
) -> Outcome {
    if let Some(refused) = acls::front_door(rights, api_key, &body, v) {
        return refused;
    }
    debug!(%peer, api = ?api_key, version = v, client, "Kafka request");
    metrics::counter!(
        "sluice_broker_kafka_requests_total",
        "api" => format!("{:?}", api_key),
    )
    .increment(1);
    Outcome::Respond(Box::new(match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(versions::api_versions(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(svc, rights, r, v).await)
        }
        RequestKind::Produce(r) => {
            return match produce::produce(svc, rights, r, v).await {
                produce::Answer::Respond(r) => Outcome::Respond(Box::new(ResponseKind::Produce(r))),
                produce::Answer::Nothing(throttle) => Outcome::Nothing(throttle),
                produce::Answer::Failed => Outcome::Close("an acks=0 produce failed"),
            };
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::fetch(svc, rights, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(offsets::list_offsets(svc, rights, r, v))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(svc, rights, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(svc, rights, r, v).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(svc, rights, r, v, client, peer).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(svc, rights, r).await),
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::heartbeat(svc, rights, r).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave(svc, rights, r, v).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(svc, rights, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(svc, rights, r, v).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(svc, rights, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(svc, rights, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_groups::heartbeat(svc, rights, r, client, peer).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(svc, rights, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete(svc, rights, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(admin::init_producer_id(svc, rights, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(svc, rights, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(svc, rights, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(svc, rights, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(svc, rights, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            admin::incremental_alter_configs(svc, rights, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(log_dirs::delete_records(svc, rights, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe_log_dirs(svc, r))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(svc, r))
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(svc, rights, r).await),
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::describe(svc, rights, r).await)
        }
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(svc, rights, r).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(acls::describe_scram(svc, rights, r).await)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(acls::alter_scram(svc, rights, r).await)
        }
        other => {
            // parse_request only lets served APIs through.
            warn!(%peer, api = ?api_key, "no handler for a served API; closing");
            drop(other);
            return Outcome::Close("no handler");
        }
    }))
}
