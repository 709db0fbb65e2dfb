"""Kafka's consumer group protocol (KIP-848, `group.protocol=consumer`)
with confluent-kafka: the coordinator assigns, members only heartbeat.
Each test runs against a standalone node and a 3-broker cluster."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupType, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from test_kafka_clients import produce_all


def member(t, group: str, name: str, protocol: str = "consumer", **extra) -> Consumer:
    conf = {
        "bootstrap.servers": t.bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


def parts(c: Consumer) -> set:
    return {tp.partition for tp in c.assignment()}


def poll_all(members, seen: dict, rounds: int = 1) -> None:
    """Polls each member, noting which member read which value; checks that
    no two members own a partition at the same moment."""
    for _ in range(rounds):
        for name, c in members.items():
            read = [m for m in c.consume(num_messages=200, timeout=0.05) if m.error() is None]
            for m in read:
                seen.setdefault(int(m.value()), set()).add(name)
            if read:
                c.commit(asynchronous=False)
        owned = [parts(c) for c in members.values()]
        for i, a in enumerate(owned):
            for b in owned[i + 1:]:
                assert not a & b, f"partition owned twice: {owned}"


def test_members_split_the_partitions_and_read_every_record(target):
    topic = target.create_topic(partitions=6)
    group = f"kip848-{uuid.uuid4().hex[:8]}"
    produce_all(Producer({"bootstrap.servers": target.bootstrap}), topic,
                ((None, str(i).encode()) for i in range(300)))
    members = {"a": member(target, group, "a")}
    members["a"].subscribe([topic])
    seen: dict = {}
    deadline = time.time() + 30
    while parts(members["a"]) != set(range(6)):
        assert time.time() < deadline, f"a alone holds {parts(members['a'])}"
        poll_all(members, seen)
    members["b"] = member(target, group, "b")
    members["b"].subscribe([topic])
    # The coordinator moves three partitions to b: a revokes them, then b
    # takes them, never both at once.
    deadline = time.time() + 60
    while not (len(parts(members["a"])) == 3 and len(parts(members["b"])) == 3):
        assert time.time() < deadline, f"a {parts(members['a'])} b {parts(members['b'])}"
        poll_all(members, seen)
    deadline = time.time() + 30
    while len(seen) < 300:
        assert time.time() < deadline, f"read {len(seen)} of 300"
        poll_all(members, seen)
    assert sorted(seen) == list(range(300))
    # Kept in a variable: a collected AdminClient never completes its futures.
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    d = admin.describe_consumer_groups([group], request_timeout=30)[group].result()
    assert d.type == ConsumerGroupType.CONSUMER
    assigned = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}
    assert assigned == {"a": parts(members["a"]), "b": parts(members["b"])}
    out = target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap,
                        "--describe", "--group", group).stdout
    assert topic in out and "b" in out.split(), out
    out = target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap,
                        "--describe", "--group", group, "--state").stdout
    assert "TARGET-ASSIGNMENT-EPOCH" in out and "uniform" in out, out
    out = target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap,
                        "--list", "--type").stdout
    assert any(line.split()[:2] == [group, "Consumer"] for line in out.splitlines() if line), out
    for c in members.values():
        c.close()


def test_a_group_moves_between_protocols_online_without_splitting(target):
    """KIP-848's migration (group.consumer.migration.policy, bidirectional by
    default): a consumer-protocol member joins a classic group with members
    (upgrade), the classic member stays, served by the coordinator's
    assignment; when the consumer-protocol member leaves, the group is
    classic again (downgrade). Never two owners of a partition; every record
    read."""
    topic = target.create_topic(partitions=4)
    group = f"kip848-{uuid.uuid4().hex[:8]}"
    produce_all(Producer({"bootstrap.servers": target.bootstrap}), topic,
                ((None, str(i).encode()) for i in range(200)))
    admin = AdminClient({"bootstrap.servers": target.bootstrap})

    def group_type():
        return admin.describe_consumer_groups([group], request_timeout=30)[group].result().type

    members = {"old": member(target, group, "old", protocol="classic",
                             **{"heartbeat.interval.ms": 500, "session.timeout.ms": 10000})}
    members["old"].subscribe([topic])
    seen: dict = {}
    deadline = time.time() + 60
    while parts(members["old"]) != set(range(4)):
        assert time.time() < deadline, f"old holds {parts(members['old'])}"
        poll_all(members, seen)
    assert group_type() == ConsumerGroupType.CLASSIC
    members["new"] = member(target, group, "new")
    members["new"].subscribe([topic])
    deadline = time.time() + 90
    while not (len(parts(members["old"])) == 2 and len(parts(members["new"])) == 2):
        assert time.time() < deadline, f"old {parts(members['old'])} new {parts(members['new'])}"
        poll_all(members, seen)
    assert group_type() == ConsumerGroupType.CONSUMER
    deadline = time.time() + 60
    while len(seen) < 200:
        assert time.time() < deadline, f"read {len(seen)} of 200"
        poll_all(members, seen)
    assert sorted(seen) == list(range(200))
    members.pop("new").close()
    deadline = time.time() + 90
    while parts(members["old"]) != set(range(4)):
        assert time.time() < deadline, f"old holds {parts(members['old'])} after new left"
        poll_all(members, seen)
    assert group_type() == ConsumerGroupType.CLASSIC
    members["old"].close()


def test_consumer_protocol_bad_input_gets_kafkas_errors(target):
    topic = target.create_topic(partitions=1)
    group = f"kip848-{uuid.uuid4().hex[:8]}"
    c = member(target, group, "x", **{"group.remote.assignor": "no-such-assignor"})
    c.subscribe([topic])
    error = None
    deadline = time.time() + 30
    while error is None:
        assert time.time() < deadline, "an unknown assignor was not refused"
        m = c.poll(0.2)
        if m is not None and m.error() is not None:
            error = m.error()
    # librdkafka makes it fatal, naming Kafka's UNSUPPORTED_ASSIGNOR.
    assert error.code() == KafkaError._FATAL and "assignor" in error.str(), error
    c.close()
