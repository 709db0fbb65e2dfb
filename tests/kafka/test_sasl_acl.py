"""SASL and ACLs through Kafka's own clients: confluent-kafka, kafka-python and
kcat log in with SCRAM-SHA-256/512 and PLAIN over SASL_PLAINTEXT and SASL_SSL
to standalone nodes with an authorizer; wrong credentials are refused; ACLs
made with Kafka's AdminClient allow and refuse with Kafka's error codes; and
nothing a refused client sends is written (counted back as the super user)."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import kafka.errors as kerr
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         KafkaAdminClient, ResourcePatternFilter)
from kafka.admin import ResourceType as KpResourceType

from conftest import REPO, SLUICE, free_port, wait_port

ADMIN, ALICE, BOB = ("admin", "admin-secret"), ("alice", "alice-secret"), ("bob", "bob-secret")
SCRAM = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
# librdkafka retries a refused login every few ms and logs each try.
QUIET = logging.getLogger("rdkafka-quiet")
QUIET.setLevel(logging.CRITICAL)


@dataclass
class SaslNode:
    bootstrap: str
    protocol: str
    workdir: Path
    proc: subprocess.Popen
    ca: str | None = None
    admins: dict = field(default_factory=dict)

    def conf(self, user=ADMIN, mechanism="SCRAM-SHA-256", **extra) -> dict:
        """librdkafka settings for `user` (name, password)."""
        c = {"bootstrap.servers": self.bootstrap, "security.protocol": self.protocol,
             "sasl.mechanism": mechanism, "sasl.username": user[0],
             "sasl.password": user[1], "logger": QUIET}
        if self.ca:
            c["ssl.ca.location"] = self.ca
        return {**c, **extra}

    def kafka_python(self, user=ADMIN, mechanism="SCRAM-SHA-256") -> dict:
        return {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol,
                "sasl_mechanism": mechanism, "sasl_plain_username": user[0],
                "sasl_plain_password": user[1]}

    def kcat(self, user, mechanism="SCRAM-SHA-256") -> list[str]:
        return [f"-X{k}={v}" for k, v in (("security.protocol", self.protocol),
                                          ("sasl.mechanisms", mechanism),
                                          ("sasl.username", user[0]),
                                          ("sasl.password", user[1]))]

    def sluice(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The sluice CLI as admin (gRPC, --command-config)."""
        res = subprocess.run([str(SLUICE), *args, "--bootstrap-server", self.bootstrap,
                              "--command-config", str(self.workdir / "admin.properties")],
                             capture_output=True, text=True, timeout=60)
        assert not check or res.returncode == 0, f"sluice {args}:\n{res.stdout}\n{res.stderr}"
        return res

    def admin(self, user=ADMIN) -> AdminClient:
        # Kept: a collected AdminClient fails its pending futures.
        if user not in self.admins:
            self.admins[user] = AdminClient(self.conf(user))
        return self.admins[user]


def start_node(workdir: Path, protocol: str) -> SaslNode:
    config = ["broker:", "  authorizer.class.name: kafka.security.authorizer.AclAuthorizer",
              "  super.users: User:admin"]
    props = [f"security.protocol={protocol}", f"sasl.username={ADMIN[0]}",
             f"sasl.password={ADMIN[1]}"]
    ca = None
    if protocol == "SASL_SSL":
        certs = workdir / "certs"
        subprocess.run([str(REPO / "scripts" / "gen-certs.sh"), "--dir", str(certs), "node"],
                       check=True, capture_output=True)
        ca = str(certs / "ca.pem")
        config += [f"  ssl.certificate.location: {certs}/node.pem",
                   f"  ssl.key.location: {certs}/node.key", f"  ssl.ca.location: {ca}"]
        props.append(f"ssl.ca.location={ca}")
    (workdir / "node.yaml").write_text("\n".join(config) + "\n")
    (workdir / "admin.properties").write_text("\n".join(props) + "\n")
    port = free_port()
    seeds = [a for m in SCRAM
             for a in ("--add-scram", f"{m}=[name={ADMIN[0]},password={ADMIN[1]}]")]
    proc = subprocess.Popen(
        [str(SLUICE), "standalone", "--data-dir", str(workdir / "data"), "--no-console",
         "--listen", f"{protocol}://127.0.0.1:{port}", "--config", str(workdir / "node.yaml"),
         *seeds], stdout=open(workdir / "node.log", "w"), stderr=subprocess.STDOUT)
    wait_port("127.0.0.1", port)
    node = SaslNode(f"127.0.0.1:{port}", protocol, workdir, proc, ca)
    deadline = time.time() + 60
    while node.sluice("cluster", "--describe", check=False).returncode != 0:
        assert proc.poll() is None and time.time() < deadline, (workdir / "node.log").read_text()
        time.sleep(0.2)
    return node


def node_fixture(protocol: str):
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} missing: cargo build --workspace --bins")
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-{protocol.lower()}-"))
    node = start_node(workdir, protocol)
    for name, password in (ALICE, BOB):
        node.sluice("users", "--create", name, "--password", password)
    yield node
    died = node.proc.poll()
    node.proc.send_signal(signal.SIGTERM)
    try:
        node.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.proc.kill()
    # A node that died mid-module keeps its log for the post-mortem.
    assert died is None, f"the {protocol} node exited ({died}): see {workdir}/node.log"
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def node():
    yield from node_fixture("SASL_PLAINTEXT")


@pytest.fixture(scope="module")
def tls_node():
    yield from node_fixture("SASL_SSL")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_topic(node: SaslNode, prefix: str = "t") -> str:
    name = uid(prefix)
    node.admin().create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def allow(principal: str, rtype: ResourceType, name: str, op: AclOperation) -> AclBinding:
    return AclBinding(rtype, name, ResourcePatternType.LITERAL, principal, "*", op,
                      AclPermissionType.ALLOW)


def grant(node: SaslNode, *bindings: AclBinding) -> None:
    for f in node.admin().create_acls(list(bindings)).values():
        f.result(30)


def count(node: SaslNode, topic: str) -> int:
    """Records in partition 0, as the super user sees them."""
    c = Consumer(node.conf(**{"group.id": "counter", "enable.auto.commit": False}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)[1]
    finally:
        c.close()


def produce(conf: dict, topic: str, values: list[bytes]) -> list:
    """The delivery errors: [] when every value was written. (Never compare
    a KafkaError with None: confluent-kafka leaves a TypeError pending.)"""
    p = Producer({"message.timeout.ms": 5000, **conf})
    results = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: results.append(err))
    p.flush(30)
    assert len(results) == len(values), "records without a delivery report"
    return [e for e in results if e is not None]


def consume(conf: dict, topic: str, n: int, timeout: float = 20):
    """Up to n values, stopping at the first error; (values, errors)."""
    errors = []
    c = Consumer({"auto.offset.reset": "earliest", "error_cb": errors.append, **conf})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < n and not errors and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None:
            if m.error():
                errors.append(m.error())
            else:
                got.append(m.value())
    c.close()
    return got, errors


def codes(errors) -> set:
    return {e.code() for e in errors}


def refused(future, code) -> None:
    with pytest.raises(KafkaException) as e:
        future.result(30)
    assert e.value.args[0].code() == code, e.value


@pytest.mark.parametrize("mechanism", SCRAM)
def test_confluent_kafka_scram_over_sasl_ssl(tls_node, mechanism):
    # alice's rights come from sluice acls (gRPC over TLS) as a prefix: the
    # CLI's path, and prefixed ACLs, on the way.
    for flags in (["--producer", "--topic", "ssl-"],
                  ["--consumer", "--topic", "ssl-", "--group", "ssl-"]):
        tls_node.sluice("acls", "--add", "--allow-principal", "User:alice",
                        "--resource-pattern-type", "prefixed", *flags)
    topic = new_topic(tls_node, "ssl")
    values = [f"{mechanism}-{i}".encode() for i in range(20)]
    assert produce(tls_node.conf(ALICE, mechanism, acks="all"), topic, values) == []
    got, errors = consume(tls_node.conf(ALICE, mechanism, **{"group.id": uid("ssl")}), topic, 20)
    assert got == values and not errors, errors
    assert count(tls_node, topic) == 20


def test_plain_over_sasl_plaintext(node):
    topic, group = new_topic(node), uid("g")
    grant(node, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE),
          allow("User:alice", ResourceType.TOPIC, topic, AclOperation.READ),
          allow("User:alice", ResourceType.GROUP, group, AclOperation.READ))
    assert produce(node.conf(ALICE, "PLAIN"), topic, [b"p1", b"p2"]) == []
    got, errors = consume(node.conf(ALICE, "PLAIN", **{"group.id": group}), topic, 2)
    assert got == [b"p1", b"p2"] and not errors, errors


def test_kafka_python_and_kcat_log_in_with_scram(node, kcat):
    topic, group = new_topic(node), uid("g")
    grant(node, allow("User:bob", ResourceType.TOPIC, topic, AclOperation.WRITE),
          allow("User:bob", ResourceType.TOPIC, topic, AclOperation.READ),
          allow("User:bob", ResourceType.GROUP, group, AclOperation.READ))
    kp = KafkaProducer(acks="all", **node.kafka_python(BOB, "SCRAM-SHA-512"))
    kp.send(topic, b"from-kafka-python").get(timeout=30)
    kp.close()
    sasl = node.kcat(BOB)
    subprocess.run([kcat, "-b", node.bootstrap, *sasl, "-t", topic, "-P"],
                   input=b"from-kcat\n", check=True, timeout=60)
    out = subprocess.run([kcat, "-b", node.bootstrap, *sasl, "-t", topic, "-C", "-e", "-q",
                          "-o", "beginning"], capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().split() == ["from-kafka-python", "from-kcat"]
    kc = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest",
                       consumer_timeout_ms=15000, **node.kafka_python(BOB, "SCRAM-SHA-256"))
    got = []
    for m in kc:
        got.append(m.value)
        if len(got) == 2:
            break
    kc.close()
    assert got == [b"from-kafka-python", b"from-kcat"]


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_wrong_credentials_are_refused_and_write_nothing(node, kcat, who):
    creds = (ALICE[0], "not-alices-password") if who == "wrong password" else (uid("nobody"), "x")
    topic = new_topic(node)
    # Were the login accepted, alice could write here: only the login stops it.
    grant(node, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE))
    # One producer per mechanism, waited on together.
    tries = {}
    for mechanism in [*SCRAM, "PLAIN"]:
        seen, results = [], []
        p = Producer(node.conf(creds, mechanism, error_cb=seen.append,
                               **{"message.timeout.ms": 2500}))
        p.produce(topic, b"must-not-land", on_delivery=lambda err, msg, r=results: r.append(err))
        tries[mechanism] = (p, seen, results)
    for mechanism, (p, seen, results) in tries.items():
        p.flush(15)
        assert len(results) == 1 and results[0] is not None, f"{mechanism}: acknowledged"
        assert KafkaError._AUTHENTICATION in codes(seen), f"{mechanism}: {seen}"
        assert "authentication failed" in str(seen), seen
    res = subprocess.run([kcat, "-b", node.bootstrap, *node.kcat(creds), "-t", topic, "-P"],
                         input=b"must-not-land\n", capture_output=True, timeout=60)
    assert res.returncode != 0 and b"Authentication failure" in res.stderr, res.stderr[-500:]
    assert count(node, topic) == 0


def test_kafka_python_is_told_its_credentials_are_wrong(node, caplog):
    # Kafka answers SASL_AUTHENTICATION_FAILED, then closes the connection
    # connection.failed.authentication.delay.ms (100 ms) later. kafka-python
    # loses an answer read together with the close: a server that closes at
    # once leaves it saying only "socket disconnected".
    caplog.set_level(logging.WARNING, logger="kafka")
    with pytest.raises(kerr.KafkaError):
        KafkaProducer(bootstrap_timeout_ms=3000,
                      **node.kafka_python((ALICE[0], "not-alices-password")))
    assert "SaslAuthenticationFailedError" in caplog.text, caplog.text[-1500:]


def test_acls_made_with_the_admin_client_allow_and_refuse(node):
    topic, hidden, group = new_topic(node), new_topic(node), uid("g")
    alice_acls = [allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE),
                  allow("User:alice", ResourceType.TOPIC, topic, AclOperation.DESCRIBE)]
    bob_acls = [allow("User:bob", ResourceType.TOPIC, topic, AclOperation.READ),
                allow("User:bob", ResourceType.GROUP, group, AclOperation.READ)]
    grant(node, *alice_acls, *bob_acls)
    admin = node.admin()

    def listed(rtype, name):
        return set(admin.describe_acls(AclBindingFilter(
            rtype, name, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY)).result(30))

    assert listed(ResourceType.TOPIC, topic) == set(alice_acls + bob_acls[:1])
    assert listed(ResourceType.GROUP, group) == set(bob_acls[1:])

    assert produce(node.conf(ALICE), topic, [b"a1", b"a2"]) == []
    errors = produce(node.conf(BOB), topic, [b"bob"])
    assert codes(errors) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}, errors
    assert count(node, topic) == 2

    got, errors = consume(node.conf(BOB, **{"group.id": group}), topic, 2)
    assert got == [b"a1", b"a2"] and not errors, errors
    # alice may not use bob's group; in a group of her own, she may not read.
    got, errors = consume(node.conf(ALICE, **{"group.id": group}), topic, 1)
    assert not got and KafkaError.GROUP_AUTHORIZATION_FAILED in codes(errors), errors
    hers = uid("g")
    grant(node, allow("User:alice", ResourceType.GROUP, hers, AclOperation.READ))
    got, errors = consume(node.conf(ALICE, **{"group.id": hers}), topic, 1)
    assert not got and KafkaError.TOPIC_AUTHORIZATION_FAILED in codes(errors), errors

    # Listing leaves out what alice may not describe; naming it, existing or
    # not, is refused alike.
    alice = node.admin(ALICE)
    seen = alice.list_topics(timeout=15).topics
    assert topic in seen and hidden not in seen, sorted(seen)
    assert hidden in node.admin().list_topics(timeout=15).topics
    for name in (hidden, uid("never-made")):
        md = alice.list_topics(topic=name, timeout=15).topics[name]
        assert md.error is not None and md.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # KIP-679: a producer id needs Write on some topic, which alice has and a
    # fresh reader has not. (kafka-python: confluent-kafka 2.16 crashes on
    # the fatal error its idempotent producer gets.)
    assert produce(node.conf(ALICE, **{"enable.idempotence": True}), topic, [b"a3"]) == []
    reader = (uid("reader"), "reader-secret")
    node.sluice("users", "--create", reader[0], "--password", reader[1])
    reads = allow(f"User:{reader[0]}", ResourceType.TOPIC, topic, AclOperation.READ)
    grant(node, reads)
    kp = KafkaProducer(enable_idempotence=True, max_block_ms=10000, **node.kafka_python(reader))
    try:
        with pytest.raises(kerr.KafkaError, match="ClusterAuthorizationFailed"):
            kp.send(topic, b"reader-idem").get(timeout=15)
    finally:
        kp.close(timeout=5)
    assert count(node, topic) == 3

    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", None,
        AclOperation.ANY, AclPermissionType.ANY)])
    assert set(list(deleted.values())[0].result(30)) == set(alice_acls)
    assert listed(ResourceType.TOPIC, topic) == {bob_acls[0], reads}
    landed, start = 0, time.time()
    while True:
        errors = produce(node.conf(ALICE, **{"message.timeout.ms": 3000}), topic, [b"late"])
        if errors:
            break
        landed += 1
        assert time.time() - start < 2, "alice still writes 2 s after her ACLs were deleted"
    assert codes(errors) == {KafkaError.TOPIC_AUTHORIZATION_FAILED}, errors
    assert count(node, topic) == 3 + landed


def test_a_user_without_cluster_rights_is_refused_admin_work(node):
    topic, group = new_topic(node), uid("g")
    grant(node, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE))
    admin, alice = node.admin(), node.admin(ALICE)
    # A group with a committed offset, made by the super user.
    c = Consumer(node.conf(**{"group.id": group, "enable.auto.commit": False}))
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    c.close()

    # librdkafka calls the cluster resource BROKER.
    mine = allow("User:alice", ResourceType.BROKER, "kafka-cluster", AclOperation.ALL)
    refused(alice.create_acls([mine])[mine], KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    assert mine not in admin.describe_acls(everything).result(30)
    up = UserScramCredentialUpsertion(ALICE[0], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256,
                                                                    4096), b"takeover")
    refused(alice.alter_user_scram_credentials([up])[ALICE[0]],
            KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    assert produce(node.conf(ALICE), topic, [b"old-password-still-works"]) == []
    # kafka-python for the Describe* calls: librdkafka 2.16 reports a refused
    # DescribeAcls as an empty list and frees a stack string (and crashes) on
    # a refused DescribeUserScramCredentials.
    kp = KafkaAdminClient(**node.kafka_python(ALICE))
    try:
        with pytest.raises(kerr.ClusterAuthorizationFailedError):
            kp.describe_user_scram_credentials([BOB[0]])
        with pytest.raises(kerr.ClusterAuthorizationFailedError):
            kp.describe_acls(ACLFilter(None, "*", ACLOperation.ANY, ACLPermissionType.ANY,
                                       ResourcePatternFilter(KpResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY)))
        # Kafka answers DescribeCluster to anyone (what Metadata shows too).
        assert kp.describe_cluster()["brokers"]
    finally:
        kp.close()

    name = uid("t")
    refused(alice.create_topics([NewTopic(name, 1, 1)])[name],
            KafkaError.TOPIC_AUTHORIZATION_FAILED)
    refused(alice.delete_topics([topic])[topic], KafkaError.TOPIC_AUTHORIZATION_FAILED)
    on_cluster = admin.list_topics(timeout=15).topics
    assert topic in on_cluster and name not in on_cluster
    refused(alice.describe_consumer_groups([group])[group], KafkaError.GROUP_AUTHORIZATION_FAILED)
    refused(alice.delete_consumer_groups([group])[group], KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert admin.describe_consumer_groups([group])[group].result(30).group_id == group
    c = Consumer(node.conf(**{"group.id": group}))
    assert c.committed([TopicPartition(topic, 0)], timeout=15)[0].offset == 0
    c.close()


def test_scram_credentials_set_through_the_admin_client_log_in(node):
    user, password = uid("dave"), b"dave-secret"
    admin = node.admin()
    # librdkafka salts and hashes the password itself; Sluice stores the result.
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(m, i), password)
           for m, i in ((ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192))]
    admin.alter_user_scram_credentials(ups)[user].result(30)
    desc = admin.describe_user_scram_credentials([user])[user].result(30)
    assert {(i.mechanism, i.iterations) for i in desc.scram_credential_infos} == {
        (ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192)}

    topic = new_topic(node)
    grant(node, allow(f"User:{user}", ResourceType.TOPIC, topic, AclOperation.WRITE))
    dave = (user, password.decode())
    for mechanism in [*SCRAM, "PLAIN"]:
        assert produce(node.conf(dave, mechanism), topic, [mechanism.encode()]) == [], mechanism
    assert count(node, topic) == 3

    admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)])[user].result(30)
    seen = []
    errors = produce(node.conf(dave, "SCRAM-SHA-512", error_cb=seen.append,
                               **{"message.timeout.ms": 2500}), topic, [b"gone"])
    assert errors and KafkaError._AUTHENTICATION in codes(seen), seen
    assert produce(node.conf(dave, "SCRAM-SHA-256"), topic, [b"still"]) == []
    assert count(node, topic) == 4
