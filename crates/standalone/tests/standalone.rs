//! End-to-end tests of a real standalone node (real gRPC server on 127.0.0.1,
//! real files) driven through the client library.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use sluice_client::{
    Admin, ClientConfig, Consumer, ErrorCode, NewTopic, Producer, ProducerRecord, TopicPartition,
};
use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::broker::{self as pb};
use sluice_standalone::{Standalone, StandaloneOptions};

fn opts(dir: &Path) -> StandaloneOptions {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    StandaloneOptions::new(dir, addr)
}

fn config(node: &Standalone, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new(&node.addr.to_string());
    for (k, v) in extra {
        c = c.with(k, v).unwrap();
    }
    c
}

async fn consume_all(
    node: &Standalone,
    topic: &str,
    expected: usize,
) -> Vec<(i32, i64, String, String)> {
    let mut consumer = Consumer::new(config(node, &[("auto.offset.reset", "earliest")])).unwrap();
    let tps = consumer.assign_all(topic).await.unwrap();
    consumer.seek_to_beginning(&tps).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected && tokio::time::Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            out.push((
                r.partition,
                r.offset,
                String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            ));
        }
    }
    // Nothing beyond what was produced.
    let extra = consumer.poll(Duration::from_millis(300)).await.unwrap();
    assert!(
        extra.is_empty(),
        "unexpected extra records: {}",
        extra.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_restart_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap();

    // Small batches, so several go in one request per partition.
    let producer = Producer::new(config(
        &node,
        &[("acks", "all"), ("linger.ms", "2"), ("batch.size", "2048")],
    ))
    .unwrap();
    let mut acks = Vec::new();
    for i in 0..3000 {
        let rec = ProducerRecord {
            key: Some(Bytes::from(format!("key-{}", i % 17))),
            ..ProducerRecord::new("orders", format!("value-{i}"))
        };
        acks.push(producer.send(rec).await.unwrap());
    }
    let mut acked = std::collections::HashMap::new();
    for (i, a) in acks.into_iter().enumerate() {
        let md = a.await.unwrap();
        acked.insert(format!("value-{i}"), (md.partition, md.offset));
    }
    producer.close().await;

    let check = |records: &[(i32, i64, String, String)]| {
        assert_eq!(records.len(), 3000);
        // Per partition: dense offsets from 0, values in send order, and each key
        // always in the same partition (murmur2).
        for p in 0..3 {
            let part: Vec<_> = records.iter().filter(|r| r.0 == p).collect();
            for (i, r) in part.iter().enumerate() {
                assert_eq!(r.1, i as i64, "offsets of partition {p} are dense");
            }
            let seq: Vec<usize> = part
                .iter()
                .map(|r| r.3.trim_start_matches("value-").parse().unwrap())
                .collect();
            assert!(
                seq.windows(2).all(|w| w[0] < w[1]),
                "partition {p} in send order"
            );
        }
        for k in 0..17 {
            let key = format!("key-{k}");
            let parts: std::collections::HashSet<i32> =
                records.iter().filter(|r| r.2 == key).map(|r| r.0).collect();
            assert_eq!(parts.len(), 1, "{key} landed in one partition");
        }
    };
    let consumed = consume_all(&node, "orders", 3000).await;
    check(&consumed);
    for r in &consumed {
        assert_eq!(acked[&r.3], (r.0, r.1), "acknowledged offset of {}", r.3);
    }
    node.shutdown().await.unwrap();

    // The partition directories hold Kafka's files.
    for p in 0..3 {
        let pdir = dir.path().join("logs").join(format!("orders-{p}"));
        let names: Vec<String> = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for want in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
            "leader-epoch-checkpoint",
            "partition.metadata",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing in {names:?}"
            );
        }
    }

    let node = Standalone::start(opts(dir.path())).await.unwrap();
    check(&consume_all(&node, "orders", 3000).await);
    let admin = Admin::new(config(&node, &[])).unwrap();
    let topics = admin.list_topics(false).await.unwrap();
    assert!(
        topics.iter().any(|t| t.name == "orders"),
        "topic survives restart"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_stable_codes_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();

    let e = admin
        .create_topic(NewTopic::new("rf2", 1, 2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidReplicationFactor, "{e}");
    assert!(
        e.to_string()
            .contains("replication factor 2 exceeds 1 live broker"),
        "{e}"
    );
    let topics = admin.list_topics(true).await.unwrap();
    assert!(!topics.iter().any(|t| t.name == "rf2"), "nothing created");

    let e = admin
        .create_topic(NewTopic::new("bad name!", 1, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidTopicException, "{e}");

    admin.create_topic(NewTopic::new("t", 1, 1)).await.unwrap();
    let e = admin
        .create_topic(NewTopic::new("t", 1, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TopicAlreadyExists, "{e}");

    let producer = Producer::new(config(&node, &[("linger.ms", "0")])).unwrap();
    let res = match producer.send(ProducerRecord::new("nope", "x")).await {
        Ok(f) => f.await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(res.unwrap_err().code(), ErrorCode::UnknownTopicOrPartition);

    // An invalid name gets the same answer from Produce as from Metadata.
    let mut raw_md = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    for name in [String::new(), "x".repeat(300), "bad name!".to_string()] {
        let md = raw_md
            .metadata(pb::MetadataRequest {
                topics: vec![name.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let code = md.topics[0].error.as_ref().map(|e| e.code());
        assert_eq!(
            code,
            Some(ErrorCode::InvalidTopicException),
            "metadata {name:?}"
        );
        let p = produce_raw(&mut raw_md, &name, Bytes::new()).await;
        let code = p.error.as_ref().map(|e| e.code());
        assert_eq!(
            code,
            Some(ErrorCode::InvalidTopicException),
            "produce {name:?}"
        );
    }

    // Above message.max.bytes (1048588 by default), through the raw API so the
    // client's own size check does not stop it first.
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let big = sluice_proto::common::Record {
        value: Some(Bytes::from(vec![7u8; 2 << 20])),
        ..Default::default()
    };
    let resp = raw
        .produce(pb::ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            topics: vec![pb::TopicProduceData {
                name: "t".into(),
                partitions: vec![pb::PartitionProduceData {
                    partition: 0,
                    records: vec![big],
                    ..Default::default()
                }],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let err = resp.topics[0].partitions[0].error.clone().unwrap();
    assert_eq!(err.code, ErrorCode::MessageTooLarge as i32, "{err:?}");

    // Bad acks.
    let status = raw
        .produce(pb::ProduceRequest {
            acks: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        sluice_client::ApiError::from_status(&status).code,
        ErrorCode::InvalidRequiredAcks
    );

    // Fetch past the end: OFFSET_OUT_OF_RANGE.
    let resp = raw
        .fetch(pb::FetchRequest {
            max_wait_ms: 0,
            topics: vec![pb::FetchTopic {
                name: "t".into(),
                partitions: vec![pb::FetchPartition {
                    partition: 0,
                    fetch_offset: 42,
                    partition_max_bytes: 0,
                    current_leader_epoch: -1,
                }],
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = resp.topics[0].partitions[0].error.clone().unwrap();
    assert_eq!(err.code, ErrorCode::OffsetOutOfRange as i32, "{err:?}");

    // Nothing was written by any of the failures.
    let mut consumer = Consumer::new(config(&node, &[])).unwrap();
    let tp = TopicPartition::new("t", 0);
    let ends = consumer
        .end_offsets(std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(ends.values().copied().collect::<Vec<_>>(), vec![0]);
    consumer.assign(vec![tp]);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin.create_topic(NewTopic::new("lp", 1, 1)).await.unwrap();
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let fetch = tokio::spawn(async move {
        raw.fetch(pb::FetchRequest {
            // Far longer than the test's own timeout below: only a wake-up on
            // the append can answer in time.
            max_wait_ms: 600_000,
            min_bytes: 1,
            topics: vec![pb::FetchTopic {
                name: "lp".into(),
                partitions: vec![pb::FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 0,
                    current_leader_epoch: -1,
                }],
            }],
            ..Default::default()
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let producer = Producer::new(config(&node, &[("linger.ms", "0")])).unwrap();
    producer
        .send(ProducerRecord::new("lp", "wake"))
        .await
        .unwrap()
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .expect("the long poll must wake on the append, not wait out max_wait_ms")
        .unwrap()
        .unwrap()
        .into_inner();
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error, None);
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].value.as_deref(), Some(&b"wake"[..]));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_segment_tail_loses_only_the_torn_batch() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("torn", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&node, &[("linger.ms", "0"), ("acks", "1")])).unwrap();
    // One batch per record: each send is awaited before the next.
    for i in 0..50 {
        producer
            .send(ProducerRecord::new("torn", format!("r{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await;
    node.shutdown().await.unwrap();

    let log = dir.path().join("logs/torn-0/00000000000000000000.log");
    let len = std::fs::metadata(&log).unwrap().len();
    // Cut into the middle of the last batch.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    // A stale recovery point must not hide the damage: make the broker rescan.
    let _ = std::fs::remove_file(dir.path().join("logs/recovery-point-offset-checkpoint"));

    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let records = consume_all(&node, "torn", 49).await;
    let values: Vec<String> = records.iter().map(|r| r.3.clone()).collect();
    let want: Vec<String> = (0..49).map(|i| format!("r{i}")).collect();
    assert_eq!(values, want, "everything before the torn batch survives");
    // The log continues where the good data ends.
    let producer = Producer::new(config(&node, &[("linger.ms", "0")])).unwrap();
    let md = producer
        .send(ProducerRecord::new("torn", "after"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 49);
    producer.close().await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_is_off_by_default_and_works_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.broker.auto_create_topics_enable = true;
    o.controller.num_partitions = 2;
    let node = Standalone::start(o).await.unwrap();
    let producer = Producer::new(config(&node, &[("linger.ms", "0")])).unwrap();
    let md = producer
        .send(ProducerRecord::new("fresh", "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 0);
    let admin = Admin::new(config(&node, &[])).unwrap();
    let d = admin.describe_topics(&["fresh".to_string()]).await.unwrap();
    assert_eq!(d[0].partitions.len(), 2, "created with num.partitions");
    producer.close().await;
    node.shutdown().await.unwrap();
}

#[test]
fn example_config_file_parses_and_typos_are_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/standalone.yaml");
    let o = StandaloneOptions::new("/tmp/x", "127.0.0.1:0".parse().unwrap())
        .with_file(&root)
        .unwrap();
    assert_eq!(o.broker.message_max_bytes, 1_048_588);
    assert!(!o.broker.auto_create_topics_enable);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "broker:\n  log.retention.hourz: 3\n").unwrap();
    let e = StandaloneOptions::new("/tmp/x", "127.0.0.1:0".parse().unwrap())
        .with_file(&bad)
        .err()
        .unwrap();
    assert!(e.to_string().contains("log.retention.hourz"), "{e}");
}

#[test]
fn example_service_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    let b: sluice_broker::BrokerConfig =
        sluice_server::config::load_yaml(&root.join("broker.yaml")).unwrap();
    b.validate().unwrap();
    assert_eq!(b.replica_lag_time_max_ms, 10_000);
    let c: sluice_controller::ControllerConfig =
        sluice_server::config::load_yaml(&root.join("controller.yaml")).unwrap();
    c.validate().unwrap();
    assert_eq!(c.controller_id, 1001);
    let g: sluice_coordinator::CoordinatorConfig =
        sluice_server::config::load_yaml(&root.join("coordinator.yaml")).unwrap();
    g.validate().unwrap();
    assert_eq!(g.group_initial_rebalance_delay_ms, 3000);
}

async fn produce_raw(
    raw: &mut BrokerClient<tonic::transport::Channel>,
    topic: &str,
    batch: Bytes,
) -> pb::PartitionProduceResponse {
    raw.produce(pb::ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topics: vec![pb::TopicProduceData {
            name: topic.into(),
            partitions: vec![pb::PartitionProduceData {
                partition: 0,
                record_batches: batch,
                ..Default::default()
            }],
        }],
    })
    .await
    .unwrap()
    .into_inner()
    .topics[0]
        .partitions[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_are_not_duplicated_even_after_restart() {
    use sluice_records::{EncodeOptions, Record, encode_batch};
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    admin
        .create_topic(NewTopic::new("idem", 1, 1))
        .await
        .unwrap();
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let pid = raw
        .init_producer_id(pb::InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(pid.error.is_none() && pid.producer_id >= 0, "{pid:?}");
    let batch = |seq: i32, n: usize| {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                value: Some(Bytes::from(format!("s{}", seq as usize + i))),
                timestamp: 1,
                ..Default::default()
            })
            .collect();
        encode_batch(
            &recs,
            EncodeOptions {
                producer_id: pid.producer_id,
                producer_epoch: pid.producer_epoch as i16,
                base_sequence: seq,
                ..EncodeOptions::default()
            },
        )
        .unwrap()
    };
    let first = produce_raw(&mut raw, "idem", batch(0, 3)).await;
    assert!(first.error.is_none(), "{first:?}");
    assert_eq!(first.base_offset, 0);
    let second = produce_raw(&mut raw, "idem", batch(3, 2)).await;
    assert_eq!(second.base_offset, 3);
    // A retry of the first batch answers with its original offset.
    let retry = produce_raw(&mut raw, "idem", batch(0, 3)).await;
    assert!(retry.error.is_none(), "{retry:?}");
    assert_eq!(retry.base_offset, 0);
    // A gap is refused.
    let gap = produce_raw(&mut raw, "idem", batch(9, 1)).await;
    assert_eq!(
        gap.error.unwrap().code,
        ErrorCode::OutOfOrderSequenceNumber as i32
    );
    node.shutdown().await.unwrap();

    // The producer state survives a restart.
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let retry = produce_raw(&mut raw, "idem", batch(3, 2)).await;
    assert!(retry.error.is_none(), "{retry:?}");
    assert_eq!(retry.base_offset, 3, "duplicate after restart");
    let next = produce_raw(&mut raw, "idem", batch(5, 1)).await;
    assert_eq!(next.base_offset, 5);
    let records = consume_all(&node, "idem", 6).await;
    assert_eq!(records.len(), 6, "nothing written twice");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_recovers_after_a_batch_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    let mut t = NewTopic::new("small", 1, 1);
    t.configs.insert("max.message.bytes".into(), "1000".into());
    admin.create_topic(t).await.unwrap();
    let producer = Producer::new(config(&node, &[("acks", "all"), ("linger.ms", "0")])).unwrap();
    let ok = |v: &str| ProducerRecord::new("small", v.to_string());
    producer.send(ok("a")).await.unwrap().await.unwrap();
    // Refused by the broker after it got sequence numbers.
    let big = producer
        .send(ProducerRecord::new("small", vec![b'x'; 2000]))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(big.code(), ErrorCode::MessageTooLarge, "{big}");
    // Later records still go through, under an identity the broker gave
    // (KIP-360: InitProducerId again, not an epoch the client picked).
    let md = producer.send(ok("b")).await.unwrap().await.unwrap();
    assert_eq!(md.offset, 1);
    producer.close().await;
    node.shutdown().await.unwrap();
    let log = std::fs::read(dir.path().join("logs/small-0/00000000000000000000.log")).unwrap();
    let batches = sluice_records::decode_batches(Bytes::from(log)).unwrap();
    let ids: Vec<(i64, i16, i32)> = batches
        .iter()
        .map(|b| {
            (
                b.header.producer_id,
                b.header.producer_epoch,
                b.header.base_sequence,
            )
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(
        ids[0].0, ids[1].0,
        "a new producer id from the broker: {ids:?}"
    );
    assert_eq!((ids[1].1, ids[1].2), (0, 0), "{ids:?}");
}

/// Every `compression.type` a Kafka producer offers: batches are stored in
/// that codec (read back from the segment file) and consumers get every
/// record back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_stored_as_sent_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(opts(dir.path())).await.unwrap();
    let admin = Admin::new(config(&node, &[])).unwrap();
    for (name, codec) in [
        ("gzip", sluice_records::Compression::Gzip),
        ("snappy", sluice_records::Compression::Snappy),
        ("lz4", sluice_records::Compression::Lz4),
        ("zstd", sluice_records::Compression::Zstd),
    ] {
        let topic = format!("z-{name}");
        admin
            .create_topic(NewTopic::new(&topic, 1, 1))
            .await
            .unwrap();
        let producer = Producer::new(config(
            &node,
            &[("compression.type", name), ("linger.ms", "5")],
        ))
        .unwrap();
        let mut acks = Vec::new();
        for i in 0..500 {
            let rec = ProducerRecord::new(
                topic.as_str(),
                format!("{name} value {i} {}", "x".repeat(100)),
            );
            acks.push(producer.send(rec).await.unwrap());
        }
        for a in acks {
            a.await.unwrap();
        }
        producer.close().await;

        let segment = dir
            .path()
            .join("logs")
            .join(format!("{topic}-0"))
            .join("00000000000000000000.log");
        let stored = Bytes::from(std::fs::read(&segment).unwrap());
        let batches = sluice_records::split_batches(&stored).unwrap();
        assert!(!batches.is_empty());
        let mut raw = 0;
        for b in &batches {
            assert_eq!(b.header.compression(), Some(codec), "{topic}");
            raw += b.header.records_count as usize * 120;
        }
        assert!(
            stored.len() < raw / 2,
            "{topic}: {} bytes stored",
            stored.len()
        );

        let got = consume_all(&node, &topic, 500).await;
        assert_eq!(got.len(), 500);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.1, i as i64);
            assert!(r.3.starts_with(&format!("{name} value {i} ")), "{r:?}");
        }
    }

    // A batch claiming lz4 whose payload is not lz4 (CRC valid) is refused
    // at the leader, and nothing is appended.
    let good = sluice_records::encode_batch(
        &[sluice_records::Record {
            value: Some(Bytes::from_static(b"v")),
            ..Default::default()
        }],
        sluice_records::EncodeOptions {
            compression: sluice_records::Compression::Lz4,
            ..Default::default()
        },
    )
    .unwrap();
    let mut bad = bytes::BytesMut::from(&good[..sluice_records::HEADER_SIZE]);
    bad.extend_from_slice(b"not an lz4 frame");
    let len = (bad.len() - sluice_records::LOG_OVERHEAD) as i32;
    bad[8..12].copy_from_slice(&len.to_be_bytes());
    sluice_records::recompute_crc(&mut bad);
    let mut raw = BrokerClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let r = produce_raw(&mut raw, "z-lz4", bad.freeze()).await;
    assert_eq!(
        r.error.as_ref().map(|e| e.code),
        Some(ErrorCode::CorruptMessage as i32),
        "{r:?}"
    );
    let consumer = Consumer::new(config(&node, &[])).unwrap();
    let tp = TopicPartition::new("z-lz4", 0);
    let end = consumer
        .end_offsets(std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(end[&tp], 500, "nothing appended");
    node.shutdown().await.unwrap();
}

/// A service that cannot start stops the whole node at once with its own
/// error (the others are not left waiting for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_start_fails_the_node_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.coordinator.lease_ms = 10;
    let e = match Standalone::start(o).await {
        Ok(_) => panic!("a coordinator with a 10 ms lease must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("coordinator.lease.ms"), "{e}");
}
