//! The gRPC `Controller` service. Each RPC family lives in its own file; this
//! file only routes.

mod broker_requests;
mod cluster;
mod configs;
mod topics;

use std::sync::Arc;

use sluice_proto::controller as pb;
use sluice_proto::controller::controller_server::{Controller as ControllerApi, ControllerServer};
use tonic::{Request, Response, Status};

use crate::Controller;

/// Serves the controller API for one [`Controller`].
#[derive(Clone)]
pub struct ControllerService {
    controller: Arc<Controller>,
}

impl ControllerService {
    pub fn new(controller: Arc<Controller>) -> Self {
        Self { controller }
    }

    /// The tonic server, with message limits large enough for big admin requests.
    pub fn into_server(self) -> ControllerServer<Self> {
        ControllerServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

#[tonic::async_trait]
impl ControllerApi for ControllerService {
    async fn create_topics(
        &self,
        request: Request<pb::CreateTopicsRequest>,
    ) -> Result<Response<pb::CreateTopicsResponse>, Status> {
        Ok(Response::new(
            topics::create_topics(&self.controller, request.into_inner()).await,
        ))
    }

    async fn delete_topics(
        &self,
        request: Request<pb::DeleteTopicsRequest>,
    ) -> Result<Response<pb::DeleteTopicsResponse>, Status> {
        Ok(Response::new(
            topics::delete_topics(&self.controller, request.into_inner()).await,
        ))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        Ok(Response::new(
            topics::create_partitions(&self.controller, request.into_inner()).await,
        ))
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        Ok(Response::new(
            cluster::describe_cluster(&self.controller).await?,
        ))
    }

    async fn alter_configs(
        &self,
        request: Request<pb::AlterConfigsRequest>,
    ) -> Result<Response<pb::AlterConfigsResponse>, Status> {
        Ok(Response::new(
            configs::alter_configs(&self.controller, request.into_inner()).await,
        ))
    }

    async fn ensure_offsets_topic(
        &self,
        _request: Request<pb::EnsureOffsetsTopicRequest>,
    ) -> Result<Response<pb::EnsureOffsetsTopicResponse>, Status> {
        Ok(Response::new(
            match self.controller.ensure_offsets_topic().await {
                Ok(n) => pb::EnsureOffsetsTopicResponse {
                    error: None,
                    num_partitions: n,
                },
                Err(e) => pb::EnsureOffsetsTopicResponse {
                    error: Some(e.to_proto()),
                    num_partitions: -1,
                },
            },
        ))
    }

    async fn alter_partition(
        &self,
        request: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionResponse>, Status> {
        Ok(Response::new(
            broker_requests::alter_partition(&self.controller, request.into_inner()).await?,
        ))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<pb::AllocateProducerIdsRequest>,
    ) -> Result<Response<pb::AllocateProducerIdsResponse>, Status> {
        Ok(Response::new(
            broker_requests::allocate_producer_ids(&self.controller, request.into_inner()).await,
        ))
    }
}
