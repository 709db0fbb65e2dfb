//! ListOffsets: earliest, latest, or by timestamp.

use sluice_proto::broker as pb;
use sluice_proto::broker::OffsetSpec;

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::BrokerError;

pub(crate) fn list_offsets(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::ListOffsetsRequest,
) -> pb::ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = rights.topic(Operation::Describe, &t.name).err();
            (t, denied)
        })
        .map(|(t, denied)| pb::ListOffsetsTopicResponse {
            partitions: t
                .partitions
                .iter()
                .map(|p| match &denied {
                    Some(e) => (Err(BrokerError::Denied(e.clone())), p),
                    None => (lookup(svc, &t.name, p), p),
                })
                .map(|(r, p)| match r {
                    Ok((offset, timestamp_ms, leader_epoch)) => pb::ListOffsetsPartitionResponse {
                        partition: p.partition,
                        error: None,
                        offset,
                        timestamp_ms,
                        leader_epoch,
                    },
                    Err(e) => pb::ListOffsetsPartitionResponse {
                        partition: p.partition,
                        error: Some(e.to_proto()),
                        offset: -1,
                        timestamp_ms: -1,
                        leader_epoch: -1,
                    },
                })
                .collect(),
            name: t.name,
        })
        .collect();
    pb::ListOffsetsResponse { topics }
}

fn lookup(
    svc: &BrokerService,
    topic: &str,
    p: &pb::ListOffsetsPartition,
) -> Result<(i64, i64, i32), BrokerError> {
    let broker = &svc.broker;
    let Some(partition) = broker.replicas.get(topic, p.partition) else {
        return Err(super::not_hosted(broker, topic, p.partition));
    };
    // Any epoch: gRPC ListOffsets carries none, and the Kafka face fences a
    // client's epoch before calling here.
    partition.check_leader(-1)?;
    let offsets = partition.offsets();
    let spec = OffsetSpec::try_from(p.spec).map_err(|_| BrokerError::UnknownOffsetSpec {
        topic: topic.to_string(),
        partition: p.partition,
        spec: p.spec,
    })?;
    match spec {
        OffsetSpec::Earliest => Ok((
            offsets.log_start,
            -1,
            partition.leader_epoch_of(offsets.log_start),
        )),
        OffsetSpec::Latest => Ok((offsets.hw, -1, partition.leader_epoch_of(offsets.hw))),
        OffsetSpec::Timestamp => match partition.offset_for_timestamp(p.timestamp_ms)? {
            Some((offset, ts)) => Ok((offset, ts, partition.leader_epoch_of(offset))),
            None => Ok((-1, -1, -1)),
        },
        OffsetSpec::MaxTimestamp => Err(BrokerError::MaxTimestampUnsupported {
            topic: topic.to_string(),
            partition: p.partition,
        }),
    }
}
