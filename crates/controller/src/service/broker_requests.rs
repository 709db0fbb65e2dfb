//! Requests brokers make of the controller.

use sluice_proto::controller as pb;
use tonic::Status;

use sluice_types::meta::PartitionState;

use crate::controller::{IsrChange, IsrMember};
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
        // Malformed entries are refused here; the rest go to the controller
        // together (see `Controller::alter_partitions`).
        let mut results: Vec<Option<Result<PartitionState, ControllerError>>> = Vec::new();
        let mut changes = Vec::new();
        for p in &t.partitions {
            match isr_members(p) {
                Ok(new_isr) => {
                    changes.push(IsrChange {
                        partition: p.partition,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        new_isr,
                    });
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let outcome = controller
            .alter_partitions(req.broker_id, req.broker_epoch, &t.name, changes)
            .await;
        let partitions = match outcome {
            Ok(done) => {
                let mut done = done.into_iter();
                t.partitions
                    .iter()
                    .zip(results)
                    .map(|(p, r)| {
                        let r = r.unwrap_or_else(|| done.next().expect("one result per change"));
                        partition_response(p.partition, r.map_err(|e| e.to_proto()))
                    })
                    .collect()
            }
            // A failure of the whole topic holds for each partition.
            Err(e) => {
                let e = e.to_proto();
                t.partitions
                    .iter()
                    .zip(results)
                    .map(|(p, r)| {
                        let r = match r {
                            Some(Err(own)) => Err(own.to_proto()),
                            _ => Err(e.clone()),
                        };
                        partition_response(p.partition, r)
                    })
                    .collect()
            }
        };
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

fn partition_response(
    partition: i32,
    result: Result<PartitionState, sluice_proto::common::Error>,
) -> pb::AlterPartitionPartitionResponse {
    match result {
        Ok(s) => pb::AlterPartitionPartitionResponse {
            partition,
            error: None,
            leader_id: s.leader,
            leader_epoch: s.leader_epoch,
            isr: s.isr,
            partition_epoch: s.partition_epoch,
        },
        Err(e) => pb::AlterPartitionPartitionResponse {
            partition,
            error: Some(e),
            leader_id: -1,
            leader_epoch: -1,
            isr: Vec::new(),
            partition_epoch: -1,
        },
    }
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
