//! Requests brokers make of the controller.

use sluice_proto::controller as pb;
use tonic::Status;

use crate::Controller;

/// ISR changes from partition leaders; each partition succeeds or fails alone.
pub(super) async fn alter_partition(
    controller: &Controller,
    req: pb::AlterPartitionRequest,
) -> Result<pb::AlterPartitionResponse, Status> {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let res = controller
                .alter_partition(
                    req.broker_id,
                    &t.name,
                    p.partition,
                    p.leader_epoch,
                    p.partition_epoch,
                    p.new_isr,
                )
                .await;
            partitions.push(match res {
                Ok(s) => pb::AlterPartitionPartitionResponse {
                    partition: p.partition,
                    error: None,
                    leader_id: s.leader,
                    leader_epoch: s.leader_epoch,
                    isr: s.isr,
                    partition_epoch: s.partition_epoch,
                },
                Err(e) => pb::AlterPartitionPartitionResponse {
                    partition: p.partition,
                    error: Some(e.to_proto()),
                    leader_id: -1,
                    leader_epoch: -1,
                    isr: Vec::new(),
                    partition_epoch: -1,
                },
            });
        }
        topics.push(pb::AlterPartitionTopicResponse {
            name: t.name,
            partitions,
        });
    }
    Ok(pb::AlterPartitionResponse {
        error: None,
        topics,
    })
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
