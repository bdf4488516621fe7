"""`--workers 2` over Redis Cluster: one port, two store processes, one namespace.

The same guarantees as over SQLite (tests/store/test_workers.py): a long-poll
on one worker is woken by a write through the other, and both serve the one
bloom snapshot worker 0 keeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from enforce_sdk.native.bloom import BloomFilter
from tests.fixtures.redis_cluster import ClusterHarness, drop_namespace
from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError
from tests.helpers import wait_until
from tests.store._workers import KEEP_ALIVE, long_poll, pinned_clients, put

WAIT = 10


@pytest.fixture
def two_workers(tmp_path: Path, redis_cluster: ClusterHarness) -> Iterator[StoreServerProcess]:
    namespace = "wk" + uuid.uuid4().hex[:10]
    store = StoreServerProcess(tmp_path / "store", workers=2, sections={
        "storage": {"url": f"{redis_cluster.url}?namespace={namespace}"},
        "http": KEEP_ALIVE,
        "feed": {"poll_interval_seconds": 600},  # only a head notice wakes a long-poll early
        "bloom": {"rebuild_interval_seconds": 0.1},
    })
    try:
        try:
            store.start()
        except StoreServerStartError as exc:
            pytest.fail(f"Label Store workers on Redis Cluster did not start: {exc}")
        yield store
    finally:
        store.kill()
        drop_namespace(redis_cluster.startup_nodes, namespace)


def test_a_write_through_one_worker_wakes_and_is_read_on_the_other(
    two_workers: StoreServerProcess,
) -> None:
    clients = pinned_clients(two_workers)
    watcher = pinned_clients(two_workers)[1]
    head = put(clients[0], "pin:1")
    thread, out = long_poll(clients[1], head, wait=WAIT)
    wait_until(lambda: watcher.get("/healthz").json()["long_polls"] == 1,
               "the long-poll to park on worker 1")
    new_head = put(clients[0], "pin:2")
    thread.join(WAIT + 5)
    (answer,) = out
    assert isinstance(answer, httpx.Response), answer
    assert [(c["seq"], c["entity"]) for c in answer.json()["changes"]] == [(new_head, "pin:2")]
    got = clients[1].post("/v1/labels/query", json={"keys": ["pin:1", "pin:2"]}).json()
    assert sorted(got["labels"]) == ["pin:1", "pin:2"]


def test_both_workers_serve_the_one_bloom_snapshot(two_workers: StoreServerProcess) -> None:
    clients = pinned_clients(two_workers)
    head = put(clients[1], "pin:42")

    def snapshots() -> list[httpx.Response]:
        return [clients[w].get("/v1/bloom") for w in (0, 1)]

    wait_until(lambda: all(int(r.headers["x-bloom-seq"]) >= head for r in snapshots()),
               "both workers to serve a snapshot with the write", 20)
    a, b = snapshots()
    assert a.headers["etag"] == b.headers["etag"] and a.content == b.content
    assert "pin:42" in BloomFilter.from_bytes(b.content)
