#!/usr/bin/env bash
# The web console in a real headless Chromium (Debian's chromium and
# chromium-driver, driven by Selenium) against a real 3-broker cluster and
# two `sluice console` processes (one read-only). Screenshots of every page
# land in target/console-screenshots/.
#
#   tests/console/run.sh [pytest args...]
#
# Env: SLUICE_PY_VENV (default <repo>/target/py-venv), SLUICE_BIN_DIR (default
# <repo>/target/debug), PYTHON (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SLUICE_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "error: the console tests need Debian's chromium and chromium-driver" >&2
    exit 1
  fi
fi

# shellcheck source=scripts/lib/py-venv.sh
source "$repo/scripts/lib/py-venv.sh"
ensure_py_venv
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

mkdir -p "$repo/target/console-screenshots"
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider . "$@"
