"""EnforcementClient on a mostly-unlabeled Zipf stream, beside the old blocklist and a no-cache client.

The store holds labels on N distinct entities (1,000,000 with
ENFORCE_BENCH_FULL=1, else 16,000; popular entities carry labels from several
sources) on SQLite behind the real HTTP service. The check stream (sample.universe_keys) is
95% keys with no label, Zipf-skewed. Measured side by side in one run:

- client: check() per key (cold pass, then warm), check_many() in pages of 100;
- blocklist: a dict of every labeled key to its most severe enforcement (the old
  per-host way): dict.get per key;
- no cache: one store round trip per check (LabelStoreClient.get_many([key])).

Reported: median and mean ns per check (per item for check_many), store round
trips per 1000 checks, client process RSS, blocklist memory. Written to
.benchmarks/bench_client.json with machine and versions.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from enforce_sdk import Enforcement
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.demo.sample import sample_labels, universe_keys
from enforce_sdk.store import PutOp, SQLiteStorage
from enforce_sdk.store_client.client import LabelStoreClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess  # noqa: E402

from benchmarks._harness import deep_size, machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N_ENTITIES = 1_000_000 if FULL else 16_000
CHECKS = 200_000 if FULL else 20_000
NO_CACHE_CHECKS = 2_000 if FULL else 200
PAGE = 100
CONFIG: dict[str, Any] = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h", "max_entries": 2_000_000},
    "store": {"timeout": "5s", "max_batch_keys": 1000},
}
RESULTS: dict[str, Any] = {}


class Setup:
    def __init__(
        self, server: StoreServerProcess, blocklist: dict[str, Enforcement], stream: list[str],
        labels: int,
    ):
        self.server = server
        self.labels = labels
        self.blocklist = blocklist
        self.stream = stream

    def client(self) -> EnforcementClient:
        return EnforcementClient(self.server.url, CONFIG, token=self.server.tokens["reader"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    server = StoreServerProcess(tmp_path_factory.mktemp("bench-client"))
    storage = SQLiteStorage(server.db_path)
    blocklist: dict[str, Enforcement] = {}
    batch: list[PutOp] = []
    labels = 0
    for label in sample_labels(2 * N_ENTITIES, seed=7, now=datetime.now(UTC)):
        if label.entity not in blocklist and len(blocklist) == N_ENTITIES:
            break
        labels += 1
        blocklist[label.entity] = max(
            blocklist.get(label.entity, Enforcement.ALLOW), label.enforcement
        )
        batch.append(PutOp(label))
        if len(batch) == 20_000:
            storage.apply(batch, actor="bench", now=label.created_at)
            batch = []
    if batch:
        storage.apply(batch, actor="bench", now=batch[-1].label.created_at)
    storage.close()
    assert len(blocklist) == N_ENTITIES
    stream = universe_keys(CHECKS, 0.05, seed=7, labeled=sorted(blocklist))
    server.start()
    try:
        yield Setup(server, blocklist, stream, labels)
    finally:
        server.kill()


def _per_call_ns(fn: Any, keys: list[str]) -> tuple[float, float]:
    """Median and mean ns of fn(key) over keys, each call timed on its own."""
    clock = time.perf_counter_ns
    samples = []
    gc.collect()
    gc.disable()
    try:
        for key in keys:
            t = clock()
            fn(key)
            samples.append(clock() - t)
    finally:
        gc.enable()
    return statistics.median(samples), statistics.fmean(samples)


def test_client_scalar_checks(setup: Setup) -> None:
    with setup.client() as client:
        cold_start = client.stats.fetches
        t = time.perf_counter_ns()
        for key in setup.stream:
            client.check(key, "home_feed")
        cold_ns = (time.perf_counter_ns() - t) / len(setup.stream)
        cold_trips = client.stats.fetches - cold_start
        warm_start = client.stats.fetches
        median, mean = _per_call_ns(lambda k: client.check(k, "home_feed"), setup.stream)
        warm_trips = client.stats.fetches - warm_start
        rss = psutil.Process().memory_info().rss
        hidden = sum(not client.check(k, "home_feed").visible for k in setup.stream[:1000])
    assert warm_trips <= len(setup.stream) / 1000  # the warm goal
    assert hidden > 0  # the stream does reach labeled keys
    RESULTS["client_scalar"] = {
        "cold_mean_ns": cold_ns,
        "cold_round_trips_per_1000": 1000 * cold_trips / len(setup.stream),
        "warm_median_ns": median,
        "warm_mean_ns": mean,
        "warm_round_trips_per_1000": 1000 * warm_trips / len(setup.stream),
        "process_rss_bytes": rss,
    }


def test_client_check_many_pages(setup: Setup) -> None:
    pages = [setup.stream[i : i + PAGE] for i in range(0, len(setup.stream) - PAGE + 1, PAGE)]
    with setup.client() as client:
        first = client.stats.fetches
        client.check_many(pages[0], "home_feed")
        cold_first_page_trips = client.stats.fetches - first
        t = time.perf_counter_ns()
        for page in pages:
            client.check_many(page, "home_feed")
        cold_ns = (time.perf_counter_ns() - t) / (len(pages) * PAGE)
        cold_trips = client.stats.fetches - first
        warm_first = client.stats.fetches
        median, mean = _per_call_ns(lambda p: client.check_many(p, "home_feed"), pages)  # type: ignore[arg-type]
        warm_trips = client.stats.fetches - warm_first
    assert cold_first_page_trips == 1  # a cold page of 100 is one round trip
    assert cold_trips <= len(pages)
    assert warm_trips <= len(setup.stream) / 1000
    RESULTS["client_check_many_100"] = {
        "cold_first_page_round_trips": cold_first_page_trips,
        "cold_mean_ns_per_item": cold_ns,
        "cold_round_trips_per_1000": 1000 * cold_trips / (len(pages) * PAGE),
        "warm_median_ns_per_item": median / PAGE,
        "warm_mean_ns_per_item": mean / PAGE,
        "warm_round_trips_per_1000": 1000 * warm_trips / (len(pages) * PAGE),
    }


def test_blocklist_baseline(setup: Setup) -> None:
    blocklist = setup.blocklist
    get = blocklist.get
    median, mean = _per_call_ns(get, setup.stream)
    hidden = sum(get(k, Enforcement.ALLOW) >= Enforcement.LIMIT for k in setup.stream)
    assert hidden > 0
    RESULTS["blocklist"] = {
        "labeled_keys": len(blocklist),
        "median_ns": median,
        "mean_ns": mean,
        "memory_bytes": deep_size(blocklist),
        "bytes_per_key": deep_size(blocklist) / len(blocklist),
    }


def test_no_cache_client(setup: Setup) -> None:
    keys = setup.stream[:NO_CACHE_CHECKS]
    requests: list[object] = []
    with LabelStoreClient(setup.server.url, token=setup.server.tokens["reader"]) as store:
        store._http.event_hooks["request"].append(requests.append)  # count real round trips
        median, mean = _per_call_ns(lambda k: store.get_many([k]), keys)
        trips = len(requests)
        labeled = [k for k in setup.stream if k in setup.blocklist][:20]
        answered = store.get_many(labeled)
    assert labeled and all(answered.get(k) for k in labeled)  # it reads the store for real
    RESULTS["no_cache"] = {
        "checks": len(keys),
        "median_ns": median,
        "mean_ns": mean,
        "round_trips_per_1000": 1000 * trips / len(keys),
    }


def test_report(setup: Setup) -> None:
    """Print the side-by-side table and write it for docs/benchmarks.md."""
    assert {"client_scalar", "client_check_many_100", "blocklist", "no_cache"} <= set(RESULTS)
    base = RESULTS["blocklist"]["median_ns"]
    RESULTS["ratios"] = {
        "client_warm_check_vs_blocklist": RESULTS["client_scalar"]["warm_median_ns"] / base,
        "client_check_many_item_vs_blocklist": RESULTS["client_check_many_100"][
            "warm_median_ns_per_item"
        ]
        / base,
        "no_cache_vs_client_warm_check": RESULTS["no_cache"]["median_ns"]
        / RESULTS["client_scalar"]["warm_median_ns"],
    }
    RESULTS["setup"] = {
        "labeled_entities": N_ENTITIES,
        "labels": setup.labels,
        "checks": CHECKS,
        "labeled_fraction": 0.05,
        "full": FULL,
    }
    RESULTS["machine"] = machine_info()
    write_results("bench_client" if FULL else "bench_client.quick", RESULTS)
    print(json.dumps(RESULTS, indent=2))
