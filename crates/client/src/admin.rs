//! [`Admin`]: topic administration and cluster description.
//!
//! Admin RPCs go to the active controller found in the Metadata response;
//! `NOT_CONTROLLER` (and other retriable codes) refresh metadata and retry
//! until `request.timeout.ms`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Channel;
use sluice_proto::broker::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_proto::controller::{
    AlterConfigsRequest, AlterConfigsResource, AlterableConfig, ConfigOperation,
    ConfigResourceType, CreatableTopic, CreatePartitionsRequest, CreatePartitionsTopic,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
};
use sluice_types::{ApiError, ErrorCode};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the cluster's `num.partitions`.
    pub partitions: i32,
    /// -1: the cluster's `default.replication.factor`.
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }
}

/// What the controller created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

/// One entry of [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    pub name: String,
    pub topic_id: String,
    pub is_internal: bool,
}

/// One partition of [`TopicDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

/// A topic as [`Admin::describe_topics`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub is_internal: bool,
    pub partitions: Vec<PartitionDescription>,
    pub configs: BTreeMap<String, String>,
}

impl TopicDescription {
    /// Replicas per partition (of the first partition; 0 without partitions).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// A broker in [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A group coordinator in [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub owned_partitions: Vec<i32>,
}

/// What [`Admin::describe_cluster`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// -1 when no controller is elected.
    pub controller_id: i32,
    pub controller_epoch: i64,
    pub brokers: Vec<BrokerInfo>,
    pub coordinators: Vec<CoordinatorInfo>,
}

/// The admin client.
#[derive(Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// An admin client; connects lazily.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Ok(Admin {
            cluster: Cluster::new(config)?,
        })
    }

    fn timeout(&self) -> Duration {
        self.cluster.config.request_timeout
    }

    /// Runs `call` against the active controller, refreshing metadata and
    /// retrying on retriable whole-request failures until the request timeout.
    pub(crate) async fn with_controller<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut(ControllerClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.timeout();
        loop {
            let err = match self.cluster.controller().await {
                Ok((addr, client)) => {
                    match tokio::time::timeout(self.timeout(), call(client)).await {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(status)) => ClientError::from_status(&addr, &status),
                        Err(_) => ClientError::api(
                            ErrorCode::RequestTimedOut,
                            format!("{what}: no answer from the controller at {addr}"),
                        ),
                    }
                }
                Err(e) => e,
            };
            if !err.is_retriable() || Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "{what}: retrying");
            tokio::time::sleep(self.cluster.config.retry_backoff).await;
            let _ = self.cluster.refresh(&[]).await;
        }
    }

    /// Creates one topic and waits until every partition has a leader in the
    /// broker's metadata, so producing right after works.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<CreatedTopic> {
        let mut results = self.create_topics(vec![topic]).await?;
        results.pop().expect("one result per topic")
    }

    /// Creates topics; each succeeds or fails on its own. Waits (bounded by
    /// `request.timeout.ms`) until the created topics have leaders for all
    /// partitions.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
    ) -> Result<Vec<Result<CreatedTopic, ClientError>>> {
        for t in &topics {
            sluice_types::names::validate_topic_name(&t.name)?;
        }
        let timeout_ms = self.timeout().as_millis().min(i32::MAX as u128) as i32;
        let req = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|t| CreatableTopic {
                    name: t.name.clone(),
                    num_partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    assignments: Vec::new(),
                    configs: t.configs.clone().into_iter().collect(),
                })
                .collect(),
            timeout_ms,
            validate_only: false,
        };
        let resp = self
            .with_controller("create topics", |mut c| {
                let req = req.clone();
                async move { c.create_topics(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let mut out = Vec::with_capacity(topics.len());
        for t in &topics {
            let r = resp.topics.iter().find(|r| r.name == t.name);
            let result = match r {
                None => Err(ClientError::api(
                    ErrorCode::UnknownServerError,
                    format!("the controller did not answer for topic \"{}\"", t.name),
                )),
                Some(r) => match ApiError::from_proto(r.error.as_ref()) {
                    Some(e) => Err(e.into()),
                    None => Ok(CreatedTopic {
                        name: r.name.clone(),
                        topic_id: r.topic_id.clone(),
                        partitions: r.num_partitions,
                        replication_factor: r.replication_factor,
                        configs: r.configs.clone().into_iter().collect(),
                    }),
                },
            };
            out.push(result);
        }
        let created: Vec<(String, i32)> = out
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|c| (c.name.clone(), c.partitions))
            .collect();
        if !created.is_empty() {
            self.wait_for_leaders(&created).await?;
        }
        Ok(out)
    }

    /// Polls Metadata until each topic shows at least `partitions` partitions
    /// (when known, > 0), all with leaders.
    async fn wait_for_leaders(&self, topics: &[(String, i32)]) -> Result<()> {
        let names: Vec<String> = topics.iter().map(|t| t.0.clone()).collect();
        let deadline = Instant::now() + self.timeout();
        let mut backoff = Duration::from_millis(10);
        loop {
            let resp = self.cluster.metadata(&names, false).await?;
            let ready = topics.iter().all(|(name, want)| {
                resp.topics.iter().any(|t| {
                    &t.name == name
                        && ApiError::from_proto(t.error.as_ref()).is_none()
                        && !t.partitions.is_empty()
                        && t.partitions.len() as i32 >= *want
                        && t.partitions.iter().all(|p| p.leader_id >= 0)
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::api(
                    ErrorCode::RequestTimedOut,
                    format!(
                        "topics {names:?} were created but have no leaders after {:?}",
                        self.timeout()
                    ),
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Deletes one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut r = self.delete_topics(&[name.to_string()]).await?;
        r.pop().expect("one result per topic")
    }

    /// Deletes topics; each succeeds or fails on its own. Waits (bounded by
    /// `request.timeout.ms`) until the brokers no longer list the deleted
    /// ones, so what is read right after does not show them.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<Result<(), ClientError>>> {
        let req = DeleteTopicsRequest {
            names: names.to_vec(),
            timeout_ms: self.timeout().as_millis().min(i32::MAX as u128) as i32,
        };
        let resp = self
            .with_controller("delete topics", |mut c| {
                let req = req.clone();
                async move { c.delete_topics(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let results: Vec<Result<(), ClientError>> = names
            .iter()
            .map(|n| match resp.topics.iter().find(|r| &r.name == n) {
                None => Err(ClientError::api(
                    ErrorCode::UnknownServerError,
                    format!("the controller did not answer for topic \"{n}\""),
                )),
                Some(r) => match ApiError::from_proto(r.error.as_ref()) {
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                },
            })
            .collect();
        let deleted: Vec<&String> = names
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n)
            .collect();
        self.wait_until_gone(&deleted).await;
        Ok(results)
    }

    /// Until the brokers' metadata lists none of `names` (or the request
    /// timeout passes: the deletion itself has succeeded either way).
    async fn wait_until_gone(&self, names: &[&String]) {
        if names.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.timeout();
        let mut backoff = Duration::from_millis(10);
        while Instant::now() < deadline {
            match self.list_topics(true).await {
                Ok(listed) if !listed.iter().any(|t| names.contains(&&t.name)) => return,
                _ => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Grows a topic to `total_count` partitions and waits for their leaders.
    pub async fn create_partitions(&self, topic: &str, total_count: i32) -> Result<()> {
        let req = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: topic.to_string(),
                count: total_count,
                assignments: Vec::new(),
            }],
            timeout_ms: self.timeout().as_millis().min(i32::MAX as u128) as i32,
            validate_only: false,
        };
        let resp = self
            .with_controller("create partitions", |mut c| {
                let req = req.clone();
                async move { c.create_partitions(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        if let Some(e) = resp
            .topics
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| ApiError::from_proto(t.error.as_ref()))
        {
            return Err(e.into());
        }
        self.wait_for_leaders(&[(topic.to_string(), total_count)])
            .await
    }

    /// Changes a topic's config overrides: `set` keys to values, then
    /// `delete` keys (back to the broker default), as `kafka-configs.sh
    /// --alter --add-config/--delete-config` does. Brokers apply it live.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<()> {
        let configs = set
            .iter()
            .map(|(k, v)| AlterableConfig {
                name: k.clone(),
                operation: ConfigOperation::Set as i32,
                value: Some(v.clone()),
            })
            .chain(delete.iter().map(|k| AlterableConfig {
                name: k.clone(),
                operation: ConfigOperation::Delete as i32,
                value: None,
            }))
            .collect();
        let req = AlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: ConfigResourceType::Topic as i32,
                resource_name: topic.to_string(),
                configs,
            }],
            validate_only: false,
        };
        let resp = self
            .with_controller("alter configs", |mut c| {
                let req = req.clone();
                async move { c.alter_configs(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        match resp
            .results
            .first()
            .and_then(|r| ApiError::from_proto(r.error.as_ref()))
        {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Deletes the records of `topic`-`partition` before `offset` (-1: the
    /// high watermark) on its leader, as `kafka-delete-records.sh` does;
    /// returns the partition's new log start (low watermark).
    pub async fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let mut client = self.leader_client(topic, partition).await?;
        let resp = client
            .delete_records(DeleteRecordsRequest {
                topics: vec![DeleteRecordsTopic {
                    name: topic.to_string(),
                    partitions: vec![DeleteRecordsPartition { partition, offset }],
                }],
                timeout_ms: self.timeout().as_millis().min(i32::MAX as u128) as i32,
            })
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        let p = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| ApiError::internal("empty DeleteRecords answer"))?;
        match ApiError::from_proto(p.error.as_ref()) {
            Some(e) => Err(e.into()),
            None => Ok(p.low_watermark),
        }
    }

    /// A Broker client for the leader of `topic`-`partition`.
    pub(crate) async fn leader_client(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<sluice_proto::broker::broker_client::BrokerClient<Channel>> {
        let count = self.cluster.partition_count(topic).await?;
        if partition < 0 || partition >= count {
            return Err(ApiError::unknown_partition(topic, partition).into());
        }
        let leader = self.cluster.leader(topic, partition).leader;
        if leader < 0 {
            return Err(ApiError::new(
                ErrorCode::LeaderNotAvailable,
                format!("{topic}-{partition} has no leader now"),
            )
            .into());
        }
        Ok(self.cluster.broker(leader)?.1)
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>> {
        let resp = self.cluster.metadata(&[], include_internal).await?;
        let mut out: Vec<TopicListing> = resp
            .topics
            .into_iter()
            .filter(|t| include_internal || !t.is_internal)
            .map(|t| TopicListing {
                name: t.name,
                topic_id: t.topic_id,
                is_internal: t.is_internal,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Describes the named topics (empty: every non-internal topic). A named
    /// topic that does not exist fails the call with its code.
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicDescription>> {
        // Describing a topic must not create it, whatever the brokers'
        // `auto.create.topics.enable`.
        let resp = self.cluster.metadata_for(names, false, false).await?;
        let mut out = Vec::with_capacity(resp.topics.len());
        for t in resp.topics {
            if let Some(e) = ApiError::from_proto(t.error.as_ref()) {
                return Err(e.into());
            }
            let mut partitions: Vec<PartitionDescription> = t
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    leader: p.leader_id,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                    offline_replicas: p.offline_replicas,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            out.push(TopicDescription {
                name: t.name,
                topic_id: t.topic_id,
                is_internal: t.is_internal,
                partitions,
                configs: t.configs.into_iter().collect(),
            });
        }
        if out.is_empty()
            && let Some(n) = names.first()
        {
            return Err(ApiError::unknown_topic(n).into());
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Brokers, coordinators and the active controller.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let resp = self
            .with_controller("describe cluster", |mut c| async move {
                c.describe_cluster(DescribeClusterRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        let mut brokers: Vec<BrokerInfo> = resp
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                id: b.broker_id,
                host: b.host,
                port: b.port,
                rack: b.rack,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id,
            controller_id: resp.controller_id,
            controller_epoch: resp.controller_epoch,
            brokers,
            coordinators: resp
                .coordinators
                .into_iter()
                .map(|c| CoordinatorInfo {
                    id: c.coordinator_id,
                    host: c.host,
                    port: c.port,
                    owned_partitions: c.owned_partitions,
                })
                .collect(),
        })
    }
}
