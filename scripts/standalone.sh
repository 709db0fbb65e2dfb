#!/usr/bin/env bash
# Builds Sluice and starts a standalone node (controller, broker and coordinator
# in one process, no external services) on 127.0.0.1:9092 with data in
# ./.sluice-data. Extra arguments go to `sluice standalone` (for example
# --listen 127.0.0.1:19092 or --config deploy/config/standalone.yaml).
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
exec target/release/sluice standalone --data-dir "$DATA_DIR" --listen "$LISTEN" "$@"
