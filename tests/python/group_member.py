"""A consumer group member written against the generated gRPC stubs alone.

With the consumer protocol (KIP-848) the coordinator computes the
assignment, so a member is a loop of ConsumerGroupHeartbeat, Fetch and
OffsetCommit (proto/sluice/coordinator/v1/coordinator.proto documents it).
"""

from __future__ import annotations

import time

import grpc


class GroupMember:
    def __init__(self, stubs, bootstrap: str, group: str, topics: list[str], client_id: str):
        self.s, self.group, self.topics, self.client_id = stubs, group, topics, client_id
        self.channels: dict[str, grpc.Channel] = {}
        self.bootstrap = stubs.broker_grpc.BrokerStub(self._channel(bootstrap))
        self.coordinator = None
        self.member_id, self.epoch = "", 0
        self.owned: dict[tuple[str, int], int] = {}  # partition -> next offset to read
        self.interval, self.next_beat, self.ack = 1.0, 0.0, False
        self.log: list[tuple[float, str, str, int]] = []  # (time, event, topic, partition)

    def _channel(self, addr: str) -> grpc.Channel:
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def _coord(self):
        if self.coordinator is None:
            b = self.s.broker
            r = self.bootstrap.FindCoordinator(b.FindCoordinatorRequest(
                key_type=b.COORDINATOR_KEY_TYPE_GROUP, keys=[self.group]), timeout=10)
            c = r.coordinators[0]
            if c.error.code:
                raise ConnectionError(c.error.message)
            self.coordinator = self.s.coordinator_grpc.GroupCoordinatorStub(
                self._channel(f"{c.host}:{c.port}"))
        return self.coordinator

    def _assignment(self):
        by_topic: dict[str, list[int]] = {}
        for t, p in self.owned:
            by_topic.setdefault(t, []).append(p)
        return self.s.coordinator.MemberAssignment(topics=[
            self.s.coordinator.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()])

    def heartbeat(self, epoch: int | None = None) -> None:
        c, codes = self.s.coordinator, self.s.common.ErrorCode
        req = c.ConsumerGroupHeartbeatRequest(
            group_id=self.group, member_id=self.member_id,
            member_epoch=self.epoch if epoch is None else epoch,
            rebalance_timeout_ms=30000 if self.epoch == 0 else -1, client_id=self.client_id)
        if self.epoch == 0:
            req.subscribed_topic_names.names.extend(self.topics)
        if self.epoch == 0 or self.ack:
            req.owned.CopyFrom(self._assignment())
        try:
            r = self._coord().ConsumerGroupHeartbeat(req, timeout=10)
        except (grpc.RpcError, ConnectionError):
            self.coordinator = None
            return
        if r.error.code in (codes.FENCED_MEMBER_EPOCH, codes.UNKNOWN_MEMBER_ID):
            for t, p in self.owned:  # lost: no commit, someone else may own them
                self.log.append((time.monotonic(), "lost", t, p))
            self.owned, self.epoch = {}, 0
            return
        if r.error.code:
            self.coordinator = None
            return
        self.member_id, self.epoch, self.ack = r.member_id, r.member_epoch, False
        self.interval = r.heartbeat_interval_ms / 1000
        if r.HasField("assignment"):
            self._reconcile({(t.topic, p) for t in r.assignment.topics for p in t.partitions})

    def _reconcile(self, target: set) -> None:
        gone = [tp for tp in self.owned if tp not in target]
        self.commit(gone)
        for tp in gone:
            del self.owned[tp]
            self.log.append((time.monotonic(), "revoked", *tp))
        new = [tp for tp in target if tp not in self.owned]
        o = self.s.coordinator
        r = self._coord().OffsetFetch(o.OffsetFetchRequest(group_id=self.group, topics=[
            o.OffsetFetchTopic(name=t, partitions=[p]) for t, p in new]), timeout=10)
        committed = {(t.name, p.partition): p.committed_offset for t in r.topics for p in t.partitions}
        for tp in new:
            self.owned[tp] = max(committed.get(tp, -1), 0)  # none committed: the earliest
            self.log.append((time.monotonic(), "assigned", *tp))
        self.ack, self.next_beat = True, 0.0  # acknowledge at once

    def commit(self, tps=None) -> None:
        tps = list(self.owned) if tps is None else tps
        if not tps or self.epoch <= 0:
            return
        o = self.s.coordinator
        self._coord().OffsetCommit(o.OffsetCommitRequest(
            group_id=self.group, generation_id=self.epoch, member_id=self.member_id,
            topics=[o.OffsetCommitTopic(name=t, partitions=[o.OffsetCommitPartition(
                partition=p, committed_offset=self.owned[(t, p)], committed_leader_epoch=-1)])
                for t, p in tps]), timeout=10)

    def poll(self) -> list[tuple[str, int, int, bytes]]:
        if time.monotonic() >= self.next_beat:
            self.heartbeat()
            self.next_beat = time.monotonic() + (0 if self.ack else self.interval)
        if not self.owned:
            time.sleep(0.05)
            return []
        b = self.s.broker
        md = self.bootstrap.Metadata(b.MetadataRequest(topics=self.topics), timeout=10)
        addrs = {e.broker_id: f"{e.host}:{e.port}" for e in md.brokers}
        leaders = {(t.name, p.partition): addrs.get(p.leader_id) for t in md.topics for p in t.partitions}
        out = []
        for (t, p), offset in list(self.owned.items()):
            fetch = b.FetchRequest(max_wait_ms=50, min_bytes=1, max_bytes=1 << 20,
                                   format=b.RECORD_FORMAT_RECORDS, topics=[b.FetchTopic(
                                       name=t, partitions=[b.FetchPartition(
                                           partition=p, fetch_offset=offset,
                                           partition_max_bytes=1 << 20, current_leader_epoch=-1)])])
            leader = self.s.broker_grpc.BrokerStub(self._channel(leaders[(t, p)]))
            resp = leader.Fetch(fetch, timeout=10)
            for rec in resp.topics[0].partitions[0].records:
                out.append((t, p, rec.offset, rec.value))
                self.owned[(t, p)] = rec.offset + 1
        return out

    def close(self) -> None:
        self.commit()
        self.heartbeat(epoch=-1)
        for ch in self.channels.values():
            ch.close()
