#!/usr/bin/env bash
# TLS against plaintext on the same machine, in the same run: a release
# standalone node serving plaintext, then one serving SSL:// (certificates
# from scripts/gen-certs.sh, no client certificate asked), each measured with
# producer-perf-test (acks=1, 1 KiB records, 1 partition) and
# consumer-perf-test, alternating ROUNDS times. Prints each run and the ratio
# of TLS to plaintext (the issue's goal: TLS costs under 20%).
# Usage: scripts/bench-tls.sh [NUM_RECORDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-500000}"; ROUNDS="${2:-2}"
S="${SLUICE_BIN:-target/release/sluice}"
[ -n "${SLUICE_BIN:-}" ] || cargo build --release -p sluice-cli >/dev/null
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
scripts/gen-certs.sh --dir "$WORK/certs" node >/dev/null
cat >"$WORK/tls.yaml" <<EOT
broker:
  ssl.certificate.location: $WORK/certs/node.pem
  ssl.key.location: $WORK/certs/node.key
  ssl.ca.location: $WORK/certs/ca.pem
EOT
printf 'security.protocol=SSL\nssl.ca.location=%s\n' "$WORK/certs/ca.pem" >"$WORK/client.properties"
: >"$WORK/empty.properties"

run() { # mode (plaintext|tls): one node, one produce and one consume run
  local mode="$1" port listen props cfg=()
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  if [ "$mode" = tls ]; then
    listen="SSL://127.0.0.1:$port"; props="$WORK/client.properties"; cfg=(--config "$WORK/tls.yaml")
  else
    listen="127.0.0.1:$port"; props="$WORK/empty.properties"
  fi
  rm -rf "$WORK/data"
  "$S" standalone --data-dir "$WORK/data" --listen "$listen" --no-console "${cfg[@]}" >"$WORK/$mode.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    "$S" topics --bootstrap-server "127.0.0.1:$port" --command-config "$props" --list >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$S" topics --bootstrap-server "127.0.0.1:$port" --command-config "$props" --create --topic bench \
    --partitions 1 --replication-factor 1 >/dev/null
  local produced consumed
  produced="$("$S" producer-perf-test --topic bench --num-records "$N" --record-size 1024 --throughput -1 \
    --producer.config "$props" --producer-props bootstrap.servers="127.0.0.1:$port" acks=1 | tail -1 \
    | sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')"
  consumed="$("$S" consumer-perf-test --bootstrap-server "127.0.0.1:$port" --consumer.config "$props" \
    --topic bench --messages "$N" | sed -n 2p | awk -F', ' '{print $4}')"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  echo "$mode produce_mib_s=$produced consume_mib_s=$consumed" | tee -a "$WORK/results"
}

for _ in $(seq 1 "$ROUNDS"); do run plaintext; run tls; done
awk '
  { split($2, p, "="); split($3, c, "="); prod[$1] += p[2]; cons[$1] += c[2]; n[$1]++ }
  END {
    printf "mean over %d rounds: plaintext produce %.0f consume %.0f MiB/s; tls produce %.0f consume %.0f MiB/s\n",
      n["tls"], prod["plaintext"]/n["plaintext"], cons["plaintext"]/n["plaintext"], prod["tls"]/n["tls"], cons["tls"]/n["tls"]
    printf "TLS / plaintext: produce %.2f, consume %.2f (goal: >= 0.80)\n",
      prod["tls"]/prod["plaintext"], cons["tls"]/cons["plaintext"]
  }' "$WORK/results"
