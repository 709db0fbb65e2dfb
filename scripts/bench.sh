#!/usr/bin/env bash
# Benchmarks a release standalone node on this machine: 1 partition,
# 1,000,000 records of 1,024 bytes, acks=1, then reads them all back.
# Prints Kafka's producer-perf-test and consumer-perf-test lines.
# Usage: scripts/bench.sh [NUM_RECORDS] [extra producer props...]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"; shift || true
cargo build --release -p sluice-cli >/dev/null
S=target/release/sluice
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
"$S" standalone --data-dir "$WORK/data" --listen "$ADDR" >"$WORK/node.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do "$S" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1 && break; sleep 0.1; done
"$S" topics --bootstrap-server "$ADDR" --create --topic bench --partitions 1 --replication-factor 1 >/dev/null
echo "== producer-perf-test ($N x 1024 B, acks=1)"
"$S" producer-perf-test --topic bench --num-records "$N" --record-size 1024 --throughput -1 \
  --producer-props bootstrap.servers="$ADDR" acks=1 "$@" | tail -1
echo "== consumer-perf-test"
"$S" consumer-perf-test --bootstrap-server "$ADDR" --topic bench --messages "$N"
echo "== broker RSS: $(ps -o rss= -p $PID) KiB"
