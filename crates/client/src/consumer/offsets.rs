//! The consumer's ListOffsets lookups: seeking to the log start, the end or
//! a timestamp, Kafka's `offsetsForTimes`/`beginningOffsets`/`endOffsets`,
//! and resolving unset positions with `auto.offset.reset`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use sluice_proto::broker::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, OffsetSpec,
};
use sluice_types::{ApiError, ErrorCode};

use super::{Consumer, isolation};
use crate::config::OffsetReset;
use crate::error::{ClientError, Result};
use crate::types::TopicPartition;

impl Consumer {
    /// Seeks `tps` (empty: every assigned partition) to their log start.
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_by_spec(tps, OffsetSpec::Earliest, 0).await
    }

    /// Seeks `tps` (empty: every assigned partition) to their end.
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_by_spec(tps, OffsetSpec::Latest, 0).await
    }

    /// Seeks every assigned partition to the first offset with a timestamp at
    /// or after `timestamp_ms`, or to its end when there is none.
    pub async fn seek_to_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        let tps = self.assignment();
        let found = self
            .list_offsets(&tps, OffsetSpec::Timestamp, timestamp_ms)
            .await?;
        let missing: Vec<TopicPartition> = tps
            .iter()
            .filter(|tp| found.get(*tp).is_none_or(|o| *o < 0))
            .cloned()
            .collect();
        let ends = if missing.is_empty() {
            HashMap::new()
        } else {
            self.list_offsets(&missing, OffsetSpec::Latest, 0).await?
        };
        for tp in &tps {
            let o = match found.get(tp) {
                Some(o) if *o >= 0 => *o,
                _ => ends.get(tp).copied().unwrap_or(0),
            };
            self.seek(tp, o)?;
        }
        Ok(())
    }

    async fn seek_by_spec(
        &mut self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        ts: i64,
    ) -> Result<()> {
        let tps = if tps.is_empty() {
            self.assignment()
        } else {
            tps.to_vec()
        };
        let offsets = self.list_offsets(&tps, spec, ts).await?;
        for tp in &tps {
            let o = offsets.get(tp).copied().unwrap_or(0);
            self.seek(tp, o)?;
        }
        Ok(())
    }

    /// Kafka's `offsetsForTimes`: per partition, the first offset whose
    /// timestamp is at or after `timestamp_ms`; -1 where there is none.
    pub async fn offsets_for_times(
        &self,
        tps: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Timestamp, timestamp_ms)
            .await
    }

    /// The log start offsets of `tps`.
    pub async fn beginning_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Earliest, 0).await
    }

    /// The end offsets (high watermarks) of `tps`.
    pub async fn end_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        self.list_offsets(tps, OffsetSpec::Latest, 0).await
    }

    /// ListOffsets against each partition's leader, retrying retriable
    /// errors with metadata refreshes until `request.timeout.ms`.
    async fn list_offsets(
        &self,
        tps: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let config = &self.cluster.config;
        let deadline = Instant::now() + config.request_timeout;
        let mut out = HashMap::new();
        let mut todo: Vec<TopicPartition> = tps.to_vec();
        let topics: Vec<String> = {
            let mut t: Vec<String> = tps.iter().map(|tp| tp.topic.clone()).collect();
            t.sort();
            t.dedup();
            t
        };
        if topics.iter().any(|t| self.cluster.topic(t).is_none()) {
            self.cluster.refresh(&topics).await?;
        }
        loop {
            let mut by_broker: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut last_err: Option<ClientError> = None;
            let mut retry: Vec<TopicPartition> = Vec::new();
            for tp in std::mem::take(&mut todo) {
                let leader = self.cluster.leader(&tp.topic, tp.partition).leader;
                if leader < 0 {
                    last_err = Some(ClientError::api(
                        ErrorCode::LeaderNotAvailable,
                        format!("{tp} has no leader"),
                    ));
                    retry.push(tp);
                    continue;
                }
                by_broker.entry(leader).or_default().push(tp);
            }
            for (broker, tps) in by_broker {
                let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
                for tp in &tps {
                    topics
                        .entry(tp.topic.clone())
                        .or_default()
                        .push(ListOffsetsPartition {
                            partition: tp.partition,
                            spec: spec as i32,
                            timestamp_ms,
                        });
                }
                let req = ListOffsetsRequest {
                    isolation_level: isolation(config.isolation_level),
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| ListOffsetsTopic { name, partitions })
                        .collect(),
                };
                let resp = match self.cluster.broker(broker) {
                    Ok((addr, mut c)) => {
                        match tokio::time::timeout(config.request_timeout, c.list_offsets(req))
                            .await
                        {
                            Ok(Ok(r)) => Ok(r.into_inner()),
                            Ok(Err(s)) => Err(ClientError::from_status(&addr, &s)),
                            Err(_) => Err(ClientError::api(
                                ErrorCode::RequestTimedOut,
                                format!("broker {addr}: list offsets timed out"),
                            )),
                        }
                    }
                    Err(e) => Err(e),
                };
                match resp {
                    Err(e) if e.is_retriable() => {
                        last_err = Some(e);
                        retry.extend(tps);
                    }
                    Err(e) => return Err(e),
                    Ok(resp) => {
                        for tp in tps {
                            let p = resp
                                .topics
                                .iter()
                                .find(|t| t.name == tp.topic)
                                .and_then(|t| {
                                    t.partitions.iter().find(|p| p.partition == tp.partition)
                                });
                            match p {
                                None => {
                                    last_err = Some(ClientError::api(
                                        ErrorCode::UnknownServerError,
                                        format!("the broker did not answer for {tp}"),
                                    ));
                                    retry.push(tp);
                                }
                                Some(p) => match ApiError::from_proto(p.error.as_ref()) {
                                    None => {
                                        out.insert(tp, p.offset);
                                    }
                                    Some(e) if e.is_retriable() => {
                                        last_err = Some(e.into());
                                        retry.push(tp);
                                    }
                                    Some(e) => return Err(e.into()),
                                },
                            }
                        }
                    }
                }
            }
            if retry.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(last_err.unwrap_or_else(|| {
                    ClientError::api(ErrorCode::RequestTimedOut, "list offsets timed out")
                }));
            }
            tokio::time::sleep(config.retry_backoff).await;
            self.cluster.refresh(&topics).await?;
            todo = retry;
        }
    }

    /// Resolves unset positions with `auto.offset.reset`.
    pub(super) async fn reset_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let spec = match self.cluster.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                return Err(ClientError::api(
                    ErrorCode::OffsetOutOfRange,
                    format!(
                        "no position for {} and auto.offset.reset is none",
                        missing[0]
                    ),
                ));
            }
        };
        let offsets = self.list_offsets(&missing, spec, 0).await?;
        for tp in &missing {
            let o = offsets.get(tp).copied().unwrap_or(0);
            self.seek(tp, o)?;
        }
        Ok(())
    }
}
