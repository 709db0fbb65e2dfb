//! Delayed delivery on [`Admin`] (`sluice delayed`): what is pending where
//! and when it falls due, and cancelling one record by its delay id.
//! Describing asks every broker (each answers for the partitions it leads);
//! a cancellation goes to the partition's leader.

use sluice_proto::broker as pb;
use sluice_types::ApiError;

use crate::admin::Admin;
use crate::error::Result;

/// Pending delayed records of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedPartition {
    pub topic: String,
    pub partition: i32,
    pub pending: i64,
    /// Earliest and latest due time (Unix ms), -1 when none.
    pub next_due_ms: i64,
    pub last_due_ms: i64,
    /// Due within a minute, an hour, a day, and later.
    pub due_within: [i64; 4],
}

impl Admin {
    /// Pending delayed records per partition, of `topics` (empty: all).
    pub async fn describe_delayed(&self, topics: &[String]) -> Result<Vec<DelayedPartition>> {
        let description = self.describe_cluster().await?;
        let mut out = Vec::new();
        for b in description.brokers {
            let mut client = self
                .cluster()
                .broker_at(&format!("{}:{}", b.host, b.port))?;
            let resp = client
                .describe_delayed(pb::DescribeDelayedRequest {
                    topics: topics.to_vec(),
                })
                .await
                .map_err(|s| ApiError::from_status(&s))?
                .into_inner();
            out.extend(resp.partitions.into_iter().map(|p| DelayedPartition {
                topic: p.topic,
                partition: p.partition,
                pending: p.pending,
                next_due_ms: p.next_due_ms,
                last_due_ms: p.last_due_ms,
                due_within: [
                    p.due_within_minute,
                    p.due_within_hour,
                    p.due_within_day,
                    p.due_later,
                ],
            }));
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Cancels the pending delayed record `id` (the offset its produce answer
    /// gave it) of `topic`-`partition`.
    pub async fn cancel_delayed(&self, topic: &str, partition: i32, id: i64) -> Result<()> {
        let mut client = self.leader_client(topic, partition).await?;
        let resp = client
            .cancel_delayed(pb::CancelDelayedRequest {
                topic: topic.to_string(),
                partition,
                id,
            })
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        match ApiError::from_proto(resp.error.as_ref()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}
