//! [`Admin::describe_log_dirs`]: each broker's log directories and the
//! replicas in them with their sizes (Kafka's DescribeLogDirs), asked of
//! every live broker.

use sluice_proto::broker as pb;
use sluice_types::ApiError;

use crate::admin::Admin;
use crate::error::Result;

/// One broker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLogDirs {
    pub broker: i32,
    pub dirs: Vec<LogDirDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    pub path: String,
    /// The volume's size and free space in bytes; -1 when unknown.
    pub total_bytes: i64,
    pub usable_bytes: i64,
    pub replicas: Vec<ReplicaSize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSize {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: i64,
    /// How far the replica's log end is behind the high watermark it knows.
    pub offset_lag: i64,
}

impl Admin {
    /// Every live broker's log directories with every replica in them.
    pub async fn describe_log_dirs(&self) -> Result<Vec<BrokerLogDirs>> {
        let description = self.describe_cluster().await?;
        let mut out = Vec::with_capacity(description.brokers.len());
        for b in description.brokers {
            let mut client = self
                .cluster()
                .broker_at(&format!("{}:{}", b.host, b.port))?;
            let resp = client
                .describe_log_dirs(pb::DescribeLogDirsRequest::default())
                .await
                .map_err(|s| ApiError::from_status(&s))?
                .into_inner();
            out.push(BrokerLogDirs {
                broker: b.id,
                dirs: resp
                    .log_dirs
                    .into_iter()
                    .map(|d| LogDirDescription {
                        path: d.path,
                        total_bytes: d.total_bytes,
                        usable_bytes: d.usable_bytes,
                        replicas: d
                            .replicas
                            .into_iter()
                            .map(|r| ReplicaSize {
                                topic: r.topic,
                                partition: r.partition,
                                size_bytes: r.size_bytes,
                                offset_lag: r.offset_lag,
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}
