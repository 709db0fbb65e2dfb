//! Behaviour specific to the embedded store: persistence, snapshots, recovery from a torn
//! log, bounded watch history, shutdown. Runs under paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sluice_metastore::testsuite::next_batch;
use sluice_metastore::{
    EmbeddedMetadataStore, EmbeddedOptions, EventKind, MetaError, MetadataStore, Op, Txn,
};

#[tokio::test(start_paused = true)]
async fn durable_keys_survive_reopen_and_lease_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (durable_rev, last_rev) = {
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        store.put("topics/a", b"v1".to_vec(), 0).await.unwrap();
        let durable_rev = store.put("topics/a", b"v2".to_vec(), 0).await.unwrap();
        store.put("brokers/1", b"ep".to_vec(), lease).await.unwrap();
        store.put("gone", b"x".to_vec(), 0).await.unwrap();
        store
            .txn(
                Txn::new()
                    .and_then(Op::delete("gone"))
                    .and_then(Op::put("topics/b", "b")),
            )
            .await
            .unwrap();
        (durable_rev, store.revision())
    };

    let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
    assert_eq!(store.revision(), last_rev);
    let a = store.get("topics/a").await.unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.mod_revision, a.version),
        (&b"v2"[..], durable_rev, 2)
    );
    assert!(store.get("topics/b").await.unwrap().is_some());
    assert_eq!(store.get("gone").await.unwrap(), None);
    assert_eq!(
        store.get("brokers/1").await.unwrap(),
        None,
        "lease-bound keys die with their process"
    );
    // Revisions keep increasing across restarts (they serve as epochs).
    assert!(store.put("topics/c", b"c".to_vec(), 0).await.unwrap() > last_rev);
    // History from before the restart is gone; from now on is fine.
    assert!(matches!(
        store.watch_prefix("", 1).await,
        Err(MetaError::Compacted { .. })
    ));
    assert!(store.watch_prefix("", store.revision() + 1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn log_is_folded_into_a_snapshot_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        snapshot_after_bytes: 1024,
        ..EmbeddedOptions::default()
    };
    let last = {
        let store = EmbeddedMetadataStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..100 {
            store
                .put(&format!("k/{i:03}"), vec![b'x'; 32], 0)
                .await
                .unwrap();
        }
        store.delete("k/000").await.unwrap();
        store.revision()
    };
    let snapshot = std::fs::metadata(dir.path().join("metadata.snapshot")).unwrap();
    let log = std::fs::metadata(dir.path().join("metadata.log")).unwrap();
    assert!(snapshot.len() > 0);
    assert!(
        log.len() < 1024,
        "log should have been emptied by a snapshot"
    );

    let store = EmbeddedMetadataStore::open_with(dir.path(), options).unwrap();
    assert_eq!(store.revision(), last);
    let (kvs, _) = store.range("k/").await.unwrap();
    assert_eq!(kvs.len(), 99);
    assert_eq!(kvs[0].key, "k/001");
}

#[tokio::test(start_paused = true)]
async fn torn_log_tail_is_cut_but_corruption_is_reported() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        store.put("a", b"1".to_vec(), 0).await.unwrap();
    }
    let log_path = dir.path().join("metadata.log");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    // A crash mid-append leaves a partial last line.
    log.write_all(br#"{"rev":2,"changes":[{"Put""#).unwrap();
    drop(log);
    {
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().value, b"1");
        store.put("b", b"2".to_vec(), 0).await.unwrap();
    }
    {
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.get("b").await.unwrap().unwrap().value, b"2");
    }

    // A complete line that does not parse is not a torn write: refuse to guess.
    let mut bytes = std::fs::read(&log_path).unwrap();
    bytes.splice(0..0, b"garbage\n".iter().copied());
    std::fs::write(&log_path, bytes).unwrap();
    match EmbeddedMetadataStore::open(dir.path()) {
        Err(MetaError::Corrupt { path, .. }) => assert_eq!(path, log_path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn watch_history_is_bounded() {
    let store = EmbeddedMetadataStore::in_memory_with(EmbeddedOptions {
        history_revisions: 3,
        ..EmbeddedOptions::default()
    });
    let first = store.put("h/0", b"".to_vec(), 0).await.unwrap();
    let mut slow = store.watch_prefix("h/", first).await.unwrap();
    for i in 1..10 {
        store.put(&format!("h/{i}"), b"".to_vec(), 0).await.unwrap();
    }
    // Too old at call time...
    match store.watch_prefix("h/", first).await {
        Err(MetaError::Compacted { revision }) => assert!(revision > first),
        other => panic!("expected Compacted, got {:?}", other.map(|_| "a stream")),
    }
    // ...and a watcher that fell behind the ring learns it on its next item.
    assert!(matches!(
        slow.next().await,
        Some(Err(MetaError::Compacted { .. }))
    ));
    assert!(slow.next().await.is_none());
    // Recent history still replays.
    let mut recent = store
        .watch_prefix("h/", store.revision() - 1)
        .await
        .unwrap();
    assert_eq!(next_batch(&mut recent).await[0].kv.key, "h/8");
}

#[tokio::test(start_paused = true)]
async fn unkept_lease_expires_on_its_timer() {
    let store = Arc::new(EmbeddedMetadataStore::in_memory());
    let lease = store.grant_lease(Duration::from_secs(10)).await.unwrap();
    let rev = store.put("e/k", b"v".to_vec(), lease).await.unwrap();
    let mut watch = store.watch_prefix("e/", rev + 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(store.get("e/k").await.unwrap().is_some());
    let gone = next_batch(&mut watch).await;
    assert_eq!(gone[0].kind, EventKind::Delete);
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(MetaError::LeaseNotFound { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_store_ends_watches_and_loses_leases() {
    let store = EmbeddedMetadataStore::in_memory();
    let lease = store.grant_lease(Duration::from_secs(10)).await.unwrap();
    let keeper = store.keep_alive(lease).await.unwrap();
    let mut watch = store.watch_prefix("", 0).await.unwrap();
    drop(store);
    assert!(matches!(watch.next().await, Some(Err(MetaError::Closed))));
    assert!(watch.next().await.is_none());
    tokio::time::timeout(Duration::from_secs(60), keeper.lost())
        .await
        .expect("keeper reports the lease lost once the store is gone");
}
