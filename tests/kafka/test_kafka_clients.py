"""Unmodified Kafka clients against Sluice: confluent-kafka (librdkafka),
kafka-python and kcat, through Kafka's binary protocol on the same port that
serves gRPC. Each test runs against a standalone node and a 3-broker cluster
(see conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

N = 10_000


def producer(t, **extra) -> Producer:
    conf = {"bootstrap.servers": t.bootstrap, "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def consumer(t, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": t.bootstrap,
        "group.id": f"g-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


def produce_all(p: Producer, topic: str, records, **kw) -> list:
    """Produces (key, value) pairs and returns the delivery reports."""
    reports = []

    def cb(err, msg):
        reports.append((err, msg))

    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=cb, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "messages still in flight after 60 s"
    errors = [e for e, _ in reports if e is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    return reports


def consume_n(c: Consumer, n: int, timeout: float = 60.0) -> list:
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            out.append(m)
    return out


def target_sluice(target):
    from conftest import SLUICE
    return SLUICE


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[length - rest:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------------------


def test_kcat_lists_brokers_topics_leaders_replicas_and_isr(target, kcat):
    topic = target.create_topic(partitions=3)
    res = subprocess.run([kcat, "-b", target.bootstrap, "-L", "-J"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    md = json.loads(res.stdout)
    assert len(md["brokers"]) == target.brokers
    t = next(t for t in md["topics"] if t["topic"] == topic)
    assert len(t["partitions"]) == 3
    ids = {b["id"] for b in md["brokers"]}
    for p in t["partitions"]:
        assert p["leader"] in ids
        assert len(p["replicas"]) == min(target.brokers, 3)
        assert {r["id"] for r in p["isrs"]} <= {r["id"] for r in p["replicas"]}


def test_round_trip_10000_records_with_each_acks(target):
    for acks in ("0", "1", "all"):
        topic = target.create_topic(partitions=3)
        p = producer(target, acks=acks)
        produce_all(p, topic, ((None, f"{acks}-{i}".encode()) for i in range(N)))
        c = consumer(target)
        c.subscribe([topic])
        got = consume_n(c, N)
        c.close()
        values = sorted(m.value().decode() for m in got)
        assert values == sorted(f"{acks}-{i}" for i in range(N)), f"acks={acks}: got {len(got)}"


def test_keys_land_on_kafkas_partition_with_headers_and_timestamps(target):
    topic = target.create_topic(partitions=6)
    p = producer(target, partitioner="murmur2_random")
    ts = int(time.time() * 1000) - 60_000
    reports = produce_all(
        p, topic, ((f"key-{i}".encode(), f"v{i}".encode()) for i in range(300)),
        headers=[("h1", b"x"), ("h2", None)], timestamp=ts,
    )
    for _, m in reports:
        assert m.partition() == kafka_partition(m.key(), 6), m.key()
    c = consumer(target)
    c.subscribe([topic])
    got = consume_n(c, 300)
    c.close()
    assert len(got) == 300
    for m in got:
        assert m.partition() == kafka_partition(m.key(), 6)
        assert m.headers() == [("h1", b"x"), ("h2", None)]
        assert m.timestamp()[1] == ts


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec(target, codec):
    topic = target.create_topic(partitions=1)
    p = producer(target, **{"compression.type": codec, "linger.ms": 20})
    produce_all(p, topic, ((None, (f"{codec}-{i}-" + "x" * 100).encode()) for i in range(2000)))
    c = consumer(target)
    c.subscribe([topic])
    got = consume_n(c, 2000)
    c.close()
    assert [m.value().decode().split("-")[1] for m in got] == [str(i) for i in range(2000)]


def test_consume_from_beginning_an_offset_and_a_timestamp(target):
    topic = target.create_topic(partitions=1)
    p = producer(target)
    base = int(time.time() * 1000) - 100_000
    for i in range(100):
        p.produce(topic, value=str(i).encode(), timestamp=base + i * 1000)
    assert p.flush(30) == 0
    c = consumer(target)
    c.assign([TopicPartition(topic, 0, 40)])
    got = consume_n(c, 60)
    assert [int(m.value()) for m in got] == list(range(40, 100))
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 100)
    [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 70_500)], timeout=10)
    assert tp.offset == 71
    c.assign([TopicPartition(topic, 0, tp.offset)])
    got = consume_n(c, 29)
    assert [int(m.value()) for m in got] == list(range(71, 100))
    c.close()


def test_a_group_of_three_consumes_each_record_once_and_commits_show_in_sluice(target):
    topic = target.create_topic(partitions=6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    p = producer(target)
    # Keyed, so all six partitions get records (librdkafka's sticky
    # partitioner would put a fast null-key burst on one).
    produce_all(p, topic, ((str(i).encode(), str(i).encode()) for i in range(3000)))
    members = [consumer(target, **{"group.id": group, "partition.assignment.strategy": "range",
                                   "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
               for _ in range(3)]
    for m in members:
        m.subscribe([topic])
    seen = []
    deadline = time.time() + 90
    while len(seen) < 3000 and time.time() < deadline:
        for m in members:
            for msg in m.consume(num_messages=500, timeout=0.2):
                if not msg.error():
                    seen.append(int(msg.value()))
    assert sorted(seen) == list(range(3000)), f"{len(seen)} consumed"
    assignments = [m.assignment() for m in members]
    assert sorted(tp.partition for a in assignments for tp in a) == list(range(6))
    assert all(len(a) == 2 for a in assignments), assignments
    # The sluice CLI reads the Kafka clients' membership (Kafka's encoding).
    out = target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap,
                        "--describe", "--group", group, "--members", "--verbose").stdout
    shares = re.findall(re.escape(topic) + r"\(([\d,]+)\)", out)
    assert sorted(int(p) for share in shares for p in share.split(",")) == list(range(6)), out
    for m in members:
        positions = [tp for tp in m.position(m.assignment()) if tp.offset >= 0]
        if positions:
            m.commit(offsets=positions, asynchronous=False)
    out = target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap,
                        "--describe", "--group", group).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith(group)]
    assert len(rows) == 6, out
    assert sum(int(r[3]) for r in rows) == 3000, out  # CURRENT-OFFSET column
    # One member leaves: the other two take its partitions.
    members[0].close()
    deadline = time.time() + 30
    while time.time() < deadline:
        for m in members[1:]:
            m.consume(num_messages=10, timeout=0.2)
        if sum(len(m.assignment()) for m in members[1:]) == 6:
            break
    assert sum(len(m.assignment()) for m in members[1:]) == 6
    for m in members[1:]:
        m.close()


def test_offsets_committed_by_sluice_are_read_by_confluent(target):
    topic = target.create_topic(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    p = producer(target)
    for part in (0, 1):
        for i in range(10):
            p.produce(topic, value=b"x", partition=part)
    assert p.flush(30) == 0
    target.sluice("consumer-groups", "--bootstrap-server", target.bootstrap, "--group", group,
                  "--topic", topic, "--reset-offsets", "--to-offset", "7", "--execute")
    c = consumer(target, **{"group.id": group})
    committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    assert [tp.offset for tp in committed] == [7, 7]
    c.close()


def test_admin_topics_partitions_configs_and_errors(target):
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    name = f"adm-{uuid.uuid4().hex[:8]}"
    fs = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=min(3, target.brokers),
                                       config={"retention.ms": "3600000"})])
    fs[name].result(30)
    md = admin.list_topics(timeout=10)
    assert len(md.topics[name].partitions) == 2
    admin.create_partitions([NewPartitions(name, 4)])[name].result(30)
    deadline = time.time() + 10
    while len(admin.list_topics(name, timeout=10).topics[name].partitions) != 4:
        assert time.time() < deadline, "partitions not added"
        time.sleep(0.2)
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)])
    configs = list(res.values())[0].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"
    # Errors a user meets, with Kafka's codes.
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(bad, 1, target.brokers + 1)])[bad].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    admin.delete_topics([name])[name].result(30)
    deadline = time.time() + 10
    while name in admin.list_topics(timeout=10).topics:
        assert time.time() < deadline, "topic not deleted"
        time.sleep(0.2)


def test_unknown_topic_and_record_too_large(target):
    p = producer(target, **{"message.timeout.ms": 5000, "allow.auto.create.topics": False})
    errors = []
    p.produce(f"missing-{uuid.uuid4().hex[:6]}", value=b"x", on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    assert errors and errors[0].code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART,
                                           KafkaError._MSG_TIMED_OUT), errors
    topic = target.create_topic(partitions=1)
    p = producer(target, **{"message.max.bytes": 5_000_000})
    errors = []
    p.produce(topic, value=b"x" * 2_000_000, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors


def test_kafka_python_produces_consumes_and_lists(target):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic

    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap)
    name = f"kp-{uuid.uuid4().hex[:8]}"
    admin.create_topics([KNewTopic(name, 3, min(3, target.brokers))])
    assert name in admin.list_topics()
    prod = KafkaProducer(bootstrap_servers=target.bootstrap, acks="all")
    for i in range(500):
        prod.send(name, key=f"k{i}".encode(), value=f"v{i}".encode())
    prod.flush(30)
    prod.close()
    cons = KafkaConsumer(name, bootstrap_servers=target.bootstrap, group_id=f"kp-{uuid.uuid4().hex[:6]}",
                         auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = [m for _, m in zip(range(500), cons)]
    cons.commit()
    cons.close()
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(500))
    for m in got:
        assert m.partition == kafka_partition(m.key, 3)
    admin.delete_topics([name])
    admin.close()


def test_kcat_produces_and_consumes(target, kcat):
    topic = target.create_topic(partitions=1)
    lines = "\n".join(f"k{i}:v{i}" for i in range(100)) + "\n"
    res = subprocess.run([kcat, "-b", target.bootstrap, "-P", "-t", topic, "-K:"], input=lines,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([kcat, "-b", target.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                          "-f", "%k=%s\n"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"k{i}=v{i}" for i in range(100)]


def test_transactions_and_sasl_get_a_clear_error(target):
    p = Producer({"bootstrap.servers": target.bootstrap, "transactional.id": "tx-1"})
    with pytest.raises(KafkaException):
        p.init_transactions(10)


def test_one_group_mixing_a_kafka_client_and_a_sluice_consumer(target, tmp_path):
    topic = target.create_topic(partitions=6)
    group = f"mixed-{uuid.uuid4().hex[:8]}"
    out = open(tmp_path / "sluice-member.out", "w")
    member = subprocess.Popen(
        [str(target_sluice(target)), "console-consumer", "--bootstrap-server", target.bootstrap,
         "--topic", topic, "--group", group, "--from-beginning",
         "--consumer-property", "heartbeat.interval.ms=500"],
        stdout=out, stderr=subprocess.DEVNULL,
    )
    try:
        c = consumer(target, **{"group.id": group, "partition.assignment.strategy": "range",
                                "heartbeat.interval.ms": 500, "enable.auto.commit": True})
        c.subscribe([topic])
        # Both members in one generation: range gives each three partitions.
        deadline = time.time() + 60
        while len(c.assignment()) != 3:
            assert time.time() < deadline, f"assignment {c.assignment()}"
            c.consume(num_messages=10, timeout=0.2)
        mine = {tp.partition for tp in c.assignment()}
        p = producer(target, partitioner="murmur2_random")
        produce_all(p, topic, ((str(i).encode(), str(i).encode()) for i in range(600)))
        got = []
        deadline = time.time() + 60
        while time.time() < deadline:
            got += [int(m.value()) for m in c.consume(num_messages=500, timeout=0.3) if not m.error()]
            theirs = [int(v) for v in (tmp_path / "sluice-member.out").read_text().split()]
            if len(got) + len(theirs) >= 600:
                break
        assert sorted(got + theirs) == list(range(600))
        assert all(kafka_partition(str(v).encode(), 6) in mine for v in got)
        assert not any(kafka_partition(str(v).encode(), 6) in mine for v in theirs)
        c.close()
    finally:
        member.terminate()
        member.wait(30)


def test_incremental_alter_configs_and_sluice_configs(target):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    topic = target.create_topic(partitions=1, configs={"retention.ms": "3600000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    list(admin.incremental_alter_configs([res]).values())[0].result(30)
    # Brokers answer from metadata that follows the controller's write.
    deadline = time.time() + 15
    while True:
        configs = list(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
                       .values())[0].result(30)
        if configs["segment.ms"].value == "600000" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert configs["segment.ms"].value == "600000"
    assert configs["cleanup.policy"].value == "delete,compact"
    assert configs["retention.ms"].value != "3600000"  # the broker default again
    # A bad value is refused with INVALID_CONFIG and changes nothing.
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        list(admin.incremental_alter_configs([bad]).values())[0].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    # The same through the CLI, as kafka-configs.sh is used.
    target.sluice("configs", "--bootstrap-server", target.bootstrap, "--entity-type", "topics",
                  "--entity-name", topic, "--alter", "--add-config",
                  "retention.ms=1000,cleanup.policy=[delete]", "--delete-config", "segment.ms")
    deadline = time.time() + 15
    while True:
        out = target.sluice("configs", "--bootstrap-server", target.bootstrap, "--entity-type",
                            "topics", "--entity-name", topic, "--describe").stdout
        if "retention.ms=1000" in out or time.time() > deadline:
            break
        time.sleep(0.2)
    assert "retention.ms=1000" in out and "cleanup.policy=delete" in out, out
    assert "segment.ms" not in out, out


def test_describe_log_dirs(target):
    from kafka.admin import KafkaAdminClient

    topic = target.create_topic(partitions=2)
    p = producer(target)
    for i in range(100):
        p.produce(topic, value=b"x" * 1000, partition=i % 2)
    assert p.flush(30) == 0
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap)
    replicas = min(3, target.brokers)
    # Followers may still be fetching the last batches: ask until they have.
    deadline = time.time() + 20
    while True:
        answers = admin.describe_log_dirs()
        assert len(answers) == target.brokers
        sizes = {}
        for a in answers:
            for d in a["log_dirs"]:
                assert d["error_code"] == 0 and d["log_dir"]
                for t in d["topics"]:
                    if t["name"] == topic:
                        for part in t["partitions"]:
                            sizes[(a["broker"], part["partition_index"])] = part["partition_size"]
        done = len(sizes) == 2 * replicas and all(s > 50 * 1000 for s in sizes.values())
        if done or time.time() > deadline:
            break
        time.sleep(0.5)
    admin.close()
    assert len(sizes) == 2 * replicas, sizes
    assert all(s > 50 * 1000 for s in sizes.values()), sizes


def test_delete_records_moves_the_log_start_on_every_replica(target, tmp_path):
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    topic = target.create_topic(partitions=2)
    p = producer(target)
    for i in range(100):
        p.produce(topic, value=str(i).encode(), partition=i % 2)
    assert p.flush(30) == 0
    [res] = admin.delete_records([TopicPartition(topic, 0, 30)]).values()
    assert res.result(30).low_watermark == 30
    c = consumer(target)
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (30, 50)
    c.assign([TopicPartition(topic, 0, 0)])  # below the start: auto.offset.reset
    got = consume_n(c, 20)
    c.close()
    assert [int(m.value()) for m in got] == list(range(60, 100, 2))
    # Past the high watermark: OFFSET_OUT_OF_RANGE.
    [res] = admin.delete_records([TopicPartition(topic, 1, 999)]).values()
    with pytest.raises(KafkaException) as e:
        res.result(30)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # kafka-delete-records.sh's file, through the sluice CLI (-1: everything).
    f = tmp_path / "offsets.json"
    f.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 1, "offset": -1}],
                             "version": 1}))
    out = target.sluice("delete-records", "--bootstrap-server", target.bootstrap,
                        "--offset-json-file", str(f)).stdout
    assert f"partition: {topic}-1\tlow_watermark: 50" in out, out
    # Followers follow the leader's log start: after the leader is killed,
    # the new leader serves from 30 too.
    if target.kind == "cluster":
        import os
        import signal

        victim = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        time.sleep(1)  # a follower fetch round carries the new log start
        os.kill(target.broker_pid(victim), signal.SIGKILL)
        try:
            deadline = time.time() + 30
            while True:
                leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
                if leader not in (victim, -1):
                    break
                assert time.time() < deadline, "no new leader"
                time.sleep(0.2)
            c = consumer(target)
            deadline = time.time() + 30
            while True:
                try:
                    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
                    break
                except KafkaException:
                    assert time.time() < deadline
                    time.sleep(0.2)
            c.close()
            assert (lo, hi) == (30, 50), f"new leader {leader}"
        finally:
            target.restart(f"broker-{victim}")


def test_a_killed_members_partitions_move_to_the_others(target, tmp_path):
    """kill -9 of a group member (its own process): after its session times
    out, the survivors own every partition and nothing is left unconsumed."""
    import os
    import signal
    import sys

    topic = target.create_topic(partitions=6)
    group = f"kill-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "member.py"
    script.write_text(
        "import sys, time\n"
        "from confluent_kafka import Consumer\n"
        "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': sys.argv[2],\n"
        "              'session.timeout.ms': 6000, 'heartbeat.interval.ms': 500,\n"
        "              'partition.assignment.strategy': 'range', 'auto.offset.reset': 'earliest'})\n"
        "c.subscribe([sys.argv[3]])\n"
        "while True:\n"
        "    c.poll(0.2)\n"
        "    if c.assignment():\n"
        "        print(len(c.assignment()), flush=True)\n"
    )
    victim = subprocess.Popen([sys.executable, str(script), target.bootstrap, group, topic],
                              stdout=subprocess.PIPE, text=True)
    try:
        members = [consumer(target, **{"group.id": group, "partition.assignment.strategy": "range",
                                       "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
                   for _ in range(2)]
        for m in members:
            m.subscribe([topic])
        # All three in one generation: two partitions each.
        deadline = time.time() + 60
        while sorted(len(m.assignment()) for m in members) != [2, 2]:
            assert time.time() < deadline, [m.assignment() for m in members]
            for m in members:
                m.consume(num_messages=10, timeout=0.1)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        # Its partitions move once its session expires.
        deadline = time.time() + 45
        while sum(len(m.assignment()) for m in members) != 6:
            assert time.time() < deadline, [m.assignment() for m in members]
            for m in members:
                m.consume(num_messages=10, timeout=0.1)
        p = producer(target)
        produce_all(p, topic, ((str(i).encode(), str(i).encode()) for i in range(600)))
        seen = []
        deadline = time.time() + 60
        while len(seen) < 600 and time.time() < deadline:
            for m in members:
                seen += [int(x.value()) for x in m.consume(num_messages=500, timeout=0.2)
                         if not x.error()]
        assert sorted(seen) == list(range(600))
        for m in members:
            m.close()
    finally:
        if victim.poll() is None:
            victim.kill()


def test_a_replica_behind_the_leaders_log_start_catches_up(target):
    """A follower that was down while DeleteRecords moved the log start past
    everything it has restarts its log at the leader's start and rejoins the
    ISR."""
    if target.kind != "cluster":
        pytest.skip("needs a cluster")
    import os
    import signal

    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    topic = target.create_topic(partitions=1, rf=3)
    md = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    follower = next(r for r in md.replicas if r != md.leader)
    p = producer(target)
    produce_all(p, topic, ((None, str(i).encode()) for i in range(100)))
    os.kill(target.broker_pid(follower), signal.SIGKILL)
    try:
        p = producer(target, acks="1")
        produce_all(p, topic, ((None, str(i).encode()) for i in range(100, 300)))
        # The high watermark moves once the dead follower leaves the ISR
        # (replica.lag.time.max.ms); DeleteRecords can only go up to it.
        c = consumer(target)
        deadline = time.time() + 60
        while c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1] < 300:
            assert time.time() < deadline, "the ISR never shrank"
            time.sleep(0.5)
        c.close()
        [res] = admin.delete_records([TopicPartition(topic, 0, 250)]).values()
        assert res.result(30).low_watermark == 250
    finally:
        target.restart(f"broker-{follower}")
    deadline = time.time() + 60
    while True:
        isr = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].isrs
        if follower in isr:
            break
        assert time.time() < deadline, f"broker {follower} never rejoined the ISR: {isr}"
        time.sleep(0.5)
    c = consumer(target)
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert (lo, hi) == (250, 300)
