"""Request coalescing: 256 concurrent cold-cache checks, with and without it, in one run.

The real Label Store (SQLite, HTTP subprocess) holds N sample labels. Each
round fires 256 concurrent checks of keys no client has seen (5% labeled) and
times each check from call to answer. Rounds alternate between:

- coalesced: the defaults (window 1 ms, at most 4 store reads in flight);
- uncoalesced: window 0 and 256 reads in flight allowed, so every check sends
  its own store read at once (all through one httpx.AsyncClient).

The same comparison runs for the sync client with 64 threads. Reported per
mode: store requests per round, p50 / p99 / max check latency (ms), and the
ratios. ENFORCE_BENCH_FULL=1 runs 30 rounds per mode instead of 4. Written to
.benchmarks/bench_async.json (quick runs: bench_async.quick.json) with machine
and versions.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.demo.sample import sample_labels
from enforce_sdk.store import PutOp, SQLiteStorage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess  # noqa: E402

from benchmarks._harness import machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
ROUNDS = 30 if FULL else 4
CONCURRENCY = 256
THREADS = 64
N_LABELS = 20_000 if FULL else 2_000
LABELED_EVERY = 20  # one key in 20 is labeled
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h", "max_entries": 2_000_000},
    "store": {"timeout": "5s", "retries": 0},
}
MODES: dict[str, dict[str, Any]] = {
    "coalesced": {},  # the defaults
    "uncoalesced": {"coalesce_window": 0.0, "max_in_flight": CONCURRENCY},
}
RESULTS: dict[str, Any] = {}


class Setup:
    def __init__(self, server: StoreServerProcess, labeled: list[str]) -> None:
        self.server = server
        self.labeled = labeled
        self.next_labeled = 0

    def keys(self, tag: str, n: int) -> list[str]:
        """n keys never checked before: every LABELED_EVERY-th labeled, the rest not."""
        out = []
        for i in range(n):
            if i % LABELED_EVERY == 0:
                out.append(self.labeled[self.next_labeled % len(self.labeled)])
                self.next_labeled += 1
            else:
                out.append(f"pin:cold-{tag}-{i}")
        return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    server = StoreServerProcess(
        tmp_path_factory.mktemp("bench-async"), sections={"limits": {"max_batch_keys": 1000}}
    )
    storage = SQLiteStorage(server.db_path)
    labels = list(sample_labels(N_LABELS, seed=11, now=datetime.now(UTC)))
    storage.apply([PutOp(label) for label in labels], actor="bench", now=labels[-1].created_at)
    storage.close()
    server.start()
    try:
        yield Setup(server, sorted({label.entity for label in labels}))
    finally:
        server.kill()


def _summary(latencies_ns: list[int], requests: list[int]) -> dict[str, float]:
    ordered = sorted(latencies_ns)
    return {
        "checks": len(ordered),
        "store_requests_per_round": statistics.fmean(requests),
        "p50_ms": ordered[len(ordered) // 2] / 1e6,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
        "max_ms": ordered[-1] / 1e6,
    }


def _compare(results: dict[str, dict[str, float]]) -> dict[str, float]:
    on, off = results["coalesced"], results["uncoalesced"]
    return {
        "request_reduction": off["store_requests_per_round"] / on["store_requests_per_round"],
        "p99_uncoalesced_over_coalesced": off["p99_ms"] / on["p99_ms"],
        "p50_uncoalesced_over_coalesced": off["p50_ms"] / on["p50_ms"],
    }


async def _async_round(client: AsyncEnforcementClient, keys: list[str]) -> list[int]:
    clock = time.perf_counter_ns

    async def timed(key: str) -> int:
        t = clock()
        await client.check(key, "home_feed")
        return clock() - t

    return await asyncio.gather(*(timed(k) for k in keys))


def test_async_coalescing(setup: Setup) -> None:
    token = setup.server.tokens["reader"]
    latencies: dict[str, list[int]] = {m: [] for m in MODES}
    requests: dict[str, list[int]] = {m: [] for m in MODES}

    async def run() -> None:
        clients = {
            m: AsyncEnforcementClient(
                setup.server.url, CONFIG, token=token, follow_changes=False, **kw
            )
            for m, kw in MODES.items()
        }
        for m, client in clients.items():  # warm the connections: not part of the figures
            await client.check_many([f"pin:warm-{m}-{i}" for i in range(8)], "home_feed")
        for r in range(ROUNDS):
            for m, client in clients.items():
                keys = setup.keys(f"async-{m}-{r}", CONCURRENCY)
                before = client.stats.fetches
                gc.collect()
                latencies[m] += await _async_round(client, keys)
                requests[m].append(client.stats.fetches - before)
                assert client.stats.fetch_errors == 0
        for client in clients.values():
            await client.aclose()

    asyncio.run(run())
    results = {m: _summary(latencies[m], requests[m]) for m in MODES}
    RESULTS["async_256_concurrent_checks"] = {**results, "ratios": _compare(results)}
    assert all(n == CONCURRENCY for n in requests["uncoalesced"])  # one read per check
    assert results["coalesced"]["store_requests_per_round"] * 10 <= CONCURRENCY


def test_sync_coalescing_with_threads(setup: Setup) -> None:
    token = setup.server.tokens["reader"]
    latencies: dict[str, list[int]] = {m: [] for m in MODES}
    requests: dict[str, list[int]] = {m: [] for m in MODES}
    clients = {
        m: EnforcementClient(setup.server.url, CONFIG, token=token, follow_changes=False, **kw)
        for m, kw in MODES.items()
    }
    clock = time.perf_counter_ns
    for r in range(ROUNDS):
        for m, client in clients.items():
            keys = setup.keys(f"sync-{m}-{r}", THREADS)
            start = threading.Barrier(THREADS)
            times: list[int] = []

            def worker(
                key: str,
                client: EnforcementClient = client,
                start: threading.Barrier = start,
                times: list[int] = times,
            ) -> None:
                start.wait()
                t = clock()
                client.check(key, "home_feed")
                times.append(clock() - t)

            threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
            before = client.stats.fetches
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            latencies[m] += times
            requests[m].append(client.stats.fetches - before)
    for client in clients.values():
        client.close()
    results = {m: _summary(latencies[m], requests[m]) for m in MODES}
    RESULTS["sync_64_threads"] = {**results, "ratios": _compare(results)}
    assert results["coalesced"]["store_requests_per_round"] < THREADS


def test_report(setup: Setup) -> None:
    assert {"async_256_concurrent_checks", "sync_64_threads"} <= set(RESULTS)
    RESULTS["setup"] = {
        "rounds_per_mode": ROUNDS,
        "async_concurrency": CONCURRENCY,
        "sync_threads": THREADS,
        "labels_in_store": N_LABELS,
        "labeled_fraction": 1 / LABELED_EVERY,
        "modes": MODES,
        "full": FULL,
    }
    RESULTS["machine"] = machine_info()
    # the default (quick) run must not overwrite the full figures
    write_results("bench_async" if FULL else "bench_async.quick", RESULTS)
    print(json.dumps(RESULTS, indent=2))
