//! A standalone node over TLS, with real sockets and certificates from a test
//! CA: who gets in, who is refused (and told why), that a refused client
//! writes nothing, and certificates rotated without a restart. (An expired
//! server certificate is refused by both sides in sluice-tls's own tests.)

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice_client::{
    Admin, ClientConfig, Consumer, NewTopic, Producer, ProducerRecord, TopicPartition,
};
use sluice_standalone::{Standalone, StandaloneOptions};
use sluice_tls::TlsFiles;
use sluice_tls::testing::{TestCa, Validity};

const LOCAL: &[&str] = &["127.0.0.1", "localhost"];

/// A node serving `SSL://` with `server`'s certificate; `client_auth` and
/// `accept_plaintext` as given.
async fn tls_node(
    dir: &Path,
    server: &TlsFiles,
    client_auth: &str,
    accept_plaintext: bool,
) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut opts = StandaloneOptions::new(dir.join("node"), addr);
    opts.listen_protocol = sluice_tls::SecurityProtocol::Ssl;
    let s = &mut opts.broker.security;
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    s.certificate = path(&server.certificate);
    s.key = path(&server.key);
    s.ca = path(&server.ca);
    s.client_auth = client_auth.into();
    s.accept_plaintext = accept_plaintext;
    Standalone::start(opts).await.unwrap()
}

/// A client config for `node` with these TLS files (`None`: plaintext).
fn client(node: &Standalone, files: Option<&TlsFiles>, check_host: bool) -> ClientConfig {
    let mut c = ClientConfig::new(&node.addr.to_string())
        .with("request.timeout.ms", "5000")
        .unwrap()
        .with("delivery.timeout.ms", "5000")
        .unwrap();
    if let Some(f) = files {
        c = c.with("security.protocol", "SSL").unwrap();
        c.ssl_files = f.clone();
        c.ssl_verify_hostname = check_host;
    }
    c
}

/// Whether a client with `config` reaches the node (a metadata call).
async fn reach(config: ClientConfig) -> Result<(), String> {
    Admin::new(config)
        .map_err(|e| e.to_string())?
        .describe_cluster()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Client files that trust `ca` and present no certificate.
fn trusting(ca: &Path) -> TlsFiles {
    TlsFiles {
        ca: Some(ca.to_path_buf()),
        ..Default::default()
    }
}

async fn produce(config: ClientConfig, topic: &str) -> Result<i64, String> {
    let p = Producer::new(config).map_err(|e| e.to_string())?;
    let sent = p.send(ProducerRecord::new(topic, "x")).await;
    let r = match sent {
        Ok(d) => d.await.map(|m| m.offset).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    p.close().await;
    r
}

async fn end_offset(node: &Standalone, topic: &str) -> i64 {
    let c = Consumer::new(node.client.clone()).unwrap();
    let tp = TopicPartition::new(topic, 0);
    c.end_offsets(std::slice::from_ref(&tp)).await.unwrap()[&tp]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_lets_in_certified_clients_and_tells_the_rest_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.issue("node", "node", LOCAL, Validity::Current);
    let alice = ca.issue("alice", "alice", &[], Validity::Current);
    let node = tls_node(dir.path(), &server, "required", false).await;

    Admin::new(client(&node, Some(&alice), true))
        .unwrap()
        .create_topic(NewTopic::new("t", 1, 1))
        .await
        .unwrap();
    assert_eq!(produce(client(&node, Some(&alice), true), "t").await, Ok(0));

    let with_ca = |f: TlsFiles| TlsFiles {
        ca: Some(ca.ca_path()),
        ..f
    };
    let cases: Vec<(&str, Option<TlsFiles>, &str)> = vec![
        ("plaintext", None, "requires TLS"),
        (
            "no client certificate",
            Some(trusting(&ca.ca_path())),
            "fatal alert",
        ),
        (
            "another CA's server trust",
            Some(trusting(&other.ca_path())),
            "UnknownIssuer",
        ),
        (
            "an expired client certificate",
            Some(with_ca(ca.issue("old", "old", &[], Validity::Expired))),
            "fatal alert",
        ),
        (
            "a client certificate from another CA",
            Some(with_ca(other.issue(
                "mallory",
                "mallory",
                &[],
                Validity::Current,
            ))),
            "fatal alert",
        ),
    ];
    for (what, files, why) in cases {
        let e = produce(client(&node, files.as_ref(), true), "t")
            .await
            .expect_err(what);
        assert!(
            e.contains("SSL_HANDSHAKE_FAILED") && e.contains(why),
            "{what}: {e}"
        );
    }
    // Nothing the refused clients sent was written.
    assert_eq!(end_offset(&node, "t").await, 1);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let elsewhere = ca.issue("node", "node", &["kafka.example"], Validity::Current);
    let node = tls_node(dir.path(), &elsewhere, "none", false).await;
    let trust = trusting(&ca.ca_path());
    let e = produce(client(&node, Some(&trust), true), "t")
        .await
        .unwrap_err();
    assert!(
        e.contains("SSL_HANDSHAKE_FAILED") && e.contains("not valid for name"),
        "{e}"
    );
    // ssl.endpoint.identification.algorithm= (empty): the CA still counts.
    reach(client(&node, Some(&trust), false)).await.unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_node_refuses_tls_and_a_moving_node_takes_both() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let trust = trusting(&ca.ca_path());
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let plain = Standalone::start(StandaloneOptions::new(dir.path().join("plain"), addr))
        .await
        .unwrap();
    let e = reach(client(&plain, Some(&trust), true)).await.unwrap_err();
    assert!(
        e.contains("SSL_HANDSHAKE_FAILED") && e.contains("is it plaintext"),
        "{e}"
    );
    plain.shutdown().await.unwrap();

    let server = ca.issue("node", "node", LOCAL, Validity::Current);
    let node = tls_node(dir.path(), &server, "none", true).await;
    for files in [None, Some(&trust)] {
        reach(client(&node, files, true)).await.unwrap();
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCa::new(dir.path(), "old");
    let server = old.issue("node", "node", LOCAL, Validity::Current);
    // The node trusts both CAs for its own connections while it moves.
    let next = TestCa::new(dir.path(), "new");
    let both = dir.path().join("both-ca.pem");
    std::fs::write(
        &both,
        [old.ca_path(), next.ca_path()]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    let server = TlsFiles {
        ca: Some(both.clone()),
        ..server
    };
    let node = tls_node(dir.path(), &server, "none", false).await;
    let trusts_new = trusting(&next.ca_path());
    let e = reach(client(&node, Some(&trusts_new), true))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");

    next.issue("node", "node", LOCAL, Validity::Current);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = reach(client(&node, Some(&trusts_new), true)).await;
        if r.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reloaded: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.shutdown().await.unwrap();
}
