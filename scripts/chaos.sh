#!/usr/bin/env bash
# A longer chaos run than the test suite's: a fresh local cluster (etcd, two
# controllers, three brokers as processes), an idempotent acks=all numbered
# stream, and ROUNDS rounds of kill -9 of a partition leader (and of the active
# controller every other round) with restarts. Ends with the summary line
#   chaos: acked=N lost=L duplicated=D reordered=R failovers=K max_failover_ms=M
# and exits non-zero when L, D or R is not zero.
# Usage: scripts/chaos.sh [ROUNDS] [LEASE_MS]   (default 6 rounds, 2000 ms
# leases as in the test suite; 6000 is the production default)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null 2>&1 || { echo "etcd is missing: run scripts/test.sh once or apt-get install etcd-server" >&2; exit 2; }
cargo build --workspace --bins
cargo run -q -p sluice-testkit --example chaos -- "${1:-6}" "${2:-2000}"
