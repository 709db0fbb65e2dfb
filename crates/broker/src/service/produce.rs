//! Produce: one append per partition per request, acks 0/1/all.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::broker as pb;
use sluice_records::{EncodeOptions, Record, encode_batch};
use tracing::instrument;

use sluice_auth::Operation;
use sluice_server::access::Rights;
use sluice_server::quota::QuotaKind;

use super::BrokerService;
use crate::broker::now_ms;
use crate::error::BrokerError;
use crate::partition::Partition;

#[instrument(skip_all, fields(acks = req.acks, topics = req.topics.len()))]
pub(crate) async fn produce(
    svc: &BrokerService,
    rights: &Rights,
    req: pb::ProduceRequest,
) -> Result<pb::ProduceResponse, BrokerError> {
    if !(-1..=1).contains(&req.acks) {
        return Err(BrokerError::InvalidRequiredAcks { acks: req.acks });
    }
    // Counted as sent, appended or not (Kafka's produce quota).
    let throttle = rights.quota(QuotaKind::Produce, || {
        prost::Message::encoded_len(&req) as f64
    });
    let broker = &svc.broker;
    if broker.config.auto_create_topics_enable {
        let missing: Vec<String> = broker.metadata.read(|v| {
            req.topics
                .iter()
                .filter(|t| !v.topics.contains_key(&t.name))
                // Only what the caller could write and may create.
                .filter(|t| {
                    rights.may_topic(Operation::Write, &t.name)
                        && (rights.has_cluster(Operation::Create)
                            || rights.may_topic(Operation::Create, &t.name))
                })
                .map(|t| t.name.clone())
                .collect()
        });
        if !missing.is_empty() {
            svc.auto_create_topics(&missing).await?;
        }
    }
    let timeout = Duration::from_millis(req.timeout_ms.clamp(0, 300_000) as u64);
    // Append to every partition first, then wait for replication of all of
    // them together (Kafka's DelayedProduce): waiting partition by partition
    // would cost one follower round trip per partition in the request.
    let mut appended = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let denied = rights
            .topic(Operation::Write, &topic.name)
            .and_then(|()| rights.write_internal(&topic.name))
            .err();
        let results: Vec<(i32, Result<Appended, BrokerError>)> = topic
            .partitions
            .into_iter()
            .map(|p| match &denied {
                Some(e) => (p.partition, Err(BrokerError::Denied(e.clone()))),
                None => (p.partition, append_one(svc, &topic.name, p, req.acks)),
            })
            .collect();
        appended.push((topic.name, results));
    }
    flush_due(&mut appended).await;
    if req.acks == -1 {
        let deadline = tokio::time::Instant::now() + timeout;
        let waits = appended.iter_mut().flat_map(|(_, results)| {
            results.iter_mut().map(|(_, r)| async move {
                if let Ok(a) = r
                    && let Err(e) = a.wait_replicated(deadline).await
                {
                    *r = Err(e);
                }
            })
        });
        futures::future::join_all(waits).await;
    }
    let mut out = Vec::with_capacity(appended.len());
    for (name, results) in appended {
        let parts = results
            .into_iter()
            .map(|(partition, res)| match res {
                Ok(a) => pb::PartitionProduceResponse {
                    partition,
                    error: None,
                    base_offset: a.first_offset,
                    log_start_offset: a.partition.offsets().log_start,
                    log_append_time_ms: -1,
                    current_leader_id: -1,
                    current_leader_epoch: -1,
                },
                Err(e) => {
                    let (leader, epoch) = broker
                        .metadata
                        .read(|v| {
                            v.topics
                                .get(&name)
                                .and_then(|t| t.partitions.get(&partition))
                                .map(|s| (s.leader, s.leader_epoch))
                        })
                        .unwrap_or((-1, -1));
                    pb::PartitionProduceResponse {
                        partition,
                        error: Some(e.to_proto()),
                        base_offset: -1,
                        log_start_offset: -1,
                        log_append_time_ms: -1,
                        current_leader_id: leader,
                        current_leader_epoch: epoch,
                    }
                }
            })
            .collect();
        out.push(pb::TopicProduceResponse {
            name,
            partitions: parts,
        });
    }
    super::count_errors(
        "Produce",
        out.iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error.as_ref()),
    );
    Ok(pb::ProduceResponse {
        topics: out,
        throttle_time_ms: throttle.as_millis().min(i32::MAX as u128) as i32,
    })
}

/// A batch appended on the leader, maybe still waiting for followers.
struct Appended {
    partition: Arc<Partition>,
    first_offset: i64,
    last_offset: i64,
    leader_epoch: i32,
    flush_due: bool,
}

/// `flush.messages` / `flush.ms`: a topic that asks for it gets its fsync
/// before the answer, as on Kafka, but on the blocking pool and without the
/// log lock, so other requests go on meanwhile. A failed flush fails the
/// partition's answer: the records were written, not made durable.
type Results = [(String, Vec<(i32, Result<Appended, BrokerError>)>)];

fn due(appended: &mut Results) -> Vec<&mut Result<Appended, BrokerError>> {
    appended
        .iter_mut()
        .flat_map(|(_, results)| results.iter_mut().map(|(_, r)| r))
        .filter(|r| r.as_ref().is_ok_and(|a| a.flush_due))
        .collect()
}

async fn flush_due(appended: &mut Results) {
    let partitions: Vec<Arc<Partition>> = due(appended)
        .into_iter()
        .filter_map(|r| r.as_ref().ok().map(|a| a.partition.clone()))
        .collect();
    if partitions.is_empty() {
        return;
    }
    let names: Vec<(String, i32)> = partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    let errors = match tokio::task::spawn_blocking(move || {
        partitions
            .iter()
            .map(|p| p.flush().err())
            .collect::<Vec<_>>()
    })
    .await
    {
        Ok(errors) => errors,
        // A flush that panicked did not make anything durable: none of
        // these answers may say it did.
        Err(e) => {
            tracing::error!(error = %e, "flush after produce panicked");
            names
                .into_iter()
                .map(|(topic, partition)| Some(flush_panicked(topic, partition)))
                .collect()
        }
    };
    // The same walk, in the same order, as the one that collected them.
    for (r, err) in due(appended).into_iter().zip(errors) {
        if let Some(e) = err {
            tracing::warn!(error = %e, "flush after produce failed");
            *r = Err(e);
        }
    }
}

/// The error a produce answers with when its flush task panicked.
fn flush_panicked(topic: String, partition: i32) -> BrokerError {
    BrokerError::Storage {
        topic,
        partition,
        source: sluice_storage::StorageError::Io {
            op: "flush",
            path: std::path::PathBuf::new(),
            source: std::io::Error::other("the flush task panicked"),
        },
    }
}

impl Appended {
    async fn wait_replicated(&self, deadline: tokio::time::Instant) -> Result<(), BrokerError> {
        self.partition
            .wait_replicated(
                self.first_offset..=self.last_offset,
                self.leader_epoch,
                deadline,
            )
            .await
    }
}

fn append_one(
    svc: &BrokerService,
    topic: &str,
    data: pb::PartitionProduceData,
    acks: i32,
) -> Result<Appended, BrokerError> {
    let broker = &svc.broker;
    let Some(partition) = broker.replicas.get(topic, data.partition) else {
        return Err(super::not_hosted(broker, topic, data.partition));
    };
    let batches = if !data.record_batches.is_empty() {
        // No copy: the log writes the new offsets beside the payload.
        data.record_batches
    } else if !data.records.is_empty() {
        let now = now_ms();
        let records: Vec<Record> = data
            .records
            .into_iter()
            .map(|r| Record {
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                timestamp: if r.timestamp_ms > 0 {
                    r.timestamp_ms
                } else {
                    now
                },
                offset: 0,
            })
            .collect();
        encode_batch(&records, EncodeOptions::default()).map_err(|source| {
            BrokerError::EncodeRecords {
                topic: topic.to_string(),
                partition: data.partition,
                source,
            }
        })?
    } else {
        return Err(BrokerError::EmptyProduce {
            topic: topic.to_string(),
            partition: data.partition,
        });
    };
    let (min_insync, delays) = broker.metadata.read(|v| {
        let configs = v.topics.get(topic).map(|t| &t.record.configs);
        let num = |key: &str| {
            configs
                .and_then(|c| c.get(key))
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        let min_insync = num("min.insync.replicas")
            .map(|n| n as i32)
            .unwrap_or(broker.config.min_insync_replicas);
        let defaults = sluice_delay::DelayLimits::default();
        // Compaction's refusal is added by the partition, from its log
        // settings, when a batch asks for a delay.
        let policy = sluice_delay::batch::Policy {
            default_ms: num("delivery.delay.ms").unwrap_or(0),
            default_from: sluice_delay::request::TOPIC_DEFAULT,
            limits: sluice_delay::DelayLimits {
                max_ms: num("delivery.delay.max.ms").unwrap_or(defaults.max_ms),
                ..defaults
            },
            refused: None,
            out_of_range: None,
        };
        (min_insync, policy)
    });
    let now = crate::broker::now_ms();
    let delays = match data.deliver_at_ms {
        Some(at) => request_delay(at, now, delays),
        None => delays,
    };
    let bytes = batches.len() as u64;
    let info = partition.append_produced(batches, acks, min_insync, Some((delays, now)))?;
    metrics::counter!("sluice_broker_topic_in_bytes_total", "topic" => topic.to_string())
        .increment(bytes);
    metrics::counter!("sluice_broker_topic_in_messages_total", "topic" => topic.to_string())
        .increment((info.last_offset - info.first_offset + 1).max(0) as u64);
    Ok(Appended {
        partition,
        first_offset: info.first_offset,
        last_offset: info.last_offset,
        leader_epoch: info.leader_epoch,
        flush_due: info.flush_due,
    })
}

/// The request's `deliver_at_ms` as the delay of records naming none. Out
/// of the topic's limits it is noted, not raised: the partition refuses the
/// batch after its duplicate check (a retry of a stored batch whose time is
/// now too close is a duplicate, not an error), and a default of 0 or less
/// would otherwise silently mean "no delay".
fn request_delay(
    at_ms: i64,
    now_ms: i64,
    mut policy: sluice_delay::batch::Policy,
) -> sluice_delay::batch::Policy {
    const FIELD: &str = "deliver_at_ms";
    let limits = policy.limits;
    let delay = at_ms.saturating_sub(now_ms);
    if delay < limits.min_ms || delay > limits.max_ms {
        policy.out_of_range = Some((delay, FIELD));
    } else {
        policy.default_ms = delay;
        policy.default_from = FIELD;
    }
    policy
}
