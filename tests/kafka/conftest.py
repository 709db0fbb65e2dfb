"""Fixtures for the Kafka-protocol tests: a real Sluice node or cluster, the
real clients (confluent-kafka, kafka-python, kcat) pointed at it.

Environment:
  SLUICE_KAFKA_TARGETS  comma list of targets to run against: standalone,cluster
                        (default both).
  SLUICE_BIN_DIR        where sluice binaries are (default <repo>/target/debug).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("SLUICE_BIN_DIR", REPO / "target" / "debug"))
SLUICE = BIN_DIR / "sluice"
TARGETS = os.environ.get("SLUICE_KAFKA_TARGETS", "standalone,cluster").split(",")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} not listening after {timeout}s")


@dataclass
class Target:
    """A running Sluice: `bootstrap` serves gRPC and Kafka's protocol."""

    kind: str
    bootstrap: str
    brokers: int
    workdir: Path
    procs: list = field(default_factory=list)

    def sluice(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [str(SLUICE), *args], capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def create_topic(self, partitions: int = 1, rf: int | None = None, name: str | None = None,
                     configs: dict | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        rf = rf or min(self.brokers, 3)
        args = ["topics", "--bootstrap-server", self.bootstrap, "--create", "--topic", name,
                "--partitions", str(partitions), "--replication-factor", str(rf)]
        for k, v in (configs or {}).items():
            args += ["--config", f"{k}={v}"]
        self.sluice(*args)
        return name

    def broker_pid(self, broker_id: int) -> int:
        assert self.kind == "cluster"
        return int((self.workdir / "pids" / f"broker-{broker_id}.pid").read_text().strip())

    def restart(self, name: str) -> None:
        """Restarts a process of the cluster and waits until every broker is
        registered again."""
        subprocess.run([str(REPO / "scripts" / "local-cluster.sh"), "restart", name,
                        "--dir", str(self.workdir)], check=True, capture_output=True, timeout=120)
        deadline = time.time() + 60
        while True:
            out = self.sluice("cluster", "--bootstrap-server", self.bootstrap, "--describe",
                              check=False).stdout
            if out.count("Status: alive") == self.brokers:
                return
            if time.time() > deadline:
                raise TimeoutError(f"{name} did not come back:\n{out}")
            time.sleep(0.3)


def start_standalone(workdir: Path) -> Target:
    port = free_port()
    log = open(workdir / "standalone.log", "w")
    proc = subprocess.Popen(
        [str(SLUICE), "standalone", "--data-dir", str(workdir / "data"),
         "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    wait_port("127.0.0.1", port)
    t = Target("standalone", f"127.0.0.1:{port}", 1, workdir, [proc])
    # Ready when the node answers a metadata call.
    deadline = time.time() + 60
    while time.time() < deadline:
        if t.sluice("cluster", "--bootstrap-server", t.bootstrap, "--describe", check=False).returncode == 0:
            return t
        time.sleep(0.2)
    raise TimeoutError("standalone node did not become ready")


def start_cluster(workdir: Path) -> Target:
    script = REPO / "scripts" / "local-cluster.sh"
    res = subprocess.run(
        [str(script), "up", "--brokers", "3", "--dir", str(workdir), "--debug"],
        capture_output=True, text=True, timeout=300,
    )
    if res.returncode != 0:
        raise RuntimeError(f"local-cluster.sh up failed:\n{res.stdout}\n{res.stderr}")
    # Every broker, as applications list them: a killed one must not cut
    # a new client off.
    bootstrap = (workdir / "bootstrap").read_text().strip()
    return Target("cluster", bootstrap, 3, workdir)


def stop(t: Target) -> None:
    if t.kind == "standalone":
        for p in t.procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    else:
        subprocess.run([str(REPO / "scripts" / "local-cluster.sh"), "down", "--dir", str(t.workdir)],
                       capture_output=True, timeout=120)


@pytest.fixture(scope="session", params=TARGETS)
def target(request) -> Target:
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} missing: cargo build --workspace --bins")
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-kafka-{request.param}-"))
    t = start_standalone(workdir) if request.param == "standalone" else start_cluster(workdir)
    yield t
    stop(t)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if not path:
        pytest.fail("kcat missing (Debian package kcat; scripts/test.sh installs it)")
    return path
