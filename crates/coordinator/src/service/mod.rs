//! The gRPC `GroupCoordinator` service over a [`Coordinator`]. Each RPC
//! family lives in its own file; this file only routes and holds what they
//! share.
//!
//! Errors travel in the response's `error` fields (per group, member or
//! partition, as in Kafka); the gRPC status is OK unless the request itself
//! is malformed. Every handler fails with a [`CoordinatorError`], turned into
//! the proto error by `err_proto` (`CoordinatorError::to_proto`).
//!
//! # Layout
//! - `membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.
//! - `offsets`: OffsetCommit, OffsetFetch.
//! - `admin`: ListGroups, DescribeGroups, DeleteGroups.
//! - `consumer`: the consumer protocol (KIP-848): ConsumerGroupHeartbeat,
//!   ConsumerGroupDescribe.
//! - `migration`: classic requests from the classic members of a group on
//!   the consumer protocol.

mod admin;
mod consumer;
mod membership;
mod migration;
mod offsets;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_server::{
    GroupCoordinator, GroupCoordinatorServer,
};
use tonic::{Request, Response, Status};

use sluice_auth::Operation;
use sluice_server::access::{Access, Rights};

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;

#[derive(Clone)]
pub struct CoordinatorService {
    coordinator: Arc<Coordinator>,
    /// Who may do what to which group (a broker forwards its Kafka
    /// clients' requests with their identity; see `Caller::forward`).
    access: Access,
}

impl CoordinatorService {
    pub fn new(coordinator: Arc<Coordinator>, access: Access) -> Self {
        Self {
            coordinator,
            access,
        }
    }

    /// The caller's rights, with `op` on `group` required first (a refusal
    /// is the request's status: GROUP_AUTHORIZATION_FAILED).
    fn rights_on<T>(
        &self,
        request: &Request<T>,
        op: Operation,
        group: &str,
    ) -> Result<Rights, Status> {
        let rights = Rights::of(&self.access, request);
        rights.group(op, group).map_err(|e| e.to_status())?;
        Ok(rights)
    }

    pub fn into_server(self) -> GroupCoordinatorServer<Self> {
        GroupCoordinatorServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn check_group_id(group: &str) -> Result<(), CoordinatorError> {
    if group.is_empty() {
        return Err(CoordinatorError::InvalidGroupId);
    }
    Ok(())
}

/// The answer to a parked call whose group was unloaded meanwhile.
fn dropped(group: &str) -> CoordinatorError {
    CoordinatorError::GroupUnloaded {
        group: group.to_string(),
    }
}

fn err_proto(e: &CoordinatorError) -> Option<sluice_proto::common::Error> {
    Some(e.to_proto())
}

#[tonic::async_trait]
impl GroupCoordinator for CoordinatorService {
    async fn join_group(
        &self,
        request: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        let host = membership::client_host(&request);
        self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(
            membership::join_group(self, request.into_inner(), host).await,
        ))
    }

    async fn sync_group(
        &self,
        request: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(
            membership::sync_group(self, request.into_inner()).await,
        ))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(membership::heartbeat(
            self,
            request.into_inner(),
        )))
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(membership::leave_group(
            self,
            request.into_inner(),
        )))
    }

    async fn offset_commit(
        &self,
        request: Request<pb::OffsetCommitRequest>,
    ) -> Result<Response<pb::OffsetCommitResponse>, Status> {
        let rights = self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(
            offsets::offset_commit(self, &rights, request.into_inner()).await,
        ))
    }

    async fn offset_fetch(
        &self,
        request: Request<pb::OffsetFetchRequest>,
    ) -> Result<Response<pb::OffsetFetchResponse>, Status> {
        let rights = self.rights_on(&request, Operation::Describe, &request.get_ref().group_id)?;
        Ok(Response::new(offsets::offset_fetch(
            self,
            &rights,
            request.into_inner(),
        )))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(admin::list_groups(
            self,
            &rights,
            request.into_inner(),
        )))
    }

    async fn describe_groups(
        &self,
        request: Request<pb::DescribeGroupsRequest>,
    ) -> Result<Response<pb::DescribeGroupsResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(admin::describe_groups(
            self,
            &rights,
            request.into_inner(),
        )))
    }

    async fn consumer_group_heartbeat(
        &self,
        request: Request<pb::ConsumerGroupHeartbeatRequest>,
    ) -> Result<Response<pb::ConsumerGroupHeartbeatResponse>, Status> {
        let host = membership::client_host(&request);
        let rights = self.rights_on(&request, Operation::Read, &request.get_ref().group_id)?;
        Ok(Response::new(
            consumer::heartbeat(self, &rights, request.into_inner(), host).await,
        ))
    }

    async fn consumer_group_describe(
        &self,
        request: Request<pb::ConsumerGroupDescribeRequest>,
    ) -> Result<Response<pb::ConsumerGroupDescribeResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(consumer::describe(
            self,
            &rights,
            request.into_inner(),
        )))
    }

    async fn delete_groups(
        &self,
        request: Request<pb::DeleteGroupsRequest>,
    ) -> Result<Response<pb::DeleteGroupsResponse>, Status> {
        let rights = Rights::of(&self.access, &request);
        Ok(Response::new(
            admin::delete_groups(self, &rights, request.into_inner()).await,
        ))
    }
}
