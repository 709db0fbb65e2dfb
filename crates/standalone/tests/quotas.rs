//! Client quotas on a real node: a user limited to 10 MB/s is throttled
//! (its answers carry throttle_time_ms and its rate over 20 s stays far
//! below an unlimited user's on the same broker, which is never throttled);
//! the rates measured are printed for the notes (accuracy is a benchmark,
//! not an assertion here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_auth::scram::Mechanism;
use sluice_client::cluster::Credentials;
use sluice_client::{Admin, ClientConfig, NewTopic};
use sluice_proto::broker as bpb;
use sluice_proto::broker::broker_client::BrokerClient;
use sluice_standalone::{Standalone, StandaloneOptions};
use tonic::service::interceptor::InterceptedService;

const QUOTA: f64 = 10.0 * 1024.0 * 1024.0;
const RUN: Duration = Duration::from_secs(20);

fn config(node: &Standalone, user: &str) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
        .with("security.protocol", "SASL_PLAINTEXT")
        .unwrap()
        .with("sasl.username", user)
        .unwrap()
        .with("sasl.password", "secret")
        .unwrap()
        .with("client.id", &format!("{user}-app"))
        .unwrap()
}

#[derive(Default)]
struct Seen {
    bytes: AtomicU64,
    throttled: AtomicU64,
    max_throttle_ms: AtomicI64,
}

/// Produces 256 KiB requests as `user` until `stop`, counting what was
/// acknowledged and the throttles announced.
async fn produce(node: &Standalone, user: &str, stop: Arc<AtomicBool>) -> Arc<Seen> {
    let cfg = config(node, user);
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr)).unwrap();
    let ch = InterceptedService::new(endpoint.connect_lazy(), Credentials::of(&cfg).unwrap());
    let mut client = BrokerClient::new(ch).max_decoding_message_size(64 << 20);
    let seen = Arc::new(Seen::default());
    let value = vec![7u8; 1024];
    let records: Vec<sluice_proto::common::Record> = (0..256)
        .map(|_| sluice_proto::common::Record {
            value: Some(value.clone().into()),
            ..Default::default()
        })
        .collect();
    let request = bpb::ProduceRequest {
        acks: 1,
        timeout_ms: 30_000,
        topics: vec![bpb::TopicProduceData {
            name: "q".into(),
            partitions: vec![bpb::PartitionProduceData {
                partition: 0,
                records,
                ..Default::default()
            }],
        }],
    };
    let size = prost::Message::encoded_len(&request) as u64;
    while !stop.load(Ordering::Relaxed) {
        let r = client.produce(request.clone()).await.unwrap().into_inner();
        let p = &r.topics[0].partitions[0];
        assert!(p.error.is_none(), "{:?}", p.error);
        seen.bytes.fetch_add(size, Ordering::Relaxed);
        if r.throttle_time_ms > 0 {
            seen.throttled.fetch_add(1, Ordering::Relaxed);
            seen.max_throttle_ms
                .fetch_max(r.throttle_time_ms as i64, Ordering::Relaxed);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_over_its_quota_is_throttled_and_one_without_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut opts = StandaloneOptions::new(dir.path().join("node"), addr);
    opts.listen_protocol = sluice_tls::SecurityProtocol::SaslPlaintext;
    let node = Standalone::start(opts).await.unwrap();
    let own = Admin::new(node.client.clone().as_service()).unwrap();
    for user in ["slow", "fast"] {
        own.set_scram_password(user, Mechanism::ScramSha256, "secret", 4096)
            .await
            .unwrap();
    }
    own.create_topic(NewTopic::new("q", 1, 1)).await.unwrap();
    own.alter_quota("user", "slow", "producer_byte_rate", Some(QUOTA))
        .await
        .unwrap();
    // The quota reaches the broker through its watch.
    let deadline = Instant::now() + Duration::from_secs(5);
    while own.describe_quotas().await.unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (slow, fast) = {
        let s = stop.clone();
        let f = stop.clone();
        let stopper = async {
            tokio::time::sleep(RUN).await;
            stop.store(true, Ordering::Relaxed);
        };
        let (slow, fast, ()) = tokio::join!(
            produce(&node, "slow", s),
            produce(&node, "fast", f),
            stopper
        );
        (slow, fast)
    };
    let secs = started.elapsed().as_secs_f64();
    let mib = |s: &Seen| s.bytes.load(Ordering::Relaxed) as f64 / secs / (1 << 20) as f64;
    eprintln!(
        "quota 10 MiB/s over {secs:.1} s: limited user {:.1} MiB/s ({} answers throttled, longest {} ms); \
         unlimited user {:.1} MiB/s ({} throttled)",
        mib(&slow),
        slow.throttled.load(Ordering::Relaxed),
        slow.max_throttle_ms.load(Ordering::Relaxed),
        mib(&fast),
        fast.throttled.load(Ordering::Relaxed),
    );
    assert!(
        slow.throttled.load(Ordering::Relaxed) > 0,
        "never throttled"
    );
    assert_eq!(
        fast.throttled.load(Ordering::Relaxed),
        0,
        "the unlimited user was throttled"
    );
    // Both ran the same 20 s on the same broker; only one was held back.
    assert!(
        mib(&slow) < mib(&fast) / 2.0,
        "limited {:.1} MiB/s is not far below unlimited {:.1} MiB/s",
        mib(&slow),
        mib(&fast)
    );
    // Removing the quota ends the throttling.
    own.alter_quota("user", "slow", "producer_byte_rate", None)
        .await
        .unwrap();
    assert!(own.describe_quotas().await.unwrap().is_empty());
    node.shutdown().await.unwrap();
}
