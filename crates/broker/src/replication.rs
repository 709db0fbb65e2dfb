//! Follower-side replication and leader-side ISR maintenance.
//!
//! - One fetcher task per leader broker carries every partition this broker
//!   follows from that leader in one ReplicaFetch (Kafka's ReplicaFetcherThread),
//!   appends what comes back, truncates a divergent tail when the leader says
//!   so (KIP-279), and takes the leader's high watermark.
//! - On the leader, a periodic check shrinks the ISR of followers that lag more
//!   than `replica.lag.time.max.ms` and expands it with followers that caught up,
//!   through AlterPartition on the active controller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::broker::{ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchTopic};
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_proto::controller::{AlterPartitionData, AlterPartitionRequest, AlterPartitionTopic};
use sluice_types::{ApiError, ErrorCode};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::Broker;
use crate::error::{BrokerError, ControllerCall, Peer};
use crate::partition::{Applied, Partition};

fn channel(broker: &Broker, peer: Peer, url: String) -> Result<Channel, BrokerError> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|source| BrokerError::BadEndpoint { peer, url, source })?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(64 << 20))
        .connect_timeout(Duration::from_secs(3));
    Ok(sluice_tls::internal_channel(endpoint, broker.tls.as_ref()))
}

/// Starts and stops one fetcher per leader this broker follows, as metadata changes.
pub(crate) async fn manage_fetchers(broker: Arc<Broker>) {
    let mut version = broker.metadata.subscribe();
    let mut fetchers: HashMap<i32, JoinHandle<()>> = HashMap::new();
    loop {
        fetchers.retain(|_, h| !h.is_finished());
        for leader in broker.replicas.followed_leaders() {
            fetchers
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetch_from(broker.clone(), leader)));
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            r = version.changed() => if r.is_err() { break },
            // Finished fetchers are replaced if their leader still has partitions.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, h) in fetchers {
        h.abort();
    }
}

/// Replicates every partition this broker follows from `leader`, until there
/// is none left or the broker shuts down.
async fn fetch_from(broker: Arc<Broker>, leader: i32) {
    info!(leader, "replica fetcher started");
    let mut client: Option<(String, BrokerClient<Channel>)> = None;
    let cfg = &broker.config;
    loop {
        if broker.shutdown.is_cancelled() {
            return;
        }
        let parts = broker.replicas.followed_from(leader);
        if parts.is_empty() {
            info!(leader, "replica fetcher stopped: no partitions left");
            return;
        }
        let Some(addr) = broker.metadata.read(|v| {
            v.brokers
                .get(&leader)
                .map(|b| format!("http://{}:{}", b.host, b.port))
        }) else {
            // The leader is not registered (dead): wait for metadata to move on.
            tokio::select! {
                _ = broker.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
        };
        if client.as_ref().is_none_or(|(a, _)| *a != addr) {
            match channel(&broker, Peer::Broker(leader), addr.clone()) {
                Ok(ch) => {
                    client = Some((
                        addr.clone(),
                        BrokerClient::new(ch)
                            .max_decoding_message_size(256 << 20)
                            .max_encoding_message_size(64 << 20),
                    ))
                }
                Err(e) => {
                    warn!(leader, error = %e, "cannot reach leader");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let mut by_topic: HashMap<String, Vec<ReplicaFetchPartition>> = HashMap::new();
        // Each partition with the leader epoch the request was made in.
        let mut index: HashMap<(String, i32), (Arc<Partition>, i32)> = HashMap::new();
        for p in &parts {
            let (fetch_offset, last_epoch) = p.fetch_position();
            let role = p.role();
            by_topic
                .entry(p.topic.clone())
                .or_default()
                .push(ReplicaFetchPartition {
                    partition: p.partition,
                    fetch_offset,
                    last_fetched_epoch: last_epoch,
                    current_leader_epoch: role.leader_epoch,
                    log_start_offset: p.offsets().log_start,
                    partition_max_bytes: cfg.replica_fetch_max_bytes as i32,
                });
            index.insert(
                (p.topic.clone(), p.partition),
                (p.clone(), role.leader_epoch),
            );
        }
        let req = ReplicaFetchRequest {
            replica_id: cfg.broker_id,
            replica_epoch: broker.epoch(),
            max_wait_ms: cfg.replica_fetch_wait_max_ms as i32,
            min_bytes: 1,
            max_bytes: 64 << 20,
            topics: by_topic
                .into_iter()
                .map(|(name, partitions)| ReplicaFetchTopic { name, partitions })
                .collect(),
        };
        let (_, c) = client.as_mut().expect("set above");
        let res = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(30), c.replica_fetch(req)) => r,
        };
        let resp = match res {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                debug!(leader, error = %ApiError::from_status(&status), "replica fetch failed");
                client = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                client = None;
                continue;
            }
        };
        let mut backoff = false;
        let mut unchanged = false;
        let mut flush = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                let Some((part, epoch)) = index.get(&(t.name.clone(), p.partition)) else {
                    continue;
                };
                if let Some(e) = ApiError::from_proto(p.error.as_ref()) {
                    // Below the leader's log start (retention or DeleteRecords
                    // removed what this replica needs next): start over there.
                    if e.code == ErrorCode::OffsetOutOfRange && p.log_start_offset >= 0 {
                        match part.restart_at_leader_start(leader, *epoch, p.log_start_offset) {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => {
                                warn!(topic = %t.name, partition = p.partition, error = %e, "cannot restart the log at the leader's start")
                            }
                        }
                    }
                    debug!(topic = %t.name, partition = p.partition, error = %e, "replica fetch partition error");
                    backoff = true;
                    continue;
                }
                let result = part.apply_replica_fetch(
                    leader,
                    *epoch,
                    p.diverging_epoch.map(|d| (d.epoch, d.end_offset)),
                    p.record_batches,
                    p.high_watermark,
                    p.log_start_offset,
                );
                match result {
                    Ok(Applied::Done) => {
                        if part.flush_due() {
                            flush.push(part.clone());
                        }
                    }
                    Ok(Applied::Stale) => {
                        debug!(topic = %t.name, partition = p.partition, leader, "dropped a replica fetch answer: the partition's leader or epoch changed meanwhile");
                    }
                    Ok(Applied::Unchanged) => {
                        let d = p.diverging_epoch.unwrap_or_default();
                        warn!(topic = %t.name, partition = p.partition, leader, epoch = d.epoch, end_offset = d.end_offset, "the leader reports a divergence that truncating changes nothing for; retrying after a pause");
                        unchanged = true;
                    }
                    Err(e) => {
                        warn!(topic = %t.name, partition = p.partition, error = %e, "cannot apply replicated data");
                        backoff = true;
                    }
                }
            }
        }
        if !flush.is_empty() {
            // `flush.messages` / `flush.ms` on a follower: fsynced before the
            // next fetch reports the new offsets to the leader, off the
            // runtime and without the log lock.
            let _ = tokio::task::spawn_blocking(move || {
                for p in flush {
                    if let Err(e) = p.flush() {
                        warn!(topic = %p.topic, partition = p.partition, error = %e, "flush of replicated data failed");
                    }
                }
            })
            .await;
        }
        if unchanged {
            // The same question would get the same answer: ask again only
            // after metadata or the leader had time to move on.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if backoff {
            // Metadata (a new leader or epoch) usually fixes these; don't spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Leader: shrinks and expands ISRs through the controller.
pub(crate) async fn maintain_isr(broker: Arc<Broker>) {
    let max_lag = Duration::from_millis(broker.config.replica_lag_time_max_ms);
    let mut tick = tokio::time::interval((max_lag / 4).max(Duration::from_millis(100)));
    // A tick missed behind a slow AlterPartition (an unreachable controller)
    // is not made up in a burst afterwards.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut topics: HashMap<String, Vec<AlterPartitionData>> = HashMap::new();
        let live: HashMap<i32, i64> = broker
            .metadata
            .read(|v| v.brokers.iter().map(|(id, b)| (*id, b.epoch)).collect());
        for p in broker.replicas.all() {
            if let Some((role, isr)) = p.desired_isr(max_lag, |r| live.get(&r).copied()) {
                let ids: Vec<i32> = isr.iter().map(|m| m.broker_id).collect();
                info!(topic = %p.topic, partition = p.partition, from = ?role.isr, to = ?ids, "asking to change ISR");
                topics
                    .entry(p.topic.clone())
                    .or_default()
                    .push(AlterPartitionData {
                        partition: p.partition,
                        leader_epoch: role.leader_epoch,
                        new_isr: ids,
                        partition_epoch: role.partition_epoch,
                        new_isr_broker_epochs: isr.iter().map(|m| m.broker_epoch).collect(),
                    });
            }
        }
        if topics.is_empty() {
            continue;
        }
        let Some(url) = broker.metadata.read(|v| {
            v.controller
                .as_ref()
                .map(|c| format!("http://{}:{}", c.host, c.port))
        }) else {
            continue;
        };
        let req = AlterPartitionRequest {
            broker_id: broker.config.broker_id,
            broker_epoch: broker.epoch(),
            topics: topics
                .into_iter()
                .map(|(name, partitions)| AlterPartitionTopic { name, partitions })
                .collect(),
        };
        let res = async {
            let mut c = ControllerClient::new(channel(&broker, Peer::Controller, url)?);
            c.alter_partition(req)
                .await
                .map_err(|s| BrokerError::Downstream {
                    call: ControllerCall::AlterPartition,
                    source: ApiError::from_status(&s),
                })
        }
        .await;
        match res {
            Ok(resp) => {
                let resp = resp.into_inner();
                if let Some(e) = ApiError::from_proto(resp.error.as_ref()) {
                    // STALE_BROKER_EPOCH: this broker lost its registration;
                    // it registers again and the next tick asks anew.
                    warn!(error = %e, "AlterPartition refused");
                }
                for t in resp.topics {
                    for p in t.partitions {
                        if let Some(e) = ApiError::from_proto(p.error.as_ref()) {
                            debug!(topic = %t.name, partition = p.partition, error = %e, "ISR change refused");
                        }
                    }
                }
            }
            Err(e) => debug!(error = %e, "AlterPartition failed"),
        }
    }
}
