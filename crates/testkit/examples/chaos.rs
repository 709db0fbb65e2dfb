//! `cargo run -p sluice-testkit --example chaos -- [ROUNDS] [LEASE_MS]`: the
//! chaos run on a fresh local cluster, for longer than the test does, with
//! the suite's 2 s leases or `LEASE_MS` (6000: the production default). Prints the summary line
//! and exits non-zero when anything acknowledged was lost, duplicated or
//! reordered. `scripts/chaos.sh` builds the binaries and runs this.

use sluice_testkit::{ClusterSpec, TestCluster, chaos};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(6);
    let lease_ms: u64 = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(ClusterSpec::default().lease_ms);
    let mut cluster = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        // As in the test: restarted brokers take their preferred partitions back.
        leader_imbalance_check_interval_seconds: 2,
        lease_ms,
        ..Default::default()
    })
    .await?;
    let report = chaos::run(&mut cluster, rounds).await?;
    println!(
        "failover times (ms): {:?}; unacknowledged: {}",
        report.failover_ms, report.unacknowledged
    );
    println!("{}", report.summary());
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
