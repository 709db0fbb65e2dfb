//! The controller against the in-memory embedded store: broker-epoch
//! fencing of the requests brokers make.

use std::sync::Arc;
use std::time::Duration;

use sluice_metastore::{EmbeddedMetadataStore, LeaseKeeper, MetadataStore, register_ephemeral};
use sluice_types::ErrorCode;
use sluice_types::meta::{self, BrokerRegistration, PartitionState};
use tokio_util::sync::CancellationToken;

use super::{Controller, IsrMember, NewTopic};
use crate::ControllerConfig;

pub(super) async fn register(store: &Arc<dyn MetadataStore>, id: i32) -> (LeaseKeeper, i64) {
    register_ephemeral(
        store.as_ref(),
        meta::broker_key(id),
        Duration::from_secs(10),
        Duration::from_secs(1),
        |_| {
            meta::encode(&BrokerRegistration {
                broker_id: id,
                host: "127.0.0.1".into(),
                port: 9000 + id,
                rack: None,
                start_time_ms: 0,
                epoch: 0,
            })
        },
    )
    .await
    .unwrap()
    .unwrap()
}

pub(super) async fn active_controller(
    store: Arc<dyn MetadataStore>,
) -> (Arc<Controller>, CancellationToken) {
    let controller = Controller::new(store, ControllerConfig::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(controller.clone().run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), controller.wait_active())
        .await
        .expect("the controller is elected");
    (controller, shutdown)
}

async fn state(store: &Arc<dyn MetadataStore>, topic: &str) -> PartitionState {
    let kv = store
        .get(&meta::partition_key(topic, 0))
        .await
        .unwrap()
        .unwrap();
    meta::decode(&kv.value).unwrap()
}

/// Topic "t": one partition on brokers 1, 2, 3 (1 leads).
async fn create_t(controller: &Controller) {
    controller
        .create_topic(
            NewTopic {
                name: "t".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignment: Some(vec![vec![1, 2, 3]]),
                configs: Default::default(),
            },
            false,
        )
        .await
        .unwrap();
}

fn members(m: &[(i32, i64)]) -> Vec<IsrMember> {
    m.iter()
        .map(|&(broker_id, broker_epoch)| IsrMember {
            broker_id,
            broker_epoch,
        })
        .collect()
}

#[tokio::test]
async fn requests_from_a_stale_registration_are_fenced() {
    let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
    let (_k1, e1) = register(&store, 1).await;
    let (_k2, e2) = register(&store, 2).await;
    let (k3, e3) = register(&store, 3).await;
    let (controller, shutdown) = active_controller(store.clone()).await;
    create_t(&controller).await;
    let s = state(&store, "t").await;
    assert_eq!((s.leader, s.isr.len()), (1, 3));

    // The leader's own epoch: the current one passes, an older one is stale.
    controller.check_broker_epoch(1, e1).await.unwrap();
    let e = controller.check_broker_epoch(1, e1 - 1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::StaleBrokerEpoch);

    // Shrink to {1, 2}.
    let s = controller
        .alter_partition(
            1,
            e1,
            "t",
            0,
            s.leader_epoch,
            s.partition_epoch,
            members(&[(1, -1), (2, e2)]),
        )
        .await
        .unwrap();
    assert_eq!(s.isr, [1, 2]);

    // Broker 3 restarts (a new registration): the leader saw it fetch in the
    // old one, so it may not join in that one.
    store.revoke_lease(k3.lease()).await.unwrap();
    drop(k3);
    let (_k3, e3_new) = register(&store, 3).await;
    assert!(e3_new > e3, "registration epochs grow");
    let e = controller
        .alter_partition(
            1,
            e1,
            "t",
            0,
            s.leader_epoch,
            s.partition_epoch,
            members(&[(1, -1), (2, e2), (3, e3)]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::IneligibleReplica, "{e}");
    let s = controller
        .alter_partition(
            1,
            e1,
            "t",
            0,
            s.leader_epoch,
            s.partition_epoch,
            members(&[(1, -1), (2, e2), (3, e3_new)]),
        )
        .await
        .unwrap();
    assert_eq!(s.isr, [1, 2, 3]);

    // A change from a leader whose registration is gone writes nothing.
    let e = controller
        .alter_partition(
            1,
            e1 - 1,
            "t",
            0,
            s.leader_epoch,
            s.partition_epoch,
            members(&[(1, -1), (2, e2)]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidUpdateVersion, "{e}");
    assert_eq!(state(&store, "t").await.isr, [1, 2, 3]);
    shutdown.cancel();
}

/// Under paused time: a broker whose lease runs out loses its leaderships to
/// the next in-sync replica, in a new leader epoch, and leaves every ISR.
#[tokio::test(start_paused = true)]
async fn a_dead_brokers_partitions_move_to_the_next_in_sync_replica() {
    let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
    let (k1, _) = register(&store, 1).await;
    let (_k2, _) = register(&store, 2).await;
    let (_k3, _) = register(&store, 3).await;
    let (controller, shutdown) = active_controller(store.clone()).await;
    create_t(&controller).await;
    let before = state(&store, "t").await;
    assert_eq!(before.leader, 1);
    // Broker 1 stops renewing (a crash): its 10 s lease runs out.
    drop(k1);
    let mut now = state(&store, "t").await;
    for _ in 0..600 {
        if now.leader != 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = state(&store, "t").await;
    }
    assert_eq!(now.leader, 2, "{now:?}");
    assert_eq!(now.isr, [2, 3]);
    assert_eq!(now.leader_epoch, before.leader_epoch + 1);
    shutdown.cancel();
}

/// KIP-903 on the controller: a broker that registers again (a restart that
/// may have lost unflushed records) leaves every ISR, even when its old
/// registration's deletion and the new one reach the controller together.
#[tokio::test(start_paused = true)]
async fn a_broker_that_registers_again_leaves_every_isr() {
    let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
    let (_k1, _) = register(&store, 1).await;
    let (k2, _) = register(&store, 2).await;
    let (_k3, _) = register(&store, 3).await;
    let (controller, shutdown) = active_controller(store.clone()).await;
    create_t(&controller).await;
    controller.reconcile_partitions().await.unwrap();
    assert_eq!(state(&store, "t").await.isr, [1, 2, 3]);
    // Broker 2 restarts: the old registration goes, a new one comes, before
    // the controller looks.
    store.revoke_lease(k2.lease()).await.unwrap();
    drop(k2);
    let (_k2, _) = register(&store, 2).await;
    controller.reconcile_partitions().await.unwrap();
    let s = state(&store, "t").await;
    assert_eq!((s.leader, s.isr.as_slice()), (1, &[1, 3][..]), "{s:?}");
    // A pass with nothing new changes nothing.
    assert_eq!(controller.reconcile_partitions().await.unwrap(), 0);
    shutdown.cancel();
}
