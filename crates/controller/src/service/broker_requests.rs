//! Requests brokers make of the controller.

use sluice_proto::controller as pb;
use sluice_types::{ApiError, ErrorCode};
use tonic::Status;

use crate::Controller;

/// ISR changes come with replication; until then a single-replica partition's
/// ISR never changes, so the request is refused with a clear code.
pub(super) async fn alter_partition(
    _controller: &Controller,
    req: pb::AlterPartitionRequest,
) -> Result<pb::AlterPartitionResponse, Status> {
    Err(ApiError::new(
        ErrorCode::NotImplemented,
        format!(
            "AlterPartition from broker {} arrives with replication (cluster mode); this build has single-replica partitions only",
            req.broker_id
        ),
    )
    .into())
}

pub(super) async fn allocate_producer_ids(
    controller: &Controller,
    _req: pb::AllocateProducerIdsRequest,
) -> pb::AllocateProducerIdsResponse {
    match controller.allocate_producer_ids().await {
        Ok((start, len)) => pb::AllocateProducerIdsResponse {
            error: None,
            producer_id_start: start,
            producer_id_len: len,
        },
        Err(e) => pb::AllocateProducerIdsResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        },
    }
}
