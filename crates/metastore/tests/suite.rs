//! The shared conformance suite, run against every implementation: the embedded store in
//! memory and on disk (under paused tokio time, so lease TTLs cost nothing), and a real
//! etcd started once for this test binary.

use std::sync::Arc;

use sluice_metastore::testsuite::{self, EtcdServer};
use sluice_metastore::{EmbeddedMetadataStore, MetadataStore};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod embedded_in_memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    testsuite::$name(Arc::new(EmbeddedMetadataStore::in_memory())).await;
                }
            )*
        }

        mod embedded_on_disk {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
                    testsuite::$name(Arc::new(store)).await;
                }
            )*
        }

        mod etcd {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let ns = testsuite::unique_namespace(stringify!($name));
                    let store = EtcdServer::shared().connect(&ns).await;
                    testsuite::$name(Arc::new(store) as Arc<dyn MetadataStore>).await;
                }
            )*
        }
    };
}

suite!(
    kv_basics,
    txn_cas,
    watch_from_revision,
    lease_keep_alive_and_expiry,
    lease_revoke,
    election,
);

/// Behaviour only a real etcd has: namespaces, unreachable endpoints, server-side
/// compaction, the server going away.
mod etcd_only {
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use futures::StreamExt;
    use sluice_metastore::testsuite::{EtcdServer, LEASE_TTL, PATIENCE, unique_namespace};
    use sluice_metastore::{EtcdMetadataStore, MetaError, MetadataStore, is_retriable};

    #[tokio::test]
    async fn namespaces_isolate_and_are_stripped() {
        let server = EtcdServer::shared();
        let one = server.connect(&unique_namespace("ns-one")).await;
        let two = server.connect(&unique_namespace("ns-two")).await;
        one.put("brokers/1", b"a".to_vec(), 0).await.unwrap();
        assert_eq!(two.get("brokers/1").await.unwrap(), None);
        let (kvs, _) = one.range("").await.unwrap();
        assert_eq!(kvs.len(), 1);
        assert_eq!(kvs[0].key, "brokers/1");
        assert!(two.range("").await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn unreachable_etcd_is_a_retriable_unavailable_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("127.0.0.1:{port}");
        let err = EtcdMetadataStore::connect(
            std::slice::from_ref(&endpoint),
            "/x/",
            Duration::from_secs(1),
        )
        .await
        .expect_err("nothing listens there");
        assert!(matches!(err, MetaError::Unavailable { .. }), "{err:?}");
        assert!(is_retriable(&err));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot reach etcd at {endpoint}: ")),
            "{msg}"
        );
    }

    /// Uses its own etcd: compaction is cluster-wide and would disturb other tests.
    #[tokio::test]
    async fn compacted_history_is_reported_and_server_loss_surfaces() {
        let server = EtcdServer::start();
        let store = server.connect(&unique_namespace("compact")).await;
        let r1 = store.put("c/a", b"1".to_vec(), 0).await.unwrap();
        store.put("c/a", b"2".to_vec(), 0).await.unwrap();
        let r3 = store.put("c/a", b"3".to_vec(), 0).await.unwrap();
        store
            .client()
            .kv_client()
            .compact(r3, None)
            .await
            .expect("compact");
        // Either at call time or as the stream's first item.
        let err = match store.watch_prefix("c/", r1).await {
            Err(e) => e,
            Ok(mut w) => match tokio::time::timeout(PATIENCE, w.next()).await {
                Ok(Some(Err(e))) => e,
                other => panic!("expected a Compacted item, got {other:?}"),
            },
        };
        match err {
            MetaError::Compacted { revision } => assert_eq!(revision, r3),
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(store.watch_prefix("c/", r3).await.is_ok());

        // Kill etcd under a live watch and a kept-alive lease: the watch yields a
        // retriable error and the keeper reports the lease lost (no keep-alive can be
        // confirmed within the TTL).
        let lease = store.grant_lease(LEASE_TTL).await.unwrap();
        let keeper = store.keep_alive(lease).await.unwrap();
        let mut watch = store.watch_prefix("c/", 0).await.unwrap();
        let port: u16 = server
            .endpoint()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        drop(server);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "dropping EtcdServer stops etcd"
        );
        match tokio::time::timeout(PATIENCE, watch.next()).await {
            Ok(Some(Err(e))) => assert!(is_retriable(&e), "{e:?}"),
            other => panic!("expected a watch error, got {other:?}"),
        }
        tokio::time::timeout(PATIENCE, keeper.lost())
            .await
            .expect("lease lost once etcd is gone");
    }
}
