//! DeleteRecords: moves partitions' log starts forward on their leader.

use sluice_proto::broker as pb;
use tracing::{info, warn};

use sluice_auth::Operation;
use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::BrokerError;

pub(crate) fn delete_records(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::DeleteRecordsRequest,
) -> pb::DeleteRecordsResponse {
    let broker = &svc.broker;
    let mut topics: Vec<pb::DeleteRecordsTopicResult> = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = rights
                .topic(Operation::Delete, &t.name)
                .and_then(|()| rights.write_internal(&t.name))
                .err();
            (denied, t)
        })
        .map(|(denied, t)| pb::DeleteRecordsTopicResult {
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let result = match &denied {
                        Some(e) => Err(BrokerError::Denied(e.clone())),
                        None => match broker.replicas.get(&t.name, p.partition) {
                            None => Err(super::not_hosted(broker, &t.name, p.partition)),
                            Some(part) => part.delete_records(p.offset),
                        },
                    };
                    match result {
                        Ok(low) => {
                            info!(topic = %t.name, partition = p.partition, low_watermark = low, "deleted records");
                            pb::DeleteRecordsPartitionResult {
                                partition: p.partition,
                                error: None,
                                low_watermark: low,
                            }
                        }
                        Err(e) => pb::DeleteRecordsPartitionResult {
                            partition: p.partition,
                            error: Some(e.to_proto()),
                            low_watermark: -1,
                        },
                    }
                })
                .collect(),
            name: t.name,
        })
        .collect();
    // Durable before the answer, so the records do not come back after a
    // restart (the periodic checkpoint would otherwise be up to 5 s late).
    if let Err(e) = broker.replicas.checkpoint_high_watermarks() {
        warn!(error = %e, "log start checkpoint after DeleteRecords failed");
        for p in topics.iter_mut().flat_map(|t| &mut t.partitions) {
            if p.error.is_none() {
                p.error = Some(e.to_proto());
                p.low_watermark = -1;
            }
        }
    }
    pb::DeleteRecordsResponse { topics }
}

/// [`delete_records`] on the blocking pool: it deletes segment files and
/// fsyncs a checkpoint, which must not stall a runtime worker.
pub(crate) async fn delete_records_blocking(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::DeleteRecordsRequest,
) -> Result<pb::DeleteRecordsResponse, BrokerError> {
    let svc = svc.clone();
    let rights = rights.clone();
    tokio::task::spawn_blocking(move || delete_records(&svc, &rights, req))
        .await
        .map_err(|source| BrokerError::TaskFailed {
            task: "DeleteRecords",
            source,
        })
}
