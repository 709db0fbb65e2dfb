"""Delayed delivery through Kafka clients (issue 14): a record header is the
whole API, so confluent-kafka (librdkafka), kafka-python and kcat use it as
they are. Each test runs against a standalone node and a 3-broker cluster."""

from __future__ import annotations

import subprocess
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer

AFTER = "sluice.deliver.after.ms"


def read_all(t, topic: str, want: int, timeout: float = 30.0) -> list:
    """Every record of `topic` from the start until `want` came (and a second
    more), each with the time it was first seen (ms)."""
    c = Consumer({
        "bootstrap.servers": t.bootstrap,
        "group.id": f"g-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    settle = None
    while time.time() < deadline:
        for m in c.consume(num_messages=100, timeout=0.2):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append((int(time.time() * 1000), m))
        if len(out) >= want:
            settle = settle or time.time() + 1.0
            if time.time() > settle:
                break
    c.close()
    return out


def headers(m) -> dict:
    return {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}


def test_confluent_kafka_delays_records_by_header_and_they_come_in_due_order(target):
    topic = target.create_topic()
    p = Producer({"bootstrap.servers": target.bootstrap, "enable.idempotence": True})
    sent = int(time.time() * 1000)
    p.produce(topic, key=b"o-1", value=b"late", headers=[(AFTER, b"2500"), ("trace", b"t-1")])
    p.produce(topic, key=b"o-2", value=b"soon", headers=[(AFTER, b"1200")])
    p.produce(topic, key=b"o-3", value=b"now")
    assert p.flush(30) == 0
    got = read_all(target, topic, 3)
    assert [m.value() for _, m in got] == [b"now", b"soon", b"late"]
    for seen, m in got[1:]:
        h = headers(m)
        due = int(h["sluice.delay.due.ms"])
        assert due >= sent + 1200
        assert seen >= due, f"seen at {seen}, due at {due}"
        assert AFTER not in h
    assert headers(got[2][1])["trace"] == "t-1"


def test_a_bad_delay_fails_the_delivery_and_stores_nothing(target):
    topic = target.create_topic()
    p = Producer({"bootstrap.servers": target.bootstrap, "retries": 0})
    errors = []
    p.produce(topic, value=b"x", headers=[(AFTER, b"ten seconds")],
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
    assert read_all(target, topic, 1, timeout=2) == []


def test_kafka_python_and_kcat_delay_by_header_too(target, kcat):
    import kafka

    topic = target.create_topic()
    kp = kafka.KafkaProducer(bootstrap_servers=target.bootstrap)
    kp.send(topic, value=b"from-kafka-python", headers=[(AFTER, b"1000")]).get(timeout=30)
    kp.close()
    subprocess.run([kcat, "-P", "-b", target.bootstrap, "-t", topic, "-H", f"{AFTER}=1000"],
                   input=b"from-kcat\n", check=True, timeout=30)
    got = read_all(target, topic, 2)
    assert sorted(m.value() for _, m in got) == [b"from-kafka-python", b"from-kcat"]
    for _, m in got:
        assert "sluice.delay.id" in headers(m)
