"""Dead letters with a Kafka client (issue 14): the pattern of
docs/dead-letters.md, done by a confluent-kafka consumer with nothing but
topics and headers; `sluice dlq` lists what it wrote and redrives it."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

MAX_ATTEMPTS = 3


def failed_copy(msg, error, group, max_attempts=MAX_ATTEMPTS):
    """Where a failed record goes and its headers: docs/dead-letters.md's
    code, verbatim. The first failure records the origin; retries carry it on."""
    h = dict(msg.headers() or [])
    attempts = int(h.get("sluice.dlq.attempts", b"0")) + 1
    origin = (h.get("sluice.dlq.original.topic") or msg.topic().encode()).decode()
    keep = [(k, v) for k, v in (msg.headers() or [])
            if not k.startswith(("sluice.dlq.", "sluice.delay.", "sluice.deliver."))]
    if "sluice.dlq.original.topic" not in h:
        keep += [("sluice.dlq.original.topic", msg.topic().encode()),
                 ("sluice.dlq.original.partition", str(msg.partition()).encode()),
                 ("sluice.dlq.original.offset", str(msg.offset()).encode()),
                 ("sluice.dlq.original.timestamp", str(msg.timestamp()[1]).encode())]
    else:
        keep += [(k, v) for k, v in msg.headers() if k.startswith("sluice.dlq.original.")]
    keep += [("sluice.dlq.attempts", str(attempts).encode()),
             ("sluice.dlq.error", error.encode()),
             ("sluice.dlq.group", group.encode()),
             ("sluice.dlq.failed.ms", str(int(time.time() * 1000)).encode())]
    if attempts < max_attempts:
        delay = 1000 * 2 ** (attempts - 1)
        return f"{origin}.retry", keep + [("sluice.deliver.after.ms", str(delay).encode())]
    return f"{origin}.dlq", keep


def test_a_confluent_kafka_consumer_retries_and_dead_letters_and_sluice_redrives(target):
    topic = f"pay-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    for name in (topic, f"{topic}.retry", f"{topic}.dlq"):
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    p = Producer({"bootstrap.servers": target.bootstrap, "enable.idempotence": True})
    for i in range(6):
        p.produce(topic, key=f"k{i}".encode(), value=f"pay-{i}".encode(), headers=[("trace", b"t")])
    assert p.flush(30) == 0

    group = f"billing-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic, f"{topic}.retry"])
    handled, attempts, dead = [], {}, 0
    deadline = time.time() + 60
    while (len(handled) < 4 or dead < 2) and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            assert m is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
            continue
        v = m.value().decode()
        attempts.setdefault(v, []).append(m.topic())
        if int(v.split("-")[1]) % 3 != 0:
            handled.append(v)
        else:
            dest, hdrs = failed_copy(m, "card declined", group)
            dead += dest.endswith(".dlq")
            p.produce(dest, key=m.key(), value=m.value(), headers=hdrs, partition=m.partition())
            assert p.flush(30) == 0  # acknowledged before the commit passes it
        c.commit(message=m, asynchronous=False)
    c.close()
    assert sorted(handled) == ["pay-1", "pay-2", "pay-4", "pay-5"]
    for v in ("pay-0", "pay-3"):
        assert attempts[v] == [topic, f"{topic}.retry", f"{topic}.retry"], attempts

    listed = target.sluice("dlq", "--bootstrap-server", target.bootstrap, "--topic", f"{topic}.dlq",
                           "--list", "--print-value").stdout.splitlines()
    assert len(listed) == 2, listed
    for line in listed:
        assert f"from {topic}-0@" in line and "attempts=3" in line and 'error="card declined"' in line
        assert "\tpending\t" in line
    out = target.sluice("dlq", "--bootstrap-server", target.bootstrap, "--topic", f"{topic}.dlq",
                        "--redrive").stdout
    assert f"Redrove 2 records from {topic}.dlq to {topic}." in out, out

    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    back = []
    deadline = time.time() + 30
    while len(back) < 2 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            back.append(m)
    c.close()
    assert sorted(m.value() for m in back) == [b"pay-0", b"pay-3"]
    for m in back:
        h = dict(m.headers())
        assert h["trace"] == b"t" and h["sluice.redrive.id"].startswith(f"{topic}.dlq/".encode())
        assert "sluice.dlq.attempts" not in h
