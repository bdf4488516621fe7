"""Label Store throughput through the real HTTP server on SQLite.

(a) batch read: LabelStoreClient.get_many of 100 keys (90 labeled, 10 not, as
    the SDK's bloom-filtered misses look) against a store holding N labels;
    requests/s, p50, p99 from one sequential client, beside two baselines
    measured in the same run: a raw-socket loopback round trip (1 byte each
    way, echo server on a thread) and GET /healthz through the same HTTP stack.
(b) bulk import: client.put of N labels in batches of 1000 into an empty store.
(c) bloom snapshot refresh of an unchanged store: GET /v1/bloom, then the same
    with If-None-Match: status and bytes on the wire of each.

N = 1,000,000 with ENFORCE_BENCH_FULL=1, else 20,000 (the default test run).
The summary is printed and written to .benchmarks/bench_store.json (quick runs:
bench_store.quick.json) with the machine and package versions, for docs/benchmarks.md.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from enforce_sdk.demo.sample import entity_for, sample_labels
from enforce_sdk.store import PutOp, SQLiteStorage
from enforce_sdk.store_client.client import LabelStoreClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the server harness lives with the test fixtures
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess, StoreServerStartError  # noqa: E402

from benchmarks._harness import machine_info  # noqa: E402
from benchmarks._harness import percentile as _percentile  # noqa: E402
from benchmarks._harness import time_calls as _latencies  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N = 1_000_000 if FULL else 20_000
READ_ROUNDS = 3000 if FULL else 40
BATCH_KEYS = 100
LABELED_PER_BATCH = 90
IMPORT_BATCH = 1000
POPULATE_BATCH = 20_000
# Quick runs (the default test run) never overwrite the full figures.
OUT = ROOT / ".benchmarks" / ("bench_store.json" if FULL else "bench_store.quick.json")
BENCH_LIMITS = {"max_batch_labels": IMPORT_BATCH, "max_batch_keys": 1000,
                "max_body_bytes": 8 * 1024 * 1024, "max_metadata_bytes": 2048}

RESULTS: dict[str, Any] = {}






def _start(workdir: Path, **sections: dict[str, Any]) -> StoreServerProcess:
    server = StoreServerProcess(workdir, sections={"limits": dict(BENCH_LIMITS), **sections})
    try:
        server.start(timeout=120)
    except StoreServerStartError as exc:
        pytest.fail(f"Label Store did not start: {exc}")
    return server


@pytest.fixture(scope="session")
def populated_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A SQLite file holding N sample labels, written straight through SQLiteStorage."""
    path = tmp_path_factory.mktemp("bench-store") / "labels.db"
    storage = SQLiteStorage(path)
    entities: set[str] = set()
    started = time.perf_counter()
    try:
        batch: list[PutOp] = []
        now = datetime.now(UTC)
        for label in sample_labels(N, seed=7, now=now):
            batch.append(PutOp(label))
            entities.add(label.entity)
            if len(batch) == POPULATE_BATCH:
                storage.apply(batch, actor="bench", now=now)
                batch = []
        if batch:
            storage.apply(batch, actor="bench", now=now)
        assert storage.head_seq() == N
    finally:
        storage.close()
    RESULTS["populate"] = {"labels": N, "entities": len(entities),
                           "seconds": time.perf_counter() - started,
                           "db_bytes": path.stat().st_size}
    return path, sorted(entities)


@pytest.fixture(scope="module")
def read_server(populated_db: tuple[Path, list[str]],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServerProcess]:
    path, _ = populated_db
    server = _start(tmp_path_factory.mktemp("bench-read"), storage={"url": f"sqlite://{path}"})
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def _write_summary() -> Iterator[None]:
    yield
    if not RESULTS:
        return
    RESULTS["config"] = {"full": FULL, "n": N, "batch_keys": BATCH_KEYS,
                         "labeled_per_batch": LABELED_PER_BATCH, "import_batch": IMPORT_BATCH}
    RESULTS["machine"] = machine_info()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(RESULTS, indent=2, sort_keys=True) + "\n")
    print("\n" + _table(RESULTS) + f"\nwritten to {OUT}")




def _table(r: dict[str, Any]) -> str:
    rows = [f"Label Store benchmark (N={N:,}{', full' if FULL else ''})",
            f"{'measure':<44}{'per s':>12}{'p50 us':>10}{'p99 us':>10}"]
    for key, title in [("echo", "raw socket loopback round trip (1 byte)"),
                       ("healthz", "GET /healthz (HTTP stack only)"),
                       ("get_many", f"get_many {BATCH_KEYS} keys (msgpack)")]:
        if key in r:
            m = r[key]
            rows.append(f"{title:<44}{m['per_s']:>12,.0f}{m['p50_us']:>10,.0f}{m['p99_us']:>10,.0f}")
    if "get_many" in r:
        g = r["get_many"]
        rows.append(f"  get_many p50 = {g['p50_vs_echo']:.1f}x echo, {g['p50_vs_healthz']:.2f}x "
                    f"healthz; {g['keys_per_s']:,.0f} keys/s")
    if "import" in r:
        i = r["import"]
        rows.append(f"bulk import via API: {i['labels_per_s']:,.0f} labels/s "
                    f"({i['labels']:,} labels in {i['seconds']:.1f} s, batches of {IMPORT_BATCH}; "
                    f"batch p50 {i['batch_p50_ms']:.1f} ms)")
    if "bloom_refresh" in r:
        b = r["bloom_refresh"]
        rows.append(f"bloom snapshot: download {b['download_status']}, {b['download_bytes']:,} B; "
                    f"unchanged-store refresh {b['refresh_status']}, {b['refresh_bytes']:,} B "
                    f"on the wire")
    if "populate" in r:
        p = r["populate"]
        rows.append(f"populate via SQLiteStorage.apply: {p['labels'] / p['seconds']:,.0f} labels/s "
                    f"({p['db_bytes'] / 1e6:,.0f} MB db)")
    return "\n".join(rows)


class _EchoServer:
    """A loopback TCP echo server on a thread: the floor under any request/response."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(1):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


def _echo_round_trips(rounds: int) -> dict[str, float]:
    server = _EchoServer()
    client = socket.create_connection(("127.0.0.1", server.port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def once(_: int) -> None:
        client.sendall(b"x")
        if client.recv(1) != b"x":
            raise AssertionError("echo server answered wrongly")

    try:
        return _latencies(once, rounds, warmup=100)
    finally:
        client.close()
        server.close()


def _key_batches(entities: list[str], count: int) -> list[list[str]]:
    """Deterministic batches: 90 stored entities and 10 never-labeled keys each."""
    batches = []
    step = max(1, len(entities) // (count * LABELED_PER_BATCH + 1))
    for b in range(count):
        labeled = [entities[(b * LABELED_PER_BATCH + i) * step % len(entities)]
                   for i in range(LABELED_PER_BATCH)]
        unlabeled = [entity_for("pin", b * BATCH_KEYS + i, 7, labeled=False)
                     for i in range(BATCH_KEYS - LABELED_PER_BATCH)]
        batches.append(labeled + unlabeled)
    return batches


def test_get_many_100_keys(benchmark: Any, read_server: StoreServerProcess,
                           populated_db: tuple[Path, list[str]]) -> None:
    _, entities = populated_db
    batches = _key_batches(entities, 500)
    with LabelStoreClient(read_server.url, token=read_server.tokens["reader"]) as client:
        first = client.get_many(batches[0])
        assert len(first) >= LABELED_PER_BATCH // 2  # the stored keys are found
        assert not set(batches[0][LABELED_PER_BATCH:]) & set(first)

        RESULTS["echo"] = _echo_round_trips(READ_ROUNDS)
        RESULTS["healthz"] = _latencies(lambda i: client.health(), READ_ROUNDS, warmup=100)
        found: list[int] = []
        reads = _latencies(lambda i: found.append(len(client.get_many(batches[i % 500]))),
                           READ_ROUNDS, warmup=len(batches) if FULL else 5)
        reads["keys_per_s"] = reads["per_s"] * BATCH_KEYS
        reads["p50_vs_echo"] = reads["p50_us"] / RESULTS["echo"]["p50_us"]
        reads["p50_vs_healthz"] = reads["p50_us"] / RESULTS["healthz"]["p50_us"]
        reads["mean_entities_found"] = statistics.fmean(found)
        RESULTS["get_many"] = reads

        counter = iter(range(10**9))
        benchmark.pedantic(
            client.get_many,
            setup=lambda: ((batches[next(counter) % 500],), {}),
            rounds=READ_ROUNDS,
        )
        if benchmark.stats is not None:  # None when run with --benchmark-disable
            stats = benchmark.stats.stats
            reads["pytest_benchmark_median_us"] = stats.median * 1e6
            reads["pytest_benchmark_min_us"] = stats.min * 1e6


def test_bulk_import_through_api(benchmark: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = _start(tmp_path_factory.mktemp("bench-import"))
    try:
        labels = list(sample_labels(N, seed=11))
        batches = [labels[i:i + IMPORT_BATCH] for i in range(0, N, IMPORT_BATCH)]
        with LabelStoreClient(server.url, token=server.tokens["writer"], timeout=60,
                              max_batch_labels=IMPORT_BATCH) as client:
            durations: list[float] = []

            def import_all() -> None:
                for batch in batches:
                    t = time.perf_counter()
                    results = client.put(batch)
                    durations.append(time.perf_counter() - t)
                    assert len(results) == len(batch)

            gc.collect()
            started = time.perf_counter()
            benchmark.pedantic(import_all, rounds=1, iterations=1)
            seconds = time.perf_counter() - started
            assert client.changes(N - 1).head == N  # every label was written once
        durations.sort()
        RESULTS["import"] = {"labels": N, "seconds": seconds, "labels_per_s": N / seconds,
                             "batch_p50_ms": _percentile(durations, 0.5) * 1e3,
                             "batch_p99_ms": _percentile(durations, 0.99) * 1e3}
    finally:
        server.stop()


def _wire_bytes(response: httpx.Response) -> int:
    status_line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    return (status_line + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2
            + len(response.content))


def test_bloom_refresh_of_an_unchanged_store(read_server: StoreServerProcess) -> None:
    with httpx.Client(base_url=read_server.url, headers=read_server.headers("reader"),
                      timeout=120) as http:
        full = http.get("/v1/bloom")
        assert full.status_code == 200
        # Past a refresh interval of the store (nothing written meanwhile).
        time.sleep(0.2)
        again = http.get("/v1/bloom", headers={"If-None-Match": full.headers["etag"]})
    assert again.status_code == 304, "an unchanged store re-sent its snapshot"
    RESULTS["bloom_refresh"] = {
        "download_status": full.status_code, "download_bytes": _wire_bytes(full),
        "refresh_status": again.status_code, "refresh_bytes": _wire_bytes(again),
        "key_count": int(full.headers["x-bloom-key-count"]),
    }
