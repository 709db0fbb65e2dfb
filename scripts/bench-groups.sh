#!/usr/bin/env bash
# Benchmarks consumer groups on a real local cluster (scripts/local-cluster.sh:
# 3 brokers, 2 controllers, 1 coordinator, release build): a topic with 6
# partitions and RF 3 is filled with NUM_RECORDS x 1 KiB, then read by a group
# of 3 members (consumer-perf-test --group --members 3). Prints Kafka's
# consumer-perf-test line: MB.sec, and rebalance.time.ms, the longest time a
# member spent joining; that includes the coordinator's
# group.initial.rebalance.delay.ms (3000 ms by default), printed beside it.
#
# Usage: scripts/bench-groups.sh [NUM_RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
DIR="$(mktemp -d)"
trap 'scripts/local-cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
scripts/local-cluster.sh up --brokers 3 --dir "$DIR" | tail -1
B="$(cat "$DIR/bootstrap")"
S=target/release/sluice
"$S" topics --bootstrap-server "$B" --create --topic groupbench --partitions 6 --replication-factor 3 >/dev/null
echo "== filling: $N x 1024 B"
"$S" producer-perf-test --topic groupbench --num-records "$N" --record-size 1024 --throughput -1 \
  --reporting-interval 3600000 --producer-props bootstrap.servers="$B" acks=all | tail -1
delay="$(awk -F': *' '/^group.initial.rebalance.delay.ms/ {print $2}' deploy/config/coordinator.yaml)"
echo "== group of 3 members, 6 partitions (group.initial.rebalance.delay.ms: ${delay:-3000})"
"$S" consumer-perf-test --bootstrap-server "$B" --topic groupbench --messages "$N" \
  --group bench-group --members 3 --timeout 30000
echo "== consumer-groups --describe"
"$S" consumer-groups --bootstrap-server "$B" --describe --group bench-group
