#!/usr/bin/env bash
# The "any language" proof: Python stubs generated from proto/ at test time,
# driving a standalone Sluice node over gRPC.
#
#   tests/python/run.sh [pytest args...]
#
# Env: SLUICE_PY_VENV (default <repo>/target/py-venv), SLUICE_BIN (default
# <repo>/target/debug/sluice; build it with `cargo build -p sluice-cli`),
# PYTHON (default python3, CPython >= 3.10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SLUICE_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"

# shellcheck source=scripts/lib/py-venv.sh
source "$repo/scripts/lib/py-venv.sh"
ensure_py_venv

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

cd "$repo"
status=0
"$venv/bin/python" -m pytest -q tests/python "$@" || status=$?
exit "$status"
