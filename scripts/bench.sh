#!/usr/bin/env bash
# Benchmarks a release standalone node on this machine: 1 partition,
# 1,000,000 records of 1,024 bytes, acks=1, then reads them all back.
# Prints the machine's own limits first (page cache with dd, loopback with
# iperf3: scripts/lib/machine-limits.sh), then Kafka's producer-perf-test and
# consumer-perf-test lines, each with its ratio to the limit that bounds it
# and the broker's CPU seconds per GiB moved.
# Usage: [SLUICE_BIN=path/to/sluice] scripts/bench.sh [NUM_RECORDS] [extra producer props...]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"; shift || true
# SLUICE_BIN: another build to measure (an A/B run against a saved binary).
S="${SLUICE_BIN:-target/release/sluice}"
[ -n "${SLUICE_BIN:-}" ] || cargo build --release -p sluice-cli >/dev/null
# shellcheck source=scripts/lib/machine-limits.sh
source scripts/lib/machine-limits.sh
WORK="$(mktemp -d)"
mkdir -p "$WORK/data"
machine_limits "$WORK/data" $(((N * 1024 + 1048575) / 1048576))
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
"$S" standalone --data-dir "$WORK/data" --listen "$ADDR" >"$WORK/node.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do "$S" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1 && break; sleep 0.1; done
"$S" topics --bootstrap-server "$ADDR" --create --topic bench --partitions 1 --replication-factor 1 >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }   # utime + stime, clock ticks
hz="$(getconf CLK_TCK)"
per_gib() { awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / hz / (n * 1024 / 2^30) }'; }

echo "== producer-perf-test ($N x 1024 B, acks=1)"
c0="$(cpu)"
line="$("$S" producer-perf-test --topic bench --num-records "$N" --record-size 1024 --throughput -1 \
  --producer-props bootstrap.servers="$ADDR" acks=1 "$@" | tail -1)"
c1="$(cpu)"
echo "$line"
produced="$(echo "$line" | sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')"
bound="$(min_limit "$LIMIT_WRITE" "$LIMIT_LOOPBACK")"
echo "   ratio to the machine: $(ratio "$produced" "$bound") of min(page-cache write, loopback) = $bound MiB/s; broker CPU $(per_gib "$c0" "$c1") s/GiB"

echo "== consumer-perf-test"
"$S" consumer-perf-test --bootstrap-server "$ADDR" --topic bench --messages "$N" | tee "$WORK/consume.txt"
c2="$(cpu)"
consumed="$(sed -n 2p "$WORK/consume.txt" | awk -F', ' '{print $4}')"
bound="$(min_limit "$LIMIT_READ" "$LIMIT_LOOPBACK")"
echo "   ratio to the machine: $(ratio "$consumed" "$bound") of min(page-cache read, loopback) = $bound MiB/s; broker CPU $(per_gib "$c1" "$c2") s/GiB"
echo "== broker RSS: $(ps -o rss= -p $PID) KiB"
