#!/usr/bin/env bash
# The README's five-minute tour as a test, with the real `sluice` binary:
# start a standalone node, create a topic, produce 10,000 lines, consume them
# back in order per partition, restart the node and find them all again, and
# check that bad input fails with stable error codes.
#
#   tests/cli/e2e-standalone.sh
#
# Env: SLUICE_BIN (default target/debug/sluice, built with
# `cargo build -p sluice-cli` when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${SLUICE_BIN:-target/debug/sluice}"
if [ ! -x "$BIN" ]; then
  [ -z "${SLUICE_BIN:-}" ] || { echo "e2e: no binary at $BIN" >&2; exit 1; }
  cargo build -p sluice-cli
fi
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
CONSOLE="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
NODE_PID=""

cleanup() {
  if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "e2e FAILED: $*" >&2; echo "--- node log" >&2; tail -50 "$WORK/node.log" >&2 || true; exit 1; }

start_node() {
  "$BIN" standalone --data-dir "$WORK/data" --listen "$ADDR" --console-listen "$CONSOLE" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 100); do
    if "$BIN" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1; then return 0; fi
    kill -0 "$NODE_PID" 2>/dev/null || fail "node exited at start"
    sleep 0.2
  done
  fail "node did not answer on $ADDR"
}
stop_node() {
  kill -TERM "$NODE_PID"
  wait "$NODE_PID" || fail "node did not exit cleanly on SIGTERM"
  NODE_PID=""
}

check_consumed() {
  local out="$1"
  [ "$(wc -l <"$out")" -eq 10000 ] || fail "expected 10000 lines, got $(wc -l <"$out")"
  # Every line once.
  cut -f2 "$out" | sort -n | diff -q - <(seq 1 10000) >/dev/null || fail "consumed lines differ from produced"
  # In order within each partition.
  for p in 0 1 2; do
    awk -F'\t' -v p="Partition:$p" '$1==p {print $2}' "$out" >"$WORK/p$p"
    sort -n "$WORK/p$p" | diff -q - "$WORK/p$p" >/dev/null || fail "partition $p out of order"
  done
}

start_node
"$BIN" topics --bootstrap-server "$ADDR" --create --topic demo --partitions 3 --replication-factor 1 | grep -q "Created topic demo" \
  || fail "topic creation"
seq 1 10000 | "$BIN" console-producer --bootstrap-server "$ADDR" --topic demo || fail "console-producer"
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic demo --from-beginning --max-messages 10000 \
  --timeout-ms 10000 --property print.partition=true >"$WORK/out1" 2>/dev/null || fail "console-consumer"
check_consumed "$WORK/out1"
"$BIN" topics --bootstrap-server "$ADDR" --describe --topic demo | grep -q "Partition: 2" || fail "describe"

# Bad input: stable codes, non-zero exits, nothing created.
if "$BIN" topics --bootstrap-server "$ADDR" --create --topic rf2 --partitions 1 --replication-factor 2 2>"$WORK/err"; then
  fail "RF 2 on one broker must fail"
fi
grep -q "INVALID_REPLICATION_FACTOR" "$WORK/err" || fail "RF error code: $(cat "$WORK/err")"
if "$BIN" topics --bootstrap-server "$ADDR" --list | grep -qx rf2; then fail "rf2 was created"; fi
if echo hello | "$BIN" console-producer --bootstrap-server "$ADDR" --topic no-such-topic 2>"$WORK/err"; then
  fail "producing to an unknown topic must fail"
fi
grep -q "UNKNOWN_TOPIC_OR_PARTITION" "$WORK/err" || fail "unknown topic code: $(cat "$WORK/err")"
head -c 2000000 /dev/zero | tr '\0' 'x' | "$BIN" console-producer --bootstrap-server "$ADDR" --topic demo \
  --producer-property max.request.size=4000000 2>"$WORK/err" && fail "a 2 MB record must fail"
grep -q "MESSAGE_TOO_LARGE" "$WORK/err" || fail "too-large code: $(cat "$WORK/err")"

# kafka-consumer-groups --reset-offsets: a group reads everything, then is
# moved back by --shift-by, to a time and by a duration.
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic demo --group tour --from-beginning \
  --max-messages 10000 --timeout-ms 30000 >/dev/null 2>"$WORK/group.err" || fail "group console-consumer: $(cat "$WORK/group.err")"
# All of it (an idle timeout on a loaded machine would leave a partition
# uncommitted, which the lag sum below cannot see).
grep -q "Processed a total of 10000 messages" "$WORK/group.err" \
  || fail "group console-consumer read too little: $(cat "$WORK/group.err")"
lag() { "$BIN" consumer-groups --bootstrap-server "$ADDR" --describe --group tour \
  | awk '$1=="tour" {s+=$6} END {print s+0}'; }
[ "$(lag)" -eq 0 ] || fail "group lag after reading everything: $(lag)"
"$BIN" consumer-groups --bootstrap-server "$ADDR" --describe --group tour --state \
  | awk '$1=="tour" && $4=="Empty" && $5==0 {ok=1} END {exit !ok}' || fail "describe --state"
"$BIN" consumer-groups --bootstrap-server "$ADDR" --describe --group tour --members \
  | grep -q "has no active members" || fail "describe --members"
reset() { "$BIN" consumer-groups --bootstrap-server "$ADDR" --reset-offsets --group tour --topic demo "$@" \
  >"$WORK/reset" 2>&1 || fail "reset-offsets $*: $(cat "$WORK/reset")"; }
reset --shift-by -10
[ "$(lag)" -eq 0 ] || fail "a reset without --execute changed offsets"
reset --shift-by -10 --execute
[ "$(lag)" -eq 30 ] || fail "lag after --shift-by -10 on 3 partitions: $(lag)"
reset --to-datetime 2100-01-01T00:00:00.000 --execute
[ "$(lag)" -eq 0 ] || fail "lag after --to-datetime in the future: $(lag)"
reset --by-duration PT1H --execute
[ "$(lag)" -eq 10000 ] || fail "lag after --by-duration PT1H: $(lag)"
reset --to-datetime 2000-01-01T00:00:00Z --execute
[ "$(lag)" -eq 10000 ] || fail "lag after --to-datetime 2000: $(lag)"
if "$BIN" consumer-groups --bootstrap-server "$ADDR" --reset-offsets --group tour --topic demo \
  --to-datetime yesterday 2>"$WORK/err"; then fail "a bad --to-datetime must fail"; fi
grep -q "to-datetime" "$WORK/err" || fail "bad datetime message: $(cat "$WORK/err")"

# Delayed delivery (issue 14): an order handled after its delay, not before.
"$BIN" topics --bootstrap-server "$ADDR" --create --topic orders --partitions 1 --replication-factor 1 >/dev/null \
  || fail "create orders"
echo "order-42 unpaid" | "$BIN" console-producer --bootstrap-server "$ADDR" --topic orders \
  --property deliver.after.ms=3000 || fail "delayed console-producer"
"$BIN" delayed --bootstrap-server "$ADDR" --describe --topic orders | awk '$1=="orders" && $3==1 {ok=1} END {exit !ok}' \
  || fail "delayed --describe: $("$BIN" delayed --bootstrap-server "$ADDR" --describe 2>&1)"
early="$("$BIN" console-consumer --bootstrap-server "$ADDR" --topic orders --from-beginning --timeout-ms 1000 2>/dev/null || true)"
[ -z "$early" ] || fail "a delayed record was visible before its delay: $early"
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic orders --from-beginning --max-messages 1 \
  --timeout-ms 15000 --property print.headers=true >"$WORK/delayed" 2>/dev/null || fail "the delayed record never came"
grep -q "order-42 unpaid" "$WORK/delayed" && grep -q "sluice.delay.due.ms" "$WORK/delayed" \
  || fail "delayed record: $(cat "$WORK/delayed")"
if echo x | "$BIN" console-producer --bootstrap-server "$ADDR" --topic orders \
  --property deliver.after.ms=10 2>"$WORK/err"; then fail "a 10 ms delay must be refused"; fi
grep -q "INVALID_RECORD" "$WORK/err" || fail "bad delay code: $(cat "$WORK/err")"

# Dead letters (issue 14): a handler that fails on bad payments; the failure
# is retried once through payments.retry, then lands in payments.dlq with its
# reason; a redrive brings it back to payments, once.
"$BIN" topics --bootstrap-server "$ADDR" --create --topic payments --partitions 1 --replication-factor 1 >/dev/null \
  || fail "create payments"
printf 'pay-1 ok\npay-2 bad\npay-3 ok\n' | "$BIN" console-producer --bootstrap-server "$ADDR" --topic payments \
  || fail "produce payments"
HANDLER='if grep -q bad; then echo "card declined" >&2; exit 1; fi'
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic payments --group billing --from-beginning \
  --consumer-property max.delivery.attempts=2 --process "$HANDLER" --timeout-ms 10000 \
  >"$WORK/handled" 2>"$WORK/failures" || fail "console-consumer --process: $(cat "$WORK/failures")"
[ "$(sort "$WORK/handled" | tr '\n' ' ')" = "pay-1 ok pay-3 ok " ] || fail "handled: $(cat "$WORK/handled")"
grep -q "payments-0@1 failed (attempt 1): card declined; retry in 1s via payments.retry-0 (delay id 0)" "$WORK/failures" \
  && grep -q "failed (attempt 2): card declined; moved to payments.dlq-0@0" "$WORK/failures" \
  || fail "failures: $(cat "$WORK/failures")"
"$BIN" dlq --bootstrap-server "$ADDR" --topic payments.dlq --list --print-value >"$WORK/dlq" 2>/dev/null \
  || fail "dlq --list"
grep -q "payments.dlq-0@0	from payments-0@1	attempts=2	.*	pending	error=\"card declined\"	key=null	value=pay-2 bad" \
  "$WORK/dlq" || fail "dlq --list: $(cat "$WORK/dlq")"
"$BIN" dlq --bootstrap-server "$ADDR" --topic payments.dlq --redrive | grep -q "Redrove 1 records from payments.dlq to payments" \
  || fail "dlq --redrive"
"$BIN" dlq --bootstrap-server "$ADDR" --topic payments.dlq --redrive | grep -q "Nothing to redrive" \
  || fail "a second --redrive must find nothing"
"$BIN" dlq --bootstrap-server "$ADDR" --topic payments.dlq --list | grep -q "	redriven	" || fail "dlq --list after redrive"
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic payments --group billing --process 'cat >/dev/null' --max-messages 1 \
  --timeout-ms 15000 >"$WORK/again" 2>/dev/null || fail "consume the redriven payment"
[ "$(cat "$WORK/again")" = "pay-2 bad" ] || fail "redriven: $(cat "$WORK/again")"

stop_node
for f in 00000000000000000000.log 00000000000000000000.index 00000000000000000000.timeindex leader-epoch-checkpoint; do
  [ -f "$WORK/data/logs/demo-0/$f" ] || fail "missing $f in demo-0"
done

start_node
# The node's web console shows it and its topics.
python3 - "$CONSOLE" <<'PY' || fail "the node's web console"
import sys, time, urllib.request
base = f"http://{sys.argv[1]}"
deadline = time.time() + 30
while True:
    try:
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        topics = urllib.request.urlopen(base + "/topics", timeout=5).read().decode()
        if "<b>1</b> brokers alive" in page and 'data-name="demo"' in topics:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("console: no page showing the node and topic demo")
    time.sleep(0.5)
PY
"$BIN" console-consumer --bootstrap-server "$ADDR" --topic demo --from-beginning --max-messages 10000 \
  --timeout-ms 10000 --property print.partition=true >"$WORK/out2" 2>/dev/null || fail "console-consumer after restart"
check_consumed "$WORK/out2"
stop_node
# Redirected to a file, the node logs plain text (no ANSI colour codes).
grep -q "registered" "$WORK/node.log" || fail "the node log is empty"
if grep -q $'\x1b\[' "$WORK/node.log"; then fail "ANSI escape codes in a redirected log"; fi
echo "e2e: 5 passed, 0 failed"
