"""The "any language" proof: a Python client built from nothing but the .proto files.

At test time this module generates gRPC stubs from `<repo>/proto` with
grpcio-tools, starts a standalone Sluice node (`sluice standalone`) in a
temporary data directory, and drives it through the public contract only:
CreateTopics on the Controller service, then Metadata, Produce (structured
records), Fetch (RECORD_FORMAT_RECORDS) and ListOffsets on the Broker service,
plus the documented error model (per-entry `sluice.common.v1.Error` codes and
whole-request gRPC statuses with `sluice-error-code` / `sluice-error-name`
trailers).

Environment:
  SLUICE_BIN  path to the `sluice` binary (default <repo>/target/debug/sluice).
"""

from __future__ import annotations

import glob
import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO / "target" / "debug" / "sluice"))

TOPIC = "py-orders"
PARTITIONS = 3
RECORD_COUNT = 30
RPC_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------
# Stubs, generated at test time


class Stubs:
    """The generated modules, imported from the temp dir."""

    def __init__(self) -> None:
        self.common = importlib.import_module("sluice.common.v1.common_pb2")
        self.broker = importlib.import_module("sluice.broker.v1.broker_pb2")
        self.broker_grpc = importlib.import_module("sluice.broker.v1.broker_pb2_grpc")
        self.controller = importlib.import_module("sluice.controller.v1.controller_pb2")
        self.controller_grpc = importlib.import_module(
            "sluice.controller.v1.controller_pb2_grpc"
        )
        self.coordinator = importlib.import_module("sluice.coordinator.v1.coordinator_pb2")
        self.coordinator_grpc = importlib.import_module(
            "sluice.coordinator.v1.coordinator_pb2_grpc"
        )


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    out = tmp_path_factory.mktemp("sluice_stubs")
    protos = sorted(glob.glob(str(PROTO_ROOT / "sluice" / "**" / "*.proto"), recursive=True))
    assert protos, f"no .proto files under {PROTO_ROOT}"
    for required in ("common/v1/common.proto", "broker/v1/broker.proto", "controller/v1/controller.proto"):
        assert any(p.endswith(required) for p in protos), f"missing {required} under {PROTO_ROOT}"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"protoc failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    sys.path.insert(0, str(out))
    # A stale `sluice` package imported earlier (there should be none) would shadow ours.
    for name in [m for m in sys.modules if m == "sluice" or m.startswith("sluice.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return Stubs()


# ---------------------------------------------------------------------------
# A standalone node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, stubs: Stubs, proc: subprocess.Popen, address: str, log: Path) -> None:
        self.stubs = stubs
        self.proc = proc
        self.address = address
        self.log = log
        self.channel = grpc.insecure_channel(address)
        self.broker = stubs.broker_grpc.BrokerStub(self.channel)
        self._controller_channel: grpc.Channel | None = None
        self._controller: object | None = None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    def metadata(self, topics: list[str] | None = None):
        req = self.stubs.broker.MetadataRequest(topics=topics or [])
        return self.broker.Metadata(req, timeout=RPC_TIMEOUT_S)

    def controller(self):
        """The Controller stub at the endpoint Metadata advertises."""
        if self._controller is None:
            md = self.metadata()
            assert md.HasField("controller"), f"no active controller in {md}"
            ep = md.controller
            addr = f"{ep.host}:{ep.port}"
            self._controller_channel = grpc.insecure_channel(addr)
            self._controller = self.stubs.controller_grpc.ControllerStub(self._controller_channel)
        return self._controller

    def close(self) -> None:
        self.channel.close()
        if self._controller_channel is not None:
            self._controller_channel.close()


@pytest.fixture(scope="module")
def node(stubs: Stubs, tmp_path_factory: pytest.TempPathFactory):
    if not SLUICE_BIN.exists():
        pytest.fail(
            f"sluice binary not found at {SLUICE_BIN}: build it with "
            "`cargo build -p sluice-cli` or set SLUICE_BIN"
        )
    data_dir = tmp_path_factory.mktemp("sluice_data")
    log = data_dir.parent / f"{data_dir.name}.log"
    port = free_port()
    address = f"127.0.0.1:{port}"
    with open(log, "wb") as log_f:
        proc = subprocess.Popen(
            [str(SLUICE_BIN), "standalone", "--data-dir", str(data_dir), "--listen", address],
            stdout=log_f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    n = Node(stubs, proc, address, log)
    try:
        wait_ready(n)
        yield n
    finally:
        n.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(n: Node) -> None:
    """Until Metadata answers with a live broker and an active controller."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        if n.proc.poll() is not None:
            pytest.fail(
                f"sluice standalone exited with {n.proc.returncode} before answering Metadata; "
                f"log:\n{n.log_tail()}"
            )
        try:
            md = n.stubs.broker_grpc.BrokerStub(n.channel).Metadata(
                n.stubs.broker.MetadataRequest(), timeout=2.0
            )
            if md.brokers and md.controller_id >= 0 and md.HasField("controller"):
                return
            last = md
        except grpc.RpcError as e:
            last = e
        time.sleep(0.2)
    pytest.fail(
        f"sluice standalone at {n.address} not ready after {STARTUP_TIMEOUT_S}s "
        f"(last: {last!r}); log:\n{n.log_tail()}"
    )


# ---------------------------------------------------------------------------
# Helpers


def assert_no_error(stubs: Stubs, owner, what: str) -> None:
    if owner.HasField("error"):
        code = owner.error.code
        name = stubs.common.ErrorCode.Name(code)
        assert code == stubs.common.NONE, f"{what}: {name} ({code}): {owner.error.message}"


def wait_for_leaders(n: Node, topic: str, partitions: int, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        md = n.metadata([topic])
        last = md
        for t in md.topics:
            if t.name != topic or (t.HasField("error") and t.error.code != 0):
                continue
            ok = len(t.partitions) == partitions and all(
                p.leader_id >= 0 and not (p.HasField("error") and p.error.code != 0)
                for p in t.partitions
            )
            if ok:
                return t
        time.sleep(0.2)
    pytest.fail(f"topic {topic} has no leaders for all {partitions} partitions: {last}")


def make_records(stubs: Stubs) -> dict[int, list]:
    """30 records, keys k0..k9, record i to partition i % 3, with headers."""
    c = stubs.common
    base_ts = int(time.time() * 1000) - 60_000
    by_partition: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for i in range(RECORD_COUNT):
        headers = [
            c.RecordHeader(key="seq", value=str(i).encode()),
            c.RecordHeader(key="lang", value=b"python"),
        ]
        if i % 5 == 0:
            headers.append(c.RecordHeader(key="null-header"))  # value absent: null
        rec = c.Record(
            key=f"k{i % 10}".encode(),
            value=f"order-{i}:{'x' * (i % 7)}".encode(),
            headers=headers,
            timestamp_ms=base_ts + i,
        )
        by_partition[i % PARTITIONS].append(rec)
    return by_partition


# ---------------------------------------------------------------------------
# Shared state: the topic, created once, and the records, produced once


@pytest.fixture(scope="module")
def created(node: Node):
    ctl = node.stubs.controller
    req = ctl.CreateTopicsRequest(
        topics=[ctl.CreatableTopic(name=TOPIC, num_partitions=PARTITIONS, replication_factor=1)],
        timeout_ms=10_000,
    )
    return node.controller().CreateTopics(req, timeout=RPC_TIMEOUT_S)


@pytest.fixture(scope="module")
def produced(node: Node, created):
    s = node.stubs
    assert [t.name for t in created.topics] == [TOPIC]
    assert_no_error(s, created.topics[0], f"CreateTopics {TOPIC}")
    wait_for_leaders(node, TOPIC, PARTITIONS)

    by_partition = make_records(s)
    responses: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    # Three rounds of one produce request each, so offsets grow across requests too.
    per_round = RECORD_COUNT // PARTITIONS // 2  # 5 records per partition per request
    for start in range(0, RECORD_COUNT // PARTITIONS, per_round):
        req = s.broker.ProduceRequest(
            acks=1,
            timeout_ms=10_000,
            topics=[
                s.broker.TopicProduceData(
                    name=TOPIC,
                    partitions=[
                        s.broker.PartitionProduceData(
                            partition=p, records=recs[start : start + per_round]
                        )
                        for p, recs in by_partition.items()
                    ],
                )
            ],
        )
        resp = node.broker.Produce(req, timeout=RPC_TIMEOUT_S)
        assert [t.name for t in resp.topics] == [TOPIC]
        for pr in resp.topics[0].partitions:
            responses[pr.partition].append((start, pr))
    return by_partition, responses


# ---------------------------------------------------------------------------
# Tests


def test_stubs_generated(stubs: Stubs) -> None:
    assert stubs.common.ErrorCode.Value("INVALID_REPLICATION_FACTOR") == 38
    assert stubs.common.ErrorCode.Value("UNKNOWN_TOPIC_OR_PARTITION") == 3
    assert hasattr(stubs.broker_grpc, "BrokerStub")
    assert hasattr(stubs.controller_grpc, "ControllerStub")


def test_metadata_names_controller(node: Node) -> None:
    md = node.metadata()
    assert md.cluster_id
    assert len(md.brokers) == 1
    assert md.HasField("controller")
    # Standalone: the controller is served on the same port as the broker.
    assert md.controller.port == int(node.address.rsplit(":", 1)[1])


def test_create_topic(node: Node, created) -> None:
    s = node.stubs
    assert len(created.topics) == 1
    result = created.topics[0]
    assert result.name == TOPIC
    assert_no_error(s, result, f"CreateTopics {TOPIC}")
    assert result.num_partitions == PARTITIONS
    assert result.replication_factor == 1
    assert result.topic_id

    t = wait_for_leaders(node, TOPIC, PARTITIONS)
    assert t.topic_id == result.topic_id
    assert [p.partition for p in t.partitions] == list(range(PARTITIONS))
    for p in t.partitions:
        assert len(p.replicas) == 1
        assert list(p.isr) == list(p.replicas)


def test_produce_keyed_records(node: Node, produced) -> None:
    s = node.stubs
    by_partition, responses = produced
    assert sorted(responses) == list(range(PARTITIONS))
    for p, rounds in responses.items():
        assert len(rounds) == 2
        expected_base = 0
        prev = -1
        for start, pr in rounds:
            assert pr.partition == p
            assert_no_error(s, pr, f"Produce {TOPIC}-{p}")
            assert pr.base_offset > prev, f"offsets must increase on {TOPIC}-{p}"
            # A fresh partition: each request's records follow the previous ones.
            assert pr.base_offset == expected_base == start
            prev = pr.base_offset
            expected_base += 5
    assert sum(len(v) for v in by_partition.values()) == RECORD_COUNT


def test_fetch_records_back(node: Node, produced) -> None:
    s = node.stubs
    by_partition, _ = produced
    for p, sent in by_partition.items():
        got = []
        offset = 0
        deadline = time.monotonic() + 15
        while len(got) < len(sent) and time.monotonic() < deadline:
            req = s.broker.FetchRequest(
                max_wait_ms=500,
                min_bytes=1,
                max_bytes=1 << 20,
                format=s.broker.RECORD_FORMAT_RECORDS,
                topics=[
                    s.broker.FetchTopic(
                        name=TOPIC,
                        partitions=[
                            s.broker.FetchPartition(
                                partition=p,
                                fetch_offset=offset,
                                partition_max_bytes=1 << 20,
                                current_leader_epoch=-1,
                            )
                        ],
                    )
                ],
            )
            resp = node.broker.Fetch(req, timeout=RPC_TIMEOUT_S)
            fp = resp.topics[0].partitions[0]
            assert fp.partition == p
            assert_no_error(s, fp, f"Fetch {TOPIC}-{p}")
            assert fp.high_watermark == len(sent)
            got.extend(fp.records)
            if fp.records:
                offset = fp.records[-1].offset + 1
        assert len(got) == len(sent), f"{TOPIC}-{p}: fetched {len(got)} of {len(sent)}"
        for i, (want, have) in enumerate(zip(sent, got)):
            where = f"{TOPIC}-{p}@{i}"
            assert have.offset == i, where
            assert have.HasField("key") and have.key == want.key, where
            assert have.HasField("value") and have.value == want.value, where
            assert have.timestamp_ms == want.timestamp_ms, where
            assert [h.key for h in have.headers] == [h.key for h in want.headers], where
            for hw, hh in zip(want.headers, have.headers):
                assert hh.HasField("value") == hw.HasField("value"), f"{where} header {hw.key}"
                if hw.HasField("value"):
                    assert hh.value == hw.value, f"{where} header {hw.key}"


def test_list_offsets_latest(node: Node, produced) -> None:
    s = node.stubs
    by_partition, _ = produced
    req = s.broker.ListOffsetsRequest(
        topics=[
            s.broker.ListOffsetsTopic(
                name=TOPIC,
                partitions=[
                    s.broker.ListOffsetsPartition(partition=p, spec=s.broker.OFFSET_SPEC_LATEST)
                    for p in range(PARTITIONS)
                ],
            )
        ]
    )
    resp = node.broker.ListOffsets(req, timeout=RPC_TIMEOUT_S)
    got = {}
    for pr in resp.topics[0].partitions:
        assert_no_error(s, pr, f"ListOffsets {TOPIC}-{pr.partition}")
        got[pr.partition] = pr.offset
    assert got == {p: len(recs) for p, recs in by_partition.items()}
    assert sum(got.values()) == RECORD_COUNT


def test_error_invalid_replication_factor(node: Node) -> None:
    s = node.stubs
    ctl = s.controller
    req = ctl.CreateTopicsRequest(
        topics=[ctl.CreatableTopic(name="py-too-replicated", num_partitions=1, replication_factor=2)],
        timeout_ms=10_000,
    )
    resp = node.controller().CreateTopics(req, timeout=RPC_TIMEOUT_S)
    assert len(resp.topics) == 1
    r = resp.topics[0]
    assert r.name == "py-too-replicated"
    assert r.HasField("error")
    assert r.error.code == s.common.INVALID_REPLICATION_FACTOR == 38
    assert "exceeds" in r.error.message, r.error.message
    # Nothing was created.
    md = node.metadata(["py-too-replicated"])
    assert all(t.error.code == s.common.UNKNOWN_TOPIC_OR_PARTITION for t in md.topics)


def test_error_produce_unknown_topic(node: Node) -> None:
    s = node.stubs
    req = s.broker.ProduceRequest(
        acks=1,
        timeout_ms=5_000,
        topics=[
            s.broker.TopicProduceData(
                name="py-no-such-topic",
                partitions=[
                    s.broker.PartitionProduceData(
                        partition=0, records=[s.common.Record(key=b"k", value=b"v")]
                    )
                ],
            )
        ],
    )
    resp = node.broker.Produce(req, timeout=RPC_TIMEOUT_S)
    pr = resp.topics[0].partitions[0]
    assert pr.partition == 0
    assert pr.HasField("error")
    assert pr.error.code == s.common.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert "py-no-such-topic" in pr.error.message, pr.error.message


def test_error_whole_request_status(node: Node) -> None:
    """A request that fails as a whole: gRPC status + sluice-error-* trailers."""
    s = node.stubs
    req = s.broker.ProduceRequest(acks=2, timeout_ms=1_000, topics=[])
    with pytest.raises(grpc.RpcError) as exc:
        node.broker.Produce(req, timeout=RPC_TIMEOUT_S)
    err = exc.value
    assert err.details().startswith("INVALID_REQUIRED_ACKS"), err.details()
    trailers = dict(err.trailing_metadata() or ())
    assert trailers.get("sluice-error-name") == "INVALID_REQUIRED_ACKS"
    assert int(trailers.get("sluice-error-code")) == s.common.INVALID_REQUIRED_ACKS == 21


def test_a_python_member_shares_a_group_with_the_rust_client(node: Node, tmp_path: Path) -> None:
    """tests/python/group_member.py (stubs only) and `sluice console-consumer`
    in one consumer-protocol group: the coordinator splits the partitions,
    together they read every record once."""
    from group_member import GroupMember

    s = node.stubs
    topic, group = "py-shared", "py-kip848"
    create = s.controller.CreateTopicsRequest(topics=[s.controller.CreatableTopic(
        name=topic, num_partitions=4, replication_factor=1)])
    node.controller().CreateTopics(create, timeout=RPC_TIMEOUT_S)
    wait_for_leaders(node, topic, 4)
    for p in range(4):
        recs = [s.common.Record(value=f"{p}-{i}".encode()) for i in range(10)]
        req = s.broker.ProduceRequest(acks=-1, timeout_ms=10000, topics=[s.broker.TopicProduceData(
            name=topic, partitions=[s.broker.PartitionProduceData(partition=p, records=recs)])])
        node.broker.Produce(req, timeout=RPC_TIMEOUT_S)
    member = GroupMember(s, node.address, group, [topic], "py-member")
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(member.owned) < 4:
        assert time.monotonic() < deadline, f"python member holds {member.owned}"
        got += [v for _, _, _, v in member.poll()]
    out = open(tmp_path / "rust-member.out", "w")
    rust = subprocess.Popen(
        [str(SLUICE_BIN), "console-consumer", "--bootstrap-server", node.address, "--topic", topic,
         "--group", group, "--consumer-property", "group.protocol=consumer",
         "--consumer-property", "client.id=rust-member"],
        stdout=out, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            got += [v for _, _, _, v in member.poll()]
            member.commit()
            theirs = (tmp_path / "rust-member.out").read_text().split()
            if len(member.owned) == 2 and len(got) + len(theirs) >= 40:
                break
            assert time.monotonic() < deadline, f"python {member.owned}, {len(got)}+{len(theirs)} read"
        assert sorted([v.decode() for v in got] + theirs) == sorted(
            f"{p}-{i}" for p in range(4) for i in range(10))
        events = [e for _, e, _, _ in member.log]
        assert events.count("assigned") == 4 and events.count("revoked") == 2, member.log
        c = s.coordinator
        d = s.coordinator_grpc.GroupCoordinatorStub(member.channels[node.address]).ConsumerGroupDescribe(
            c.ConsumerGroupDescribeRequest(group_ids=[group]), timeout=RPC_TIMEOUT_S).groups[0]
        assert {m.client_id for m in d.members} == {"py-member", "rust-member"}, d
        assert d.group_state in ("Stable", "Reconciling"), d
    finally:
        member.close()
        rust.terminate()
        rust.wait(30)
