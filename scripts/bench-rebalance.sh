#!/usr/bin/env bash
# Rebalance benchmark, classic against the consumer protocol (KIP-848) in the
# same run, on a real local cluster (scripts/local-cluster.sh: 3 brokers, 2
# controllers, 1 coordinator, release build, default settings: classic
# members heartbeat every 3 s, consumer-protocol members every 5 s as the
# coordinator's group.consumer.heartbeat.interval.ms says). For 3, 10 and 50
# members (override: MEMBERS="3 10"), a group reads a topic with about two
# partitions per member that gets a record per partition every 20 ms; one
# more member joins. Each line: settle_ms, from the join until every member
# holds its new assignment; moved, the partitions that changed hands;
# longest_pause_unmoved_ms, the longest stretch without a record on a
# partition that kept its owner (eager classic rebalancing stops them all;
# the consumer protocol should not); steady_longest_gap_ms, the same figure
# before the join, for scale.
#
# Usage: scripts/bench-rebalance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$(mktemp -d)"
trap 'scripts/local-cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
cargo build --release -p sluice-testkit --example rebalance_bench 2>&1 | tail -1
scripts/local-cluster.sh up --brokers 3 --dir "$DIR" | tail -1
B="$(cat "$DIR/bootstrap")"
for n in ${MEMBERS:-3 10 50}; do
  partitions=$(( (n + 1) * 2 ))
  for protocol in classic consumer; do
    target/release/examples/rebalance_bench "$B" "$protocol" "$n" "$partitions"
  done
done
