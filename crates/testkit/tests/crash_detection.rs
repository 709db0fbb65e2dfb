//! Crash detection (`crash.detection.enable`): a process killed on a live
//! host loses its registration at once, long before its lease could expire;
//! a paused one keeps it. The leases here are 30 s, so anything that happens
//! within the 20 s deadlines below was not the lease.

use std::time::Duration;

use sluice_client::{Admin, NewTopic};
use sluice_testkit::{ClusterSpec, TestCluster};

const LEASE_MS: u64 = 30_000;
/// Well under the lease: reaching a state before this is crash detection.
const DEADLINE: Duration = Duration::from_secs(20);

/// Revocations logged by the controllers.
fn detections(c: &TestCluster) -> usize {
    ["controller-1", "controller-2"]
        .iter()
        .map(|n| c.log(n).matches("the process is gone").count())
        .sum()
}

async fn wait_until<F, Fut>(c: &TestCluster, what: &str, mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !pred().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?} (the lease is {LEASE_MS} ms)\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_its_lease_at_once_and_a_paused_one_keeps_it() {
    let mut c = TestCluster::start(ClusterSpec {
        lease_ms: LEASE_MS,
        coordinators: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("crash", 1, 3))
        .await
        .unwrap();
    let config = c.client_config();
    let describe = || {
        let admin = Admin::new(config.clone()).unwrap();
        async move {
            admin
                .describe_topics(&["crash".to_string()])
                .await
                .ok()
                .map(|d| d[0].partitions[0].clone())
        }
    };
    wait_until(&c, "a full ISR", || async {
        describe().await.is_some_and(|p| p.isr.len() == 3)
    })
    .await;
    let leader = describe().await.unwrap().leader;
    let followers: Vec<i32> = c
        .broker_ids()
        .into_iter()
        .filter(|&b| b != leader)
        .collect();
    let (follower, stopped) = (followers[0], followers[1]);

    // Paused: the kernel still accepts connections to its port, so nothing
    // is revoked; it keeps its registration (its lease outlives the pause).
    c.pause(&format!("broker-{follower}")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let brokers = admin.describe_cluster().await.unwrap().brokers.len();
    c.resume(&format!("broker-{follower}")).unwrap();
    assert_eq!(brokers, 3, "a paused broker lost its registration");
    assert_eq!(detections(&c), 0, "{}", c.logs_tail());

    // Stopped with SIGTERM: it says NOT_SERVING and closes its port, which
    // is a shutdown, not a crash.
    c.terminate(&format!("broker-{stopped}")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        detections(&c),
        0,
        "a clean stop counted as a crash\n{}",
        c.logs_tail()
    );

    // Killed: its port refuses connections, the controller revokes its lease
    // and elects another leader.
    c.kill(&format!("broker-{leader}")).unwrap();
    wait_until(&c, "a new leader after the kill", || async {
        describe()
            .await
            .is_some_and(|p| p.leader >= 0 && p.leader != leader)
    })
    .await;
    assert_eq!(admin.describe_cluster().await.unwrap().brokers.len(), 1);
    assert_eq!(detections(&c), 1, "{}", c.logs_tail());

    // A coordinator killed: its registration goes too.
    c.kill("coordinator-1").unwrap();
    wait_until(&c, "the coordinator's registration revoked", || async {
        detections(&c) == 2
    })
    .await;

    // The active controller killed: the standby revokes its lease and takes
    // over, and admin requests work again.
    let active = admin.describe_cluster().await.unwrap().controller_id;
    c.kill(&format!("controller-{}", active - 1000)).unwrap();
    wait_until(&c, "the standby controller taking over", || async {
        admin
            .describe_cluster()
            .await
            .is_ok_and(|d| d.controller_id >= 0 && d.controller_id != active)
    })
    .await;
    assert_eq!(detections(&c), 3, "{}", c.logs_tail());
    admin
        .create_topic(NewTopic::new("after-crash", 1, 1))
        .await
        .unwrap();
}
