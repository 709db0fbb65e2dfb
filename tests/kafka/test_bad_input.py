"""Bad input on the Kafka port: each gets Kafka's answer where the protocol
has one, or a closed connection, and the broker, its other connections and
its data are untouched."""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

API_VERSIONS = 18
METADATA = 3


def connect(target) -> socket.socket:
    host, port = target.bootstrap.split(",")[0].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def request(api_key: int, version: int, correlation_id: int, body: bytes = b"",
            client_id: bytes = b"bad-input") -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_frame(s: socket.socket) -> bytes:
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    return recv_exact(s, size)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def closed(s: socket.socket) -> bool:
    """True once the broker has closed the connection."""
    s.settimeout(10)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def still_serving(target, topic: str, n: int) -> None:
    """The broker still takes and serves records on other connections."""
    p = Producer({"bootstrap.servers": target.bootstrap})
    for i in range(n):
        p.produce(topic, value=str(i).encode(), partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": "bad-input-check"})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert hi - lo >= n


@pytest.fixture()
def topic(target):
    return target.create_topic(partitions=1)


def test_api_versions_at_an_unknown_version_gets_the_table(target, topic):
    s = connect(target)
    s.sendall(request(API_VERSIONS, 99, 42))
    resp = read_frame(s)
    correlation_id, error_code, count = struct.unpack(">ihi", resp[:10])
    assert (correlation_id, error_code) == (42, 35)  # UNSUPPORTED_VERSION
    entries = [struct.unpack(">hhh", resp[10 + 6 * i: 16 + 6 * i]) for i in range(count)]
    assert (API_VERSIONS, 0, 4) in entries
    assert any(k == 0 and lo == 3 for k, lo, _ in entries)  # Produce from v3
    # The connection stays usable: a supported version now answers.
    s.sendall(request(API_VERSIONS, 0, 43))
    correlation_id, error_code = struct.unpack(">ih", read_frame(s)[:6])
    assert (correlation_id, error_code) == (43, 0)
    s.close()
    still_serving(target, topic, 10)


@pytest.mark.parametrize("frame", [
    request(9999, 0, 1),                                # unknown API key
    request(METADATA, 77, 1),                           # unsupported version
    request(METADATA, 1, 1, body=b"\x00\x00\x00\x05"),  # body shorter than it says
    struct.pack(">i", 3) + b"abc",                      # shorter than a header
    struct.pack(">i", -5),                              # negative size
    struct.pack(">i", 200 << 20),                       # above socket.request.max.bytes
    request(METADATA, 1, 1, body=b"\x7f\xff\xff\xff"),  # array of 2^31 topics
], ids=["unknown-api", "unsupported-version", "truncated-body", "short-frame",
        "negative-size", "oversized", "huge-array"])
def test_malformed_frames_close_only_their_connection(target, topic, frame):
    bystander = connect(target)
    s = connect(target)
    s.sendall(frame)
    assert closed(s)
    # Another connection opened before is untouched.
    bystander.sendall(request(API_VERSIONS, 0, 5))
    assert struct.unpack(">ih", read_frame(bystander)[:6]) == (5, 0)
    bystander.close()
    still_serving(target, topic, 5)


def test_a_connection_that_stops_mid_frame(target, topic):
    s = connect(target)
    s.sendall(struct.pack(">i", 1000) + b"\x00\x03\x00\x01")
    s.close()
    s = connect(target)
    s.sendall(struct.pack(">i", 1 << 20))  # announces 1 MiB, sends nothing more
    s.close()
    still_serving(target, topic, 5)


def test_sasl_handshake_on_a_listener_without_sasl_is_out_of_place(target):
    s = connect(target)
    mechanism = b"PLAIN"
    s.sendall(request(17, 1, 9, body=struct.pack(">h", len(mechanism)) + mechanism))
    resp = read_frame(s)
    correlation_id, error_code, count = struct.unpack(">ihi", resp[:10])
    # ILLEGAL_SASL_STATE, no mechanisms: what Kafka answers on a listener
    # without SASL (the connection stays usable).
    assert (correlation_id, error_code, count) == (9, 34, 0)
    s.close()
