#!/usr/bin/env bash
# The Kafka face against the gRPC face, same release standalone node, same run:
# 1,000,000 x 1 KiB records on one partition, acks=1, produced and consumed
# once through gRPC (sluice producer-perf-test / consumer-perf-test) and once
# through Kafka's protocol (confluent-kafka, librdkafka, with large batches).
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
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/kafka/requirements.txt
S=target/release/sluice
WORK="$(mktemp -d)"
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

echo "== gRPC face: producer-perf-test ($N x 1024 B, acks=1, batch.size=1048576, linger.ms=5)"
c0="$(cpu)"
"$S" producer-perf-test --topic bench-grpc --num-records "$N" --record-size 1024 --throughput -1 \
  --producer-props bootstrap.servers="$ADDR" acks=1 batch.size=1048576 linger.ms=5 | tail -1
c1="$(cpu)"; echo "   broker CPU: $(per_gb "$c0" "$c1") s/GB"
echo "== gRPC face: consumer-perf-test"
"$S" consumer-perf-test --bootstrap-server "$ADDR" --topic bench-grpc --messages "$N" | tail -1
c2="$(cpu)"; echo "   broker CPU: $(per_gb "$c1" "$c2") s/GB"

echo "== Kafka face: confluent-kafka produce ($N x 1024 B, acks=1, batch.size=1048576, linger.ms=5)"
"$venv/bin/python" - "$ADDR" "$N" produce <<'PY'
import sys, time
from confluent_kafka import Producer
addr, n = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": addr, "acks": "1", "batch.size": 1048576, "linger.ms": 5,
              "queue.buffering.max.messages": 2000000, "queue.buffering.max.kbytes": 2097151,
              "message.max.bytes": 2000000})
payload = b"x" * 1024
t0 = time.time()
for i in range(n):
    while True:
        try:
            p.produce("bench-kafka", payload, partition=0)
            break
        except BufferError:
            p.poll(0.01)
    if i % 10000 == 0:
        p.poll(0)
assert p.flush(120) == 0
dt = time.time() - t0
print(f"{n} records sent, {n/dt:.1f} records/sec ({n*1024/dt/1e6:.2f} MB/sec)")
PY
c3="$(cpu)"; echo "   broker CPU: $(per_gb "$c2" "$c3") s/GB"
echo "== Kafka face: confluent-kafka consume"
"$venv/bin/python" - "$ADDR" "$N" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
addr, n = sys.argv[1], int(sys.argv[2])
c = Consumer({"bootstrap.servers": addr, "group.id": "bench", "fetch.max.bytes": 52428800,
              "max.partition.fetch.bytes": 10485760, "fetch.wait.max.ms": 100})
c.assign([TopicPartition("bench-kafka", 0, 0)])
got, nbytes, t0 = 0, 0, time.time()
while got < n:
    for m in c.consume(num_messages=100000, timeout=1.0):
        if not m.error():
            got += 1
            nbytes += len(m.value())
dt = time.time() - t0
print(f"{got} records read, {got/dt:.1f} records/sec ({nbytes/dt/1e6:.2f} MB/sec)")
c.close()
PY
c4="$(cpu)"; echo "   broker CPU: $(per_gb "$c3" "$c4") s/GB"
echo "== broker RSS: $(ps -o rss= -p $PID) KiB"
