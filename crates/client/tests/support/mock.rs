//! An in-memory single-node broker + controller speaking the real gRPC contract on 127.0.0.1. The mock
//! keeps raw v2 batches per partition like the real log, so the fast paths
//! (`record_batches` produce, `RECORD_FORMAT_RECORD_BATCHES` fetch) are exercised.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_proto::broker::broker_server::{Broker, BrokerServer};
use sluice_proto::broker::*;
use sluice_proto::common::BrokerEndpoint;
use sluice_proto::controller::controller_server::{Controller, ControllerServer};
use sluice_proto::controller::*;
use sluice_types::ApiError;
use sluice_types::ErrorCode;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Log {
    /// (base offset, next offset, batch bytes with the base offset set).
    batches: Vec<(i64, i64, Bytes)>,
    end: i64,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, (String, Vec<Log>)>,
}

#[derive(Clone)]
struct Mock {
    port: u16,
    state: Arc<parking_lot::Mutex<State>>,
    appended: Arc<tokio::sync::Notify>,
}

fn endpoint(port: u16) -> BrokerEndpoint {
    BrokerEndpoint {
        broker_id: 1,
        host: "127.0.0.1".into(),
        port: port as i32,
        rack: None,
    }
}

#[tonic::async_trait]
impl Broker for Mock {
    async fn metadata(
        &self,
        r: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let r = r.into_inner();
        let st = self.state.lock();
        let names: Vec<String> = if r.topics.is_empty() {
            st.topics.keys().cloned().collect()
        } else {
            r.topics.clone()
        };
        let topics = names
            .into_iter()
            .map(|name| match st.topics.get(&name) {
                None => TopicMetadata {
                    error: Some(ApiError::unknown_topic(&name).to_proto()),
                    name,
                    ..Default::default()
                },
                Some((id, logs)) => TopicMetadata {
                    error: None,
                    topic_id: id.clone(),
                    is_internal: false,
                    partitions: (0..logs.len() as i32)
                        .map(|p| PartitionMetadata {
                            error: None,
                            partition: p,
                            leader_id: 1,
                            leader_epoch: 0,
                            replicas: vec![1],
                            isr: vec![1],
                            offline_replicas: vec![],
                        })
                        .collect(),
                    configs: HashMap::new(),
                    name,
                },
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            brokers: vec![endpoint(self.port)],
            cluster_id: "mock-cluster".into(),
            controller_id: 1,
            controller: Some(endpoint(self.port)),
            topics,
        }))
    }

    async fn produce(
        &self,
        r: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let r = r.into_inner();
        let mut st = self.state.lock();
        let mut out = Vec::new();
        for t in r.topics {
            let mut parts = Vec::new();
            for p in t.partitions {
                let log = st
                    .topics
                    .get_mut(&t.name)
                    .and_then(|(_, logs)| logs.get_mut(p.partition as usize));
                let Some(log) = log else {
                    parts.push(PartitionProduceResponse {
                        partition: p.partition,
                        error: Some(ApiError::unknown_partition(&t.name, p.partition).to_proto()),
                        ..Default::default()
                    });
                    continue;
                };
                assert!(p.records.is_empty(), "the client uses record_batches");
                let batches = sluice_records::split_batches(&p.record_batches)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let base = log.end;
                for b in batches {
                    let mut bytes = BytesMut::from(&b.bytes[..]);
                    sluice_records::set_base_offset(&mut bytes, log.end);
                    let count = b.header.last_offset_delta as i64 + 1;
                    log.batches.push((log.end, log.end + count, bytes.freeze()));
                    log.end += count;
                }
                parts.push(PartitionProduceResponse {
                    partition: p.partition,
                    error: None,
                    base_offset: base,
                    log_start_offset: 0,
                    log_append_time_ms: -1,
                    ..Default::default()
                });
            }
            out.push(TopicProduceResponse {
                name: t.name,
                partitions: parts,
            });
        }
        self.appended.notify_waiters();
        Ok(Response::new(ProduceResponse { topics: out }))
    }

    async fn fetch(&self, r: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let r = r.into_inner();
        let deadline = Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
        loop {
            let appended = self.appended.notified();
            let (resp, bytes) = self.read(&r);
            if bytes > 0 || Instant::now() >= deadline {
                return Ok(Response::new(resp));
            }
            let _ = tokio::time::timeout_at(deadline.into(), appended).await;
        }
    }

    async fn list_offsets(
        &self,
        r: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let r = r.into_inner();
        let st = self.state.lock();
        let topics = r
            .topics
            .into_iter()
            .map(|t| ListOffsetsTopicResponse {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let log = st
                            .topics
                            .get(&t.name)
                            .and_then(|(_, l)| l.get(p.partition as usize));
                        match log {
                            None => ListOffsetsPartitionResponse {
                                partition: p.partition,
                                error: Some(
                                    ApiError::unknown_partition(&t.name, p.partition).to_proto(),
                                ),
                                ..Default::default()
                            },
                            Some(log) => {
                                let offset = match OffsetSpec::try_from(p.spec) {
                                    Ok(OffsetSpec::Earliest) => 0,
                                    Ok(OffsetSpec::Latest) => log.end,
                                    _ => {
                                        // First record with timestamp >= asked.
                                        let mut found = -1;
                                        'outer: for (_, _, b) in &log.batches {
                                            for rec in
                                                sluice_records::decode_records(b.clone()).unwrap()
                                            {
                                                if rec.timestamp >= p.timestamp_ms {
                                                    found = rec.offset;
                                                    break 'outer;
                                                }
                                            }
                                        }
                                        found
                                    }
                                };
                                ListOffsetsPartitionResponse {
                                    partition: p.partition,
                                    error: None,
                                    offset,
                                    timestamp_ms: -1,
                                    leader_epoch: 0,
                                }
                            }
                        }
                    })
                    .collect(),
                name: t.name,
            })
            .collect();
        Ok(Response::new(ListOffsetsResponse { topics }))
    }

    async fn replica_fetch(
        &self,
        _: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn find_coordinator(
        &self,
        _: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn delete_records(
        &self,
        _: Request<sluice_proto::broker::DeleteRecordsRequest>,
    ) -> Result<Response<sluice_proto::broker::DeleteRecordsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn describe_log_dirs(
        &self,
        _: Request<sluice_proto::broker::DescribeLogDirsRequest>,
    ) -> Result<Response<sluice_proto::broker::DescribeLogDirsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn init_producer_id(
        &self,
        _: Request<sluice_proto::broker::InitProducerIdRequest>,
    ) -> Result<Response<sluice_proto::broker::InitProducerIdResponse>, Status> {
        // The mock does not deduplicate; any id will do.
        Ok(Response::new(
            sluice_proto::broker::InitProducerIdResponse {
                error: None,
                producer_id: 1,
                producer_epoch: 0,
            },
        ))
    }
}

impl Mock {
    fn read(&self, r: &FetchRequest) -> (FetchResponse, usize) {
        let st = self.state.lock();
        let mut total = 0;
        let topics = r
            .topics
            .iter()
            .map(|t| FetchTopicResponse {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let Some(log) = st
                            .topics
                            .get(&t.name)
                            .and_then(|(_, l)| l.get(p.partition as usize))
                        else {
                            return FetchPartitionResponse {
                                partition: p.partition,
                                error: Some(
                                    ApiError::unknown_partition(&t.name, p.partition).to_proto(),
                                ),
                                ..Default::default()
                            };
                        };
                        if p.fetch_offset > log.end || p.fetch_offset < 0 {
                            return FetchPartitionResponse {
                                partition: p.partition,
                                error: Some(
                                    ApiError::new(ErrorCode::OffsetOutOfRange, "out of range")
                                        .to_proto(),
                                ),
                                high_watermark: log.end,
                                ..Default::default()
                            };
                        }
                        let mut buf = BytesMut::new();
                        for (_, next, b) in &log.batches {
                            if *next <= p.fetch_offset {
                                continue;
                            }
                            if !buf.is_empty()
                                && buf.len() + b.len() > p.partition_max_bytes as usize
                            {
                                // Like the real log: end with a partial batch.
                                buf.extend_from_slice(&b[..b.len() / 2]);
                                break;
                            }
                            buf.extend_from_slice(b);
                        }
                        total += buf.len();
                        let next_fetch_offset = sluice_records::batch_headers(&buf)
                            .last()
                            .map_or(p.fetch_offset, |h| h.next_offset());
                        FetchPartitionResponse {
                            partition: p.partition,
                            error: None,
                            high_watermark: log.end,
                            last_stable_offset: log.end,
                            log_start_offset: 0,
                            records: vec![],
                            record_batches: buf.freeze(),
                            next_fetch_offset,
                        }
                    })
                    .collect(),
            })
            .collect();
        (FetchResponse { topics }, total)
    }
}

#[tonic::async_trait]
impl Controller for Mock {
    async fn create_topics(
        &self,
        r: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let r = r.into_inner();
        let mut st = self.state.lock();
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let err = if st.topics.contains_key(&t.name) {
                    Some(ApiError::new(
                        ErrorCode::TopicAlreadyExists,
                        format!("topic \"{}\" already exists", t.name),
                    ))
                } else if t.replication_factor > 1 {
                    Some(ApiError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!(
                            "replication factor {} exceeds 1 live broker",
                            t.replication_factor
                        ),
                    ))
                } else {
                    None
                };
                let n = if t.num_partitions < 0 {
                    1
                } else {
                    t.num_partitions
                };
                if err.is_none() {
                    let logs = (0..n).map(|_| Log::default()).collect();
                    st.topics
                        .insert(t.name.clone(), (format!("id-{}", t.name), logs));
                }
                CreatableTopicResult {
                    error: err.map(|e| e.to_proto()),
                    topic_id: format!("id-{}", t.name),
                    num_partitions: n,
                    replication_factor: 1,
                    configs: t.configs,
                    name: t.name,
                }
            })
            .collect();
        Ok(Response::new(CreateTopicsResponse { topics }))
    }

    async fn delete_topics(
        &self,
        r: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let mut st = self.state.lock();
        let topics = r
            .into_inner()
            .names
            .into_iter()
            .map(|n| DeletableTopicResult {
                error: st
                    .topics
                    .remove(&n)
                    .is_none()
                    .then(|| ApiError::unknown_topic(&n).to_proto()),
                name: n,
            })
            .collect();
        Ok(Response::new(DeleteTopicsResponse { topics }))
    }

    async fn create_partitions(
        &self,
        r: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let mut st = self.state.lock();
        let topics = r
            .into_inner()
            .topics
            .into_iter()
            .map(|t| {
                let error = match st.topics.get_mut(&t.name) {
                    None => Some(ApiError::unknown_topic(&t.name)),
                    Some((_, logs)) if t.count as usize <= logs.len() => Some(ApiError::new(
                        ErrorCode::InvalidPartitions,
                        "the count can only grow",
                    )),
                    Some((_, logs)) => {
                        logs.resize_with(t.count as usize, Log::default);
                        None
                    }
                };
                CreatePartitionsTopicResult {
                    name: t.name,
                    error: error.map(|e| e.to_proto()),
                }
            })
            .collect();
        Ok(Response::new(CreatePartitionsResponse { topics }))
    }

    async fn describe_cluster(
        &self,
        _: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        Ok(Response::new(DescribeClusterResponse {
            cluster_id: "mock-cluster".into(),
            controller_id: 1,
            controller_epoch: 1,
            brokers: vec![endpoint(self.port)],
            coordinators: vec![],
        }))
    }

    async fn alter_partition(
        &self,
        _: Request<AlterPartitionRequest>,
    ) -> Result<Response<AlterPartitionResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn allocate_producer_ids(
        &self,
        _: Request<AllocateProducerIdsRequest>,
    ) -> Result<Response<AllocateProducerIdsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn alter_configs(
        &self,
        _: Request<sluice_proto::controller::AlterConfigsRequest>,
    ) -> Result<Response<sluice_proto::controller::AlterConfigsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn ensure_offsets_topic(
        &self,
        _: Request<sluice_proto::controller::EnsureOffsetsTopicRequest>,
    ) -> Result<Response<sluice_proto::controller::EnsureOffsetsTopicResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
}

/// Starts the mock on 127.0.0.1:`port` (0: any) and returns `host:port`.
pub async fn start_on(port: u16) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = Mock {
        port,
        state: Arc::default(),
        appended: Arc::default(),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .add_service(
                BrokerServer::new(mock.clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            )
            .add_service(ControllerServer::new(mock))
            .serve_with_incoming(incoming),
    );
    format!("127.0.0.1:{port}")
}

pub async fn start() -> String {
    start_on(0).await
}
