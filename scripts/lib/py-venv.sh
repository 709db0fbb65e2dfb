# Sourced, not run: makes sure the Python venv the test scripts share exists.
#   venv=... python=... ; source scripts/lib/py-venv.sh ; ensure_py_venv
# Creates "$venv" with "$python" -m venv; Debian ships venv separately, so
# python3-venv is installed (as root) when that fails.
ensure_py_venv() {
  [[ -x "$venv/bin/python" ]] && return 0
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      "$python" -m venv "$venv"
    else
      echo "error: '$python -m venv' failed; install your distribution's python3-venv package" >&2
      exit 1
    fi
  fi
}
