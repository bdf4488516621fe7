"""Scale-out: several stateless Label Store processes in front of one Redis Cluster.

Each process is `python -m enforce_sdk.store` with its own config (and tokens)
naming the same cluster and namespace. A client of any of them, the producer
client or the SDK, must see the same labels, history and change feed,
whichever process took the write.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk import EnforcementClient
from enforce_sdk.model.label import Enforcement, Label, Source, SourceType
from enforce_sdk.model.records import Action, Outcome
from enforce_sdk.store_client.client import ChangesPage, LabelStoreClient
from tests.fixtures.redis_cluster import ClusterHarness, drop_namespace
from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError
from tests.store.storage._labels import T0

MODEL = Source("spam_model", SourceType.AUTOMATED, "v3")
REVIEW = Source("review_tool", SourceType.HUMAN, "queue_a")


@pytest.fixture
def two_stores(tmp_path: Path, redis_cluster: ClusterHarness) -> Iterator[
        tuple[StoreServerProcess, StoreServerProcess]]:
    """Processes A and B serving one namespace of the session cluster."""
    namespace = "so" + uuid.uuid4().hex[:10]
    url = f"{redis_cluster.url}?namespace={namespace}"
    stores = [StoreServerProcess(tmp_path / name, sections={"storage": {"url": url}})
              for name in ("a", "b")]
    try:
        for store in stores:
            try:
                store.start()
            except StoreServerStartError as exc:
                pytest.fail(f"Label Store on Redis Cluster did not start: {exc}")
        yield stores[0], stores[1]
    finally:
        for store in stores:
            store.kill()
        drop_namespace(redis_cluster.startup_nodes, namespace)


def client(store: StoreServerProcess, role: str) -> LabelStoreClient:
    return LabelStoreClient(store.url, token=store.tokens[role], timeout=10.0)


def lbl(entity: str, source: Source = MODEL, reason: str = "spam") -> Label:
    return Label(entity, source, Enforcement.BLOCK, reason, T0)


def test_a_write_through_one_process_is_read_through_another(
    two_stores: tuple[StoreServerProcess, StoreServerProcess],
) -> None:
    a, b = two_stores
    with client(a, "writer") as write_a, client(b, "reader") as read_b, \
            client(b, "writer") as write_b, client(a, "reader") as read_a:
        entities = [f"pin:{i}" for i in range(30)]
        results = write_a.put([lbl(e) for e in entities])
        assert [r.outcome for r in results] == [Outcome.WRITTEN] * len(entities)
        seen = read_b.query(entities)
        assert sorted(seen.labels) == sorted(entities)
        assert seen.labels["pin:7"] == [lbl("pin:7")]
        assert seen.head == len(entities)
        # And the other way round: the same write again through B is a no-op.
        assert [r.outcome for r in write_b.put([lbl("pin:7")])] == [Outcome.NOOP]
        assert write_b.delete("pin:7", MODEL) == Outcome.DELETED
        assert "pin:7" not in read_a.query(["pin:7"]).labels
        assert [e.action for e in read_a.history("pin:7").events] == [Action.DELETE, Action.PUT]
        assert [e.actor for e in read_a.history("pin:7").events] == ["test-writer"] * 2


def test_the_change_feed_followed_through_another_process(
    two_stores: tuple[StoreServerProcess, StoreServerProcess],
) -> None:
    a, b = two_stores
    with client(a, "writer") as write_a, client(b, "reader") as follow_b:
        write_a.put([lbl(f"pin:{i}") for i in range(5)])
        page = follow_b.changes(0)
        assert [c.seq for c in page.changes] == [1, 2, 3, 4, 5]
        assert [c.entity for c in page.changes] == [f"pin:{i}" for i in range(5)]
        assert all(c.labeled for c in page.changes) and page.head == 5

        # A long-poll held by B answers when A commits a write.
        got: list[ChangesPage] = []
        poll = threading.Thread(target=lambda: got.append(follow_b.changes(page.next, wait=8)))
        poll.start()
        write_a.put([lbl("pin:99", REVIEW, reason="hate")])
        poll.join(15)
        assert got, "long-poll did not answer"
        assert [(c.seq, c.entity, c.action) for c in got[0].changes] == [
            (6, "pin:99", Action.PUT)]

        # Writes interleaved through A and B form one gap-free, ordered feed.
        with client(b, "writer") as write_b:
            for i in range(10):
                (write_a if i % 2 else write_b).put([lbl(f"user:{i}")])
        feed = follow_b.changes(got[0].next)
        assert [c.seq for c in feed.changes] == list(range(7, 17))
        assert [c.entity for c in feed.changes] == [f"user:{i}" for i in range(10)]


SDK_CONFIG = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    # A long TTL: only the change feed (and the bloom filter it feeds) can make a
    # write visible to a client that already answered for the key.
    "cache": {"ttl": "1h", "negative_ttl": "1h"},
    "bloom": {"enabled": True},
}


def _eventually(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


def test_sdk_clients_behind_different_processes_see_the_same_labels(
    two_stores: tuple[StoreServerProcess, StoreServerProcess],
) -> None:
    """Writes through both processes at once reach SDK clients of either, by the feed."""
    a, b = two_stores
    entities = [f"pin:so{i}" for i in range(40)]
    with EnforcementClient(a.url, SDK_CONFIG, token=a.tokens["reader"], feed_wait=1.0) as sdk_a, \
            EnforcementClient(b.url, SDK_CONFIG, token=b.tokens["reader"], feed_wait=1.0) as sdk_b:
        clients = (sdk_a, sdk_b)
        for sdk in clients:  # both answer (and remember) "unlabeled" first
            assert all(d.visible for d in sdk.check_many(entities, "home_feed"))
            assert sdk.stats.bloom_negatives == len(entities)  # a filter from the cluster

        def write(store: StoreServerProcess, part: list[str]) -> None:
            with client(store, "writer") as writer:
                for entity in part:
                    writer.put([lbl(entity)])

        threads = [threading.Thread(target=write, args=(a, entities[0::2])),
                   threading.Thread(target=write, args=(b, entities[1::2]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for sdk in clients:
            _eventually(lambda s=sdk: not any(d.visible for d in s.check_many(entities, "home_feed")),
                        "every label written through either process hides its pin")

        # One feed, whichever process serves it: the same records, gap-free and ordered.
        with client(a, "reader") as read_a, client(b, "reader") as read_b:
            feed_a, feed_b = read_a.changes(0), read_b.changes(0)
        assert [(c.seq, c.entity) for c in feed_a.changes] == \
            [(c.seq, c.entity) for c in feed_b.changes]
        seqs = [c.seq for c in feed_a.changes]
        assert seqs == list(range(1, len(entities) + 1))
        assert {c.entity for c in feed_a.changes} == set(entities)

        # Retractions through the other process reach both clients too.
        with client(b, "writer") as write_b:
            for entity in entities[0::2]:
                assert write_b.delete(entity, MODEL) == Outcome.DELETED
        for sdk in clients:
            _eventually(lambda s=sdk: all(d.visible is (i % 2 == 0) for i, d in
                                          enumerate(s.check_many(entities, "home_feed"))),
                        "retracted pins are shown again, the others still hidden")
