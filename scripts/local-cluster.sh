#!/usr/bin/env bash
# A real Sluice cluster on this machine: etcd, two controllers, one coordinator
# and N brokers as background processes on free 127.0.0.1 ports.
#
#   scripts/local-cluster.sh up [--brokers N] [--dir DIR] [--debug] [--tls]
#   scripts/local-cluster.sh down [--dir DIR]
#   scripts/local-cluster.sh restart NAME [--dir DIR]     (NAME: broker-2, controller-1, ...)
#   scripts/local-cluster.sh status [--dir DIR]
#
# Layout of DIR (default ./.sluice-cluster): pids/<name>.pid, logs/<name>.log,
# data/<name>/, config/<name>.yaml, cmd/<name> (the command line), bootstrap,
# metrics (each process's Prometheus endpoint). With --tls every process serves
# mTLS (SSL://, ssl.client.auth=required) and reaches the others over TLS, with
# certificates from scripts/gen-certs.sh in DIR/certs, and ACLs are on: the
# processes and the admin certificate are the super users; clients use
# DIR/client.properties (the admin's: `--command-config`, or librdkafka's
# ssl.* settings) and get rights with `sluice acls`.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"; shift || true
name=""
if [ "$cmd" = "restart" ]; then name="${1:?restart needs a process name}"; shift; fi
brokers=3; dir=".sluice-cluster"; profile="release"; tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) brokers="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --debug) profile="debug"; shift ;;
    --tls) tls=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_etcd() { # waits until etcd answers its health endpoint
  # Health over plain HTTP on the metrics port (the client port may be TLS).
  local url; url="$(grep -o 'listen-metrics-urls [^ ]*' "$dir/cmd/etcd" | cut -d' ' -f2)"
  [ -n "$url" ] || url="$(grep -o 'advertise-client-urls [^ ]*' "$dir/cmd/etcd" | cut -d' ' -f2)"
  for _ in $(seq 1 100); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=1)" "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "etcd did not start; see $dir/logs/etcd.log" >&2; exit 1
}

start_proc() { # name: runs cmd/<name> in the background
  local n="$1"
  nohup bash "$dir/cmd/$n" >>"$dir/logs/$n.log" 2>&1 &
  echo $! >"$dir/pids/$n.pid"
}

stop_proc() { # name [signal]
  local n="$1" pidf="$dir/pids/$1.pid"
  [ -f "$pidf" ] || return 0
  local pid; pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # Longer than a broker's controlled shutdown (controlled.shutdown.timeout.ms, 30 s).
    for _ in $(seq 1 450); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: $n did not exit within 45 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidf"
}

bin() { echo "$PWD/target/$profile/$1"; }

# The TLS keys of process $1 on port $2 (nothing without --tls).
listener() {
  if [ "$tls" = 1 ]; then
    cat <<EOT
listeners: SSL://127.0.0.1:$2
ssl.certificate.location: $dir/certs/$1.pem
ssl.key.location: $dir/certs/$1.key
ssl.ca.location: $dir/certs/ca.pem
ssl.client.auth: required
security.inter.broker.protocol: SSL
etcd.ssl.ca.location: $dir/certs/ca.pem
etcd.ssl.certificate.location: $dir/certs/$1.pem
etcd.ssl.key.location: $dir/certs/$1.key
# ACLs on: a certificate's CN is its principal (User:broker-1, User:admin);
# the cluster's own processes and the admin certificate are super users.
authorizer.class.name: kafka.security.authorizer.AclAuthorizer
ssl.principal.mapping.rules: 'RULE:^CN=([^,]+)\$/\$1/,DEFAULT'
super.users: '$(super_users)'
EOT
  else
    echo "listeners: 127.0.0.1:$2"
  fi
}

# Every process's certificate and the admin's: the super users of a --tls
# cluster (User:<CN>; see ssl.principal.mapping.rules above).
super_users() {
  local s="User:admin;User:controller-1;User:controller-2;User:coordinator-1" i
  for i in $(seq 1 "$brokers"); do s="$s;User:broker-$i"; done
  echo "$s"
}

# `--command-config` for the CLI when the cluster speaks TLS.
client_flags() { [ -f "$dir/client.properties" ] && echo "--command-config $dir/client.properties"; true; }

metrics_flag() { # name: a free metrics port for it, recorded in DIR/metrics
  local port; port=$(free_port)
  echo "$1 http://127.0.0.1:$port/metrics" >>"$dir/metrics"
  echo "--metrics-listen 127.0.0.1:$port"
}

case "$cmd" in
up)
  if ! command -v etcd >/dev/null 2>&1 || ! command -v protoc >/dev/null 2>&1; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq etcd-server protobuf-compiler
  fi
  if [ "$profile" = "release" ]; then flag="--release"; else flag=""; fi
  cargo build $flag -p sluice-broker -p sluice-controller -p sluice-coordinator -p sluice-cli
  mkdir -p "$dir"/{pids,logs,data,config,cmd}
  if [ -f "$dir/cmd/etcd" ]; then
    # An existing cluster: start every process again with its config and data.
    start_proc etcd
    wait_etcd
    for f in "$dir"/cmd/*; do
      n="$(basename "$f")"; [ "$n" = etcd ] && continue
      start_proc "$n"
    done
    bootstrap="$(cat "$dir/bootstrap")"
    brokers="$(ls "$dir"/cmd/broker-* | wc -l)"
  else
  cluster="local"
  : >"$dir/metrics"
  if [ "$tls" = 1 ]; then
    names=(etcd controller-1 controller-2 coordinator-1 admin)
    for i in $(seq 1 "$brokers"); do names+=("broker-$i"); done
    scripts/gen-certs.sh --dir "$dir/certs" "${names[@]}" >/dev/null
    cat >"$dir/client.properties" <<EOT
# Client settings for this cluster (sluice --command-config, librdkafka, kafka-python).
security.protocol=SSL
ssl.ca.location=$dir/certs/ca.pem
ssl.certificate.location=$dir/certs/admin.pem
ssl.key.location=$dir/certs/admin.key
EOT
  fi
  etcd_client=$(free_port); etcd_peer=$(free_port); etcd_metrics=$(free_port)
  scheme=http; etcd_tls=""
  if [ "$tls" = 1 ]; then
    scheme=https
    etcd_tls="--cert-file $dir/certs/etcd.pem --key-file $dir/certs/etcd.key --trusted-ca-file $dir/certs/ca.pem --client-cert-auth"
  fi
  cat >"$dir/cmd/etcd" <<EOT
exec etcd --name local --data-dir "$dir/data/etcd" $etcd_tls \
  --listen-metrics-urls http://127.0.0.1:$etcd_metrics \
  --listen-client-urls $scheme://127.0.0.1:$etcd_client --advertise-client-urls $scheme://127.0.0.1:$etcd_client \
  --listen-peer-urls http://127.0.0.1:$etcd_peer --initial-advertise-peer-urls http://127.0.0.1:$etcd_peer \
  --initial-cluster local=http://127.0.0.1:$etcd_peer --log-level warn
EOT
  start_proc etcd
  wait_etcd
  endpoints="$scheme://127.0.0.1:$etcd_client"
  for i in 1 2; do
    port=$(free_port)
    cat >"$dir/config/controller-$i.yaml" <<EOT
# See deploy/config/controller.yaml for every key.
controller.id: $((1000 + i))
$(listener "controller-$i" "$port")
advertised.listeners: 127.0.0.1:$port
etcd.endpoints: $endpoints
cluster.name: $cluster
EOT
    echo "exec $(bin sluice-controller) --config $dir/config/controller-$i.yaml $(metrics_flag "controller-$i")" >"$dir/cmd/controller-$i"
    start_proc "controller-$i"
  done
  port=$(free_port)
  cat >"$dir/config/coordinator-1.yaml" <<EOT
# See deploy/config/coordinator.yaml for every key.
coordinator.id: 1
$(listener coordinator-1 "$port")
etcd.endpoints: $endpoints
cluster.name: $cluster
EOT
  echo "exec $(bin sluice-coordinator) --config $dir/config/coordinator-1.yaml $(metrics_flag coordinator-1)" >"$dir/cmd/coordinator-1"
  start_proc coordinator-1
  bootstrap=""
  for i in $(seq 1 "$brokers"); do
    port=$(free_port)
    cat >"$dir/config/broker-$i.yaml" <<EOT
# See deploy/config/broker.yaml for every key.
broker.id: $i
$(listener "broker-$i" "$port")
log.dirs: $dir/data/broker-$i
etcd.endpoints: $endpoints
cluster.name: $cluster
EOT
    echo "exec $(bin sluice-broker) --config $dir/config/broker-$i.yaml $(metrics_flag "broker-$i")" >"$dir/cmd/broker-$i"
    start_proc "broker-$i"
    bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:$port"
  done
  echo "$bootstrap" >"$dir/bootstrap"
  fi
  for _ in $(seq 1 150); do
    # shellcheck disable=SC2046
    if out=$("$(bin sluice)" cluster --bootstrap-server "$bootstrap" $(client_flags) --describe 2>/dev/null) \
      && [ "$(grep -c 'Status: alive' <<<"$out" || true)" -ge "$brokers" ] && ! grep -q 'Controller: none' <<<"$out"; then
      echo "Sluice cluster up: $brokers brokers, 2 controllers, 1 coordinator (files in $dir)"
      echo "bootstrap: $bootstrap"
      [ -f "$dir/client.properties" ] && echo "TLS and ACLs: the admin (a super user) uses $dir/client.properties (sluice ... --command-config $dir/client.properties); give others rights with sluice acls"
      echo "Prometheus metrics (also in $dir/metrics):"
      sed 's/^/  /' "$dir/metrics"
      exit 0
    fi
    sleep 0.2
  done
  echo "cluster did not become ready; see $dir/logs/" >&2
  exit 1
  ;;
down)
  for f in "$dir"/pids/*.pid; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .pid)"
    [ "$n" = etcd ] && continue
    stop_proc "$n"
  done
  stop_proc etcd
  echo "Sluice cluster in $dir stopped (data kept)"
  ;;
restart)
  [ -f "$dir/cmd/$name" ] || { echo "no process $name in $dir" >&2; exit 2; }
  stop_proc "$name"
  start_proc "$name"
  echo "restarted $name (pid $(cat "$dir/pids/$name.pid"))"
  ;;
status)
  for f in "$dir"/pids/*.pid; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .pid)"; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then echo "$n running (pid $pid)"; else echo "$n dead"; fi
  done
  ;;
*)
  sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
