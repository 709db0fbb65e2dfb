"""Kafka's own clients over TLS: confluent-kafka, kafka-python and kcat with
security.protocol=SSL against a standalone node and a local cluster started
with `scripts/local-cluster.sh up --tls` (mTLS everywhere); plaintext, a
wrong CA and a missing client certificate refused, nothing written."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer

from conftest import REPO, SLUICE, TARGETS, Target, free_port, stop, wait_port

GEN_CERTS = REPO / "scripts" / "gen-certs.sh"


class TlsTarget(Target):
    """A Target whose clients need `props` (librdkafka names)."""

    props: dict

    def sluice(self, *args, check=True, timeout=60):
        # Every CLI call needs the client file; tools that take
        # --bootstrap-server take --command-config too.
        if "--bootstrap-server" in args:
            args = (*args, "--command-config", str(self.workdir / "client.properties"))
        return super().sluice(*args, check=check, timeout=timeout)


def start_tls_standalone(workdir: Path) -> TlsTarget:
    certs = workdir / "certs"
    subprocess.run([str(GEN_CERTS), "--dir", str(certs), "node", "admin"], check=True,
                   capture_output=True)
    (workdir / "standalone.yaml").write_text(
        "broker:\n"
        f"  ssl.certificate.location: {certs}/node.pem\n"
        f"  ssl.key.location: {certs}/node.key\n"
        f"  ssl.ca.location: {certs}/ca.pem\n"
        "  ssl.client.auth: required\n")
    (workdir / "client.properties").write_text(
        "security.protocol=SSL\n"
        f"ssl.ca.location={certs}/ca.pem\n"
        f"ssl.certificate.location={certs}/admin.pem\n"
        f"ssl.key.location={certs}/admin.key\n")
    port = free_port()
    log = open(workdir / "standalone.log", "w")
    proc = subprocess.Popen(
        [str(SLUICE), "standalone", "--data-dir", str(workdir / "data"), "--no-console",
         "--listen", f"SSL://127.0.0.1:{port}", "--config", str(workdir / "standalone.yaml")],
        stdout=log, stderr=subprocess.STDOUT)
    wait_port("127.0.0.1", port)
    t = TlsTarget("standalone", f"127.0.0.1:{port}", 1, workdir, [proc])
    deadline = time.time() + 60
    while t.sluice("cluster", "--bootstrap-server", t.bootstrap, "--describe",
                   check=False).returncode != 0:
        assert time.time() < deadline, (workdir / "standalone.log").read_text()
        time.sleep(0.2)
    return t


def start_tls_cluster(workdir: Path) -> TlsTarget:
    res = subprocess.run(
        [str(REPO / "scripts" / "local-cluster.sh"), "up", "--brokers", "3", "--dir",
         str(workdir), "--debug", "--tls"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"local-cluster.sh up --tls failed:\n{res.stdout}\n{res.stderr}"
    return TlsTarget("cluster", (workdir / "bootstrap").read_text().strip(), 3, workdir)


@pytest.fixture(scope="module", params=TARGETS)
def tls(request) -> TlsTarget:
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-tls-{request.param}-"))
    t = start_tls_standalone(workdir) if request.param == "standalone" else start_tls_cluster(workdir)
    props = {}
    for line in (workdir / "client.properties").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            props[k.strip()] = v.strip()
    t.props = props
    yield t
    stop(t)
    shutil.rmtree(workdir, ignore_errors=True)


def rd_conf(t: TlsTarget, **extra) -> dict:
    return {"bootstrap.servers": t.bootstrap, **t.props, **extra}


def test_confluent_kafka_produces_and_consumes_over_ssl(tls):
    topic = tls.create_topic(partitions=1)
    p = Producer(rd_conf(tls, acks="all"))
    errors = []
    for i in range(20):
        p.produce(topic, value=f"secret-{i}".encode(),
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer(rd_conf(tls, **{"group.id": f"g-{uuid.uuid4().hex[:6]}",
                                 "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < 20 and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert got == [f"secret-{i}" for i in range(20)]


def test_kafka_python_and_kcat_over_ssl(tls, kcat):
    topic = tls.create_topic(partitions=1)
    ctx = ssl.create_default_context(cafile=tls.props["ssl.ca.location"])
    ctx.load_cert_chain(tls.props["ssl.certificate.location"], tls.props["ssl.key.location"])
    kp = KafkaProducer(bootstrap_servers=tls.bootstrap.split(","), security_protocol="SSL",
                       ssl_context=ctx, acks="all")
    kp.send(topic, b"from-kafka-python").get(timeout=30)
    kp.close()
    ssl_args = [f"-X{k}={v}" for k, v in tls.props.items()]
    subprocess.run([kcat, "-b", tls.bootstrap, *ssl_args, "-t", topic, "-P"],
                   input=b"from-kcat\n", check=True, timeout=60)
    out = subprocess.run([kcat, "-b", tls.bootstrap, *ssl_args, "-t", topic, "-C", "-e",
                          "-o", "beginning", "-q"], capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().split() == ["from-kafka-python", "from-kcat"]
    kc = KafkaConsumer(topic, bootstrap_servers=tls.bootstrap.split(","),
                       security_protocol="SSL", ssl_context=ctx,
                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
    assert [m.value for m in kc][:2] == [b"from-kafka-python", b"from-kcat"]
    kc.close()


def test_plaintext_wrong_ca_and_no_client_certificate_are_refused_and_write_nothing(tls, tmp_path):
    topic = tls.create_topic(partitions=1)
    other = tmp_path / "other"
    subprocess.run([str(GEN_CERTS), "--dir", str(other), "stranger"], check=True,
                   capture_output=True)
    # What librdkafka says, as a person reads it.
    cases = {
        # librdkafka is cut off at its first request (the server logs why).
        "plaintext": ({}, "APIVERSION_QUERY"),
        "wrong CA": ({**tls.props, "ssl.ca.location": str(other / "ca.pem")},
                     "certificate verify failed"),
        "no client certificate": ({"security.protocol": "SSL",
                                   "ssl.ca.location": tls.props["ssl.ca.location"]}, "SSL"),
        "certificate from another CA": ({**tls.props,
                                         "ssl.certificate.location": str(other / "stranger.pem"),
                                         "ssl.key.location": str(other / "stranger.key")}, "SSL"),
    }
    for what, (extra, says) in cases.items():
        err = refused_to({"bootstrap.servers": tls.bootstrap, **extra}, topic)
        assert says in err, f"{what}: {err[:600]}"
    # Nothing the refused clients sent was written.
    c = Consumer(rd_conf(tls, **{"group.id": "probe", "enable.auto.commit": False}))
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)
    c.close()
    assert hi == 0, f"{hi} records written by refused clients"


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def refused_to(conf: dict, topic: str) -> str:
    """Produces one record; returns what librdkafka logged and reported."""
    seen = Collect()
    log = logging.getLogger(f"rdkafka-{uuid.uuid4().hex[:6]}")
    log.addHandler(seen)
    log.setLevel(logging.DEBUG)
    p = Producer({**conf, "message.timeout.ms": 2500, "logger": log,
                  "error_cb": lambda e: seen.lines.append(str(e))})
    result = []
    p.produce(topic, value=b"must-not-land", on_delivery=lambda err, msg: result.append(err))
    p.flush(15)
    assert result and result[0] is not None, f"acknowledged with {conf}"
    return " ".join(seen.lines) + " " + str(result[0])
