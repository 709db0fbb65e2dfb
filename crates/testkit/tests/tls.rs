//! TLS across a cluster of real processes: mTLS between every service, a
//! forged broker refused, and a running cluster moved from plaintext to TLS
//! by rolling restarts under an acks=all stream.

use std::time::Duration;

use sluice_client::{Admin, ClientConfig, GroupConsumer, NewTopic, Producer, ProducerRecord};
use sluice_proto::broker::broker_client::BrokerClient;
use sluice_proto::broker::{ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchTopic};
use sluice_proto::controller::controller_client::ControllerClient;
use sluice_proto::controller::{AlterPartitionData, AlterPartitionRequest, AlterPartitionTopic};
use sluice_testkit::{ClusterSpec, TestCluster};
use sluice_tls::testing::{TestCa, Validity};
use sluice_tls::{ClientTls, TlsFiles};

/// A gRPC channel to `addr` over `tls` (plaintext when `None`).
async fn channel(
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3));
    sluice_tls::connect_channel(endpoint, tls).await
}

/// What a forged broker gets from a ReplicaFetch and an AlterPartition:
/// the errors, as text (empty when the call went through).
async fn impersonate(c: &TestCluster, tls: Option<&ClientTls>) -> (String, String) {
    let fetch = async {
        let ch = channel(&c.grpc_addr("broker-1").unwrap(), tls).await?;
        BrokerClient::new(ch)
            .replica_fetch(ReplicaFetchRequest {
                replica_id: 2,
                replica_epoch: 1,
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![ReplicaFetchTopic {
                    name: "secure".into(),
                    partitions: vec![ReplicaFetchPartition {
                        partition: 0,
                        fetch_offset: 0,
                        ..Default::default()
                    }],
                }],
            })
            .await?;
        anyhow::Ok(())
    };
    let alter = async {
        let active = Admin::new(c.client_config())?
            .describe_cluster()
            .await?
            .controller_id;
        let ch = channel(
            &c.grpc_addr(&format!("controller-{}", active - 1000))
                .unwrap(),
            tls,
        )
        .await?;
        ControllerClient::new(ch)
            .alter_partition(AlterPartitionRequest {
                broker_id: 1,
                broker_epoch: 1,
                topics: vec![AlterPartitionTopic {
                    name: "secure".into(),
                    partitions: vec![AlterPartitionData {
                        partition: 0,
                        new_isr: vec![1],
                        ..Default::default()
                    }],
                }],
            })
            .await?;
        anyhow::Ok(())
    };
    let text = |r: anyhow::Result<()>| r.err().map(|e| format!("{e:#}")).unwrap_or_default();
    (text(fetch.await), text(alter.await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_speaks_mtls_and_a_forged_broker_is_refused() {
    let c = TestCluster::start(ClusterSpec {
        brokers: 3,
        controllers: 2,
        coordinators: 1,
        tls: true,
        acls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // Replication, ISR changes and groups all cross TLS: an RF 3 topic with
    // min.insync.replicas=2 takes acks=all writes only with followers in sync.
    let admin = Admin::new(c.client_config()).unwrap();
    let mut topic = NewTopic::new("secure", 3, 3);
    topic
        .configs
        .insert("min.insync.replicas".into(), "2".into());
    admin.create_topic(topic).await.unwrap();
    let producer = Producer::new(c.client_config().with("acks", "all").unwrap()).unwrap();
    for i in 0..60 {
        producer
            .send(ProducerRecord::new("secure", format!("v{i}")).with_partition(i % 3))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let described = admin.describe_topics(&["secure".into()]).await.unwrap();
    assert!(
        described[0].partitions.iter().all(|p| p.isr.len() == 3),
        "followers fetch over mTLS: {described:?}\n{}",
        c.logs_tail()
    );
    let mut group = GroupConsumer::new(
        c.client_config()
            .with("group.id", "g")
            .unwrap()
            .with("auto.offset.reset", "earliest")
            .unwrap(),
    )
    .unwrap();
    group.subscribe(&["secure"]);
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got < 60 && tokio::time::Instant::now() < deadline {
        got += group.poll(Duration::from_millis(500)).await.unwrap().len();
    }
    assert_eq!(got, 60, "{}", c.logs_tail());
    group.close().await.unwrap();

    // A forged broker: a certificate from another CA, none, or plaintext.
    let dir = tempfile::tempdir().unwrap();
    let forger = TestCa::new(dir.path(), "forger");
    let forged = forger.issue("broker-2", "broker-2", &["127.0.0.1"], Validity::Current);
    let forged = TlsFiles {
        ca: Some(c.certs_dir().join("cluster-ca.pem")),
        ..forged
    };
    let no_cert = TlsFiles {
        ca: Some(c.certs_dir().join("cluster-ca.pem")),
        ..Default::default()
    };
    for (what, tls) in [
        (
            "a certificate from another CA",
            Some(ClientTls::new(&forged, true).unwrap()),
        ),
        (
            "no certificate",
            Some(ClientTls::new(&no_cert, true).unwrap()),
        ),
        ("plaintext", None),
    ] {
        let (fetch, alter) = impersonate(&c, tls.as_ref()).await;
        // Refused by TLS itself, not by the request's own checks.
        for (call, e) in [("ReplicaFetch", &fetch), ("AlterPartition", &alter)] {
            assert!(
                e.contains("TLS") || e.contains("alert") || e.contains("transport error"),
                "{what}: {call} was not refused by TLS: {e:?}"
            );
        }
    }
    // A certificate from the cluster's own CA gets through TLS, but one
    // that is not a service's (not a super user) may not act as a broker.
    let intruder = ClientTls::new(&c.issue_certificate("intruder"), true).unwrap();
    let (fetch, alter) = impersonate(&c, Some(&intruder)).await;
    for (call, e) in [("ReplicaFetch", &fetch), ("AlterPartition", &alter)] {
        assert!(
            e.contains("CLUSTER_AUTHORIZATION_FAILED"),
            "a CA-signed non-service certificate: {call} was not refused by ACLs: {e:?}"
        );
    }
    // The service's own certificate gets through both.
    let own = sluice_testkit::tls::files(c.certs_dir(), "broker-2");
    let (fetch, _) = impersonate(&c, Some(&ClientTls::new(&own, true).unwrap())).await;
    assert!(
        !fetch.contains("handshake")
            && !fetch.contains("transport")
            && !fetch.contains("AUTHORIZATION"),
        "{fetch}"
    );
    // Nothing the forgers sent changed the ISR.
    let described = admin.describe_topics(&["secure".into()]).await.unwrap();
    assert!(described[0].partitions.iter().all(|p| p.isr.len() == 3));
    let ends = sluice_client::Consumer::new(c.client_config())
        .unwrap()
        .end_offsets(
            &(0..3)
                .map(|p| sluice_client::TopicPartition::new("secure", p))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(ends.values().sum::<i64>(), 60);

    // etcd serves TLS with client certificates: the services got in with
    // theirs; no certificate, or another CA's, does not.
    assert!(c.etcd.endpoint().starts_with("https://"));
    let endpoints = [c.etcd.endpoint().to_string()];
    let etcd = |tls: sluice_metastore::EtcdTls| {
        let endpoints = endpoints.clone();
        async move {
            sluice_metastore::EtcdMetadataStore::connect_with(
                &endpoints,
                "/probe/",
                Duration::from_secs(3),
                Some(&tls),
            )
            .await
            .map(|_| ())
        }
    };
    let ca_only = sluice_metastore::EtcdTls {
        ca: Some(c.certs_dir().join("cluster-ca.pem")),
        ..Default::default()
    };
    let own = sluice_testkit::tls::files(c.certs_dir(), "client");
    etcd(sluice_metastore::EtcdTls {
        certificate: own.certificate.clone(),
        key: own.key.clone(),
        ..ca_only.clone()
    })
    .await
    .unwrap();
    assert!(
        etcd(ca_only.clone()).await.is_err(),
        "etcd took a client without a certificate"
    );
    assert!(
        etcd(sluice_metastore::EtcdTls {
            certificate: forged.certificate.clone(),
            key: forged.key.clone(),
            ..ca_only
        })
        .await
        .is_err(),
        "etcd took another CA's certificate"
    );

    // A plaintext client is told why, at once.
    let plain = ClientConfig::new(&c.bootstrap());
    let e = Admin::new(plain)
        .unwrap()
        .describe_cluster()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SSL_HANDSHAKE_FAILED") && e.contains("requires TLS"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_moves_to_tls_by_rolling_restarts_losing_nothing() {
    let mut c = TestCluster::start(ClusterSpec {
        brokers: 3,
        controllers: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let report = sluice_testkit::chaos::tls_rolling_switch(&mut c)
        .await
        .unwrap();
    eprintln!("{}", report.summary());
    assert!(report.acked > 1000, "{}", report.summary());
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(
        report.unacknowledged,
        0,
        "the producers saw errors: {}",
        report.summary()
    );
    // Plaintext is refused now; TLS clients go on.
    let e = Admin::new(ClientConfig::new(&c.bootstrap()))
        .unwrap()
        .describe_cluster()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("SSL_HANDSHAKE_FAILED"), "{e}");
    Admin::new(c.client_config())
        .unwrap()
        .describe_cluster()
        .await
        .unwrap();
}
