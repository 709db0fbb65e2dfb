#!/usr/bin/env bash
# A rolling restart measured on a real local cluster (scripts/local-cluster.sh:
# 3 brokers, 2 controllers, etcd, release build): an acks=all producer-perf-test
# at a fixed rate runs while every broker in turn gets SIGTERM (a controlled
# shutdown), starts again and rejoins every ISR before the next one goes. Prints
# the producer's latency percentiles over the whole run and its error count
# (producer-perf-test exits non-zero if any record was not acknowledged), how
# long each broker took to stop, and then reads the topic back and counts it.
#
# Usage: scripts/bench-rolling-restart.sh [RATE] [SECONDS]   (default 20000 records/s, 40 s)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-20000}"
SECS="${2:-40}"
N=$((RATE * SECS))
DIR="$(mktemp -d)"
trap 'scripts/local-cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
scripts/local-cluster.sh up --brokers 3 --dir "$DIR" | sed -n 1,2p
B="$(cat "$DIR/bootstrap")"
S=target/release/sluice
"$S" topics --bootstrap-server "$B" --create --topic rolling --partitions 6 \
  --replication-factor 3 --config min.insync.replicas=2 >/dev/null

full_isr() { # true when every partition of `rolling` has 3 in-sync replicas
  local out; out="$("$S" topics --bootstrap-server "$B" --describe --topic rolling 2>/dev/null)" || return 1
  [ "$(grep -c 'Isr: [0-9]*,[0-9]*,[0-9]*' <<<"$out")" -eq 6 ]
}

"$S" producer-perf-test --topic rolling --num-records "$N" --record-size 1024 \
  --throughput "$RATE" --reporting-interval 3600000 \
  --producer-props bootstrap.servers="$B" acks=all >"$DIR/perf.out" 2>&1 &
perf=$!
sleep 5
for i in 1 2 3; do
  start=$(date +%s%N)
  scripts/local-cluster.sh restart "broker-$i" --dir "$DIR" >/dev/null
  stopped=$(( ($(date +%s%N) - start) / 1000000 ))
  ok=0
  for _ in $(seq 1 300); do if full_isr; then ok=1; break; fi; sleep 0.1; done
  [ "$ok" = 1 ] || { echo "broker-$i did not rejoin every ISR within 30 s" >&2; exit 1; }
  back=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "broker-$i: stopped and started in ${stopped} ms, back in every ISR after ${back} ms"
  sleep 3
done
status=0
wait "$perf" || status=$?
echo "== producer ($N x 1 KiB at $RATE/s, acks=all, through 3 broker restarts)"
tail -3 "$DIR/perf.out"
grep -h "controlled shutdown" "$DIR"/logs/broker-*.log | sed -E 's/^.*(controlled shutdown.*)$/  \1/' | sort | uniq -c
got="$("$S" consumer-perf-test --bootstrap-server "$B" --topic rolling --messages "$((N + 1))" --timeout 5000 2>/dev/null | tail -1 || true)"
echo "== read back (expecting exactly $N; asks for one more so a duplicate would show): $got"
read_back="$(cut -d, -f5 <<<"$got" | tr -d ' ')"
if [ "$read_back" != "$N" ]; then
  echo "read back $read_back records, expected $N" >&2
  status=1
fi
if grep -q "controlled shutdown timed out" "$DIR"/logs/broker-*.log; then
  echo "a broker did not finish its controlled shutdown" >&2
  status=1
fi
exit "$status"
