#!/usr/bin/env bash
# Kafka's own clients against Sluice: confluent-kafka (librdkafka), kafka-python
# and kcat, through the Kafka protocol, against a standalone node and a 3-broker
# local cluster.
#
#   tests/kafka/run.sh [pytest args...]
#
# Env: SLUICE_PY_VENV (default <repo>/target/py-venv), SLUICE_BIN_DIR (default
# <repo>/target/debug), SLUICE_KAFKA_TARGETS (default standalone,cluster),
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

cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider . "$@"
