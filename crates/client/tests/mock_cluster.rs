//! Drives Admin, Producer and Consumer against an in-memory single-node
//! broker + controller speaking the real gRPC contract on 127.0.0.1. The mock
//! keeps raw v2 batches per partition like the real log, so the fast paths
//! (`record_batches` produce, `RECORD_FORMAT_RECORD_BATCHES` fetch) are exercised.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_client::{
    Admin, ClientConfig, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord, TopicPartition,
};
use sluice_proto::broker::broker_server::{Broker, BrokerServer};
use sluice_proto::broker::*;
use sluice_proto::common::BrokerEndpoint;
use sluice_proto::controller::controller_server::{Controller, ControllerServer};
use sluice_proto::controller::*;
use sluice_types::ApiError;
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
                        FetchPartitionResponse {
                            partition: p.partition,
                            error: None,
                            high_watermark: log.end,
                            last_stable_offset: log.end,
                            log_start_offset: 0,
                            records: vec![],
                            record_batches: buf.freeze(),
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
}

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = Mock {
        port,
        state: Arc::default(),
        appended: Arc::default(),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
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

fn config(addr: &str, props: &[&str]) -> ClientConfig {
    let mut c = ClientConfig::new(addr);
    c.set_pairs(props).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_produce_consume_round_trip() {
    let addr = start().await;
    let admin = Admin::new(config(&addr, &[])).unwrap();
    let created = admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap();
    assert_eq!(created.partitions, 3);
    let e = admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TopicAlreadyExists);
    let e = admin
        .create_topic(NewTopic::new("rf2", 1, 2))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "INVALID_REPLICATION_FACTOR: replication factor 2 exceeds 1 live broker"
    );
    let listed: Vec<String> = admin
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, vec!["orders"]);
    let d = admin.describe_topics(&["orders".into()]).await.unwrap();
    assert_eq!(d[0].partitions.len(), 3);
    assert_eq!(d[0].replication_factor(), 1);
    assert_eq!(admin.describe_cluster().await.unwrap().brokers.len(), 1);

    let producer = Producer::new(config(&addr, &["linger.ms=2", "batch.size=4096"])).unwrap();
    let mut futs = Vec::new();
    for i in 0..600 {
        let mut r = ProducerRecord::new("orders", format!("value-{i}"));
        if i % 2 == 0 {
            r = r.with_key(format!("key-{}", i % 10));
        }
        r.headers = vec![("h".into(), Some(Bytes::from_static(b"1")))];
        futs.push((r.key.clone(), producer.send(r).await.unwrap()));
    }
    let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    for (key, f) in futs {
        let md = f.await.unwrap();
        if let Some(k) = key {
            assert_eq!(md.partition, sluice_types::hash::partition_for_key(&k, 3));
        }
        per_partition
            .entry(md.partition)
            .or_default()
            .push(md.offset);
    }
    for offsets in per_partition.values() {
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(sorted, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    producer.close().await;

    let mut consumer = Consumer::new(config(
        &addr,
        &["auto.offset.reset=earliest", "max.poll.records=100"],
    ))
    .unwrap();
    consumer.assign_all("orders").await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 600 && Instant::now() < deadline {
        let batch = consumer.poll(Duration::from_millis(500)).await.unwrap();
        assert!(batch.len() <= 100);
        seen.extend(batch);
    }
    assert_eq!(seen.len(), 600);
    let mut values: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 600);
    assert_eq!(
        seen[0].headers,
        vec![("h".to_string(), Some(Bytes::from_static(b"1")))]
    );
    // Nothing more arrives.
    assert!(
        consumer
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );

    // Seek back on one partition.
    let tp = TopicPartition::new("orders", 0);
    let n0 = per_partition[&0].len() as i64;
    assert_eq!(consumer.position(&tp), Some(n0));
    consumer.seek(&tp, n0 - 2).unwrap();
    let again = consumer.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![n0 - 2, n0 - 1]
    );
    consumer
        .seek_to_beginning(std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(consumer.position(&tp), Some(0));
    consumer.seek_to_end(&[]).await.unwrap();
    assert_eq!(consumer.position(&tp), Some(n0));

    // Long poll wakes on new data.
    let p2 = Producer::new(config(&addr, &["acks=1"])).unwrap();
    let waiter = tokio::spawn(async move {
        let r = consumer.poll(Duration::from_secs(5)).await.unwrap();
        (r, consumer)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let md = p2
        .send(ProducerRecord::new("orders", "late").with_partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, n0);
    let (late, _) = waiter.await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value.as_deref(), Some(&b"late"[..]));

    admin.create_partitions("orders", 5).await.unwrap();
    assert_eq!(
        admin.describe_topics(&["orders".into()]).await.unwrap()[0]
            .partitions
            .len(),
        5
    );
    admin.delete_topic("orders").await.unwrap();
    assert_eq!(
        admin.delete_topic("orders").await.unwrap_err().code(),
        ErrorCode::UnknownTopicOrPartition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_fails_fast() {
    let addr = start().await;
    let producer = Producer::new(config(&addr, &[])).unwrap();
    let t0 = Instant::now();
    let e = producer
        .send(ProducerRecord::new("missing", "x"))
        .await
        .err()
        .expect("unknown topic");
    assert_eq!(e.code(), ErrorCode::UnknownTopicOrPartition);
    assert!(
        e.to_string().starts_with("UNKNOWN_TOPIC_OR_PARTITION: "),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let admin = Admin::new(config(&addr, &[])).unwrap();
    admin.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let e = producer
        .send(ProducerRecord::new("t", "x").with_partition(7))
        .await
        .err()
        .expect("bad partition");
    assert_eq!(e.code(), ErrorCode::UnknownTopicOrPartition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_large_batches() {
    let addr = start().await;
    let admin = Admin::new(config(&addr, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("big", 2, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&addr, &["acks=0"])).unwrap();
    let md = producer
        .send(ProducerRecord::new("big", "x"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, -1);
    let e = producer
        .send(ProducerRecord::new("big", vec![0u8; 2 << 20]))
        .await
        .err()
        .expect("too large");
    assert_eq!(e.code(), ErrorCode::MessageTooLarge);
    producer.close().await;

    // Many 1 KiB records through small buffer.memory: send waits for room.
    let producer = Producer::new(config(
        &addr,
        &[
            "acks=1",
            "batch.size=65536",
            "buffer.memory=262144",
            "linger.ms=1",
        ],
    ))
    .unwrap();
    let value = Bytes::from(vec![b'a'; 1024]);
    let mut last = None;
    for _ in 0..5000 {
        last = Some(
            producer
                .send(ProducerRecord {
                    topic: "big".into(),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    producer.flush().await;
    last.unwrap().await.unwrap();
    producer.close().await;
    let mut consumer = Consumer::new(config(
        &addr,
        &[
            "auto.offset.reset=earliest",
            "max.partition.fetch.bytes=100000",
        ],
    ))
    .unwrap();
    consumer.assign_all("big").await.unwrap();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < 5001 && Instant::now() < deadline {
        n += consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(n, 5001);
}
