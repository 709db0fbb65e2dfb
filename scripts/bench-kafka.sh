#!/usr/bin/env bash
# The Kafka face against the gRPC face, same release standalone node, same run:
# 1,000,000 x 1 KiB records on one partition, acks=1, produced and consumed
# once through gRPC (sluice producer-perf-test / consumer-perf-test) and once
# through Kafka's protocol (kcat, librdkafka, with large batches).
# Prints client throughput and the broker's CPU seconds per GB for each phase:
# the CPU figure is the fairer comparison of the two faces, since the clients
# differ.
# Usage: scripts/bench-kafka.sh [NUM_RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
N="${1:-1000000}"
cargo build --release -p sluice-cli >/dev/null
venv="${SLUICE_PY_VENV:-$repo/target/py-venv}"; python="${PYTHON:-python3}"
# shellcheck source=scripts/lib/py-venv.sh
source scripts/lib/py-venv.sh
ensure_py_venv
# shellcheck source=scripts/lib/machine-limits.sh
source scripts/lib/machine-limits.sh
S=target/release/sluice
WORK="$(mktemp -d)"
MIB=$(((N * 1024 + 1048575) / 1048576))
machine_limits "$WORK" "$MIB"
PORT="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
"$S" standalone --data-dir "$WORK/data" --listen "$ADDR" >"$WORK/node.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do "$S" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1 && break; sleep 0.1; done
for t in bench-grpc bench-kafka; do
  "$S" topics --bootstrap-server "$ADDR" --create --topic "$t" --partitions 1 --replication-factor 1 >/dev/null
done
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }   # utime + stime, clock ticks
hz="$(getconf CLK_TCK)"
per_gb() { awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / hz / (n * 1024 / 1e9) }'; }

warm_page_cache "$WORK" "$MIB"
echo "== gRPC face: producer-perf-test ($N x 1024 B, acks=1, batch.size=1048576, linger.ms=5)"
c0="$(cpu)"
"$S" producer-perf-test --topic bench-grpc --num-records "$N" --record-size 1024 --throughput -1 \
  --producer-props bootstrap.servers="$ADDR" acks=1 batch.size=1048576 linger.ms=5 | tail -1
c1="$(cpu)"; echo "   broker CPU: $(per_gb "$c0" "$c1") s/GB"
echo "== gRPC face: consumer-perf-test"
"$S" consumer-perf-test --bootstrap-server "$ADDR" --topic bench-grpc --messages "$N" | tail -1
c2="$(cpu)"; echo "   broker CPU: $(per_gb "$c1" "$c2") s/GB"

# kcat (librdkafka, C) for the Kafka face: a Python loop measures Python.
command -v kcat >/dev/null || { echo "kcat missing (apt-get install kcat)" >&2; exit 1; }
"$venv/bin/python" -c "import sys; line = b'x' * 1023 + b'\n'; sys.stdout.buffer.write(line * int(sys.argv[1]))" "$N" >"$WORK/records.txt"
kafka_props=(-X acks=1 -X batch.size=1048576 -X linger.ms=5 -X queue.buffering.max.messages=2000000
  -X queue.buffering.max.kbytes=2097151 -X message.max.bytes=2000000)
warm_page_cache "$WORK" "$MIB"
echo "== Kafka face: kcat -P ($N x 1024 B, acks=1, batch.size=1048576, linger.ms=5)"
t0="$(date +%s.%N)"
kcat -b "$ADDR" -P -t bench-kafka -p 0 "${kafka_props[@]}" -l "$WORK/records.txt"
t1="$(date +%s.%N)"
awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d records sent, %.1f records/sec (%.2f MB/sec)\n", n, n/(b-a), n*1024/(b-a)/1e6 }'
c3="$(cpu)"; echo "   broker CPU: $(per_gb "$c2" "$c3") s/GB"
echo "== Kafka face: kcat -C"
t0="$(date +%s.%N)"
got="$(kcat -b "$ADDR" -C -t bench-kafka -p 0 -o beginning -e -q -X fetch.max.bytes=52428800 \
  -X max.partition.fetch.bytes=10485760 -f '\n' | wc -l)"
t1="$(date +%s.%N)"
awk -v n="$got" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d records read, %.1f records/sec (%.2f MB/sec)\n", n, n/(b-a), n*1024/(b-a)/1e6 }'
c4="$(cpu)"; echo "   broker CPU: $(per_gb "$c3" "$c4") s/GB"
echo "== broker RSS: $(ps -o rss= -p $PID) KiB"
