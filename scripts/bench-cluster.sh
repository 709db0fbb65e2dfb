#!/usr/bin/env bash
# Benchmarks a real local cluster (scripts/local-cluster.sh: 3 brokers, 2
# controllers, etcd, release build): topic with 6 partitions, RF 3,
# min.insync.replicas=2, 1 KiB records, acks=all. First the peak (no rate cap),
# then latency at half of the measured peak. Prints Kafka's producer-perf-test
# lines; the "steady state" line leaves out the warmup records (KIP-1052).
#
# Usage: scripts/bench-cluster.sh [NUM_RECORDS]
#
# On the shared VMs here, the first write to a guest page the host has not
# backed yet costs several microseconds, so results depend on how much page
# cache is "warm": the script prints the machine's page-cache write rate for
# fresh memory (first touch) and for reused memory (scripts/lib/
# machine-limits.sh) and MemFree, so runs can be compared. With RF 3 on one
# machine every produced byte is written to the page cache three times.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
WARMUP=$((N / 20))
# shellcheck source=scripts/lib/machine-limits.sh
source scripts/lib/machine-limits.sh
DIR="$(mktemp -d)"
trap 'scripts/local-cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
machine_limits "$DIR" 1024
scripts/local-cluster.sh up --brokers 3 --dir "$DIR" | tail -1
B="$(cat "$DIR/bootstrap")"
S=target/release/sluice
"$S" topics --bootstrap-server "$B" --create --topic bench --partitions 6 \
  --replication-factor 3 --config min.insync.replicas=2 >/dev/null
perf() { # rate
  "$S" producer-perf-test --topic bench --num-records "$N" --warmup-records "$WARMUP" \
    --record-size 1024 --throughput "$1" --reporting-interval 3600000 \
    --producer-props bootstrap.servers="$B" acks=all | tail -2
}
echo "== MemFree before: $(awk '/MemFree/ {print $2}' /proc/meminfo) KiB"
echo "== peak: $N x 1024 B, acks=all, RF 3, 6 partitions"
out="$(perf -1)"
echo "$out"
rate="$(echo "$out" | tail -1 | sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')"
# RF 3 on one machine: three page-cache writes and three loopback transfers
# (client to leader, leader to each follower) per produced byte.
x3="$(awk -v r="$rate" 'BEGIN { print 3 * r }')"
echo "   machine: page-cache writes ${x3} MiB/s = $(ratio "$x3" "$LIMIT_WRITE") of warm dd, $(ratio "$x3" "$LIMIT_WRITE_COLD") of first-touch dd; loopback $(ratio "$x3" "$LIMIT_LOOPBACK")"
peak="$(echo "$out" | tail -1 | sed -E 's/.*records sent, ([0-9.]+) records\/sec.*/\1/')"
half="$(python3 -c "print(int(float('$peak') / 2))")"
echo "== at half of the peak: $half records/s"
perf "$half"
echo "== MemFree after: $(awk '/MemFree/ {print $2}' /proc/meminfo) KiB"
