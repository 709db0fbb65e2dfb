#!/usr/bin/env python3
"""Offline checks of the deployment files that no schema covers; run by
scripts/validate-deploy.sh inside its virtualenv (needs PyYAML and dockerfile).

  validate_deploy.py compose                  docker-compose.yml against deploy/compose/ and deploy/config/
  validate_deploy.py k8s FILE...              manifests: config keys, ConfigMap mounts, no namespace
  validate_deploy.py configmap FILE...        each ConfigMap sluice-config equals deploy/config/ byte for byte
  validate_deploy.py dockerfile               Dockerfile and .dockerignore
  validate_deploy.py write-configmap          regenerates deploy/k8s/configmap.yaml from deploy/config/

Every check prints what is wrong, naming the file, and exits 1 when anything is.
"""

import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "deploy", "config")
COMPOSE_DIR = os.path.join(REPO, "deploy", "compose")
CONFIGMAP_FILE = os.path.join(REPO, "deploy", "k8s", "configmap.yaml")
CONFIGMAP_NAME = "sluice-config"
# The deploy/config files the ConfigMap carries (standalone.yaml is not used
# on Kubernetes).
CONFIGMAP_KEYS = ["broker.yaml", "controller.yaml", "coordinator.yaml"]
# Service binary -> its documented config file in deploy/config/ and gRPC port.
SERVICES = {
    "sluice-broker": ("broker.yaml", 9092),
    "sluice-controller": ("controller.yaml", 9093),
    "sluice-coordinator": ("coordinator.yaml", 9094),
}
METRICS_LISTEN = "0.0.0.0:9100"

errors = []


def fail(msg):
    errors.append(msg)
    print(f"  FAIL {msg}", file=sys.stderr)


def rel(path):
    r = os.path.relpath(path, REPO)
    return path if r.startswith("..") else r


def documented_keys(config_file):
    """Keys of a deploy/config file: set ones and commented-out `# key: value` ones."""
    keys = set()
    with open(os.path.join(CONFIG_DIR, config_file), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#?\s*([a-z][a-z0-9]*(?:\.[a-z0-9]+)+|listeners):(\s|$)", line)
            if m:
                keys.add(m.group(1))
    return keys


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---- compose -----------------------------------------------------------------


def check_compose():
    path = os.path.join(REPO, "docker-compose.yml")
    compose = load_yaml(path)
    services = compose.get("services") or {}
    named_volumes = set((compose.get("volumes") or {}).keys())
    built_images = {s.get("image") for s in services.values() if s.get("build") is not None}
    mounted = set()
    ids = {"broker.id": {}, "controller.id": {}, "coordinator.id": {}}
    advertised = {}

    for name, svc in services.items():
        where = f"docker-compose.yml services.{name}"
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                fail(f"{where}: depends_on names no service {dep!r}")
        image = svc.get("image")
        if svc.get("build") is None and image and image.startswith("sluice:") and image not in built_images:
            fail(f"{where}: image {image} is built by no service")
        config_mounts = []
        for vol in svc.get("volumes") or []:
            if not isinstance(vol, str):
                fail(f"{where}: use the short volume syntax (SOURCE:TARGET[:ro])")
                continue
            parts = vol.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else ""
            mode = parts[2] if len(parts) > 2 else ""
            if source.startswith("./") or source.startswith("../") or source.startswith("/"):
                local = os.path.normpath(os.path.join(REPO, source))
                if not os.path.exists(local):
                    fail(f"{where}: volume source {source} does not exist")
                if source.startswith("./deploy/compose/"):
                    config_mounts.append((source, target, mode))
                    mounted.add(os.path.normpath(local))
            elif source not in named_volumes:
                fail(f"{where}: named volume {source!r} is not declared under volumes:")

        command = svc.get("command")
        binary = command[0] if isinstance(command, list) and command else None
        if binary not in SERVICES:
            if config_mounts:
                fail(f"{where}: mounts {config_mounts[0][0]} but does not run a Sluice service")
            continue
        # A Sluice service: one config file mounted read-only, a plain command.
        config_file, grpc_port = SERVICES[binary]
        if len(config_mounts) != 1:
            fail(f"{where}: must mount exactly one ./deploy/compose/*.yaml file (has {len(config_mounts)})")
            continue
        source, target, mode = config_mounts[0]
        base = os.path.basename(source)
        if target != f"/etc/sluice/{base}" or mode != "ro":
            fail(f"{where}: mount {source} as {source}:/etc/sluice/{base}:ro (is {source}:{target}:{mode})")
        expected = [binary, "--config", f"/etc/sluice/{base}", "--metrics-listen", METRICS_LISTEN]
        if command != expected:
            fail(f"{where}: command must be the plain list {expected} (is {command})")
        if svc.get("environment"):
            fail(f"{where}: settings belong in {source}, not environment: (the process test reads the file)")
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:4] != ["CMD", "sluice", "health", "--server"]:
            fail(f"{where}: healthcheck must be [CMD, sluice, health, --server, 127.0.0.1:{grpc_port}]")

        cfg_path = os.path.normpath(os.path.join(REPO, source))
        if not os.path.isfile(cfg_path):
            continue
        try:
            cfg = load_yaml(cfg_path)
        except yaml.YAMLError as e:
            fail(f"{rel(cfg_path)}: does not parse: {e}")
            continue
        if not isinstance(cfg, dict):
            fail(f"{rel(cfg_path)}: must be a mapping of keys to values")
            continue
        unknown = sorted(set(cfg) - documented_keys(config_file))
        if unknown:
            fail(f"{rel(cfg_path)}: keys not in deploy/config/{config_file}: {', '.join(unknown)}")
        listen = str(cfg.get("listeners", ""))
        if listen != f"0.0.0.0:{grpc_port}":
            fail(f"{rel(cfg_path)}: listeners must be 0.0.0.0:{grpc_port} in a container (is {listen!r})")
        if test[4:] != [f"127.0.0.1:{grpc_port}"]:
            fail(f"{where}: healthcheck must probe 127.0.0.1:{grpc_port} (is {test[4:]})")
        adv = str(cfg.get("advertised.listeners", ""))
        if adv != f"{name}:{grpc_port}":
            fail(f"{rel(cfg_path)}: must advertise the service name, {name}:{grpc_port} (is {adv!r})")
        advertised.setdefault(adv, []).append(name)
        if str(cfg.get("etcd.endpoints", "")) != "http://etcd:2379":
            fail(f"{rel(cfg_path)}: etcd.endpoints must be http://etcd:2379")
        id_key = config_file.replace(".yaml", ".id")
        if id_key not in cfg:
            fail(f"{rel(cfg_path)}: must set {id_key}")
        else:
            ids[id_key].setdefault(cfg[id_key], []).append(name)

    for key, by_id in ids.items():
        for value, names in by_id.items():
            if len(names) > 1:
                fail(f"{key} {value} is used by several services: {', '.join(names)}")
    for adv, names in advertised.items():
        if len(names) > 1:
            fail(f"advertised address {adv} is used by several services: {', '.join(names)}")
    for f in sorted(os.listdir(COMPOSE_DIR)):
        p = os.path.normpath(os.path.join(COMPOSE_DIR, f))
        if not f.endswith(".yaml"):
            continue
        try:
            load_yaml(p)
        except yaml.YAMLError as e:
            fail(f"{rel(p)}: does not parse: {e}")
        if p not in mounted:
            fail(f"{rel(p)}: mounted by no service of docker-compose.yml")


# ---- Kubernetes ----------------------------------------------------------------


def k8s_docs(paths):
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    yield p, doc


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return spec.get("template", {}).get("spec")
    if kind == "Pod":
        return spec
    return None


def check_k8s(paths, plain):
    docs = list(k8s_docs(paths))
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "ConfigMap"}
    for p, d in docs:
        where = f"{rel(p)} {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if plain and d.get("kind") != "Namespace" and "namespace" in d.get("metadata", {}):
            fail(f"{where}: names a namespace; kustomization.yaml sets it")
        spec = pod_spec(d)
        if not spec:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec.get("containers") or []:
            cmd = (c.get("command") or []) + (c.get("args") or [])
            binary = cmd[0] if cmd else None
            if binary in SERVICES:
                config_file, grpc_port = SERVICES[binary]
                if cmd[1:] != ["--config", f"/etc/sluice/{config_file}", "--metrics-listen", METRICS_LISTEN]:
                    fail(f"{where}: run `{binary} --config /etc/sluice/{config_file} --metrics-listen {METRICS_LISTEN}`")
                keys = documented_keys(config_file)
                for e in c.get("env") or []:
                    if e["name"].startswith("SLUICE_"):
                        key = e["name"][len("SLUICE_"):].lower().replace("_", ".")
                        if key not in keys:
                            fail(f"{where}: env {e['name']} sets {key!r}, not a key of deploy/config/{config_file}")
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
                vol = volumes.get(mounts.get("/etc/sluice", ""), {})
                cm = (vol.get("configMap") or {}).get("name")
                if not cm:
                    fail(f"{where}: mount ConfigMap {CONFIGMAP_NAME} at /etc/sluice")
                elif cm in configmaps and config_file not in (configmaps[cm].get("data") or {}):
                    fail(f"{where}: ConfigMap {cm} has no {config_file}")
                for probe in ("readinessProbe", "livenessProbe"):
                    port = ((c.get(probe) or {}).get("grpc") or {}).get("port")
                    if port != grpc_port:
                        fail(f"{where}: {probe} must be a gRPC probe on port {grpc_port}")
                ann = d["spec"]["template"].get("metadata", {}).get("annotations") or {}
                if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "9100":
                    fail(f"{where}: needs prometheus.io/scrape and prometheus.io/port 9100 annotations")
            for res in ("requests", "limits"):
                if not (c.get("resources") or {}).get(res):
                    fail(f"{where}: container {c['name']} has no resource {res}")


def check_configmap(paths):
    found = 0
    for p, d in k8s_docs(paths):
        if d.get("kind") != "ConfigMap" or d.get("metadata", {}).get("name") != CONFIGMAP_NAME:
            continue
        found += 1
        data = d.get("data") or {}
        if sorted(data) != sorted(CONFIGMAP_KEYS):
            fail(f"{rel(p)}: ConfigMap {CONFIGMAP_NAME} must hold exactly {CONFIGMAP_KEYS} (has {sorted(data)})")
        for key in CONFIGMAP_KEYS:
            with open(os.path.join(CONFIG_DIR, key), "rb") as f:
                want = f.read()
            got = data.get(key, "").encode("utf-8")
            if got != want:
                at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                line = want[:at].count(b"\n") + 1
                fail(
                    f"{rel(p)}: ConfigMap {CONFIGMAP_NAME} {key} differs from deploy/config/{key} "
                    f"from line {line} on; regenerate it: scripts/validate-deploy.sh --write-configmap"
                )
    if found != 1:
        fail(f"{', '.join(rel(p) for p in paths)}: expected one ConfigMap {CONFIGMAP_NAME}, found {found}")


def literal_block(text, indent):
    """`text` as a YAML literal block scalar that loads back byte for byte."""
    if text.endswith("\n\n"):
        chomp = "+"
    elif text.endswith("\n"):
        chomp = ""
    else:
        chomp = "-"
    ind = str(len(indent)) if text[:1] in (" ", "\n") else ""
    body = text[:-1] if text.endswith("\n") else text
    lines = [(indent + line) if line else "" for line in body.split("\n")]
    return "|" + ind + chomp + "\n" + "\n".join(lines) + "\n"


def write_configmap():
    out = [
        "# Generated from deploy/config/ by `scripts/validate-deploy.sh --write-configmap`:",
        "# the same files byte for byte (scripts/validate-deploy.sh checks it). Do not",
        "# edit here: change deploy/config/ and regenerate. What differs on Kubernetes",
        "# (ids, addresses, log.dirs) is set by SLUICE_<KEY> environment variables in",
        "# broker.yaml, controller.yaml and coordinator.yaml beside this file.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        f"  name: {CONFIGMAP_NAME}",
        "  labels:",
        "    app.kubernetes.io/name: sluice",
        "data:",
    ]
    text = "\n".join(out) + "\n"
    for key in CONFIGMAP_KEYS:
        with open(os.path.join(CONFIG_DIR, key), encoding="utf-8") as f:
            content = f.read()
        if "\t" in content or "\r" in content:
            sys.exit(f"deploy/config/{key}: tabs or carriage returns cannot go into a literal block")
        text += f"  {key}: " + literal_block(content, "    ")
    with open(CONFIGMAP_FILE, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {rel(CONFIGMAP_FILE)}")
    check_configmap([CONFIGMAP_FILE])


# ---- Dockerfile ----------------------------------------------------------------


def check_dockerfile():
    import dockerfile

    path = os.path.join(REPO, "Dockerfile")
    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        fail(f"Dockerfile: does not parse: {e}")
        return
    known = {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
        "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
    stages, user = [], None
    with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
        ignored = {l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")}
    for c in cmds:
        if c.cmd not in known:
            fail(f"Dockerfile:{c.start_line}: unknown instruction {c.cmd}")
        if c.cmd == "FROM":
            stages.append(c.value[2] if len(c.value) == 3 and c.value[1].upper() == "AS" else None)
            user = None
        if c.cmd == "USER":
            user = c.value[0]
        if c.cmd == "COPY":
            from_stage = next((fl.split("=", 1)[1] for fl in c.flags if fl.startswith("--from=")), None)
            if from_stage is not None:
                if from_stage not in stages[:-1]:
                    fail(f"Dockerfile:{c.start_line}: COPY --from={from_stage} names no earlier stage")
                continue
            for src in c.value[:-1]:
                if not os.path.exists(os.path.join(REPO, src)):
                    fail(f"Dockerfile:{c.start_line}: COPY source {src} does not exist")
                if src.rstrip("/") in ignored:
                    fail(f"Dockerfile:{c.start_line}: COPY source {src} is excluded by .dockerignore")
    if user is None or user.split(":")[0] in ("0", "root"):
        fail("Dockerfile: the final stage must end with USER <non-root>")
    text = open(path, encoding="utf-8").read()
    for pkg in ("sluice-broker", "sluice-controller", "sluice-coordinator", "sluice-cli"):
        if f"-p {pkg}" not in text:
            fail(f"Dockerfile: cargo build does not build -p {pkg}")
    for binary in ("sluice", "sluice-broker", "sluice-controller", "sluice-coordinator"):
        if f"target/release/{binary} " not in text and f"target/release/{binary}\n" not in text:
            fail(f"Dockerfile: target/release/{binary} is not copied to the image")
    for ign in ("target", ".git", ".sluice-cluster", ".sluice-data"):
        if ign not in ignored and f"**/{ign}" not in ignored:
            fail(f".dockerignore: does not exclude {ign}/")


def check_compose_tls():
    """docker-compose.tls.yml overlays docker-compose.yml: its services exist
    there, its SLUICE_* variables name keys of the service's config, its
    health checks pass the client file, its ./deploy mounts exist."""
    base = load_yaml(os.path.join(REPO, "docker-compose.yml")).get("services") or {}
    overlay = load_yaml(os.path.join(REPO, "docker-compose.tls.yml")).get("services") or {}
    for name, svc in overlay.items():
        where = f"docker-compose.tls.yml services.{name}"
        if name not in base:
            fail(f"{where}: no such service in docker-compose.yml")
            continue
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if source.startswith("./deploy/") and not os.path.exists(os.path.join(REPO, source)):
                fail(f"{where}: volume source {source} does not exist")
        command = base[name].get("command")
        binary = command[0] if isinstance(command, list) and command else None
        if binary not in SERVICES:
            continue
        keys = documented_keys(SERVICES[binary][0])
        for var in svc.get("environment") or {}:
            key = var.removeprefix("SLUICE_").lower().replace("_", ".")
            if not var.startswith("SLUICE_") or key not in keys:
                fail(f"{where}: {var} names no key of deploy/config/{SERVICES[binary][0]}")
        test = (svc.get("healthcheck") or {}).get("test") or []
        if "--command-config" not in test:
            fail(f"{where}: the health check must pass --command-config (the port is TLS)")


def check_k8s_tls(paths):
    """The rendered TLS overlay: every Sluice container listens SSL://, knows
    each SLUICE_* key it is given, probes through `sluice health
    --command-config` (kubelet's gRPC probes speak no TLS), and mounts the
    Secret sluice-tls; etcd serves https with client certificates."""
    keys_of = {"broker": "broker.yaml", "controller": "controller.yaml", "coordinator": "coordinator.yaml"}
    seen = set()
    for path in paths:
        for _, doc in k8s_docs([path]):
            spec = pod_spec(doc)
            if not spec:
                continue
            secrets = {v.get("secret", {}).get("secretName") for v in spec.get("volumes") or []}
            if "sluice-tls" in secrets and not (spec.get("securityContext") or {}).get("fsGroup"):
                fail(f"{doc['kind']}/{doc['metadata']['name']}: mounts the Secret sluice-tls (mode 0440) "
                     "without a pod fsGroup: the non-root user cannot read the keys")
            for c in spec.get("containers") or []:
                where = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
                seen.add(c["name"])
                if "sluice-tls" not in secrets:
                    fail(f"{where}: the pod does not mount the Secret sluice-tls")
                if c["name"] == "etcd":
                    args = c.get("args") or []
                    for want in ("--client-cert-auth", "--listen-client-urls=https://0.0.0.0:2379"):
                        if want not in args:
                            fail(f"{where}: etcd lacks {want}")
                    continue
                if c["name"] == "console":
                    if "--command-config" not in (c.get("args") or []):
                        fail(f"{where}: the console needs --command-config")
                    continue
                env = {e["name"]: e.get("value") for e in c.get("env") or []}
                defined = set()
                for e in c.get("env") or []:
                    for ref in re.findall(r"\$\(([A-Z_]+)\)", str(e.get("value") or "")):
                        if ref not in defined:
                            fail(f"{where}: {e['name']} uses $({ref}) before it is defined")
                    defined.add(e["name"])
                if not str(env.get("SLUICE_LISTENERS", "")).startswith("SSL://"):
                    fail(f"{where}: SLUICE_LISTENERS is not SSL://")
                keys = documented_keys(keys_of[c["name"]])
                for var in env:
                    if var.startswith("SLUICE_"):
                        key = var.removeprefix("SLUICE_").lower().replace("_", ".")
                        if key not in keys:
                            fail(f"{where}: {var} names no key of deploy/config/{keys_of[c['name']]}")
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = c.get(kind) or {}
                    cmd = (probe.get("exec") or {}).get("command") or []
                    if "grpc" in probe or cmd[:3] != ["sluice", "health", "--server"] or "--command-config" not in cmd:
                        fail(f"{where}: {kind} must run `sluice health --command-config` (TLS)")
    for want in ("etcd", "broker", "controller", "coordinator", "console"):
        if want not in seen:
            fail(f"rendered TLS kustomization: no {want} container")


def check_cert_manager(paths):
    secrets = {d["spec"].get("secretName") for _, d in k8s_docs(paths) if d.get("kind") == "Certificate"}
    if "sluice-tls" not in secrets:
        fail("cert-manager.yaml: no Certificate writes the Secret sluice-tls")


def main(argv):
    if not argv:
        sys.exit(__doc__)
    what, args = argv[0], argv[1:]
    if what == "compose":
        check_compose()
    elif what == "compose-tls":
        check_compose_tls()
    elif what == "k8s-tls":
        check_k8s_tls(args)
    elif what == "cert-manager":
        check_cert_manager(args)
    elif what == "k8s":
        check_k8s(args, plain=True)
    elif what == "k8s-rendered":
        check_k8s(args, plain=False)
    elif what == "configmap":
        check_configmap(args)
    elif what == "dockerfile":
        check_dockerfile()
    elif what == "write-configmap":
        write_configmap()
    else:
        sys.exit(__doc__)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
