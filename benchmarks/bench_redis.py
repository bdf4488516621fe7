"""Redis Cluster backend against SQLite, measured in one run; and store scale-out.

(a) batch read: `get_many` of 100 keys (90 labeled, 10 not) straight on the
    storage backend, SQLite file vs a 3-master + 3-replica Redis Cluster on
    loopback, each holding the same N labels; beside a Redis PING round trip
    (the floor under any cluster call) measured in the same run.
(b) bulk import: `apply` of N labels in batches of 1000 into an empty store,
    SQLite vs Redis Cluster (WAIT 1 per commit step, as in production).
(c) read throughput through the HTTP service: POST /v1/labels/query of 100
    keys from CLIENTS client processes spread over 1, 2 and 4 store processes
    in front of the one cluster.

N = 200,000 with ENFORCE_BENCH_FULL=1, else 3,000 (the default test run, which
only checks the harness works: its figures mean little). Results go to
.benchmarks/bench_redis.json (bench_redis_small.json for the default run) with
the machine and versions.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from enforce_sdk.demo.sample import entity_for, sample_labels
from enforce_sdk.model.label import Label
from enforce_sdk.store import LabelStorage, PutOp, RedisClusterStorage, SQLiteStorage
from enforce_sdk.store_client.client import LabelStoreClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the cluster and server harnesses live with the test fixtures
    sys.path.insert(0, str(ROOT))

from tests.fixtures.redis_cluster import (  # noqa: E402
    ClusterHarness,
    drop_namespace,
    start_cluster,
)
from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError  # noqa: E402

from benchmarks._harness import machine_info, write_results  # noqa: E402
from benchmarks._harness import time_calls as _latencies  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N = 200_000 if FULL else 3_000
READ_ROUNDS = 2000 if FULL else 30
THROUGHPUT_SECONDS = 5.0 if FULL else 0.5
CLIENTS = 4  # load-generating client processes, the same for every store count
STORE_COUNTS = (1, 2, 4)
BATCH_KEYS = 100
LABELED_PER_BATCH = 90
IMPORT_BATCH = 1000
RESULTS: dict[str, Any] = {}






def _import(storage: LabelStorage, labels: list[Label]) -> dict[str, float]:
    """apply() in batches of IMPORT_BATCH; labels per second and batch latency."""
    now = datetime.now(UTC)
    durations: list[float] = []
    gc.collect()
    started = time.perf_counter()
    for i in range(0, len(labels), IMPORT_BATCH):
        t = time.perf_counter()
        storage.apply([PutOp(lb) for lb in labels[i:i + IMPORT_BATCH]], actor="bench", now=now)
        durations.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    durations.sort()
    return {"labels": len(labels), "seconds": seconds, "labels_per_s": len(labels) / seconds,
            "batch_median_ms": statistics.median(durations) * 1e3}


def _key_batches(entities: list[str], count: int) -> list[list[str]]:
    """Deterministic batches: 90 stored entities and 10 never-labeled keys each."""
    step = max(1, len(entities) // (count * LABELED_PER_BATCH + 1))
    return [
        [entities[(b * LABELED_PER_BATCH + i) * step % len(entities)]
         for i in range(LABELED_PER_BATCH)]
        + [entity_for("pin", b * BATCH_KEYS + i, 7, labeled=False)
           for i in range(BATCH_KEYS - LABELED_PER_BATCH)]
        for b in range(count)
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHarness]:
    harness = start_cluster(tmp_path_factory.mktemp("bench-redis-cluster"))
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture(scope="module")
def stores(cluster: ClusterHarness, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[SQLiteStorage, RedisClusterStorage, list[str]]]:
    """The same N labels imported into a SQLite file and a Redis Cluster namespace."""
    labels = list(sample_labels(N, seed=7, now=datetime.now(UTC)))
    sqlite = SQLiteStorage(tmp_path_factory.mktemp("bench-redis-sqlite") / "labels.db")
    namespace = "bench" + uuid.uuid4().hex[:8]
    rc = RedisClusterStorage(cluster.startup_nodes, namespace=namespace)
    try:
        RESULTS["import"] = {"sqlite": _import(sqlite, labels), "redis_cluster": _import(rc, labels)}
        imp = RESULTS["import"]
        imp["redis_vs_sqlite"] = imp["redis_cluster"]["labels_per_s"] / imp["sqlite"]["labels_per_s"]
        assert sqlite.head_seq() == rc.head_seq() == N
        yield sqlite, rc, sorted({lb.entity for lb in labels})
    finally:
        sqlite.close()
        rc.close()
        drop_namespace(cluster.startup_nodes, namespace)


@pytest.fixture(scope="module", autouse=True)
def _write_summary() -> Iterator[None]:
    yield
    if RESULTS:
        RESULTS["config"] = {"full": FULL, "n": N, "batch_keys": BATCH_KEYS,
                             "import_batch": IMPORT_BATCH, "clients": CLIENTS,
                             "throughput_seconds": THROUGHPUT_SECONDS,
                             "cluster": "3 masters + 3 replicas, loopback, appendfsync everysec"}
        RESULTS["machine"] = machine_info()
        RESULTS["machine"]["redis_server"] = RESULTS.get("redis_server")
        # The default (small) run must not overwrite the figures of a full run.
        path = write_results("bench_redis" if FULL else "bench_redis_small", RESULTS)
        print(f"\nbench_redis written to {path}")


def test_batch_read_sqlite_vs_redis_cluster(
    benchmark: Any, cluster: ClusterHarness,
    stores: tuple[SQLiteStorage, RedisClusterStorage, list[str]],
) -> None:
    sqlite, rc, entities = stores
    batches = _key_batches(entities, 200)
    assert rc.get_many(batches[0]) == sqlite.get_many(batches[0])
    assert len(rc.get_many(batches[0])) >= LABELED_PER_BATCH // 2
    host, port = cluster.nodes[0].address.rsplit(":", 1)
    with contextlib.closing(redis.Redis(host=host, port=int(port))) as ping:
        RESULTS["redis_server"] = ping.info("server")["redis_version"]
        RESULTS["redis_ping"] = _latencies(lambda i: ping.ping(), READ_ROUNDS)
    # The floor: a raw redis-py cluster pipeline reading the same entity hashes.
    raw = redis.RedisCluster(startup_nodes=[
        redis.cluster.ClusterNode(n.address.rsplit(":", 1)[0], int(n.address.rsplit(":", 1)[1]))
        for n in cluster.nodes])

    def pipeline(keys: list[str]) -> list[Any]:
        pipe = raw.pipeline()
        for key in keys:
            pipe.hgetall(f"{rc.namespace}:e:{{{key}}}")
        return pipe.execute()  # type: ignore[no-any-return]

    try:
        read = {
            "sqlite": _latencies(lambda i: sqlite.get_many(batches[i % 200]), READ_ROUNDS),
            "redis_cluster": _latencies(lambda i: rc.get_many(batches[i % 200]), READ_ROUNDS),
            "raw_pipeline": _latencies(lambda i: pipeline(batches[i % 200]), READ_ROUNDS),
        }
    finally:
        raw.close()
    read["redis_vs_raw_pipeline_median"] = (read["redis_cluster"]["median_us"]
                                            / read["raw_pipeline"]["median_us"])
    read["redis_vs_sqlite_median"] = (read["redis_cluster"]["median_us"]
                                      / read["sqlite"]["median_us"])
    read["redis_vs_ping_median"] = (read["redis_cluster"]["median_us"]
                                    / RESULTS["redis_ping"]["median_us"])
    RESULTS["get_many_100"] = read
    counter = iter(range(10**9))
    benchmark.pedantic(rc.get_many, setup=lambda: ((batches[next(counter) % 200],), {}),
                       rounds=READ_ROUNDS)


def _reader(url: str, token: str, batches: list[list[str]], ready: Any, seconds: float,
            out: Any) -> None:
    """One load-generating client process: warm up, wait for all, query for `seconds`."""
    done = 0
    try:
        with LabelStoreClient(url, token=token, timeout=30) as client:
            client.get_many(batches[0])
            ready.wait(120)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                if not client.get_many(batches[done % len(batches)]):
                    raise AssertionError("a query found none of the stored labels")
                done += 1
    except BaseException as exc:  # reported to the parent, which fails the test
        ready.abort()
        out.put(repr(exc))
        return
    out.put(done)


def _measure_clients(urls: list[tuple[str, str]], batches: list[list[str]]) -> float:
    """Queries per second from CLIENTS processes spread round-robin over the stores."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(CLIENTS)
    out = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(*urls[c % len(urls)], batches, ready,
                                               THROUGHPUT_SECONDS, out), daemon=True)
             for c in range(CLIENTS)]
    for proc in procs:
        proc.start()
    try:
        counts = [out.get(timeout=180) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    failures = [c for c in counts if isinstance(c, str)]
    assert not failures, f"load client failed: {failures[0]}"
    return sum(counts) / THROUGHPUT_SECONDS


def _start_stores(root: Path, url: str, count: int) -> list[StoreServerProcess]:
    servers = [StoreServerProcess(root / f"store{i}", sections={
        "storage": {"url": url}, "limits": {"max_batch_keys": 1000}}) for i in range(count)]
    errors: list[BaseException] = []

    def start(server: StoreServerProcess) -> None:
        try:
            server.start(timeout=120)
        except (StoreServerStartError, OSError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for server in servers:
            server.kill()
        pytest.fail(f"a Label Store on Redis Cluster did not start: {errors[0]}")
    return servers


def test_read_throughput_with_1_2_4_store_processes(
    benchmark: Any, cluster: ClusterHarness,
    stores: tuple[SQLiteStorage, RedisClusterStorage, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, rc, entities = stores
    batches = _key_batches(entities, 50)
    url = f"{cluster.url}?namespace={rc.namespace}"
    servers = _start_stores(tmp_path_factory.mktemp("bench-redis-stores"), url,
                            max(STORE_COUNTS))
    throughput: dict[str, Any] = {}
    try:
        for count in STORE_COUNTS:
            qps = _measure_clients([(sv.url, sv.tokens["reader"]) for sv in servers[:count]],
                                   batches)
            throughput[f"stores_{count}"] = {"queries_per_s": qps, "keys_per_s": qps * BATCH_KEYS}
        base = throughput["stores_1"]["queries_per_s"]
        for count in STORE_COUNTS:
            throughput[f"stores_{count}"]["vs_1_store"] = (
                throughput[f"stores_{count}"]["queries_per_s"] / base)
        RESULTS["http_read_throughput"] = throughput
        with LabelStoreClient(servers[0].url, token=servers[0].tokens["reader"]) as client:
            counter = iter(range(10**9))
            benchmark.pedantic(client.get_many,
                               setup=lambda: ((batches[next(counter) % 50],), {}), rounds=5)
    finally:
        for server in servers:
            server.kill()
