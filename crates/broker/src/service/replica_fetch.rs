//! ReplicaFetch: follower-to-leader replication, which arrives with cluster mode.
//! Partitions here have one replica, so no broker calls it yet.

use sluice_proto::broker as pb;
use sluice_types::{ApiError, ErrorCode};
use tonic::Status;

use super::BrokerService;

pub(super) fn replica_fetch(
    _svc: &BrokerService,
    req: pb::ReplicaFetchRequest,
) -> Result<pb::ReplicaFetchResponse, Status> {
    Err(ApiError::new(
        ErrorCode::NotImplemented,
        format!(
            "ReplicaFetch from broker {} arrives with replication (cluster mode)",
            req.replica_id
        ),
    )
    .into())
}
