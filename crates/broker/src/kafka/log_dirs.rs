//! DescribeLogDirs and DeleteRecords through the core.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    TopicName,
};
use sluice_proto::{broker as pb, common};

use super::{code, str_bytes};
use crate::BrokerService;
use sluice_server::access::Rights;

pub(super) fn describe_log_dirs(
    svc: &BrokerService,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // Null asks for every replica; an empty list for none.
    let partitions: Vec<common::TopicPartition> = req
        .topics
        .iter()
        .flatten()
        .flat_map(|t| {
            t.partitions.iter().map(|p| common::TopicPartition {
                topic: t.topic.to_string(),
                partition: *p,
            })
        })
        .collect();
    let none = req.topics.as_ref().is_some_and(|t| t.is_empty());
    let core =
        crate::service::log_dirs::describe_log_dirs(svc, pb::DescribeLogDirsRequest { partitions });
    let results = core
        .log_dirs
        .into_iter()
        .map(|d| {
            let mut by_topic: Vec<DescribeLogDirsTopic> = Vec::new();
            for r in d.replicas.into_iter().filter(|_| !none) {
                let part = DescribeLogDirsPartition::default()
                    .with_partition_index(r.partition)
                    .with_partition_size(r.size_bytes)
                    .with_offset_lag(r.offset_lag);
                match by_topic.last_mut() {
                    Some(t) if t.name.as_str() == r.topic => t.partitions.push(part),
                    _ => by_topic.push(
                        DescribeLogDirsTopic::default()
                            .with_name(TopicName(str_bytes(r.topic)))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            DescribeLogDirsResult::default()
                .with_error_code(code(d.error.as_ref()))
                .with_log_dir(str_bytes(d.path))
                .with_topics(by_topic)
                .with_total_bytes(d.total_bytes)
                .with_usable_bytes(d.usable_bytes)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}

pub(super) async fn delete_records(
    svc: &BrokerService,
    rights: &Rights,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let core = crate::service::delete_records::delete_records_blocking(
        svc,
        rights,
        pb::DeleteRecordsRequest {
            timeout_ms: req.timeout_ms,
            topics: req
                .topics
                .iter()
                .map(|t| pb::DeleteRecordsTopic {
                    name: t.name.to_string(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| pb::DeleteRecordsPartition {
                            partition: p.partition_index,
                            offset: p.offset,
                        })
                        .collect(),
                })
                .collect(),
        },
    )
    .await;
    let core = match core {
        Ok(c) => c,
        Err(e) => {
            let failed =
                |p: &kafka_protocol::messages::delete_records_request::DeleteRecordsPartition| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(super::api_code(&e))
                };
            return DeleteRecordsResponse::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(t.partitions.iter().map(failed).collect())
                    })
                    .collect(),
            );
        }
    };
    DeleteRecordsResponse::default().with_topics(
        core.topics
            .into_iter()
            .map(|t| {
                DeleteRecordsTopicResult::default()
                    .with_name(TopicName(str_bytes(t.name)))
                    .with_partitions(
                        t.partitions
                            .into_iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition)
                                    .with_low_watermark(p.low_watermark)
                                    .with_error_code(code(p.error.as_ref()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
