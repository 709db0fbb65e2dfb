//! Bulk partition-state writes on the in-memory store. The store has no
//! transaction size limit, so each test watches the store: one watch batch
//! is one transaction, and none may hold more than `KEYS_PER_TXN` keys (on
//! etcd such a transaction is refused).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sluice_metastore::{EmbeddedMetadataStore, EventKind, LeaseKeeper, MetadataStore, WatchStream};
use sluice_types::ErrorCode;
use sluice_types::meta::{self, PartitionState, TopicRecord};
use tokio_util::sync::CancellationToken;

use super::super::tests::{active_controller, register};
use super::{Controller, KEYS_PER_TXN, PartitionChange};
use crate::ControllerError;
use crate::controller::{IsrChange, IsrMember, NewTopic};

/// More partitions than one transaction may hold, not a multiple of it.
const PARTITIONS: i32 = 250;

struct Cluster {
    store: Arc<dyn MetadataStore>,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
    brokers: BTreeMap<i32, LeaseKeeper>,
}

/// Brokers 1, 2, 3 and an active controller on one in-memory store.
async fn cluster() -> Cluster {
    let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
    let mut brokers = BTreeMap::new();
    for id in 1..=3 {
        brokers.insert(id, register(&store, id).await.0);
    }
    let (controller, shutdown) = active_controller(store.clone()).await;
    Cluster {
        store,
        controller,
        shutdown,
        brokers,
    }
}

async fn create(controller: &Controller, name: &str, partitions: i32) -> TopicRecord {
    controller
        .create_topic(
            NewTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: 3,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap()
}

/// Every change from now on, one batch per transaction.
async fn watch_all(store: &Arc<dyn MetadataStore>) -> WatchStream {
    let (_, rev) = store.range("").await.unwrap();
    store.watch_prefix("", rev + 1).await.unwrap()
}

/// Batches from `watch` until one holds a change of `key`.
async fn batches_until(watch: &mut WatchStream, key: &str) -> Vec<Vec<(EventKind, String)>> {
    let mut out = Vec::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("the change arrives")
            .expect("the watch is open")
            .unwrap();
        let batch: Vec<(EventKind, String)> =
            batch.into_iter().map(|e| (e.kind, e.kv.key)).collect();
        let done = batch.iter().any(|(_, k)| k == key);
        out.push(batch);
        if done {
            return out;
        }
    }
}

fn partition_keys(batch: &[(EventKind, String)]) -> Vec<&str> {
    batch
        .iter()
        .filter(|(_, k)| meta::parse_partition_key(k).is_some())
        .map(|(_, k)| k.as_str())
        .collect()
}

async fn states(store: &Arc<dyn MetadataStore>, topic: &str) -> BTreeMap<i32, PartitionState> {
    let (kvs, _) = store.range(&meta::partitions_prefix(topic)).await.unwrap();
    kvs.into_iter()
        .map(|kv| {
            let (_, p) = meta::parse_partition_key(&kv.key).unwrap();
            (p, meta::decode(&kv.value).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_large_topic_is_written_in_chunks_and_its_record_last() {
    let c = cluster().await;
    let mut watch = watch_all(&c.store).await;
    let record = create(&c.controller, "big", PARTITIONS).await;
    let batches = batches_until(&mut watch, &meta::topic_key("big")).await;
    let (last, before) = batches.split_last().unwrap();
    assert_eq!(last.len(), 1, "the record goes alone, last: {last:?}");
    let mut written = HashSet::new();
    for b in before {
        let keys = partition_keys(b);
        assert!(keys.len() <= KEYS_PER_TXN, "{} keys in one txn", keys.len());
        written.extend(keys.into_iter().map(str::to_string));
    }
    assert_eq!(written.len(), PARTITIONS as usize);
    let s = states(&c.store, "big").await;
    assert_eq!(s.len(), PARTITIONS as usize);
    for (p, replicas) in record.assignment.iter().enumerate() {
        assert_eq!(s[&(p as i32)].isr, *replicas);
        assert_eq!(s[&(p as i32)].leader, replicas[0]);
    }
    c.shutdown.cancel();
}

#[tokio::test]
async fn a_dead_brokers_leaderships_move_in_chunked_transactions() {
    let mut c = cluster().await;
    create(&c.controller, "big", PARTITIONS).await;
    let before = states(&c.store, "big").await;
    let led: HashSet<i32> = before
        .iter()
        .filter(|(_, s)| s.leader == 1)
        .map(|(p, _)| *p)
        .collect();
    assert!(!led.is_empty());
    let mut watch = watch_all(&c.store).await;
    // Broker 1 dies: its registration goes at once.
    let k1 = c.brokers.remove(&1).unwrap();
    c.store.revoke_lease(k1.lease()).await.unwrap();
    // Every partition has broker 1 in its ISR: all of them change, those
    // it led first.
    let mut seen = HashSet::new();
    while seen.len() < PARTITIONS as usize {
        let batch = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("the reconcile writes every partition")
            .unwrap()
            .unwrap();
        let parts: Vec<_> = batch
            .iter()
            .filter_map(|e| Some((meta::parse_partition_key(&e.kv.key)?.1, &e.kv)))
            .collect();
        assert!(
            parts.len() <= KEYS_PER_TXN,
            "{} keys in one txn",
            parts.len()
        );
        let mut isr_only = false;
        for (p, kv) in parts {
            seen.insert(p);
            isr_only |= !led.contains(&p);
            let s: PartitionState = meta::decode(&kv.value).unwrap();
            assert!(!s.isr.contains(&1), "{p}: {s:?}");
        }
        if isr_only {
            assert!(
                led.is_subset(&seen),
                "an ISR shrink went before a new leader"
            );
        }
    }
    let after = states(&c.store, "big").await;
    for p in &led {
        let (b, a) = (&before[p], &after[p]);
        assert!([2, 3].contains(&a.leader), "{p}: {a:?}");
        assert_eq!(a.leader_epoch, b.leader_epoch + 1);
    }
    assert_eq!(c.controller.reconcile_partitions().await.unwrap(), 0);
    c.shutdown.cancel();
}

#[tokio::test]
async fn a_partition_changed_concurrently_is_left_alone_and_the_rest_written() {
    let c = cluster().await;
    create(&c.controller, "big", PARTITIONS).await;
    // The changes a reconcile would make if broker 1 were gone.
    let live = HashSet::from([2, 3]);
    let changes: Vec<PartitionChange> = c
        .controller
        .load_partitions()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|p| {
            let next = crate::election::on_liveness(&p.replicas, &p.state, &live)?;
            Some(PartitionChange { current: p, next })
        })
        .collect();
    assert_eq!(changes.len(), PARTITIONS as usize);
    // Two of them change meanwhile (an AlterPartition).
    let raced = [7, 180];
    let theirs = PartitionState {
        leader: 3,
        leader_epoch: 9,
        isr: vec![3],
        partition_epoch: 9,
    };
    for p in raced {
        c.store
            .put(&meta::partition_key("big", p), meta::encode(&theirs), 0)
            .await
            .unwrap();
    }
    let out = c
        .controller
        .write_partition_states(changes, "test")
        .await
        .unwrap();
    assert_eq!(out.written, PARTITIONS as usize - raced.len());
    assert_eq!(out.conflicts, raced.len());
    // Split in halves down to the two, not one transaction per partition.
    assert!(out.txns < 40, "{out:?}");
    let after = states(&c.store, "big").await;
    for (p, s) in &after {
        if raced.contains(p) {
            assert_eq!(*s, theirs);
        } else {
            assert!(!s.isr.contains(&1), "{p}: {s:?}");
        }
    }
    c.shutdown.cancel();
}

#[tokio::test]
async fn bulk_writes_of_a_deposed_controller_fail_and_say_so() {
    let c = cluster().await;
    create(&c.controller, "big", PARTITIONS).await;
    let before = states(&c.store, "big").await;
    let changes: Vec<PartitionChange> = c
        .controller
        .load_partitions()
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let mut next = p.state.clone();
            next.partition_epoch += 1;
            PartitionChange { current: p, next }
        })
        .collect();
    // Another controller took over: this one's election key is gone.
    let leader = c.controller.leader_key().unwrap();
    c.store.delete(&leader.key).await.unwrap();
    let e = c
        .controller
        .write_partition_states(changes, "test")
        .await
        .unwrap_err();
    assert!(matches!(e, ControllerError::LostLeadership), "{e}");
    assert!(!c.controller.is_active());
    assert_eq!(states(&c.store, "big").await, before);
    c.shutdown.cancel();
}

#[tokio::test]
async fn creating_a_topic_clears_what_a_cut_short_creation_left() {
    let c = cluster().await;
    // A creation of "t" that lost its controller after two chunks: states
    // with no record, one past what the next creation makes.
    let stale = PartitionState {
        leader: 2,
        leader_epoch: 5,
        isr: vec![2],
        partition_epoch: 5,
    };
    for p in [0, 150] {
        c.store
            .put(&meta::partition_key("t", p), meta::encode(&stale), 0)
            .await
            .unwrap();
    }
    assert!(c.controller.load_partitions().await.unwrap().is_empty());
    let record = create(&c.controller, "t", 3).await;
    let s = states(&c.store, "t").await;
    assert_eq!(s.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(s[&0].isr, record.assignment[0]);
    assert_eq!(s[&0].leader_epoch, 0);
    c.shutdown.cancel();
}

#[tokio::test]
async fn adding_partitions_is_chunked_and_clears_leftovers() {
    let c = cluster().await;
    create(&c.controller, "t", 10).await;
    // An addition cut short left a state past the new count.
    let stale = PartitionState {
        leader: 2,
        leader_epoch: 5,
        isr: vec![2],
        partition_epoch: 5,
    };
    let leftover = meta::partition_key("t", 400);
    c.store
        .put(&leftover, meta::encode(&stale), 0)
        .await
        .unwrap();
    let mut watch = watch_all(&c.store).await;
    c.controller
        .create_partitions("t", 10 + PARTITIONS, None, false)
        .await
        .unwrap();
    let batches = batches_until(&mut watch, &meta::topic_key("t")).await;
    for b in &batches {
        assert!(partition_keys(b).len() <= KEYS_PER_TXN);
    }
    let deleted: Vec<_> = batches
        .iter()
        .flatten()
        .filter(|(k, _)| *k == EventKind::Delete)
        .map(|(_, key)| key.as_str())
        .collect();
    assert_eq!(deleted, [leftover.as_str()]);
    assert_eq!(states(&c.store, "t").await.len(), 10 + PARTITIONS as usize);
    let kv = c.store.get(&meta::topic_key("t")).await.unwrap().unwrap();
    let record: TopicRecord = meta::decode(&kv.value).unwrap();
    assert_eq!(record.num_partitions(), 10 + PARTITIONS);
    assert_eq!(
        c.controller.load_partitions().await.unwrap().len(),
        10 + PARTITIONS as usize
    );
    c.shutdown.cancel();
}

#[tokio::test]
async fn an_alter_partition_request_for_many_partitions_is_chunked() {
    let c = cluster().await;
    c.controller
        .create_topic(
            NewTopic {
                name: "big".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignment: Some(vec![vec![1, 2, 3]; PARTITIONS as usize]),
                configs: Default::default(),
            },
            false,
        )
        .await
        .unwrap();
    let epochs: BTreeMap<i32, i64> = c
        .controller
        .live_brokers()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.broker_id, b.epoch))
        .collect();
    let member = |id: i32| IsrMember {
        broker_id: id,
        broker_epoch: epochs[&id],
    };
    // Broker 1 leads every partition and drops broker 3 from each ISR;
    // partition 5 asks in an old partition epoch, and partition 0 twice.
    let mut shrink: Vec<IsrChange> = (0..PARTITIONS)
        .map(|p| IsrChange {
            partition: p,
            leader_epoch: 0,
            partition_epoch: if p == 5 { 7 } else { 0 },
            new_isr: vec![member(1), member(2)],
        })
        .collect();
    shrink.push(shrink[0].clone());
    let mut watch = watch_all(&c.store).await;
    let mut out = c
        .controller
        .alter_partitions(1, epochs[&1], "big", shrink)
        .await
        .unwrap();
    assert_eq!(out.len(), PARTITIONS as usize + 1);
    let repeat = out.pop().unwrap().unwrap_err();
    assert_eq!(repeat.code(), ErrorCode::InvalidRequest, "{repeat}");
    for (p, r) in out.iter().enumerate() {
        match r {
            Err(e) if p == 5 => assert_eq!(e.code(), ErrorCode::InvalidUpdateVersion, "{e}"),
            Ok(s) => assert_eq!((s.isr.as_slice(), s.partition_epoch), (&[1, 2][..], 1)),
            other => panic!("{p}: {other:?}"),
        }
    }
    // One transaction per chunk: every write arrived in few batches.
    let mut written = 0;
    let mut batches = 0;
    while written < PARTITIONS as usize - 1 {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            batch.len() <= KEYS_PER_TXN,
            "{} keys in one txn",
            batch.len()
        );
        written += batch.len();
        batches += 1;
    }
    assert_eq!(batches, (PARTITIONS as usize - 1).div_ceil(KEYS_PER_TXN));
    // Back to all three, but partition 9 names a registration broker 3 no
    // longer has.
    let grow: Vec<IsrChange> = (0..PARTITIONS)
        .filter(|p| *p != 5)
        .map(|p| IsrChange {
            partition: p,
            leader_epoch: 0,
            partition_epoch: 1,
            new_isr: if p == 9 {
                vec![
                    member(1),
                    member(2),
                    IsrMember {
                        broker_id: 3,
                        broker_epoch: 1,
                    },
                ]
            } else {
                vec![member(1), member(2), member(3)]
            },
        })
        .collect();
    let out = c
        .controller
        .alter_partitions(1, epochs[&1], "big", grow)
        .await
        .unwrap();
    let refused: Vec<_> = out
        .iter()
        .filter_map(|r| r.as_ref().err().map(ControllerError::code))
        .collect();
    assert_eq!(refused, [ErrorCode::IneligibleReplica]);
    let s = states(&c.store, "big").await;
    assert_eq!(s[&0].isr, [1, 2, 3]);
    assert_eq!(s[&9].isr, [1, 2]);
    assert_eq!(s[&5].isr, [1, 2, 3]);
    c.shutdown.cancel();
}
