"""An idempotent confluent-kafka producer (acks=all) writes a numbered stream
while the partition's leader is killed with kill -9: nothing acknowledged is
lost, nothing is duplicated, nothing is reordered."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def leader_of(target, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": target.bootstrap}).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[0].leader


def test_idempotent_stream_survives_a_leader_kill(target):
    if target.kind != "cluster":
        pytest.skip("needs a cluster")
    topic = target.create_topic(partitions=1, rf=3, configs={"min.insync.replicas": "2"})
    p = Producer({
        "bootstrap.servers": target.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
    })
    acked: list[int] = []
    failed: list = []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked.append(int(msg.value()))
        else:
            failed.append(err)

    def produce():
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, value=str(i).encode(), partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001 if i % 100 else 0.01)
        p.flush(90)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(3)
    victim = leader_of(target, topic)
    os.kill(target.broker_pid(victim), signal.SIGKILL)
    time.sleep(6)
    target.restart(f"broker-{victim}")
    time.sleep(3)
    stop.set()
    t.join(120)
    assert not failed, f"delivery failures: {failed[:3]}"
    assert len(acked) > 1000, f"only {len(acked)} acknowledged"

    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": f"chk-{uuid.uuid4().hex[:6]}"})
    c.assign([TopicPartition(topic, 0, 0)])
    _, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    values = []
    deadline = time.time() + 60
    while len(values) < hi and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if not m.error():
                values.append(int(m.value()))
    c.close()
    assert len(values) == len(set(values)), "duplicates in the log"
    assert values == sorted(values), "the log is out of order"
    missing = set(acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    print(f"acked={len(acked)} stored={len(values)} killed=broker-{victim}")
