#!/usr/bin/env bash
# Benchmarks delayed delivery on a release standalone node (issue 14):
#  1. produce throughput of delayed records against plain records of the same
#     size on the same node, in one run (producer-perf-test; the delayed topic
#     has delivery.delay.ms=1 day, so every record is held);
#  2. broker memory with 1,000,000 pending (RSS and the timer index's
#     in-memory entries), and again after a restart;
#  3. release lateness at 10,000 releases/s: records produced at 10,000/s with
#     a 3 s topic delay, read by a confluent-kafka consumer that compares each
#     record's arrival with its sluice.delay.due.ms header (same clock).
# Usage: [SLUICE_BIN=path/to/sluice] scripts/bench-delayed.sh [PENDING] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
PENDING="${1:-1000000}"
RATE="${2:-10000}"
SECS="${3:-10}"
SIZE=100
S="${SLUICE_BIN:-target/release/sluice}"
[ -n "${SLUICE_BIN:-}" ] || cargo build --release -p sluice-cli >/dev/null
venv="${SLUICE_PY_VENV:-$PWD/target/py-venv}"; python="${PYTHON:-python3}"
# shellcheck source=scripts/lib/py-venv.sh
source scripts/lib/py-venv.sh
ensure_py_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/kafka/requirements.txt

WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADDR="127.0.0.1:$(free_port)"
METRICS="127.0.0.1:$(free_port)"
PID=""
start() {
  "$S" standalone --data-dir "$WORK/data" --listen "$ADDR" --metrics-listen "$METRICS" >>"$WORK/node.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do "$S" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1 && return; sleep 0.1; done
  echo "node did not start" >&2; tail -20 "$WORK/node.log" >&2; exit 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap 'stop; rm -rf "$WORK"' EXIT
topic() { "$S" topics --bootstrap-server "$ADDR" --create --topic "$1" --partitions 1 --replication-factor 1 "${@:2}" >/dev/null; }
rss() { ps -o rss= -p "$PID" | tr -d ' '; }
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
perf() {
  "$S" producer-perf-test --topic "$1" --num-records "$2" --record-size "$SIZE" --throughput "${3:--1}" \
    --producer-props bootstrap.servers="$ADDR" acks=1 | tail -1
}
rate_of() { echo "$1" | sed -E 's/.* records sent, ([0-9.]+) records\/sec.*/\1/'; }

start
topic plain
topic held --config delivery.delay.ms=86400000
echo "== 1. produce: $PENDING x $SIZE B, acks=1, plain then delayed (1 day) on one node"
rss0="$(rss)"
plain="$(perf plain "$PENDING")"; echo "plain:   $plain"
delayed="$(perf held "$PENDING")"; echo "delayed: $delayed"
awk -v d="$(rate_of "$delayed")" -v p="$(rate_of "$plain")" \
  'BEGIN { printf "   delayed/plain records/s: %.2f\n", d / p }'

echo "== 2. memory with $PENDING pending"
sleep 6   # the pending gauge is refreshed every 5 s
echo "   pending: $(metric 'sluice_delayed_pending{topic="held"}'), index entries in memory: $(metric sluice_delayed_index_memory_entries)"
echo "   broker RSS: $(rss) KiB (before producing: $rss0 KiB, with $PENDING plain records also written)"
stop
t0="$(date +%s.%N)"
start
t1="$(date +%s.%N)"
sleep 6
echo "   after a restart: ready in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, pending $(metric 'sluice_delayed_pending{topic="held"}'), index entries in memory $(metric sluice_delayed_index_memory_entries), RSS $(rss) KiB"

N=$((RATE * SECS))
echo "== 3. lateness: $N records at $RATE/s, each due 3 s after it was produced"
topic due --config delivery.delay.ms=3000
"$venv/bin/python" - "$ADDR" "$N" >"$WORK/lateness" <<'PY' &
import sys, time
from confluent_kafka import Consumer, TopicPartition
addr, n = sys.argv[1], int(sys.argv[2])
# Assigned, not subscribed: no group join in the way of the first records.
c = Consumer({"bootstrap.servers": addr, "group.id": "lateness", "enable.auto.commit": False,
              "fetch.wait.max.ms": 20})
c.assign([TopicPartition("due", 0, 0)])
late, deadline = [], time.time() + 120
while len(late) < n and time.time() < deadline:
    for m in c.consume(num_messages=1000, timeout=0.05):
        if m.error():
            continue
        now = time.time() * 1000
        due = dict(m.headers() or [])[ "sluice.delay.due.ms"]
        late.append(now - int(due))
c.close()
late.sort()
q = lambda p: late[min(len(late) - 1, int(p * len(late)))]
print(f"   released {len(late)}/{n}; lateness after the due time (ms): "
      f"p50 {q(0.50):.0f}, p99 {q(0.99):.0f}, max {late[-1]:.0f}, min {late[0]:.0f}")
PY
READER=$!
sleep 2
produced="$(perf due "$N" "$RATE")"
echo "   produced: $produced"
wait "$READER" || true
cat "$WORK/lateness"
echo "   broker histogram sluice_delayed_release_lateness_seconds:"
curl -s "http://$METRICS/metrics" | grep '^sluice_delayed_release_lateness_seconds' | sed 's/^/     /'
