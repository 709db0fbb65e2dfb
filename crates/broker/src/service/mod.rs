//! The gRPC `Broker` service. Each RPC family lives in its own file; this file
//! only routes and holds what they share.

pub(crate) mod coordinators;
mod delayed;
pub(crate) mod delete_records;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod log_dirs;
pub(crate) mod metadata;
pub(crate) mod produce;
mod replica_fetch;

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::broker as pb;
use sluice_proto::broker::broker_server::{Broker as BrokerApi, BrokerServer};
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_proto::controller::{CreatableTopic, CreateTopicsRequest};
use sluice_types::{ApiError, ErrorCode};
use tonic::{Request, Response, Status};
use tracing::info;

use sluice_server::access::{Access, Rights};

use crate::Broker;
use crate::error::{BrokerError, ControllerCall, Peer};

/// Serves the broker API.
#[derive(Clone)]
pub struct BrokerService {
    pub(crate) broker: Arc<Broker>,
    /// Channels to coordinators, for group requests forwarded on behalf of
    /// Kafka clients.
    pub(crate) coordinators: coordinators::CoordinatorChannels,
    /// Who may do what (both faces ask it).
    pub(crate) access: Access,
}

impl BrokerService {
    pub fn new(broker: Arc<Broker>, access: Access) -> Self {
        Self {
            coordinators: coordinators::CoordinatorChannels::new(broker.tls.clone()),
            broker,
            access,
        }
    }

    /// The rights of a gRPC request's caller.
    fn rights<T>(&self, req: &Request<T>) -> Rights {
        Rights::of(&self.access, req)
    }

    /// The tonic server. Message limits leave room for a full fetch response
    /// (fetch.max.bytes, 50 MiB) and produce requests of many max-size batches.
    pub fn into_server(self) -> BrokerServer<Self> {
        let limit = (self.broker.config.message_max_bytes as usize * 4).max(64 << 20);
        BrokerServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit.max(128 << 20))
    }

    /// A connection to the active controller, for `call`.
    pub(crate) async fn controller(
        &self,
        call: ControllerCall,
    ) -> Result<ControllerClient<tonic::transport::Channel>, BrokerError> {
        let controller = self
            .broker
            .metadata
            .read(|v| v.controller.clone())
            .ok_or(BrokerError::NoController { call })?;
        let url = format!("http://{}:{}", controller.host, controller.port);
        // Bounded: a controller behind a network partition must fail the
        // request within a client's timeout, not after the OS gives up on
        // the connection (minutes).
        let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|source| BrokerError::BadEndpoint {
                peer: Peer::Controller,
                url: url.clone(),
                source,
            })?
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(30));
        let channel = sluice_tls::connect_internal(endpoint, self.broker.tls.as_ref())
            .await
            .map_err(|source| BrokerError::ControllerUnreachable {
                call,
                controller: controller.controller_id,
                url,
                source,
            })?;
        Ok(ControllerClient::new(channel))
    }

    /// Asks the active controller to create `topics` with the cluster defaults,
    /// then waits until this broker's metadata shows them.
    pub(crate) async fn auto_create_topics(&self, topics: &[String]) -> Result<(), BrokerError> {
        const CALL: ControllerCall = ControllerCall::AutoCreateTopics;
        let own = |source| BrokerError::Downstream { call: CALL, source };
        let mut client = self.controller(CALL).await?;
        let resp = client
            .create_topics(CreateTopicsRequest {
                topics: topics
                    .iter()
                    .map(|t| CreatableTopic {
                        name: t.clone(),
                        num_partitions: -1,
                        replication_factor: -1,
                        ..Default::default()
                    })
                    .collect(),
                timeout_ms: 10_000,
                validate_only: false,
            })
            .await
            .map_err(|s| own(ApiError::from_status(&s)))?
            .into_inner();
        for t in resp.topics {
            if let Some(e) = ApiError::from_proto(t.error.as_ref()) {
                if e.code != ErrorCode::TopicAlreadyExists {
                    return Err(own(e));
                }
            } else {
                info!(topic = %t.name, "auto-created topic");
            }
        }
        self.wait_for_topics(topics, Duration::from_secs(10)).await;
        Ok(())
    }

    /// Waits (up to `timeout`) until this broker's metadata shows `topics`
    /// with every partition: a creation reaches the broker through the
    /// metadata watch, and a client that asks this broker for Metadata just
    /// after creating a topic expects to find it.
    pub(crate) async fn wait_for_topics(&self, topics: &[String], timeout: Duration) {
        let mut rx = self.broker.metadata.subscribe();
        let ready = |b: &Broker| {
            b.metadata.read(|v| {
                topics.iter().all(|t| {
                    v.topics
                        .get(t)
                        .is_some_and(|tv| tv.partitions.len() == tv.record.assignment.len())
                })
            })
        };
        let wait = async {
            while !ready(&self.broker) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

/// The error for a partition this broker does not host, the same on every
/// request: an invalid topic name is INVALID_TOPIC_EXCEPTION (as Metadata
/// says), an unknown topic or partition UNKNOWN_TOPIC_OR_PARTITION, and a
/// partition that exists elsewhere NOT_LEADER_OR_FOLLOWER (the client
/// refreshes its metadata).
pub(crate) fn not_hosted(broker: &Broker, topic: &str, partition: i32) -> BrokerError {
    if let Err(e) = sluice_types::names::validate_topic_name(topic) {
        return invalid_topic_name(topic, e);
    }
    let topic = topic.to_string();
    broker.metadata.read(|v| match v.topics.get(&topic) {
        None => BrokerError::UnknownTopic { topic },
        Some(t) if partition < 0 || partition >= t.record.num_partitions() => {
            BrokerError::UnknownPartition { topic, partition }
        }
        Some(_) => BrokerError::NotHosted {
            topic,
            partition,
            broker: broker.config.broker_id,
        },
    })
}

/// A topic name the name check refused (`e` says why).
pub(crate) fn invalid_topic_name(topic: &str, e: ApiError) -> BrokerError {
    BrokerError::InvalidTopicName {
        topic: topic.to_string(),
        reason: e.message,
    }
}

/// Holds a gRPC answer for its quota throttle: a client over its quota gets
/// its answers late, which slows it to the quota (it may also read
/// `throttle_time_ms`). The Kafka face mutes the connection instead.
async fn hold(throttle_time_ms: i32) {
    if throttle_time_ms > 0 {
        tokio::time::sleep(Duration::from_millis(throttle_time_ms as u64)).await;
    }
}

/// Per-partition errors travel in the response body (the gRPC status is OK),
/// so `grpc_server_handled_total` cannot show them: NOT_LEADER_OR_FOLLOWER
/// during a failover, say. Kafka's ErrorsPerSec by request and error.
pub(crate) fn count_errors<'a>(
    api: &'static str,
    errors: impl Iterator<Item = Option<&'a sluice_proto::common::Error>>,
) {
    for e in errors.flatten() {
        if let Some(e) = ApiError::from_proto(Some(e)) {
            metrics::counter!(
                "sluice_broker_partition_errors_total",
                "api" => api,
                "error" => e.code.as_str_name(),
            )
            .increment(1);
        }
    }
}

#[tonic::async_trait]
impl BrokerApi for BrokerService {
    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        Ok(Response::new(
            metadata::metadata(self, &self.rights(&request), request.into_inner()).await,
        ))
    }

    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let resp = produce::produce(self, &self.rights(&request), request.into_inner()).await?;
        hold(resp.throttle_time_ms).await;
        Ok(Response::new(resp))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let resp = fetch::fetch(self, &self.rights(&request), request.into_inner()).await?;
        hold(resp.throttle_time_ms).await;
        Ok(Response::new(resp))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        Ok(Response::new(list_offsets::list_offsets(
            self,
            &self.rights(&request),
            request.into_inner(),
        )))
    }

    async fn replica_fetch(
        &self,
        request: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchResponse>, Status> {
        Ok(Response::new(
            replica_fetch::replica_fetch(self, request.into_inner()).await?,
        ))
    }

    async fn init_producer_id(
        &self,
        request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        Ok(Response::new(
            init_producer_id::init_producer_id(self, &self.rights(&request)).await,
        ))
    }

    async fn delete_records(
        &self,
        request: Request<pb::DeleteRecordsRequest>,
    ) -> Result<Response<pb::DeleteRecordsResponse>, Status> {
        Ok(Response::new(
            delete_records::delete_records_blocking(
                self,
                &self.rights(&request),
                request.into_inner(),
            )
            .await?,
        ))
    }

    async fn describe_delayed(
        &self,
        request: Request<pb::DescribeDelayedRequest>,
    ) -> Result<Response<pb::DescribeDelayedResponse>, Status> {
        Ok(Response::new(
            delayed::describe_blocking(self, &self.rights(&request), request.into_inner()).await?,
        ))
    }

    async fn cancel_delayed(
        &self,
        request: Request<pb::CancelDelayedRequest>,
    ) -> Result<Response<pb::CancelDelayedResponse>, Status> {
        Ok(Response::new(
            delayed::cancel_blocking(self, &self.rights(&request), request.into_inner()).await?,
        ))
    }

    async fn describe_log_dirs(
        &self,
        request: Request<pb::DescribeLogDirsRequest>,
    ) -> Result<Response<pb::DescribeLogDirsResponse>, Status> {
        Ok(Response::new(log_dirs::describe_log_dirs(
            self,
            request.into_inner(),
        )))
    }

    async fn find_coordinator(
        &self,
        request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        Ok(Response::new(
            find_coordinator::find_coordinator(self, &self.rights(&request), request.into_inner())
                .await,
        ))
    }
}
