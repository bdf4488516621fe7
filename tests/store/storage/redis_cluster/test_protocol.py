"""The Redis Cluster backend's multi-slot commit protocol: atomicity across shards and crashes.

These use the session cluster (tests/fixtures/redis_cluster.py) with a fresh
namespace per test. A writer "dying" mid-batch is simulated by making one step
of its protocol raise, which leaves exactly the Redis state a kill -9 of the
writer at that point would leave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from enforce_sdk import ConfigError, InvalidInputError, StorageError
from enforce_sdk.model.records import Action, LabelStatus, Outcome
from enforce_sdk.store import LabelStorage, RedisClusterStorage, open_storage
from enforce_sdk.store.storage.redis_cluster.conn import NotReplicatedError
from enforce_sdk.store.storage.redis_cluster.url import parse_nodes
from tests.fixtures.redis_cluster import ClusterHarness, drop_namespace
from tests.store.storage._labels import ACTOR, HUMAN, MODEL, T0, delete, label, put

Factory = Callable[[], LabelStorage]


class WriterDied(Exception):
    """Stands in for the writer process disappearing at a protocol step."""


def _open(factory: Factory) -> RedisClusterStorage:
    storage = factory()
    assert isinstance(storage, RedisClusterStorage)
    return storage


def entities_on_every_master(storage: RedisClusterStorage, per_master: int = 2) -> list[str]:
    """Entity keys whose slots live on each of the cluster's masters."""
    by_node: dict[str, list[str]] = {}
    i = 0
    nodes = storage._io.cluster.nodes_manager
    while len(by_node) < 3 or min(len(v) for v in by_node.values()) < per_master:
        entity = f"pin:{i}"
        node = nodes.get_node_from_slot(key_slot(storage._k_entity(entity).encode())).name
        if len(by_node.setdefault(node, [])) < per_master:
            by_node[node].append(entity)
        i += 1
    return [e for group in by_node.values() for e in group]


def _die_at(monkeypatch: pytest.MonkeyPatch, storage: RedisClusterStorage, step: str) -> list[Any]:
    """Make `storage.<step>` raise WriterDied after recording its arguments."""
    seen: list[Any] = []

    def dead(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        raise WriterDied(step)

    monkeypatch.setattr(storage, step, dead)
    return seen


def test_a_batch_spans_every_master(redis_cluster_storage_factory: Factory) -> None:
    storage = _open(redis_cluster_storage_factory)
    entities = entities_on_every_master(storage)
    outcomes = storage.apply([put(label(e)) for e in entities], actor=ACTOR, now=T0)
    assert outcomes == [Outcome.WRITTEN] * len(entities)
    got = storage.get_many(entities)
    assert sorted(got) == sorted(entities)
    seqs = [c.seq for c in storage.changes(0).changes]
    assert seqs == list(range(1, len(entities) + 1))
    assert [h.seq for e in entities for h in storage.history(e)] == seqs
    assert sorted(storage.iter_labeled_entities()) == sorted(entities)


def test_writer_dying_after_commit_is_rolled_forward_by_readers(
    redis_cluster_storage_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = _open(redis_cluster_storage_factory), _open(redis_cluster_storage_factory)
    entities = entities_on_every_master(writer)
    writer.apply([put(label(entities[0], reason="old"))], actor=ACTOR, now=T0)
    _die_at(monkeypatch, writer, "_materialise")
    with pytest.raises(WriterDied):
        writer.apply([put(label(e, reason="new")) for e in entities], actor=ACTOR, now=T0)
    # Committed (seqs allocated, changes published) but no entity materialised yet.
    assert reader.head_seq() == 1 + len(entities)
    got = reader.get_many(entities)
    assert {s.label.reason for v in got.values() for s in v} == {"new"}
    assert sorted(got) == sorted(entities)
    assert [e.action for e in reader.history(entities[0])] == [Action.PUT, Action.PUT]
    assert reader.count_labels()[LabelStatus.ACTIVE] == len(entities)
    # Rolled forward for good: the journal is retired and no lock is left.
    assert reader.recover() == 0
    fields = [reader._io.cluster.hgetall(reader._k_entity(e)) for e in entities]
    assert all(b"_lk" not in f for f in fields)


def test_recover_on_open_materialises_a_dead_writers_batch(
    redis_cluster_storage_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _open(redis_cluster_storage_factory)
    entities = entities_on_every_master(writer, per_master=1)
    _die_at(monkeypatch, writer, "_materialise")
    with pytest.raises(WriterDied):
        writer.apply([put(label(e)) for e in entities], actor=ACTOR, now=T0)
    later = _open(redis_cluster_storage_factory)  # opening runs recover()
    assert later.recover() == 0
    assert sorted(later.iter_labeled_entities()) == sorted(entities)


def test_writer_dying_before_commit_leaves_nothing_and_its_locks_expire(
    redis_cluster: ClusterHarness, redis_cluster_storage_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = _open(redis_cluster_storage_factory)
    entities = entities_on_every_master(dead)
    seen = _die_at(monkeypatch, dead, "_commit_feed")
    with pytest.raises(WriterDied):
        dead.apply([put(label(e, reason="lost")) for e in entities], actor=ACTOR, now=T0)
    reader = _open(redis_cluster_storage_factory)
    assert reader.get_many(entities) == {}
    assert reader.head_seq() == 0 and reader.changes(0).changes == []

    # Another writer waits for the locks, then aborts the stale batch and goes ahead.
    other = RedisClusterStorage(
        redis_cluster.startup_nodes, namespace=dead.namespace,
        lock_timeout=5.0, retry_timeout=5.0, clock=lambda: time.time() + 10.0,
    )
    try:
        outcomes = other.apply([put(label(entities[0], reason="kept"))], actor=ACTOR, now=T0)
    finally:
        other.close()
    assert outcomes == [Outcome.WRITTEN]
    assert {s.label.reason for v in reader.get_many(entities).values() for s in v} == {"kept"}
    # The dead writer, had it come back, can no longer commit its batch.
    txid, lock_ms, plan = seen[0]
    monkeypatch.undo()
    assert dead._commit_feed(txid, lock_ms, plan) == -1
    assert reader.head_seq() == 1


def test_a_commit_not_acknowledged_by_a_replica_is_not_applied_until_it_is(
    redis_cluster_storage_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit ran on the feed master but its WAIT failed: it may be lost in a
    failover (and its numbers reissued), so nothing may act on it yet: no label
    row, no change record served, no head. Once a later WAIT covers it, it is
    applied whole."""
    writer, reader = _open(redis_cluster_storage_factory), _open(redis_cluster_storage_factory)
    entities = entities_on_every_master(writer, per_master=1)
    real = writer._commit_feed

    def unreplicated(*args: Any, **kwargs: Any) -> int:
        real(*args, **kwargs)
        raise NotReplicatedError("apply (commit): write not acknowledged by 1 replica(s)")

    monkeypatch.setattr(writer, "_commit_feed", unreplicated)
    with pytest.raises(StorageError, match="not acknowledged"):
        writer.apply([put(label(e, reason="unacked")) for e in entities], actor=ACTOR, now=T0)
    monkeypatch.undo()
    assert writer._io.cluster.get(writer._k_seq) == str(len(entities)).encode()  # committed
    assert reader.head_seq() == 0
    assert reader.get_many(entities) == {}
    assert reader.changes(0).changes == []
    assert all(reader.history(e) == [] for e in entities)
    raw = [writer._io.cluster.hget(writer._k_entity(e), "s:" + MODEL.key) for e in entities]
    assert raw == [None] * len(entities)  # not materialised on the entity masters either
    # A later commit's WAIT covers it (offsets): both become visible, in order.
    assert writer.apply([put(label("pin:later"))], actor=ACTOR, now=T0) == [Outcome.WRITTEN]
    assert reader.head_seq() == len(entities) + 1
    got = reader.get_many(entities)
    assert sorted(got) == sorted(entities)
    assert {s.seq for v in got.values() for s in v} == set(range(1, len(entities) + 1))
    assert [c.entity for c in reader.changes(0).changes] == [*entities, "pin:later"]


def test_a_lock_left_by_a_finished_batch_is_dropped(
    redis_cluster_storage_factory: Factory,
) -> None:
    """A committed batch whose journal is gone but whose unlock was lost (failover)."""
    storage = _open(redis_cluster_storage_factory)
    storage.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
    cluster = storage._io.cluster
    cluster.hset(storage._k_entity("pin:1"), "_lk", f"deadbeef|{int(time.time() * 1000)}")
    cluster.set(storage._k_tx("deadbeef"), "C:1")
    assert list(storage.get_many(["pin:1"])) == ["pin:1"]
    assert cluster.hget(storage._k_entity("pin:1"), "_lk") is None
    assert storage.apply([delete("pin:1")], actor=ACTOR, now=T0) == [Outcome.DELETED]


def test_a_writer_whose_locks_went_stale_cannot_commit(
    redis_cluster: ClusterHarness, redis_cluster_storage_factory: Factory,
) -> None:
    """Commit is refused once the batch's locks are lock_timeout/2 old by the server's clock."""
    reader = _open(redis_cluster_storage_factory)
    slow = RedisClusterStorage(redis_cluster.startup_nodes, namespace=reader.namespace,
                               lock_timeout=10.0, retry_timeout=0.5,
                               clock=lambda: time.time() - 6.0)
    try:
        with pytest.raises(StorageError, match="could not commit"):
            slow.apply([put(label("pin:1"))], actor=ACTOR, now=T0)
    finally:
        slow.close()
    assert reader.head_seq() == 0 and reader.get_many(["pin:1"]) == {}
    assert reader.apply([put(label("pin:1"))], actor=ACTOR, now=T0) == [Outcome.WRITTEN]


def test_a_human_decision_dismisses_pending_labels_in_one_batch(
    redis_cluster_storage_factory: Factory,
) -> None:
    a, b = _open(redis_cluster_storage_factory), _open(redis_cluster_storage_factory)
    assert a.apply([put(label("pin:1", MODEL), pending=True)], actor=ACTOR, now=T0) == [
        Outcome.PENDING]
    assert [p.label.entity for p in b.pending()] == ["pin:1"]
    outcomes = b.apply([put(label("pin:1", HUMAN), decides=True), delete("pin:2")],
                       actor=ACTOR, now=T0)
    assert outcomes == [Outcome.WRITTEN, Outcome.NOT_FOUND]
    assert a.pending() == []
    assert [e.action for e in a.history("pin:1")] == [Action.DISMISS, Action.PUT, Action.PEND]
    assert a.count_labels() == {LabelStatus.ACTIVE: 1, LabelStatus.PENDING: 0}


def test_namespaces_isolate_stores(redis_cluster: ClusterHarness) -> None:
    one = RedisClusterStorage(redis_cluster.startup_nodes, namespace="iso_a")
    two = RedisClusterStorage(redis_cluster.startup_nodes, namespace="iso_b")
    try:
        one.apply([put(label("pin:7"))], actor=ACTOR, now=T0)
        assert two.get_many(["pin:7"]) == {} and two.head_seq() == 0
        assert list(two.iter_labeled_entities()) == []
        assert list(one.iter_labeled_entities()) == ["pin:7"]
    finally:
        one.close()
        two.close()
        drop_namespace(redis_cluster.startup_nodes, "iso_a")
        drop_namespace(redis_cluster.startup_nodes, "iso_b")


@pytest.fixture
def url_storage(redis_cluster: ClusterHarness) -> Iterator[LabelStorage]:
    storage = open_storage(redis_cluster.url + "?namespace=url_test&min_replicas=1")
    yield storage
    storage.close()
    drop_namespace(redis_cluster.startup_nodes, "url_test")


def test_open_storage_accepts_redis_cluster_urls(url_storage: LabelStorage) -> None:
    assert isinstance(url_storage, RedisClusterStorage)
    assert url_storage.namespace == "url_test"
    url_storage.apply([put(label("user:9"))], actor=ACTOR, now=T0)
    assert list(url_storage.get_many(["user:9"])) == ["user:9"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis-cluster://", "not host:port"),
        ("redis-cluster://host", "not host:port"),
        ("redis-cluster://h:99999", "not host:port"),
        ("redis-cluster://h:1?colour=red", "unknown parameter"),
        ("redis-cluster://h:1?min_replicas=x", "bad parameter"),
        ("redis-cluster://h:1?namespace=a%7Bb", "namespace"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_storage(url)
    assert info.value.field == "storage.url"


def test_unreachable_cluster_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot reach"):
        RedisClusterStorage("127.0.0.1:1", namespace="x")


def test_parse_nodes() -> None:
    assert parse_nodes("a:1, b:2") == [("a", 1), ("b", 2)]
    assert parse_nodes(["[::1]:7000"]) == [("::1", 7000)]
    with pytest.raises(InvalidInputError):
        parse_nodes("a")
