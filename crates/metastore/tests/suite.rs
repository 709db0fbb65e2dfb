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
