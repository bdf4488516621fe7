"""Durability: every write `apply` acknowledged survives kill -9 of a master and the failover.

What is promised (docs/redis-cluster.md): before `apply` returns, each step of
the batch was acknowledged by a replica (WAIT 1), so with one replica per
master the promoted replica holds every acknowledged write. Each test runs its
own cluster (it kills nodes), writes from several threads, stops the victim
master's replica (SIGSTOP) and cuts its link so the master runs ahead of it, kill -9s the master
mid-load, lets the stale replica take over, restarts the old master (it rejoins as a replica, so WAIT can be met again),
keeps writing, then checks every acknowledged label, audit event and change
record is there, and that what the store serves afterwards is consistent: the
victim had taken writes its replica never got (the test is not vacuous); every
label served has the change record and audit event of its seq, for its entity;
no sequence number was handed out twice; and a feed follower running
throughout (as the SDK does) never read a record that was later lost or
renumbered, and ends up knowing every labeled key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from enforce_sdk import StorageError
from enforce_sdk.model.label import Label
from enforce_sdk.model.records import Action, Outcome, StoredLabel
from enforce_sdk.store import RedisClusterStorage
from tests.fixtures.redis_cluster import ClusterHarness, start_cluster
from tests.store.storage._labels import ACTOR, T0, label, put

WRITERS = 4
BATCH = 3
DEADLINE = 45.0  # the whole load, kill, failover and recovery
MIN_REPLICAS = 1
LAG = 0.8  # seconds the victim's replica is stopped before the master is killed


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ClusterHarness]:
    # Short enough for a quick failover, long enough that a loaded CI machine does not
    # trigger a spurious one during the load that precedes the kill.
    harness = start_cluster(tmp_path / "cluster", node_timeout_ms=2000)
    try:
        yield harness
    finally:
        harness.stop()


def master_port_of(storage: RedisClusterStorage, key: str) -> int:
    storage._io.refresh()
    node = storage._io.cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
    return int(node.port)


class Load:
    """Writer threads applying batches of fresh labels; records what was acknowledged.

    `probe`: entities for one extra writer, all off the feed master, so that during
    the lag window its batches get past prepare and commit on a lagging feed master.
    """

    def __init__(self, storage: RedisClusterStorage, probe: Iterator[str]) -> None:
        self.storage = storage
        self.acked: list[Label] = []
        self.attempted: set[str] = set()
        self.failed = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._probe = probe
        self.threads = [threading.Thread(target=self._write, args=(t,), daemon=True)
                        for t in range(WRITERS + 1)]

    def _batch(self, t: int, i: int) -> list[Label]:
        if t == WRITERS:
            return [label(next(self._probe), reason=f"probe_{i}") for _ in range(BATCH)]
        return [label(f"pin:w{t}-{i}-{j}", reason=f"r{t}_{i}") for j in range(BATCH)]

    def _write(self, t: int) -> None:
        i = 0
        while not self.stop.is_set():
            batch = self._batch(t, i)
            i += 1
            with self._lock:
                self.attempted.update(lb.entity for lb in batch)
            try:
                outcomes = self.storage.apply([put(lb) for lb in batch], actor=ACTOR, now=T0)
            except StorageError:
                with self._lock:
                    self.failed += 1
                continue
            except BaseException as exc:  # anything else is a bug: report it
                self.errors.append(exc)
                return
            if outcomes != [Outcome.WRITTEN] * BATCH:
                self.errors.append(AssertionError(f"unexpected outcomes {outcomes}"))
                return
            with self._lock:
                self.acked.extend(batch)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for(self, n: int, deadline: float) -> None:
        while self.count() < n and not self.errors:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count()} writes acknowledged, wanted {n} "
                                     f"({self.failed} batches failed)")
            time.sleep(0.02)
        assert not self.errors, self.errors


class Follower:
    """Follows the change feed through failover like the SDK: reload when told too old.

    The store's HTTP service answers 410 for a position below the retained feed or
    above the head; here the same rule is applied to the storage page directly.
    """

    def __init__(self, storage: RedisClusterStorage) -> None:
        self.storage = storage
        self.pos = 0
        self.keys: set[str] = set()
        self.seen: dict[int, str] = {}  # every record read: seq -> entity
        self.renumbered: list[tuple[int, str, str]] = []
        self.reloads = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._step()
            except StorageError:
                pass  # failing over: try again
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.stop.wait(0.005)  # pace the polling, as a long-poll would

    def _step(self) -> None:
        page = self.storage.changes(self.pos, limit=1000)
        if self.pos > page.head or self.pos < page.oldest - 1:
            head = self.storage.head_seq()
            self.keys |= set(self.storage.iter_labeled_entities())
            self.pos = head
            self.reloads += 1
            return
        for change in page.changes:
            first = self.seen.setdefault(change.seq, change.entity)
            if first != change.entity:
                self.renumbered.append((change.seq, first, change.entity))
            if change.labeled:
                self.keys.add(change.entity)
        if page.changes:
            self.pos = page.changes[-1].seq


def entities_off(storage: RedisClusterStorage, port: int) -> Iterator[str]:
    """Fresh entity keys whose master is not the one on `port`."""
    nodes = storage._io.cluster.nodes_manager
    i = 0
    while True:
        entity = f"pin:p-{i}"
        i += 1
        slot = key_slot(storage._k_entity(entity).encode())
        if int(nodes.get_node_from_slot(slot).port) != port:
            yield entity


def victim_state(harness: ClusterHarness, port: int, storage: RedisClusterStorage,
                 ) -> tuple[int, set[str]]:
    """The victim master's replication offset and the entities of its change records."""
    client = harness.node_at(port).client()
    try:
        offset = int(client.info("replication")["master_repl_offset"])
        is_feed = port == master_port_of(storage, storage._k_chg)
        members = client.zrange(storage._k_chg, 0, -1) if is_feed else []
    finally:
        client.close()
    return offset, {json.loads(str(m).split("|", 2)[2])["entity"] for m in members}


@pytest.mark.parametrize("victim", ["feed-master", "entity-master"])
def test_acknowledged_writes_survive_kill9_of_a_master(
    own_cluster: ClusterHarness, victim: str
) -> None:
    deadline = time.monotonic() + DEADLINE
    storage = RedisClusterStorage(own_cluster.startup_nodes, namespace="fo", wait_timeout=0.5, min_replicas=MIN_REPLICAS,
                                  retry_timeout=15.0, lock_timeout=5.0)
    follower = Follower(RedisClusterStorage(own_cluster.startup_nodes, namespace="fo",
                                            retry_timeout=15.0))
    own_cluster.wait_healthy(deadline - time.monotonic())
    feed_port = master_port_of(storage, storage._k_seq)
    load = Load(storage, entities_off(storage, feed_port))
    try:
        follower.thread.start()
        for thread in load.threads:
            thread.start()
        load.wait_for(60, deadline)
        own_cluster.wait_healthy(deadline - time.monotonic())  # every master has its replica
        port = feed_port if victim == "feed-master" else next(
            p for p in own_cluster.master_ports() if p != feed_port)
        node = own_cluster.node_at(port)
        # Stop the replica first, so the master runs ahead of it: writes made in that
        # window must not be acknowledged, since the replica about to be promoted lacks them.
        replica = own_cluster.replica_of(port)
        own_cluster.pause(replica)
        own_cluster.cut_replication(port)  # nothing more reaches it, not even kernel buffers
        cut_offset, _ = victim_state(own_cluster, port, storage)
        lagging = time.monotonic() + LAG
        while time.monotonic() < lagging:
            time.sleep(0.02)
        kill_offset, feed_at_kill = victim_state(own_cluster, port, storage)
        own_cluster.kill9(node)
        own_cluster.resume(replica)
        before_failover = load.count()
        # The promoted replica takes over; the old master comes back as its replica.
        while port in own_cluster.master_ports():
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.05)
        own_cluster.restart(node)
        own_cluster.wait_healthy(deadline - time.monotonic())
        load.wait_for(before_failover + 60, deadline)
    finally:
        load.stop.set()
        for thread in load.threads:
            thread.join(30)
    assert not load.errors, load.errors
    # Not vacuous: the victim took writes after its replica was cut off, which the
    # promoted replica never got; on the feed master, commits nobody acknowledged.
    assert kill_offset > cut_offset, "the victim took no write in the lag window"
    acked = {lb.entity: lb for lb in load.acked}
    if victim == "feed-master":
        assert feed_at_kill - set(acked), "no unacknowledged commit on the lagging feed master"

    reader = RedisClusterStorage(own_cluster.startup_nodes, namespace="fo")
    try:
        served = reader.get_many(sorted(load.attempted))
        missing = sorted(set(acked) - set(served))
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        for entity, lb in acked.items():
            assert [s.label for s in served[entity]] == [lb]
        page = reader.changes(0, limit=1_000_000)
        seqs = [c.seq for c in page.changes]
        assert seqs == sorted(set(seqs)) and page.head == seqs[-1]
        by_seq = {c.seq: c for c in page.changes}
        assert all(c.action is Action.PUT for c in page.changes)
        # Every label served carries the seq of its own change record: none was kept
        # without its record, none got a number the feed gave to another change.
        rows: dict[str, StoredLabel] = {e: v[0] for e, v in served.items()}
        orphans = sorted((e, r.seq) for e, r in rows.items()
                         if r.seq not in by_seq or by_seq[r.seq].entity != e)
        assert not orphans, f"{len(orphans)} labels without their change record: {orphans[:5]}"
        assert {c.entity for c in page.changes} == set(rows)  # and every record has its label
        # Audit agrees with both, newest first: every unacknowledged one that survived,
        # and a sample of the rest.
        sample = sorted(set(rows) - set(acked)) + sorted(acked)[:: max(1, len(acked) // 100)]
        for entity in sample:
            events = reader.history(entity)
            assert [(e.seq, e.action, e.after) for e in events] == [
                (rows[entity].seq, Action.PUT, rows[entity].label)], entity
        assert set(rows) <= set(reader.iter_labeled_entities())

        # The follower catches up, then: it read no record that was later lost or given
        # to another change, and it knows every labeled key (the bloom invariant).
        head = reader.head_seq()
        while follower.pos < head and not follower.errors:
            assert time.monotonic() < deadline + 30, (follower.pos, head)
            time.sleep(0.02)
        follower.stop.set()
        follower.thread.join(30)
        assert not follower.errors, follower.errors
        assert not follower.renumbered, follower.renumbered[:5]
        lost = sorted((s, e) for s, e in follower.seen.items()
                      if s not in by_seq or by_seq[s].entity != e)
        assert not lost, f"the follower read {len(lost)} records that did not survive: {lost[:5]}"
        unknown = sorted(set(rows) - follower.keys)
        assert not unknown, f"{len(unknown)} labeled keys never reached the follower: {unknown[:5]}"
    finally:
        follower.stop.set()
        follower.storage.close()
        reader.close()
        storage.close()
