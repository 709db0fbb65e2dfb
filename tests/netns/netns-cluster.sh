#!/usr/bin/env bash
# A Sluice cluster across real network interfaces: etcd, two controllers, one
# coordinator, three brokers and the clients each in a Linux network namespace
# of its own, with its own IP on one bridge (10.231.0.0/24). The bridge lives in
# a namespace of its own too (sl-br), so the root namespace is not touched.
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2, nftables and etcd.
#
#   tests/netns/netns-cluster.sh up [--bin-dir DIR] [--dir DIR]
#   tests/netns/netns-cluster.sh down [--dir DIR]            (idempotent; removes namespaces)
#   tests/netns/netns-cluster.sh partition bN [--dir DIR]    (cut broker N off from all but the client)
#   tests/netns/netns-cluster.sh heal bN [--dir DIR]
#   tests/netns/netns-cluster.sh status [--dir DIR]
#   tests/netns/netns-cluster.sh exec-client [--dir DIR] CMD...  (runs CMD in sl-client, bin-dir on PATH)
#   tests/netns/netns-cluster.sh test [--bin-dir DIR] [--dir DIR] [--keep]
#
# --bin-dir holds sluice, sluice-broker, sluice-controller, sluice-coordinator
# (default target/debug, built with cargo when one is missing); --dir (default
# /tmp/sluice-netns, or $SLUICE_NETNS_DIR) holds config/, logs/<name>.log,
# data/, pids/, cmd/ and, after `test`, work/ (what was sent and read back).
# `up` always starts a fresh cluster (it empties those directories).
#
# Namespaces and addresses:
#   sl-etcd 10.231.0.2 (2379)   sl-ctl1 10.231.0.11, sl-ctl2 10.231.0.12 (9093)
#   sl-coord 10.231.0.21 (9094) sl-b1..sl-b3 10.231.0.31..33 (9092)
#   sl-client 10.231.0.100      sl-br: the bridge br0 and the peer end of every veth
#
# `partition bN` loads an nftables table inside sl-bN that drops every packet on
# its interface except to and from the client's address: the broker loses etcd
# (so its lease expires and the controller moves leadership) and its peers,
# while a client can still write to it with acks=1 -- the divergent tail that it
# must truncate when `heal bN` lifts the rule and it rejoins as a follower.
#
# `test` runs that scenario end to end (about 25 s; NETNS_PARTITION_S, default
# 15, is how long the partition lasts at least) and prints one summary line,
# then PASS (exit 0) or FAIL with the reasons (exit 1); it always brings the
# cluster down unless --keep. Where namespaces cannot be created it prints
# "SKIP: cannot create network namespaces: <reason>" and exits 0.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" # for the usage text, before the cd
cd "$(dirname "$0")/../.."
repo="$PWD"

NET=10.231.0
ETCD_IP=$NET.2
CLIENT_IP=$NET.100
PREFIX=24
NODES="etcd ctl1 ctl2 coord b1 b2 b3 client"
BRNS=sl-br
PART_TABLE=sluice_partition

ip_of() {
  case "$1" in
    etcd) echo $ETCD_IP ;;
    ctl1) echo $NET.11 ;;
    ctl2) echo $NET.12 ;;
    coord) echo $NET.21 ;;
    b1) echo $NET.31 ;;
    b2) echo $NET.32 ;;
    b3) echo $NET.33 ;;
    client) echo $CLIENT_IP ;;
    *) echo "unknown node $1" >&2; return 2 ;;
  esac
}
broker_addr() { echo "$(ip_of "b$1"):9092"; }
all_brokers() { echo "$(broker_addr 1),$(broker_addr 2),$(broker_addr 3)"; }

cmd="${1:-}"; shift || true
dir="${SLUICE_NETNS_DIR:-/tmp/sluice-netns}"; bin_dir=""; keep=0; args=()
while [ $# -gt 0 ]; do
  case "$cmd:$1" in
    exec-client:--dir) dir="$2"; shift 2 ;;
    exec-client:--bin-dir) bin_dir="$2"; shift 2 ;;
    exec-client:*) args+=("$@"); break ;;
    *:--dir) dir="$2"; shift 2 ;;
    *:--bin-dir) bin_dir="$2"; shift 2 ;;
    test:--keep) keep=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ -z "$bin_dir" ] && [ -f "$dir/bin-dir" ]; then bin_dir="$(cat "$dir/bin-dir")"; fi

log() { echo "[netns $(date +%H:%M:%S)] $*" >&2; }
in_test=0
die() {
  if [ "$in_test" -eq 1 ]; then echo "FAIL: $*"; else echo "netns-cluster: $*" >&2; fi
  exit 1
}

need_root_tools() { # installs what a fresh Debian machine lacks
  local pkgs=()
  command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
  command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
  command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    local sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    log "installing ${pkgs[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}

resolve_bins() {
  if [ -z "$bin_dir" ]; then
    bin_dir="$repo/target/debug"
    local b
    for b in sluice sluice-broker sluice-controller sluice-coordinator; do
      if [ ! -x "$bin_dir/$b" ]; then
        cargo build -p sluice-broker -p sluice-controller -p sluice-coordinator -p sluice-cli
        break
      fi
    done
  fi
  bin_dir="$(cd "$bin_dir" && pwd)"
  for b in sluice sluice-broker sluice-controller sluice-coordinator; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
  done
  echo "$bin_dir" >"$dir/bin-dir"
}

# Runs a command inside node NAME's namespace.
in_ns() { local n="$1"; shift; ip netns exec "sl-$n" "$@"; }

# The sluice CLI from the client namespace (warnings only, no colours).
sl() { NO_COLOR=1 RUST_LOG="${RUST_LOG_CLI:-warn}" ip netns exec sl-client "$bin_dir/sluice" "$@"; }

create_network() {
  ip netns add "$BRNS"
  ip -n "$BRNS" link set lo up
  ip -n "$BRNS" link add br0 type bridge
  ip -n "$BRNS" link set br0 up
  local n
  for n in $NODES; do
    ip netns add "sl-$n"
    ip -n "sl-$n" link set lo up
    # The pair is created inside sl-br, its other end moved straight into the node.
    ip -n "$BRNS" link add "v-$n" type veth peer name eth0 netns "sl-$n"
    ip -n "$BRNS" link set "v-$n" master br0
    ip -n "$BRNS" link set "v-$n" up
    ip -n "sl-$n" addr add "$(ip_of "$n")/$PREFIX" dev eth0
    ip -n "sl-$n" link set eth0 up
  done
}

start_proc() { # name node cmd...: runs cmd in the node's namespace in the background
  local name="$1" node="$2"; shift 2
  printf '%q ' "$@" >"$dir/cmd/$name"; echo >>"$dir/cmd/$name"
  NO_COLOR=1 nohup ip netns exec "sl-$node" "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}

wait_until() { # timeout_s description cmd...: polls cmd every 0.2 s
  local t="$1" what="$2"; shift 2
  local end=$(( $(date +%s) + t ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out after ${t}s waiting for $what"
  return 1
}

etcd_healthy() {
  in_ns client python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://$ETCD_IP:2379/health"
}

cluster_ready() {
  local out
  out="$(sl cluster --bootstrap-server "$(all_brokers)" --describe)" || return 1
  [ "$(grep -c 'Status: alive' <<<"$out")" -ge 3 ] && ! grep -q 'Controller: none' <<<"$out" \
    && grep -q 'Coordinators:' <<<"$out"
}

do_up() {
  if ! ip netns add "sl-probe-$$" 2>"$dir/.probe-err"; then
    die "cannot create network namespaces: $(tr '\n' ' ' <"$dir/.probe-err")"
  fi
  ip netns del "sl-probe-$$"
  need_root_tools
  resolve_bins
  if ip netns list | grep -qw "$BRNS"; then
    die "namespace $BRNS exists: run '$0 down' first"
  fi
  rm -rf "$dir"/{pids,logs,data,config,cmd}
  mkdir -p "$dir"/{pids,logs,data,config,cmd}
  create_network
  log "network: bridge br0 in $BRNS, nodes $(for n in $NODES; do printf '%s=%s ' "sl-$n" "$(ip_of "$n")"; done)"

  local cluster=netns endpoints="http://$ETCD_IP:2379"
  start_proc etcd etcd etcd --name sl-etcd --data-dir "$dir/data/etcd" \
    --listen-client-urls "http://$ETCD_IP:2379" --advertise-client-urls "http://$ETCD_IP:2379" \
    --listen-peer-urls "http://$ETCD_IP:2380" --initial-advertise-peer-urls "http://$ETCD_IP:2380" \
    --initial-cluster "sl-etcd=http://$ETCD_IP:2380" --log-level warn
  wait_until 30 "etcd at $ETCD_IP:2379" etcd_healthy || die "etcd did not start; see $dir/logs/etcd.log"

  local i ip
  for i in 1 2; do
    ip="$(ip_of "ctl$i")"
    cat >"$dir/config/controller-$i.yaml" <<EOT
# See deploy/config/controller.yaml for every key.
controller.id: $((1000 + i))
listeners: $ip:9093
advertised.listeners: $ip:9093
etcd.endpoints: $endpoints
cluster.name: $cluster
controller.lease.ms: 3000
EOT
    start_proc "controller-$i" "ctl$i" "$bin_dir/sluice-controller" --config "$dir/config/controller-$i.yaml"
  done
  ip="$(ip_of coord)"
  cat >"$dir/config/coordinator-1.yaml" <<EOT
# See deploy/config/coordinator.yaml for every key.
coordinator.id: 1
listeners: $ip:9094
advertised.listeners: $ip:9094
etcd.endpoints: $endpoints
cluster.name: $cluster
coordinator.lease.ms: 3000
EOT
  start_proc coordinator-1 coord "$bin_dir/sluice-coordinator" --config "$dir/config/coordinator-1.yaml"
  for i in 1 2 3; do
    ip="$(ip_of "b$i")"
    # Bound to every address of the namespace: clients and peers can only find
    # the broker through advertised.listeners.
    cat >"$dir/config/broker-$i.yaml" <<EOT
# See deploy/config/broker.yaml for every key.
broker.id: $i
listeners: PLAINTEXT://0.0.0.0:9092
advertised.listeners: PLAINTEXT://$ip:9092
log.dirs: $dir/data/broker-$i
etcd.endpoints: $endpoints
cluster.name: $cluster
broker.lease.ms: 3000
replica.lag.time.max.ms: 4000
EOT
    start_proc "broker-$i" "b$i" "$bin_dir/sluice-broker" --config "$dir/config/broker-$i.yaml"
  done
  all_brokers >"$dir/bootstrap"
  wait_until 60 "3 live brokers, a controller and a coordinator" cluster_ready \
    || die "cluster did not become ready; see $dir/logs/"
  log "cluster up: bootstrap $(cat "$dir/bootstrap") (from sl-client); files in $dir"
}

ns_pids() { # node...: pids of the processes inside those namespaces
  local n
  for n in "$@"; do
    ip netns list 2>/dev/null | grep -qw "sl-$n" || continue
    ip netns pids "sl-$n" 2>/dev/null || true
  done
}

stop_nodes() { # node...: SIGTERM, up to 5 s to exit, then SIGKILL
  local pids
  pids="$(ns_pids "$@")"
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086 # one pid a word
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    pids="$(ns_pids "$@")"
    [ -n "$pids" ] || return 0
    sleep 0.1
  done
  log "still running after SIGTERM in $*: $(tr '\n' ' ' <<<"$pids"); sending SIGKILL"
  # shellcheck disable=SC2086 # one pid a word
  kill -KILL $pids 2>/dev/null || true
  sleep 0.2
}

do_down() {
  local n f pid
  # Lift partitions first, so the brokers can say goodbye to etcd.
  for n in b1 b2 b3; do
    ip netns list 2>/dev/null | grep -qw "sl-$n" && in_ns "$n" nft delete table inet $PART_TABLE 2>/dev/null || true
  done
  # Clients, then brokers and the coordinator, then the controllers, etcd last.
  stop_nodes client
  stop_nodes b1 b2 b3 coord
  stop_nodes ctl1 ctl2
  stop_nodes etcd
  # A process whose namespace was already removed (pid files of this run).
  for f in "$dir"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    if grep -qs -e "$dir" "/proc/$pid/cmdline"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$dir"/pids/*.pid
  for n in $NODES; do ip netns del "sl-$n" 2>/dev/null || true; done
  ip netns del "$BRNS" 2>/dev/null || true
  log "down: processes stopped, namespaces removed (files kept in $dir)"
}

broker_node() { # bN -> bN, checked
  case "$1" in b1|b2|b3) echo "$1" ;; [123]) echo "b$1" ;; *) die "expected b1, b2 or b3, not '$1'" ;; esac
}

do_partition() {
  local node; node="$(broker_node "${1:?partition needs bN}")"
  in_ns "$node" nft delete table inet $PART_TABLE 2>/dev/null || true
  in_ns "$node" nft -f - <<EOT
table inet $PART_TABLE {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "eth0" ip saddr != $CLIENT_IP drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" ip daddr != $CLIENT_IP drop
  }
}
EOT
  log "partitioned sl-$node ($(ip_of "$node")): only $CLIENT_IP (sl-client) reaches it"
}

do_heal() {
  local node; node="$(broker_node "${1:?heal needs bN}")"
  in_ns "$node" nft delete table inet $PART_TABLE 2>/dev/null || true
  log "healed sl-$node"
}

do_status() {
  local f n pid
  for f in "$dir"/pids/*.pid; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .pid)"; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then echo "$n running (pid $pid)"; else echo "$n dead"; fi
  done
  for n in b1 b2 b3; do
    ip netns list | grep -qw "sl-$n" || continue
    if in_ns "$n" nft list table inet $PART_TABLE >/dev/null 2>&1; then echo "sl-$n partitioned"; fi
  done
  if ip netns list | grep -qw sl-client && [ -n "$bin_dir" ]; then
    sl cluster --bootstrap-server "$(all_brokers)" --describe || true
  fi
}

# ---------------------------------------------------------------- the test --

# "LEADER ISR" of partition 0 of topic t, as seen through the given bootstrap.
describe_t() {
  sl topics --bootstrap-server "$1" --describe --topic t 2>/dev/null \
    | awk -F'\t' '$3 == "Partition: 0" { l=$4; i=$6; sub("Leader: ", "", l); sub("Isr: ", "", i); print l, i }' || true
}
isr_size() { local isr="${1:-}"; [ -z "$isr" ] && { echo 0; return; }; tr ',' '\n' <<<"$isr" | grep -c .; }

leader_is_not() { # bootstrap old: the leader seen through bootstrap is live and differs
  local d; d="$(describe_t "$1")"; local l="${d%% *}"
  [ -n "$l" ] && [ "$l" != none ] && [ "$l" != "$2" ]
}
isr_full() { # bootstrap
  local d; d="$(describe_t "$1")"; local isr="${d#* }"
  [ "$(isr_size "$isr")" -eq 3 ]
}
in_full_isr() { # bootstrap id: an ISR of 3 that includes broker id, seen through bootstrap
  local d; d="$(describe_t "$1")"; local isr="${d#* }"
  [ "$(isr_size "$isr")" -eq 3 ] && tr ',' '\n' <<<"$isr" | grep -qx "$2"
}
topic_ready() { # leader elected and ISR of 3
  local d; d="$(describe_t "$(all_brokers)")"
  [ -n "$d" ] && [ "${d%% *}" != none ] && [ "$(isr_size "${d#* }")" -eq 3 ]
}

partition_log_file() { echo "$dir/data/broker-$1/t-0/00000000000000000000.log"; }
log_size() { stat -c %s "$(partition_log_file "$1")" 2>/dev/null || echo 0; }

do_test() {
  local reason
  if ! reason="$(ip netns add "sl-probe-$$" 2>&1)"; then
    echo "SKIP: cannot create network namespaces: ${reason:-ip netns add failed}"
    exit 0
  fi
  ip netns del "sl-probe-$$"
  if ip netns list | grep -qw "$BRNS"; then
    log "namespaces of an earlier run are still there; removing them"
    do_down
  fi
  in_test=1
  local t0; t0=$(date +%s)
  local N=2000 D=300 M=2000 I=50 HOLD="${NETNS_PARTITION_S:-15}"
  local fails=() notes=()
  if [ "$keep" -eq 0 ]; then trap 'do_down' EXIT; else trap 'log "--keep: cluster left running; $0 down --dir $dir"' EXIT; fi
  trap 'exit 130' INT TERM

  do_up
  local work="$dir/work"; rm -rf "$work"; mkdir -p "$work"

  # 1. The topic.
  sl topics --bootstrap-server "$(all_brokers)" --create --topic t --partitions 1 \
    --replication-factor 3 --config min.insync.replicas=2 || die "topic creation failed"
  wait_until 30 "topic t to have a leader and an ISR of 3" topic_ready || die "topic t never became ready"
  local d; d="$(describe_t "$(all_brokers)")"
  local old="${d%% *}"
  log "topic t: leader $old, ISR ${d#* }"

  # 2. N records with acks=all: all acknowledged.
  seq -f 'all-%06g' 1 "$N" >"$work/phase1.txt"
  if sl console-producer --bootstrap-server "$(all_brokers)" --topic t \
      --producer-property acks=all <"$work/phase1.txt" 2>"$work/phase1.err"; then
    log "phase 1: $N acks=all records acknowledged"
  else
    fails+=("phase 1: acks=all produce failed: $(tail -n 3 "$work/phase1.err" | tr '\n' ' ')")
  fi
  # Let the followers catch up before the cut, so the divergence is only the acks=1 tail.
  wait_until 20 "ISR of 3 after phase 1" isr_full "$(all_brokers)" || true
  local size_before; size_before="$(log_size "$old")"

  # 3. Cut the leader off; write acks=1 to it right away (its own metadata still
  # names it leader, so the client keeps writing there); wait for a new leader.
  local others="" i
  for i in 1 2 3; do [ "$i" = "$old" ] || others="${others:+$others,}$(broker_addr "$i")"; done
  local t_cut; t_cut=$(date +%s%N)
  do_partition "b$old"
  seq -f 'div-%06g' 1 "$D" >"$work/div.txt"
  local div_acked=0
  if sl console-producer --bootstrap-server "$(broker_addr "$old")" --topic t \
      --producer-property acks=1 --producer-property enable.idempotence=false \
      --producer-property delivery.timeout.ms=20000 <"$work/div.txt" 2>"$work/div.err"; then
    div_acked=$D
  else
    div_acked=$(( D - $(grep -c '^Error when sending' "$work/div.err" || true) ))
  fi
  local size_div; size_div="$(log_size "$old")"
  log "phase 2: $div_acked of $D acks=1 records acknowledged by the isolated broker $old (its log: $size_before -> $size_div bytes)"
  # acks=all sent to the isolated broker: it cannot replicate (what it appends
  # is truncated later), so it must not acknowledge. The client times out and
  # refreshes metadata; when it asks a healthy broker it retries on the new
  # leader and is acknowledged there, when it asks the isolated one again (the
  # client asks the lowest address first: old leader b1) it never is. Either is
  # right; whatever is acknowledged must survive. Runs meanwhile. Not
  # idempotent: InitProducerId would wait on the controller the broker cannot reach.
  seq -f 'iso-%06g' 1 "$I" >"$work/iso.txt"
  RUST_LOG_CLI="warn,sluice_client=debug" sl console-producer --bootstrap-server "$(broker_addr "$old")" --topic t \
    --producer-property acks=all --producer-property enable.idempotence=false \
    --producer-property request.timeout.ms=4000 --producer-property delivery.timeout.ms=12000 <"$work/iso.txt" >/dev/null 2>"$work/iso.err" &
  local iso_pid=$!
  if ! wait_until 60 "a new leader (seen through brokers $others)" leader_is_not "$others" "$old"; then
    fails+=("no new leader within 60 s of cutting broker $old off")
  fi
  local t_new; t_new=$(date +%s%N)
  d="$(describe_t "$others")"
  local new="${d%% *}"
  local failover_ms=$(( (t_new - t_cut) / 1000000 ))
  log "leadership moved $old -> $new after ${failover_ms} ms; ISR now ${d#* }"
  # The isolated broker still thinks it leads: show what it tells the client.
  log "seen through the isolated broker $old: $(describe_t "$(broker_addr "$old")" || true)"

  # 4. M more acks=all records through the new leader.
  seq -f 'post-%06g' 1 "$M" >"$work/phase2.txt"
  if sl console-producer --bootstrap-server "$others" --topic t \
      --producer-property acks=all <"$work/phase2.txt" 2>"$work/phase2.err"; then
    log "phase 3: $M acks=all records acknowledged by the new leader $new"
  else
    fails+=("phase 3: acks=all produce through the new leader failed: $(tail -n 3 "$work/phase2.err" | tr '\n' ' ')")
  fi

  local iso_acked=0 iso_ok=no iso_retries
  if wait "$iso_pid"; then iso_acked=$I; iso_ok=yes; else iso_acked=$(( I - $(grep -c '^Error when sending' "$work/iso.err" || true) )); fi
  iso_retries="$(grep 'retrying batch' "$work/iso.err" | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'error=[A-Z_]*' | sort | uniq -c | tr -s ' \n' ' ' || true)"
  log "acks=all sent to the isolated broker $old: $iso_acked of $I acknowledged; client retries: ${iso_retries:-none}"
  if [ "$iso_acked" -eq 0 ]; then
    notes+=("the iso-* producer kept being sent back to the isolated broker $old by its stale metadata and gave up: nothing acknowledged, nothing may survive")
  fi

  # Keep the partition long enough for the old leader's connections to back off.
  local held=$(( ($(date +%s%N) - t_cut) / 1000000000 ))
  if [ "$held" -lt "$HOLD" ]; then sleep $(( HOLD - held )) & wait $!; fi

  # 5. Heal: the old leader must rejoin the ISR, truncating its divergent tail.
  local t_heal; t_heal=$(date +%s%N)
  do_heal "b$old"
  local rejoin_ms=-1
  # Asked of the new leader: the healed broker's own (stale) view would
  # still show it in the ISR.
  if wait_until 120 "broker $old back in the ISR" in_full_isr "$(broker_addr "$new")" "$old"; then
    rejoin_ms=$(( ($(date +%s%N) - t_heal) / 1000000 ))
    log "broker $old back in the ISR ${rejoin_ms} ms after the heal: $(describe_t "$(all_brokers)")"
  else
    fails+=("broker $old did not rejoin the ISR within 120 s of the heal (describe: $(describe_t "$(all_brokers)"))")
  fi
  # It must also stop telling clients that it leads.
  if ! wait_until 30 "broker $old to name the new leader" leader_is_not "$(broker_addr "$old")" "$old"; then
    fails+=("broker $old still names itself leader after the heal: $(describe_t "$(broker_addr "$old")")")
  fi
  local trunc_lines
  trunc_lines="$(grep -i 'truncat' "$dir/logs/broker-$old.log" || true)"
  if [ -n "$trunc_lines" ]; then
    log "broker $old log: $(head -n 1 <<<"$trunc_lines")"
  else
    fails+=("no truncation line in $dir/logs/broker-$old.log")
  fi

  # Every acknowledged acks=all record exactly once and in order (per stream);
  # no acks=1 record that only the isolated broker took.
  sl console-consumer --bootstrap-server "$(all_brokers)" --topic t --from-beginning \
    --timeout-ms 5000 >"$work/consumed.txt" 2>"$work/consume.err" || fails+=("consumer failed: $(tail -n 2 "$work/consume.err" | tr '\n' ' ')")
  local consumed acked_seen=0 dup=0 missing=0 div_seen iso_seen stream
  consumed=$(wc -l <"$work/consumed.txt")
  div_seen=$(grep -c '^div-' "$work/consumed.txt" || true)
  iso_seen=$(grep -c '^iso-' "$work/consumed.txt" || true)
  for stream in all:phase1 post:phase2; do
    grep "^${stream%%:*}-" "$work/consumed.txt" >"$work/got-${stream%%:*}.txt" || true
    acked_seen=$(( acked_seen + $(wc -l <"$work/got-${stream%%:*}.txt") ))
    dup=$(( dup + $(sort "$work/got-${stream%%:*}.txt" | uniq -d | wc -l) ))
    missing=$(( missing + $(comm -23 <(sort "$work/${stream#*:}.txt") <(sort -u "$work/got-${stream%%:*}.txt") | wc -l) ))
    if ! cmp -s "$work/${stream#*:}.txt" "$work/got-${stream%%:*}.txt"; then
      fails+=("the ${stream%%:*}-* records read back differ from the acknowledged ones (see $work/got-${stream%%:*}.txt)")
    fi
  done
  if [ "$iso_ok" = yes ]; then
    # Acknowledged (by the new leader, after retries): each must be there, in order.
    grep '^iso-' "$work/consumed.txt" | awk '!seen[$0]++' >"$work/got-iso.txt" || true
    if ! cmp -s "$work/iso.txt" "$work/got-iso.txt"; then
      fails+=("acknowledged iso-* records (sent to the isolated broker, acks=all) are missing or out of order: $(wc -l <"$work/got-iso.txt") of $I read back")
    fi
    [ "$iso_seen" -eq "$I" ] || notes+=("iso-* records duplicated by the non-idempotent producer's retries: $iso_seen read back for $I sent")
  elif [ "$iso_acked" -gt "$iso_seen" ]; then
    fails+=("$iso_acked acks=all iso-* records were acknowledged but only $iso_seen read back")
  elif [ "$iso_acked" -eq 0 ] && [ "$iso_seen" -gt 0 ] \
      && ! grep -E 'retrying batch|^Error when sending' "$work/iso.err" | grep -vq "$(broker_addr "$old")"; then
    # Every attempt went to the isolated broker: what it took was truncated.
    fails+=("$iso_seen iso-* records survived although none was acknowledged (only the isolated broker took them)")
  fi
  if [ "$div_seen" -gt 0 ]; then
    fails+=("$div_seen acks=1 records written only to the isolated leader survived (expected them truncated)")
  fi
  # The old leader re-registered: three live brokers again.
  local alive
  alive="$(sl cluster --bootstrap-server "$(all_brokers)" --describe 2>/dev/null | grep -c 'Status: alive' || true)"
  [ "$alive" -eq 3 ] || fails+=("only $alive live brokers after the heal (broker $old did not re-register?)")

  # A Kafka client in the client namespace reads the same log through Kafka's
  # protocol, on the addresses the brokers advertise.
  if command -v kcat >/dev/null 2>&1; then
    local kafka_seen
    kafka_seen="$( (in_ns client timeout 60 kcat -b "$(all_brokers)" -C -t t -o beginning -e -q 2>"$work/kcat.err" || true) | wc -l)"
    log "kcat (Kafka protocol) read $kafka_seen records of t"
    [ "$kafka_seen" -eq "$consumed" ] ||
      fails+=("kcat read $kafka_seen records through Kafka's protocol, sluice console-consumer $consumed: $(tail -n 2 "$work/kcat.err" | tr '\n' ' ')")
  fi

  # The old leader's log must now be the leader's, byte for byte.
  local logs_equal=yes j
  for j in 1 2 3; do
    if ! cmp -s "$(partition_log_file "$new")" "$(partition_log_file "$j")"; then
      logs_equal=no
      fails+=("broker $j's log of t-0 ($(log_size "$j") bytes) differs from the leader $new's ($(log_size "$new") bytes)")
    fi
  done
  [ "$div_acked" -gt 0 ] || fails+=("no divergence was created (no acks=1 record acknowledged by the isolated leader)")

  local secs=$(( $(date +%s) - t0 ))
  local note; for note in "${notes[@]}"; do log "note: $note"; done
  echo "netns partition test: acked_all=$((N + M)) consumed=$consumed acked_seen=$acked_seen missing=$missing duplicated=$dup" \
    "divergent_acked=$div_acked divergent_survived=$div_seen iso_acked=$iso_acked iso_read=$iso_seen partition_s=$(( (t_heal - t_cut) / 1000000000 )) old_leader=$old new_leader=$new failover_ms=$failover_ms" \
    "rejoin_ms=$rejoin_ms truncation_logged=$([ -n "$trunc_lines" ] && echo yes || echo no) logs_identical=$logs_equal seconds=$secs"
  if [ "${#fails[@]}" -eq 0 ]; then
    echo "PASS"
    return 0
  fi
  echo "FAIL:"
  for f in "${fails[@]}"; do echo "  - $f"; done
  echo "(logs: $dir/logs, run with --keep to leave the cluster up)"
  return 1
}

case "$cmd" in
  up) do_up ;;
  down) do_down ;;
  partition) do_partition "${args[0]:-}" ;;
  heal) do_heal "${args[0]:-}" ;;
  status) do_status ;;
  exec-client)
    [ "${#args[@]}" -gt 0 ] || die "exec-client needs a command"
    export PATH="${bin_dir:+$bin_dir:}$PATH"
    exec ip netns exec sl-client "${args[@]}" ;;
  test) do_test ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self" >&2; exit 2 ;;
esac
