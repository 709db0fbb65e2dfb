//! The gRPC `GroupCoordinator` service.

use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_server::{
    GroupCoordinator, GroupCoordinatorServer,
};
use sluice_types::{ApiError, ErrorCode};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct CoordinatorService;

impl CoordinatorService {
    pub fn new() -> Self {
        Self
    }

    pub fn into_server(self) -> GroupCoordinatorServer<Self> {
        GroupCoordinatorServer::new(self)
    }
}

fn not_yet(rpc: &str) -> Status {
    ApiError::new(
        ErrorCode::NotImplemented,
        format!("{rpc} is not available yet: consumer groups arrive in a later Sluice release; assign partitions explicitly meanwhile"),
    )
    .into()
}

#[tonic::async_trait]
impl GroupCoordinator for CoordinatorService {
    async fn join_group(
        &self,
        _: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        Err(not_yet("JoinGroup"))
    }
    async fn sync_group(
        &self,
        _: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        Err(not_yet("SyncGroup"))
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(not_yet("Heartbeat"))
    }
    async fn leave_group(
        &self,
        _: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        Err(not_yet("LeaveGroup"))
    }
    async fn offset_commit(
        &self,
        _: Request<pb::OffsetCommitRequest>,
    ) -> Result<Response<pb::OffsetCommitResponse>, Status> {
        Err(not_yet("OffsetCommit"))
    }
    async fn offset_fetch(
        &self,
        _: Request<pb::OffsetFetchRequest>,
    ) -> Result<Response<pb::OffsetFetchResponse>, Status> {
        Err(not_yet("OffsetFetch"))
    }
    async fn list_groups(
        &self,
        _: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        Err(not_yet("ListGroups"))
    }
    async fn describe_groups(
        &self,
        _: Request<pb::DescribeGroupsRequest>,
    ) -> Result<Response<pb::DescribeGroupsResponse>, Status> {
        Err(not_yet("DescribeGroups"))
    }
    async fn delete_groups(
        &self,
        _: Request<pb::DeleteGroupsRequest>,
    ) -> Result<Response<pb::DeleteGroupsResponse>, Status> {
        Err(not_yet("DeleteGroups"))
    }
}
