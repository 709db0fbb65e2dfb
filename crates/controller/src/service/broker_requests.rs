//! Requests brokers make of the controller.

use sluice_proto::controller as pb;
use tonic::Status;

use crate::controller::IsrMember;
use crate::{Controller, ControllerError};

/// ISR changes from partition leaders; each partition succeeds or fails alone.
pub(super) async fn alter_partition(
    controller: &Controller,
    req: pb::AlterPartitionRequest,
) -> Result<pb::AlterPartitionResponse, Status> {
    if let Err(e) = controller
        .check_broker_epoch(req.broker_id, req.broker_epoch)
        .await
    {
        return Ok(pb::AlterPartitionResponse {
            error: Some(e.to_proto()),
            topics: Vec::new(),
        });
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let res = match isr_members(&p) {
                Ok(members) => {
                    controller
                        .alter_partition(
                            req.broker_id,
                            req.broker_epoch,
                            &t.name,
                            p.partition,
                            p.leader_epoch,
                            p.partition_epoch,
                            members,
                        )
                        .await
                }
                Err(e) => Err(e),
            };
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

/// The proposed ISR with each member's registration epoch.
fn isr_members(p: &pb::AlterPartitionData) -> Result<Vec<IsrMember>, ControllerError> {
    if p.new_isr_broker_epochs.len() != p.new_isr.len() {
        return Err(ControllerError::InvalidRequest(format!(
            "partition {}: {} ISR members but {} broker epochs",
            p.partition,
            p.new_isr.len(),
            p.new_isr_broker_epochs.len()
        )));
    }
    Ok(p.new_isr
        .iter()
        .zip(&p.new_isr_broker_epochs)
        .map(|(&broker_id, &broker_epoch)| IsrMember {
            broker_id,
            broker_epoch,
        })
        .collect())
}

pub(super) async fn allocate_producer_ids(
    controller: &Controller,
    req: pb::AllocateProducerIdsRequest,
) -> pb::AllocateProducerIdsResponse {
    let res = match controller
        .check_broker_epoch(req.broker_id, req.broker_epoch)
        .await
    {
        Ok(()) => controller.allocate_producer_ids().await,
        Err(e) => Err(e),
    };
    match res {
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
