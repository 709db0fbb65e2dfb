# Sourced, not run: measures this machine's own limits in the same run as a
# benchmark, so every figure is reported as a ratio to what the hardware did
# a moment before. All figures in MiB/s (2^20 bytes/s, as perf-test prints MB).
#   source scripts/lib/machine-limits.sh
#   machine_limits DIR MIB   # sets LIMIT_WRITE_COLD LIMIT_WRITE LIMIT_READ LIMIT_LOOPBACK
#   ratio OURS LIMIT         # prints "0.42"
#
# - page-cache write: dd of MIB MiB to a new file in DIR (the data dir's file
#   system), twice. On these VMs the first touch of memory the host has not
#   backed yet is several times slower than later writes; the second figure
#   (memory freed by the first file, as a broker's log then gets) is the limit.
# - page-cache read: dd of that file to /dev/null.
# - loopback: iperf3, one TCP stream for 3 s (Debian's iperf3, installed when
#   missing, as scripts/test.sh installs its tools).

_mib_per_s() { # bytes seconds
  awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'
}

_timed_dd() { # dd args...; prints seconds
  local t0 t1
  t0="$(date +%s.%N)"
  dd "$@" status=none
  t1="$(date +%s.%N)"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }'
}

ensure_iperf3() {
  command -v iperf3 >/dev/null 2>&1 && return 0
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "==> installing iperf3" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq iperf3 >/dev/null
}

machine_limits() { # dir mib
  local dir="$1" mib="$2" f s bytes port pid
  f="$dir/machine-limits.tmp"
  bytes=$((mib * 1048576))
  s="$(_timed_dd if=/dev/zero of="$f" bs=1M count="$mib")"
  LIMIT_WRITE_COLD="$(_mib_per_s "$bytes" "$s")"
  rm -f "$f"
  s="$(_timed_dd if=/dev/zero of="$f" bs=1M count="$mib")"
  LIMIT_WRITE="$(_mib_per_s "$bytes" "$s")"
  s="$(_timed_dd if="$f" of=/dev/null bs=1M)"
  LIMIT_READ="$(_mib_per_s "$bytes" "$s")"
  rm -f "$f"
  ensure_iperf3
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
  pid=$!
  local out=""
  for _ in $(seq 1 50); do
    out="$(iperf3 -c 127.0.0.1 -p "$port" -t 3 --json 2>/dev/null)" && break
    sleep 0.1
  done
  # A one-off server whose test never came (every client attempt failed)
  # would wait for ever.
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  LIMIT_LOOPBACK="$(printf '%s' "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8 / 1048576))')"
  echo "== machine limits (MiB/s): page-cache write ${LIMIT_WRITE} (first touch ${LIMIT_WRITE_COLD}), page-cache read ${LIMIT_READ}, loopback TCP ${LIMIT_LOOPBACK}"
}

# Writes and deletes MIB MiB in DIR so the memory the next phase's page cache
# takes was touched a moment before, as machine_limits' second dd measured;
# without it phases of one run differ by up to 3x on these VMs.
warm_page_cache() { # dir mib
  dd if=/dev/zero of="$1/warm.tmp" bs=1M count="$2" status=none
  rm -f "$1/warm.tmp"
}

# The smaller of two limits: a produce is bounded by the wire and the disk.
min_limit() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
