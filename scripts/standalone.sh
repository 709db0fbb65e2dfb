#!/usr/bin/env bash
# Builds Sluice and starts a standalone node (controller, broker and coordinator
# in one process, no external services) on 127.0.0.1:9092 with data in
# ./.sluice-data. Extra arguments go to `sluice standalone` (for example
# --listen 127.0.0.1:19092 or --config deploy/config/standalone.yaml); a
# --listen or --data-dir given here replaces the default (as do the
# SLUICE_LISTEN and SLUICE_DATA_DIR environment variables).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "==> installing protobuf-compiler (needed to build etcd-client)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq protobuf-compiler
fi
cargo build --release -p sluice-cli
DATA_DIR="${SLUICE_DATA_DIR:-.sluice-data}"
LISTEN="${SLUICE_LISTEN:-127.0.0.1:9092}"
# The defaults only for what the arguments leave out: clap refuses a flag
# given twice.
defaults=()
given() {
  local flag="$1" a; shift
  for a in "$@"; do
    case "$a" in
      --) return 1 ;;
      "--$flag" | "--$flag="* | "-$flag" | "-$flag="*) return 0 ;;
    esac
  done
  return 1
}
given data-dir "$@" || defaults+=(--data-dir "$DATA_DIR")
given listen "$@" || defaults+=(--listen "$LISTEN")
exec target/release/sluice standalone ${defaults[@]+"${defaults[@]}"} "$@"
