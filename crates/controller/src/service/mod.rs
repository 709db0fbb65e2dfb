//! The gRPC `Controller` service. Each RPC family lives in its own file; this
//! file only routes.

mod broker_requests;
mod cluster;
mod configs;
mod security;
mod topics;

use std::sync::Arc;

use sluice_proto::controller as pb;
use sluice_proto::controller::controller_server::{Controller as ControllerApi, ControllerServer};
use tonic::{Request, Response, Status};

use sluice_server::access::{Access, Caller, Rights};

use crate::Controller;

/// Serves the controller API for one [`Controller`].
#[derive(Clone)]
pub struct ControllerService {
    controller: Arc<Controller>,
    /// Who may do what (the front door checked the cluster-level rights;
    /// per-topic ones are checked here).
    access: Access,
}

impl ControllerService {
    pub fn new(controller: Arc<Controller>, access: Access) -> Self {
        Self { controller, access }
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
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(
            topics::create_topics(&self.controller, &rights, request.into_inner()).await,
        ))
    }

    async fn delete_topics(
        &self,
        request: Request<pb::DeleteTopicsRequest>,
    ) -> Result<Response<pb::DeleteTopicsResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(
            topics::delete_topics(&self.controller, &rights, request.into_inner()).await,
        ))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(
            topics::create_partitions(&self.controller, &rights, request.into_inner()).await,
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
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(
            configs::alter_configs(&self.controller, &rights, request.into_inner()).await,
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

    async fn create_acls(
        &self,
        request: Request<pb::CreateAclsRequest>,
    ) -> Result<Response<pb::CreateAclsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::create_acls(&self.controller, &caller, request.into_inner()).await?,
        ))
    }

    async fn describe_acls(
        &self,
        request: Request<pb::DescribeAclsRequest>,
    ) -> Result<Response<pb::DescribeAclsResponse>, Status> {
        Ok(Response::new(
            security::describe_acls(&self.controller, request.into_inner()).await?,
        ))
    }

    async fn delete_acls(
        &self,
        request: Request<pb::DeleteAclsRequest>,
    ) -> Result<Response<pb::DeleteAclsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::delete_acls(&self.controller, &caller, request.into_inner()).await?,
        ))
    }

    async fn alter_user_scram_credentials(
        &self,
        request: Request<pb::AlterUserScramCredentialsRequest>,
    ) -> Result<Response<pb::AlterUserScramCredentialsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::alter_scram(&self.controller, &caller, request.into_inner()).await,
        ))
    }

    async fn describe_user_scram_credentials(
        &self,
        request: Request<pb::DescribeUserScramCredentialsRequest>,
    ) -> Result<Response<pb::DescribeUserScramCredentialsResponse>, Status> {
        Ok(Response::new(
            security::describe_scram(&self.controller, request.into_inner()).await?,
        ))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::create_token(&self.controller, &caller, request.into_inner()).await,
        ))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::revoke_token(&self.controller, &caller, request.into_inner()).await,
        ))
    }

    async fn describe_tokens(
        &self,
        _request: Request<pb::DescribeTokensRequest>,
    ) -> Result<Response<pb::DescribeTokensResponse>, Status> {
        Ok(Response::new(
            security::describe_tokens(&self.controller).await?,
        ))
    }

    async fn alter_client_quotas(
        &self,
        request: Request<pb::AlterClientQuotasRequest>,
    ) -> Result<Response<pb::AlterClientQuotasResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            security::alter_quotas(&self.controller, &caller, request.into_inner()).await,
        ))
    }

    async fn describe_client_quotas(
        &self,
        _request: Request<pb::DescribeClientQuotasRequest>,
    ) -> Result<Response<pb::DescribeClientQuotasResponse>, Status> {
        Ok(Response::new(
            security::describe_quotas(&self.controller).await?,
        ))
    }
}
