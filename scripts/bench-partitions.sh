#!/usr/bin/env bash
# Many partitions on a real local cluster (scripts/local-cluster.sh: 3 brokers,
# 2 controllers, etcd with its default limits, release build), issue 13.
# Creates PARTITIONS partitions at RF 3 (so every broker holds a replica of
# each) as TOPICS topics wide-1..wide-TOPICS of equal size, one after the
# other (default: one topic per 1,000 partitions), and prints:
#   - creation time: from the first CreateTopics request until every broker
#     serves a leader for every partition in Metadata;
#   - the time one Metadata request for all topics takes through the `sluice`
#     CLI (`topics --describe` is one Metadata request), median of several,
#     beside the same for a one-partition topic (the CLI's own start-up and
#     connection);
#   - broker RSS before and after, and per partition replica;
#   - kill -9 of the broker leading the most partitions, then the time until
#     every surviving broker serves a new leader for each of them, split at
#     the controller's pass: detection comes first (crash detection revokes
#     the dead broker's lease when its port refuses connections; without it,
#     broker.lease.ms must expire), then election.
# Timings come from a shared, noisy machine: compare runs on one machine only.
#
# Usage: scripts/bench-partitions.sh [PARTITIONS] [TOPICS]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
T="${2:-$(((N + 999) / 1000))}"
RUNS=7
# Each partition replica keeps its active segment open (and sockets, etcd).
ulimit -n 100000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
DIR="$(mktemp -d)"
trap 'scripts/local-cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
scripts/local-cluster.sh up --brokers 3 --dir "$DIR" | tail -1
S=target/release/sluice
IFS=, read -r -a ADDRS <"$DIR/bootstrap" # ADDRS[i-1] is broker-i
B="$(cat "$DIR/bootstrap")"

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$DIR/pids/broker-$1.pid")/status"; }
# Every topic as broker ADDR serves it, in Kafka's describe layout.
describe() { "$S" topics --bootstrap-server "$1" --describe 2>/dev/null || true; }
# Partitions of the wide-* topics, and of those the ones led by none of / one
# of the given ids.
partitions_in() { grep -c $'^\tTopic: wide-' || true; }
# Partitions of the wide-* topics with fewer than 3 in-sync replicas.
short_isr() { awk '/^\tTopic: wide-/ { for (i = 1; i <= NF; i++) if ($i == "Isr:" && split($(i + 1), r, ",") < 3) n++ } END { print n + 0 }'; }
leaders_in() {
  awk -v ids=" $* " '/^\tTopic: wide-/ { for (i = 1; i <= NF; i++) if ($i == "Leader:") { l = $(i + 1); if (index(ids, " " l " ")) n++ } } END { print n + 0 }'
}
median_ms() { # runs a command RUNS times, prints the median wall time in ms
  python3 - "$RUNS" "$@" <<'EOF'
import subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
t = []
for _ in range(runs):
    s = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t.append((time.monotonic() - s) * 1000)
t.sort()
print(f"{t[len(t) // 2]:.0f}")
EOF
}

echo "== $N partitions, RF 3, $T topic(s), 3 brokers, open files limit $(ulimit -n)"
echo "   (timings: a shared machine, noisy; compare runs on one machine only)"
declare -A before
for i in 1 2 3; do before[$i]=$(rss_kib "$i"); done
"$S" topics --bootstrap-server "$B" --create --topic tiny --partitions 1 --replication-factor 3 >/dev/null
start=$(now)
for t in $(seq 1 "$T"); do
  n=$((N / T + (t <= N % T ? 1 : 0)))
  "$S" topics --bootstrap-server "$B" --create --topic "wide-$t" --partitions "$n" \
    --replication-factor 3 --command-property request.timeout.ms=600000 >/dev/null
done
for a in "${ADDRS[@]}"; do
  until out="$(describe "$a")" && [ "$(partitions_in <<<"$out")" -eq "$N" ] \
    && [ "$(leaders_in none <<<"$out")" -eq 0 ]; do
    sleep 0.2
  done
done
echo "creation (until every broker serves a leader for all): $(secs "$start" "$(now)") s"
# A broker that stalled past its lease while creating the logs was fenced out
# of every ISR; killing a broker before they heal would leave partitions
# with no in-sync replica to elect.
deadline=$(($(date +%s) + 300))
until out="$(describe "${ADDRS[0]}")" && [ "$(short_isr <<<"$out")" -eq 0 ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "ISRs still short after 300 s ($(short_isr <<<"$out") partitions): no failover measured;" \
      "brokers that lost their registration:" "$(grep -l 'lease lost' "$DIR"/logs/broker-*.log | xargs -rn1 basename)"
    exit 1
  fi
  sleep 0.5
done
echo "full ISRs everywhere: $(secs "$start" "$(now)") s after the first CreateTopics" \
  "($(grep -l 'lease lost' "$DIR"/logs/broker-*.log | wc -l) broker(s) lost their registration meanwhile)"

sleep 2 # let the brokers settle after creating the logs
whole=$(median_ms "$S" topics --bootstrap-server "${ADDRS[0]}" --describe)
one=$(median_ms "$S" topics --bootstrap-server "${ADDRS[0]}" --describe --topic tiny)
echo "Metadata for all $N partitions via the CLI: ${whole} ms median of $RUNS (a 1-partition topic: ${one} ms)"
total=0
for i in 1 2 3; do
  after=$(rss_kib "$i")
  delta=$((after - before[$i]))
  total=$((total + delta))
  fds=$(ls "/proc/$(cat "$DIR/pids/broker-$i.pid")/fd" | wc -l)
  echo "broker-$i RSS: ${before[$i]} KiB before, $after KiB after (+$delta KiB); $fds open files"
done
python3 -c "import sys; print(f'RSS per partition replica: {int(sys.argv[1]) / (3 * int(sys.argv[2])):.1f} KiB')" "$total" "$N"

out="$(describe "${ADDRS[0]}")"
victim=$(awk '/^\tTopic: wide-/ { for (i = 1; i <= NF; i++) if ($i == "Leader:") n[$(i + 1)]++ }
  END { for (b in n) if (n[b] > max) { max = n[b]; best = b } print best }' <<<"$out")
led=$(leaders_in "$victim" <<<"$out")
survivors=()
for i in 1 2 3; do [ "$i" = "$victim" ] || survivors+=("${ADDRS[$((i - 1))]}"); done
echo "== kill -9 broker-$victim, leader of $led partitions (default settings: 6 s lease, crash detection on)"
kill -9 "$(cat "$DIR/pids/broker-$victim.pid")"
killed=$(now)
deadline=$(($(date +%s) + 300))
while :; do
  left=0
  for a in "${survivors[@]}"; do
    o="$(describe "$a")"
    if [ "$(partitions_in <<<"$o")" -ne "$N" ]; then left=$N; break; fi
    left=$((left + $(leaders_in "$victim" none <<<"$o")))
  done
  [ "$left" -eq 0 ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "after 300 s, $left partition views still show broker-$victim or no leader"
    exit 1
  fi
  sleep 0.1
done
done_at=$(now)
echo "all $led leaderships moved (both survivors serve them): $(secs "$killed" "$done_at") s after the kill"
line="$(grep -h "after a broker change" "$DIR"/logs/controller-*.log | tail -1 || true)"
echo "the controller's pass: ${line#*INFO }"
detected="$(grep -h "the process is gone" "$DIR"/logs/controller-*.log | tail -1 || true)"
[ -n "$detected" ] && echo "detected: ${detected%% *} ${detected#*WARN }"
# Its log line's timestamp (UTC) less elapsed_ms: when it started writing.
python3 - "$killed" "$done_at" "$line" <<'EOF'
import datetime, re, sys
killed, done, line = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ts = re.match(r"\S+", line)
ms = re.search(r"elapsed_ms=(\d+)", line)
if ts and ms:
    end = datetime.datetime.fromisoformat(ts.group(0).replace("Z", "+00:00")).timestamp()
    start = end - int(ms.group(1)) / 1000
    print(f"  it started {start - killed:.2f} s after the kill (detection), wrote every "
          f"partition state in {int(ms.group(1))} ms, and the survivors served all of it "
          f"{done - start:.2f} s after it started (poll resolution ~0.2-1 s)")
EOF
