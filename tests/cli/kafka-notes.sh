#!/usr/bin/env bash
# Our users' Kafka notes (issue 12, "Our users' commands, verbatim"): every
# command of the notes' CLI section, run against a standalone node with the
# real `sluice` binary. Each line below is copied from the notes; the only
# changes are `bin/kafka-X.sh` -> `sluice X` and localhost:9092 -> the node's
# address. What Sluice cannot do (ZooKeeper, kafka-server-start.sh) must fail
# with a message that says what to type instead, and what it says must work.
# The notes' own typos (--from-begining, bootstrap.services) are kept too.
#
#   tests/cli/kafka-notes.sh
#
# Env: SLUICE_BIN (default target/debug/sluice, built with
# `cargo build -p sluice-cli` when missing), NOTES_PERF_RECORDS (default
# 1000000, the notes' --num-records; about 1 GB of disk for a few seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${SLUICE_BIN:-target/debug/sluice}"
PERF_RECORDS="${NOTES_PERF_RECORDS:-1000000}"
if [ ! -x "$BIN" ]; then
  [ -z "${SLUICE_BIN:-}" ] || { echo "kafka-notes: no binary at $BIN" >&2; exit 1; }
  cargo build -p sluice-cli
fi
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
NODE_PID=""
CONSUMER_PID=""
PASSED=0

cleanup() {
  if [ -n "$CONSUMER_PID" ]; then kill "$CONSUMER_PID" 2>/dev/null || true; wait "$CONSUMER_PID" 2>/dev/null || true; fi
  if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "kafka-notes FAILED: $*" >&2
  for f in out err; do
    [ -s "$WORK/$f" ] && { echo "--- last command's std$f" >&2; tail -20 "$WORK/$f" >&2; }
  done
  echo "--- node log" >&2; tail -30 "$WORK/node.log" >&2 || true
  exit 1
}
ok() { PASSED=$((PASSED + 1)); echo "ok $PASSED - $*"; }

start_node() {
  "$BIN" standalone --data-dir "$WORK/data" --listen "$ADDR" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 100); do
    if "$BIN" topics --bootstrap-server "$ADDR" --list >/dev/null 2>&1; then return 0; fi
    kill -0 "$NODE_PID" 2>/dev/null || fail "node exited at start"
    sleep 0.2
  done
  fail "node did not answer on $ADDR"
}

# The words of a notes command line, as `sluice` arguments: `bin/kafka-X.sh`
# -> `X`, localhost:9092 -> the node. (No notes line quotes anything.)
ARGS=()
to_sluice() {
  local line="${1//localhost:9092/$ADDR}"
  read -ra ARGS <<<"$line"
  local tool="${ARGS[0]#bin/kafka-}"
  ARGS[0]="${tool%.sh}"
}
# Runs a notes line (stdin from the caller); stdout and stderr in $WORK/out,
# $WORK/err; the exit code in RC.
RC=0
notes() {
  to_sluice "$1"
  RC=0
  "$BIN" "${ARGS[@]}" >"$WORK/out" 2>"$WORK/err" || RC=$?
}
# Runs the command a refusal suggested (`  sluice ...` in $WORK/err), with
# localhost:9092 -> the node.
suggested() {
  local line
  line="$(sed -n 's/^  sluice //p' "$WORK/err" | head -1)"
  [ -n "$line" ] || fail "no suggested command in: $(cat "$WORK/err")"
  notes "$line"
}
expect_refused() { # what, then fixed strings stderr must contain
  local what="$1"; shift
  [ "$RC" -ne 0 ] || fail "$what: must fail, exited 0"
  for s in "$@"; do grep -qF -- "$s" "$WORK/err" || fail "$what: stderr lacks \"$s\""; done
  ok "$what: refused with \"$1\""
}
expect_ok() { [ "$RC" -eq 0 ] || fail "$1: exit code $RC"; }

start_node

# --- 启动 (start): kafka-server-start.sh has no Sluice counterpart; the message names `sluice standalone`.
notes 'bin/kafka-server-start.sh -daemon config/server.properties'
expect_refused "kafka-server-start.sh" "sluice standalone" "sluice-broker --config"

# --- 创建topic (create a topic): ZooKeeper refused, and the command it suggests creates the topic.
notes 'bin/kafka-topics.sh --create --zookeeper localhost:2181 --replication-factor 1 --partitions 1 --topic topic1'
expect_refused "topics --create --zookeeper" "Sluice has no ZooKeeper; use --bootstrap-server <broker>" \
  "sluice topics --create --bootstrap-server localhost:9092 --replication-factor 1 --partitions 1 --topic topic1"
suggested
expect_ok "topics --create --bootstrap-server (as suggested)"
grep -qx "Created topic topic1." "$WORK/out" || fail "create: $(cat "$WORK/out")"
ok "topics --create --bootstrap-server (as suggested): Created topic topic1."

# --- 启动生产者 (console producer) with Kafka's older --broker-list: 12 lines, as the notes' topic1 row.
seq -f 'message %g' 1 12 >"$WORK/sent"
notes 'bin/kafka-console-producer.sh --broker-list localhost:9092 --topic topic1' <"$WORK/sent"
expect_ok "console-producer --broker-list"
ok "console-producer --broker-list: 12 records"

# --- 启动消费者 (console consumer): first verbatim, with the notes' typo.
notes 'bin/kafka-console-consumer.sh --bootstrap-server localhost:9092 --consumer-property group.id=group1 --topic topic1 --from-begining'
expect_refused "console-consumer --from-begining (the notes' typo)" "a similar argument exists: '--from-beginning'"

# Spelled right, it runs until Ctrl-C as a member of group1.
to_sluice 'bin/kafka-console-consumer.sh --bootstrap-server localhost:9092 --consumer-property group.id=group1 --topic topic1 --from-beginning'
: >"$WORK/consumed" # exists before the background job opens it
"$BIN" "${ARGS[@]}" >"$WORK/consumed" 2>"$WORK/consumer.err" &
CONSUMER_PID=$!
for _ in $(seq 1 150); do
  [ "$(wc -l <"$WORK/consumed")" -ge 12 ] && break
  kill -0 "$CONSUMER_PID" 2>/dev/null || fail "console consumer exited: $(cat "$WORK/consumer.err")"
  sleep 0.2
done
diff -q "$WORK/sent" "$WORK/consumed" >/dev/null || fail "consumed differs from produced: $(head "$WORK/consumed")"
ok "console-consumer --consumer-property group.id=group1 --from-beginning: the 12 records, in order"

# --- 查看组名 (list groups), while the consumer runs.
notes 'bin/kafka-consumer-groups.sh --bootstrap-server localhost:9092 --list'
expect_ok "consumer-groups --list"
grep -qx group1 "$WORK/out" || fail "--list lacks group1: $(cat "$WORK/out")"
ok "consumer-groups --list: group1"

# --- 查看消费者的消费偏移量 (describe the group): an active member owns topic1-0.
notes 'bin/kafka-consumer-groups.sh --bootstrap-server localhost:9092 --describe --group group1'
expect_ok "consumer-groups --describe (active)"
awk '$1=="group1" && $2=="topic1" && $3==0 && $5==12 && $7!="-" && $8 ~ /^\// {found=1} END {exit !found}' "$WORK/out" \
  || fail "--describe while consuming: $(cat "$WORK/out")"
ok "consumer-groups --describe --group group1 (consumer running): topic1 0 owned by a member"

# Ctrl-C: the consumer commits and leaves.
kill -INT "$CONSUMER_PID"
wait "$CONSUMER_PID" || fail "console consumer exit code $? after Ctrl-C"
CONSUMER_PID=""
grep -q "Processed a total of 12 messages" "$WORK/consumer.err" || fail "consumer stderr: $(cat "$WORK/consumer.err")"
notes 'bin/kafka-consumer-groups.sh --bootstrap-server localhost:9092 --describe --group group1'
expect_ok "consumer-groups --describe"
grep -qE '^GROUP +TOPIC +PARTITION +CURRENT-OFFSET +LOG-END-OFFSET +LAG +CONSUMER-ID +HOST +CLIENT-ID$' "$WORK/out" \
  || fail "--describe header: $(cat "$WORK/out")"
grep -qE '^group1 +topic1 +0 +12 +12 +0 +- +- +-$' "$WORK/out" || fail "--describe row: $(cat "$WORK/out")"
ok "consumer-groups --describe --group group1: CURRENT-OFFSET 12, LOG-END-OFFSET 12, LAG 0"

# --- 查看topic信息 (describe the topic): ZooKeeper refused; the suggested command prints the layout.
notes 'bin/kafka-topics.sh --describe --zookeeper localhost:2181 --topic topic1'
expect_refused "topics --describe --zookeeper" "Sluice has no ZooKeeper; use --bootstrap-server <broker>" \
  "sluice topics --describe --bootstrap-server localhost:9092 --topic topic1"
suggested
expect_ok "topics --describe --bootstrap-server (as suggested)"
grep -qP '^Topic: topic1\t.*PartitionCount: 1\tReplicationFactor: 1\tConfigs:' "$WORK/out" \
  || fail "describe summary: $(cat "$WORK/out")"
grep -qP '^\tTopic: topic1\tPartition: 0\tLeader: \d+\tReplicas: \d+\tIsr: \d+$' "$WORK/out" \
  || fail "describe partition line: $(cat "$WORK/out")"
ok "topics --describe (as suggested): Partition, Leader, Replicas, Isr"

# --- kafka性能测试脚本 (producer perf test): the notes' line has -record-size
# (one dash, which Kafka's option parsers take) and bootstrap.services (a typo).
PERF='bin/kafka-producer-perf-test.sh --topic test --num-records 1000000 -record-size 1024 --throughput -1 --producer-props bootstrap.services=localhost:9092 acks=1'
PERF="${PERF/--num-records 1000000/--num-records $PERF_RECORDS}"
notes "$PERF"
expect_refused "producer-perf-test bootstrap.services=" \
  'unknown property; did you mean "bootstrap.servers"?'
# With the typo fixed: topic "test" does not exist (Kafka would create it);
# the message says how to create it, and then the run succeeds.
notes "${PERF/bootstrap.services/bootstrap.servers}"
expect_refused "producer-perf-test --topic test (no such topic)" "UNKNOWN_TOPIC_OR_PARTITION" \
  "Create it first: sluice topics --bootstrap-server $ADDR --create --topic test"
"$BIN" topics --bootstrap-server "$ADDR" --create --topic test >/dev/null || fail "create test"
notes "${PERF/bootstrap.services/bootstrap.servers}"
expect_ok "producer-perf-test"
grep -qE "^$PERF_RECORDS records sent, [0-9.]+ records/sec \([0-9.]+ MB/sec\), [0-9.]+ ms avg latency, [0-9.]+ ms max latency, [0-9]+ ms 50th, [0-9]+ ms 95th, [0-9]+ ms 99th, [0-9]+ ms 99.9th\.$" \
  "$WORK/out" || fail "perf summary: $(cat "$WORK/out")"
ok "producer-perf-test -record-size 1024 --producer-props bootstrap.servers=... acks=1: $(tail -1 "$WORK/out" | cut -d, -f1-3)"

# --- kafka 集群搭建 (cluster setup): the notes start one kafka-server-start.sh
# per server-N.properties; Sluice's message names what runs a cluster instead.
notes 'bin/kafka-server-start.sh -daemon config/server-1.properties'
expect_refused "kafka-server-start.sh config/server-1.properties" "scripts/local-cluster.sh up --brokers 3"

# --- Beyond the notes' lines: the same tools under the script names, and a
# consumer group joined through group.id that SIGTERM (not only Ctrl-C) commits.
"$BIN" bin/kafka-topics.sh -bootstrap-server "$ADDR" -list >"$WORK/out" 2>"$WORK/err" || fail "kafka-topics.sh -list"
grep -qx topic1 "$WORK/out" || fail "kafka-topics.sh -list: $(cat "$WORK/out")"
ok "sluice bin/kafka-topics.sh -bootstrap-server ... -list"
seq -f 'late %g' 1 3 | "$BIN" console-producer --bootstrap-server "$ADDR" --topic topic1 || fail "produce 3 more"
: >"$WORK/consumed"
"$BIN" console-consumer --bootstrap-server "$ADDR" --consumer-property group.id=group1 --topic topic1 \
  >"$WORK/consumed" 2>"$WORK/consumer.err" &
CONSUMER_PID=$!
for _ in $(seq 1 150); do
  [ "$(wc -l <"$WORK/consumed")" -ge 3 ] && break
  kill -0 "$CONSUMER_PID" 2>/dev/null || fail "console consumer exited: $(cat "$WORK/consumer.err")"
  sleep 0.2
done
[ "$(cat "$WORK/consumed")" = "$(seq -f 'late %g' 1 3)" ] || fail "group1 resumed wrongly: $(cat "$WORK/consumed")"
kill -TERM "$CONSUMER_PID"
wait "$CONSUMER_PID" || fail "console consumer exit code $? after SIGTERM"
CONSUMER_PID=""
"$BIN" consumer-groups --bootstrap-server "$ADDR" --describe --group group1 >"$WORK/out"
grep -qE '^group1 +topic1 +0 +15 +15 +0 ' "$WORK/out" || fail "after SIGTERM: $(cat "$WORK/out")"
ok "console-consumer group.id=group1 resumes at the committed offset; SIGTERM commits (15/15/0)"

echo "kafka-notes: $PASSED passed, 0 failed"
