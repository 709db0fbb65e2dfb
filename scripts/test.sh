#!/usr/bin/env bash
# Runs every Sluice test: formatting, lints, the Rust suites (unit, property,
# real etcd, real standalone node), the CLI end-to-end script, the Python
# any-language test, the Kafka-client tests and the console's browser tests. Installs what a fresh Debian machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

# protoc is needed by etcd-client's build; etcd by the metadata-store suite.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# kcat: one of the real Kafka clients the Kafka-protocol tests drive.
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
# The web console's browser tests: Debian's headless Chromium and its driver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# A clean run needs about 6 GB under target/ (debug builds with line tables
# only); say what is free so a full disk is seen before the linker dies of it.
echo "==> disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> cargo build (binaries for the end-to-end tests)"
cargo build --locked --workspace --bins
echo "==> CLI end-to-end (standalone node)"
tests/cli/e2e-standalone.sh
echo "==> the users' Kafka notes, verbatim (issue 12)"
tests/cli/kafka-notes.sh
echo "==> Python any-language test"
tests/python/run.sh
echo "==> Kafka clients (confluent-kafka, kafka-python, kcat) against standalone and a 3-broker cluster"
tests/kafka/run.sh
echo "==> the web console in headless Chromium against a 3-broker cluster (screenshots in target/console-screenshots)"
tests/console/run.sh
echo "==> deployment files: compose spec, Kubernetes --strict, kustomize (offline)"
scripts/validate-deploy.sh
echo "==> the docker-compose topology as processes (grpcurl, health, metrics)"
tests/compose/run.sh --bin-dir target/debug
echo "==> network namespaces: a broker partitioned by nftables"
tests/netns/netns-cluster.sh test --bin-dir target/debug
echo "==> Rust test suites"
cargo nextest run --locked --workspace --no-fail-fast
