//! `nack`: a record the application could not process is re-published to
//! its retry topic (delayed, so the partition it came from moves on) or, out
//! of attempts, to its dead-letter topic. See [`crate::dead_letter`].

use std::collections::HashMap;

use sluice_types::ErrorCode;
use tracing::info;

use super::GroupConsumer;
use crate::admin::{Admin, NewTopic};
use crate::consumer::ConsumerRecord;
use crate::dead_letter::{Origin, Policy, Route, failed_attempts, failed_record};
use crate::error::{ClientError, Result};
use crate::producer::{Producer, RecordMetadata};
use crate::types::TopicPartition;

/// Where a `nack`ed record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nacked {
    /// The retry topic (with its delay) or the dead-letter topic.
    pub route: Route,
    /// The failed delivery's number (1 for the first).
    pub attempt: u32,
    /// Where the re-published record was written.
    pub written: RecordMetadata,
}

/// The consumer's retry state: its policy, and (once needed) the producer
/// and admin client that write and create retry and dead-letter topics.
pub(super) struct DeadLetters {
    pub(super) policy: Policy,
    producer: Option<Producer>,
    admin: Option<Admin>,
    /// Partition counts of retry and dead-letter topics known to exist.
    partitions: HashMap<String, i32>,
}

impl DeadLetters {
    pub(super) fn new(policy: Policy) -> Self {
        DeadLetters {
            policy,
            producer: None,
            admin: None,
            partitions: HashMap::new(),
        }
    }

    pub(super) async fn close(&mut self) {
        if let Some(p) = self.producer.take() {
            p.close().await;
        }
    }
}

impl GroupConsumer {
    /// Marks `record` failed with `error`. Before its last delivery attempt
    /// (`max.delivery.attempts`) it is re-published to the retry topic of the
    /// topic it came from, due after the retry backoff; then to the
    /// dead-letter topic. Either topic is created (with the original
    /// topic's partitions and replication) when missing. Returns once the
    /// copy is acknowledged (`acks=all`), so committing past `record`
    /// afterwards loses nothing. On failure the partition is rewound to
    /// `record`, which `poll` then returns again. A record of a partition
    /// given up since it was polled cannot be rewound here: its next owner
    /// reads from the group's committed offset, which auto-commit may have
    /// moved past it at the rebalance. That failure is an error saying so.
    pub async fn nack(&mut self, record: &ConsumerRecord, error: &str) -> Result<Nacked> {
        let attempt = failed_attempts(record).saturating_add(1);
        let origin = Origin::of(record);
        let route = self.dead_letters.policy.route(&origin.topic, attempt);
        let result = self
            .republish(record, &origin, &route, attempt, error)
            .await;
        match result {
            Ok(written) => {
                info!(
                    group = %self.shared.group,
                    record = %format_args!("{}-{}@{}", record.topic, record.partition, record.offset),
                    to = %written.topic,
                    attempt,
                    error,
                    "record failed"
                );
                Ok(Nacked {
                    route,
                    attempt,
                    written,
                })
            }
            Err(e) => {
                let tp = TopicPartition::new(&*record.topic, record.partition);
                if self.inner.seek(&tp, record.offset).is_err() {
                    return Err(ClientError::api(
                        e.code(),
                        format!(
                            "{e}; {tp} was given up in a rebalance after offset {} was polled: its next owner reads from the committed offset",
                            record.offset
                        ),
                    ));
                }
                self.consumed.rewind(&tp, record.offset);
                Err(e)
            }
        }
    }

    async fn republish(
        &mut self,
        record: &ConsumerRecord,
        origin: &Origin,
        route: &Route,
        attempt: u32,
        error: &str,
    ) -> Result<RecordMetadata> {
        let count = self.ensure_topic(route.topic(), &origin.topic).await?;
        let partition = (0..count)
            .contains(&origin.partition)
            .then_some(origin.partition);
        let out = failed_record(
            record,
            route,
            attempt,
            error,
            &self.shared.group,
            sluice_types::now_ms(),
            partition,
        );
        let config = self.shared.cluster.config.clone();
        let dl = &mut self.dead_letters;
        if dl.producer.is_none() {
            let config = config
                .with("acks", "all")?
                .with("enable.idempotence", "true")?;
            dl.producer = Some(Producer::new(config)?);
        }
        let producer = dl.producer.as_ref().expect("set above");
        producer.send(out).await?.await
    }

    /// The partition count of `topic`, creating it like `like` when missing.
    async fn ensure_topic(&mut self, topic: &str, like: &str) -> Result<i32> {
        if let Some(n) = self.dead_letters.partitions.get(topic) {
            return Ok(*n);
        }
        let cluster = self.shared.cluster.clone();
        // Asked without auto-creation: a missing topic is created below like
        // `like`, not with the brokers' defaults.
        cluster
            .metadata_for(&[topic.to_string()], false, false)
            .await?;
        if let Some(info) = cluster.topic(topic) {
            let n = info.partitions.len() as i32;
            self.dead_letters.partitions.insert(topic.to_string(), n);
            return Ok(n);
        }
        let dl = &mut self.dead_letters;
        if dl.admin.is_none() {
            dl.admin = Some(Admin::new(cluster.config.clone())?);
        }
        let admin = dl.admin.as_ref().expect("set above");
        let source = admin
            .describe_topics(&[like.to_string()])
            .await?
            .pop()
            .ok_or_else(|| {
                ClientError::api(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("cannot create \"{topic}\": topic \"{like}\" is not known"),
                )
            })?;
        let n = source.partitions.len() as i32;
        let rf = source.replication_factor() as i32;
        match admin.create_topic(NewTopic::new(topic, n, rf)).await {
            Ok(_) => info!(topic, partitions = n, replication_factor = rf, "created"),
            Err(e) if e.code() == ErrorCode::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
        cluster.refresh(&[topic.to_string()]).await?;
        let n = cluster
            .topic(topic)
            .map_or(n, |i| i.partitions.len() as i32);
        self.dead_letters.partitions.insert(topic.to_string(), n);
        Ok(n)
    }
}
