//! The snapshot every page renders from, refreshed every few seconds: the
//! cluster, every topic's partitions with offsets and sizes, every group
//! with its lag, and the recent history of rates and lag for the charts.
//!
//! Rates come from differences between two snapshots: records in from log
//! end offsets, bytes in from log sizes, records consumed from groups'
//! committed offsets. That needs nothing but the gRPC API (no access to the
//! brokers' metrics ports).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use futures::{StreamExt, stream};

use sluice_client::{
    Admin, ClientConfig, ClusterDescription, Consumer, ErrorCode, TopicDescription, TopicPartition,
};

/// How many samples the charts keep (15 minutes at the default 5 s).
const HISTORY: usize = 180;

#[derive(Debug, Clone, Default)]
pub struct PartitionRow {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub log_start: i64,
    pub log_end: i64,
    /// Bytes of the leader's replica (-1: unknown).
    pub size_bytes: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TopicRow {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionRow>,
    pub replication_factor: usize,
    pub configs: BTreeMap<String, String>,
    pub size_bytes: i64,
    pub records: i64,
    pub in_records_per_s: f64,
    pub in_bytes_per_s: f64,
}

impl TopicRow {
    pub fn under_replicated(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.leader >= 0 && p.isr.len() < p.replicas.len())
            .count()
    }

    pub fn offline(&self) -> usize {
        self.partitions.iter().filter(|p| p.leader < 0).count()
    }
}

#[derive(Debug, Clone, Default)]
pub struct GroupRow {
    pub id: String,
    pub state: String,
    pub protocol: String,
    pub members: usize,
    /// Committed offsets of the group's partitions.
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Sum of (log end - committed) over its partitions.
    pub lag: i64,
}

/// One point of the overview's chart.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub at_ms: i64,
    pub in_records: f64,
    pub in_bytes: f64,
    pub consumed_records: f64,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub taken_ms: i64,
    pub cluster: Option<ClusterDescription>,
    pub topics: Vec<TopicRow>,
    pub groups: Vec<GroupRow>,
    /// Recent cluster rates, oldest first.
    pub rates: Vec<Rates>,
    /// Recent total lag per group, oldest first.
    pub lag_history: HashMap<String, Vec<(i64, i64)>>,
    /// Why the last sample failed, if it did (the rest is the one before).
    pub error: Option<String>,
}

impl Snapshot {
    pub fn topic(&self, name: &str) -> Option<&TopicRow> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn group(&self, id: &str) -> Option<&GroupRow> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// Log end offset of a partition (-1: unknown).
    pub fn log_end(&self, tp: &TopicPartition) -> i64 {
        self.topic(&tp.topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition))
            .map_or(-1, |p| p.log_end)
    }
}

#[derive(Default)]
struct History {
    rates: VecDeque<Rates>,
    lag: HashMap<String, VecDeque<(i64, i64)>>,
}

pub struct Sampler {
    config: ClientConfig,
    admin: Admin,
    latest: parking_lot::RwLock<Option<Arc<Snapshot>>>,
    history: parking_lot::Mutex<History>,
    /// One sample at a time (the timer's and a handler's).
    running: tokio::sync::Mutex<()>,
}

impl Sampler {
    pub fn new(config: ClientConfig, admin: Admin) -> Self {
        Sampler {
            config,
            admin,
            latest: Default::default(),
            history: Default::default(),
            running: Default::default(),
        }
    }

    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.read().clone()
    }

    /// Takes a snapshot; on failure keeps the last one, with the error.
    pub async fn sample(&self) {
        let _one = self.running.lock().await;
        let before = self.latest();
        let next = match self.take(before.as_deref()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "console sample failed");
                let mut s = before
                    .as_deref()
                    .map(Snapshot::clone_without_error)
                    .unwrap_or_default();
                s.error = Some(e.to_string());
                s
            }
        };
        *self.latest.write() = Some(Arc::new(next));
    }

    async fn take(&self, before: Option<&Snapshot>) -> sluice_client::Result<Snapshot> {
        let now = sluice_types::now_ms();
        let cluster = self.admin.describe_cluster().await?;
        let names: Vec<String> = self
            .admin
            .list_topics(true)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let described = self.describe(&names).await?;
        let tps: Vec<TopicPartition> = described
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(t.name.clone(), p.partition))
            })
            .collect();
        let (starts, ends) = if tps.is_empty() {
            Default::default()
        } else {
            // A topic deleted since it was described must not hold the
            // sample for a whole request timeout.
            let quick = self.config.clone().with("request.timeout.ms", "2000")?;
            let mut c = Consumer::new(quick)?;
            c.assign(tps.clone());
            offsets(&c, &tps).await
        };
        // Sizes from the leaders' log dirs; a broker that does not answer
        // leaves its partitions' sizes unknown.
        let mut sizes: HashMap<(String, i32, i32), i64> = HashMap::new();
        for b in self.admin.describe_log_dirs().await.unwrap_or_default() {
            for d in b.dirs {
                for r in d.replicas {
                    sizes.insert((r.topic, r.partition, b.broker), r.size_bytes);
                }
            }
        }
        let dt = before
            .map(|b| (now - b.taken_ms) as f64 / 1000.0)
            .filter(|s| *s > 0.0);
        let mut topics = Vec::with_capacity(described.len());
        for t in described {
            let mut row = TopicRow {
                replication_factor: t.replication_factor(),
                name: t.name.clone(),
                internal: t.is_internal,
                configs: t.configs.clone(),
                ..Default::default()
            };
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition);
                let size = sizes
                    .get(&(t.name.clone(), p.partition, p.leader))
                    .copied()
                    .unwrap_or(-1);
                row.partitions.push(PartitionRow {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start: starts.get(&tp).copied().unwrap_or(-1),
                    log_end: ends.get(&tp).copied().unwrap_or(-1),
                    size_bytes: size,
                });
            }
            row.partitions.sort_by_key(|p| p.partition);
            row.size_bytes = row.partitions.iter().map(|p| p.size_bytes.max(0)).sum();
            row.records = row.partitions.iter().map(|p| p.log_end.max(0)).sum();
            if let (Some(dt), Some(old)) = (dt, before.and_then(|b| b.topic(&row.name))) {
                // Per partition, and only where both samples know the value:
                // an unknown one counted as 0 would show as a burst.
                let (mut records, mut bytes) = (0i64, 0i64);
                for p in &row.partitions {
                    if let Some(o) = old.partitions.iter().find(|o| o.partition == p.partition) {
                        if p.log_end >= 0 && o.log_end >= 0 {
                            records += (p.log_end - o.log_end).max(0);
                        }
                        if p.size_bytes >= 0 && o.size_bytes >= 0 && p.leader == o.leader {
                            bytes += (p.size_bytes - o.size_bytes).max(0);
                        }
                    }
                }
                row.in_records_per_s = records as f64 / dt;
                row.in_bytes_per_s = bytes as f64 / dt;
            }
            topics.push(row);
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));

        // A few groups at a time; one that does not answer (its coordinator
        // moving) is left out of this sample, not the whole sample.
        let listing = self.admin.list_consumer_groups().await?;
        let admin = &self.admin;
        let mut groups: Vec<GroupRow> = stream::iter(listing)
            .map(|g| async move {
                let d = admin.describe_consumer_group(&g.group_id).await;
                let committed = admin.list_consumer_group_offsets(&g.group_id).await;
                match (d, committed) {
                    (Ok(d), Ok(committed)) => Some((g.group_id, d, committed)),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::debug!(group = %g.group_id, error = %e, "group left out of the sample");
                        None
                    }
                }
            })
            .buffer_unordered(8)
            .filter_map(|g| async move { g })
            .map(|(id, d, committed)| {
                let lag = committed
                    .iter()
                    .map(|(tp, c)| (ends.get(tp).copied().unwrap_or(*c) - c).max(0))
                    .sum();
                GroupRow {
                    id,
                    state: d.state,
                    protocol: d.protocol,
                    members: d.members.len(),
                    committed,
                    lag,
                }
            })
            .collect()
            .await;
        groups.sort_by(|a, b| a.id.cmp(&b.id));

        let mut s = Snapshot {
            taken_ms: now,
            cluster: Some(cluster),
            topics,
            groups,
            ..Default::default()
        };
        self.record_history(&mut s, before, dt);
        Ok(s)
    }

    /// Every topic of `names`; one deleted meanwhile is left out.
    async fn describe(&self, names: &[String]) -> sluice_client::Result<Vec<TopicDescription>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        match self.admin.describe_topics(names).await {
            Err(e) if e.code() == ErrorCode::UnknownTopicOrPartition => {}
            other => return other,
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            match self.admin.describe_topics(std::slice::from_ref(n)).await {
                Ok(d) => out.extend(d),
                Err(e) if e.code() == ErrorCode::UnknownTopicOrPartition => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Adds this snapshot's rates and lags to the history and copies the
    /// history into it.
    fn record_history(&self, s: &mut Snapshot, before: Option<&Snapshot>, dt: Option<f64>) {
        let mut h = self.history.lock();
        if let Some(dt) = dt {
            let consumed: i64 = before.map_or(0, |b| {
                s.groups
                    .iter()
                    .flat_map(|g| {
                        let old = b.group(&g.id);
                        g.committed.iter().map(move |(tp, c)| {
                            let was = old.and_then(|o| o.committed.get(tp)).copied();
                            was.map_or(0, |w| (c - w).max(0))
                        })
                    })
                    .sum()
            });
            h.rates.push_back(Rates {
                at_ms: s.taken_ms,
                in_records: s.topics.iter().map(|t| t.in_records_per_s).sum(),
                in_bytes: s.topics.iter().map(|t| t.in_bytes_per_s).sum(),
                consumed_records: consumed as f64 / dt,
            });
            while h.rates.len() > HISTORY {
                h.rates.pop_front();
            }
        }
        for g in &s.groups {
            let points = h.lag.entry(g.id.clone()).or_default();
            points.push_back((s.taken_ms, g.lag));
            while points.len() > HISTORY {
                points.pop_front();
            }
        }
        h.lag.retain(|id, _| s.groups.iter().any(|g| &g.id == id));
        s.rates = h.rates.iter().copied().collect();
        s.lag_history = h
            .lag
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
            .collect();
    }
}

type Offsets = HashMap<TopicPartition, i64>;

/// Log start and end offsets of `tps`. A partition without a leader (just
/// added, or its topic being deleted) fails the whole lookup: then topic by
/// topic, leaving the failing ones unknown.
async fn offsets(c: &Consumer, tps: &[TopicPartition]) -> (Offsets, Offsets) {
    if let (Ok(s), Ok(e)) = (c.beginning_offsets(tps).await, c.end_offsets(tps).await) {
        return (s, e);
    }
    let (mut starts, mut ends) = (Offsets::new(), Offsets::new());
    for chunk in tps.chunk_by(|a, b| a.topic == b.topic) {
        if let (Ok(s), Ok(e)) = (c.beginning_offsets(chunk).await, c.end_offsets(chunk).await) {
            starts.extend(s);
            ends.extend(e);
        }
    }
    (starts, ends)
}

impl Snapshot {
    fn clone_without_error(&self) -> Snapshot {
        Snapshot {
            taken_ms: self.taken_ms,
            cluster: self.cluster.clone(),
            topics: self.topics.clone(),
            groups: self.groups.clone(),
            rates: self.rates.clone(),
            lag_history: self.lag_history.clone(),
            error: None,
        }
    }
}
