"""Durability: every write `apply` acknowledged survives kill -9 of a master and the failover.

What is promised (docs/redis-cluster.md): before `apply` returns, each step of
the batch was acknowledged by a replica (WAIT 1), so with one replica per
master the promoted replica holds every acknowledged write. Each test runs its
own cluster (it kills nodes), writes from several threads, stops the victim
master's replica (SIGSTOP) and cuts its link so the master runs ahead of it, kill -9s the master
mid-load, lets the stale replica take over, restarts the old master (it rejoins as a replica, so WAIT can be met again),
keeps writing, then checks every acknowledged label, audit event and change
record is there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from enforce_sdk import StorageError
from enforce_sdk._model import Label
from enforce_sdk.store._redis_cluster import RedisClusterStorage
from enforce_sdk.store._storage import Action, Outcome
from tests.contract._labels import ACTOR, T0, label, put
from tests.fixtures.redis_cluster import ClusterHarness, start_cluster

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
    """Writer threads applying batches of fresh labels; records what was acknowledged."""

    def __init__(self, storage: RedisClusterStorage) -> None:
        self.storage = storage
        self.acked: list[Label] = []
        self.failed = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._write, args=(t,), daemon=True)
                        for t in range(WRITERS)]

    def _write(self, t: int) -> None:
        i = 0
        while not self.stop.is_set():
            batch = [label(f"pin:w{t}-{i}-{j}", reason=f"r{t}_{i}") for j in range(BATCH)]
            i += 1
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


@pytest.mark.parametrize("victim", ["feed-master", "entity-master"])
def test_acknowledged_writes_survive_kill9_of_a_master(
    own_cluster: ClusterHarness, victim: str
) -> None:
    deadline = time.monotonic() + DEADLINE
    storage = RedisClusterStorage(own_cluster.startup_nodes, namespace="fo", wait_timeout=0.5, min_replicas=MIN_REPLICAS,
                                  retry_timeout=15.0, lock_timeout=5.0)
    load = Load(storage)
    try:
        for thread in load.threads:
            thread.start()
        load.wait_for(60, deadline)
        own_cluster.wait_healthy(deadline - time.monotonic())  # every master has its replica
        feed_port = master_port_of(storage, storage._k_seq)
        port = feed_port if victim == "feed-master" else next(
            p for p in own_cluster.master_ports() if p != feed_port)
        node = own_cluster.node_at(port)
        # Stop the replica first, so the master runs ahead of it: writes made in that
        # window must not be acknowledged, since the replica about to be promoted lacks them.
        replica = own_cluster.replica_of(port)
        own_cluster.pause(replica)
        own_cluster.cut_replication(port)  # nothing more reaches it, not even kernel buffers
        lagging = time.monotonic() + LAG
        while time.monotonic() < lagging:
            time.sleep(0.02)
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

    reader = RedisClusterStorage(own_cluster.startup_nodes, namespace="fo")
    try:
        acked = {lb.entity: lb for lb in load.acked}
        got = reader.get_many(list(acked))
        missing = sorted(set(acked) - set(got))
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        for entity, lb in acked.items():
            assert [s.label for s in got[entity]] == [lb]
        page = reader.changes(0, limit=1_000_000)
        seqs = [c.seq for c in page.changes]
        assert seqs == sorted(set(seqs)) and page.head == seqs[-1]
        fed = {c.entity for c in page.changes if c.action is Action.PUT}
        assert set(acked) <= fed
        sample = list(acked)[:: max(1, len(acked) // 50)]
        for entity in sample:
            assert [e.after for e in reader.history(entity)] == [acked[entity]]
        assert set(acked) <= set(reader.iter_labeled_entities())
    finally:
        reader.close()
        storage.close()
