"""The SDK with the bloom precheck on the mostly-unlabeled stream, beside the blocklist baseline.

What is measured, in one run, on one machine:

- the SDK client (bloom enabled, real Label Store over HTTP) answering check(),
  check_many(100) and filter(100) on sample.universe_keys (95% unlabeled keys,
  Zipf-skewed), warm (after one pass, so the filter's false positives are in
  the negative cache);
- the same client with bloom disabled (the label cache alone), for reference;
- the blocklist baseline: a dict of every labeled key to its most severe
  enforcement, answering `get(key, ALLOW) < hide_from` per key.

The filter holds N labeled keys (10,000,000 with ENFORCE_BENCH_FULL=1, else
200,000). Writing 10M labels through SQLite takes too long here, so the store
holds only a small labeled subset (sample_labels: 20,000 labels, 2,000 in the
default run) that the stream's labeled 5% is drawn from, and the SDK's filter
is a snapshot made offline exactly as the store builds one
(`snapshot_capacity(N)` keys at 1% FP, `add_many` of the subset's entities plus
synthetic labeled `pin:` keys up to N, `seq` = the store's head), swapped into
the client's BloomGate after it started (with refresh_interval 1h, so the
store's own small snapshot never replaces it). The blocklist holds the same N keys.

Timing: each figure is a tight loop over the keys timed as a whole (mean ns per
check or per item), repeated ROUNDS times, the median round reported; gc is
collected before and disabled during a round. Memory: the filter's bit array
(size_bytes) against the dict's deep size (table + every key string).
Written to .benchmarks/bench_end_to_end.json (quick runs: .quick.json).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from enforce_sdk import Enforcement
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.demo.sample import entity_for, sample_labels, universe_keys
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.store import PutOp, SQLiteStorage
from enforce_sdk.store.bloom_snapshot import snapshot_capacity

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.store_server import StoreServerProcess  # noqa: E402

from benchmarks._harness import deep_size, machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N_FILTER = 10_000_000 if FULL else 200_000
N_STORE_LABELS = 20_000 if FULL else 2_000
CHECKS = 200_000 if FULL else 10_000
ROUNDS = 5 if FULL else 2
PAGE = 100
SURFACE = "home_feed"
HIDE_FROM = Enforcement.LIMIT


def config(bloom: bool) -> dict[str, Any]:
    return {
        "version": 1,
        "surfaces": {SURFACE: {"hide_from": "limit"}},
        "cache": {"ttl": "1h", "negative_ttl": "1h", "max_entries": 2_000_000},
        "store": {"timeout": "5s", "max_batch_keys": 1000},
        "bloom": {"enabled": bloom, "max_staleness": "1h", "refresh_interval": "1h"},
    }


RESULTS: dict[str, Any] = {}


class Setup:
    def __init__(self, server: StoreServerProcess, head: int, blocklist: dict[str, Enforcement],
                 bloom: BloomFilter, stream: list[str], unlabeled: list[str]) -> None:
        self.server = server
        self.head = head
        self.blocklist = blocklist
        self.bloom = bloom
        self.stream = stream
        self.unlabeled = unlabeled

    def client(self, bloom: bool) -> EnforcementClient:
        client = EnforcementClient(self.server.url, config(bloom),
                                   token=self.server.tokens["reader"], feed_wait=1.0)
        if bloom:
            gate = client._core.bloom_gate
            assert gate is not None and gate.bloom is not None
            gate.bloom = self.bloom  # the offline snapshot of all N labeled keys
        return client


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    server = StoreServerProcess(tmp_path_factory.mktemp("bench-e2e"))
    storage = SQLiteStorage(server.db_path)
    blocklist: dict[str, Enforcement] = {}
    labels = list(sample_labels(N_STORE_LABELS, seed=7, now=datetime.now(UTC)))
    for label in labels:
        blocklist[label.entity] = max(blocklist.get(label.entity, Enforcement.ALLOW),
                                      label.enforcement)
    storage.apply([PutOp(lb) for lb in labels], actor="bench", now=labels[-1].created_at)
    head = storage.head_seq()
    storage.close()
    store_keys = sorted(blocklist)
    rank = 0
    while len(blocklist) < N_FILTER:  # synthetic labeled keys up to N
        blocklist.setdefault(entity_for("pin", rank, 7, labeled=True), Enforcement.BLOCK)
        rank += 1
    bloom = BloomFilter.for_capacity(snapshot_capacity(len(blocklist)), 0.01)
    keys = list(blocklist)
    for start in range(0, len(keys), 100_000):
        bloom.add_many(keys[start:start + 100_000])
    bloom.seq = head
    del keys
    stream = universe_keys(CHECKS, 0.05, seed=7, labeled=store_keys)
    unlabeled = [k for k in stream if k not in blocklist]
    server.start()
    try:
        yield Setup(server, head, blocklist, bloom, stream, unlabeled)
    finally:
        server.kill()


def _loop_ns(run: Callable[[], int]) -> float:
    """Median over ROUNDS of the ns per item of run() (which returns its item count)."""
    per_item = []
    for _ in range(ROUNDS):
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter_ns()
            n = run()
            per_item.append((time.perf_counter_ns() - t) / n)
        finally:
            gc.enable()
    return statistics.median(per_item)


def _pages(keys: list[str]) -> list[list[str]]:
    return [keys[i:i + PAGE] for i in range(0, len(keys) - PAGE + 1, PAGE)]


def _blocklist_figures(setup: Setup) -> dict[str, float]:
    get = setup.blocklist.get
    allow, hide = Enforcement.ALLOW, HIDE_FROM

    def scalar(keys: list[str]) -> Callable[[], int]:
        def run() -> int:
            for k in keys:
                get(k, allow) < hide  # noqa: B015 - the visibility a check answers
            return len(keys)
        return run

    pages = _pages(setup.stream)

    def many() -> int:
        for page in pages:
            [get(k, allow) < hide for k in page]
        return len(pages) * PAGE

    def filt() -> int:
        for page in pages:
            [k for k in page if get(k, allow) < hide]
        return len(pages) * PAGE

    return {
        "check_unlabeled_ns": _loop_ns(scalar(setup.unlabeled)),
        "check_stream_ns": _loop_ns(scalar(setup.stream)),
        "check_many_100_ns_per_item": _loop_ns(many),
        "filter_100_ns_per_item": _loop_ns(filt),
    }


def _client_figures(setup: Setup, bloom: bool) -> dict[str, float]:
    with setup.client(bloom) as client:
        check, check_many, filt = client.check, client.check_many, client.filter
        pages = _pages(setup.stream)
        for page in pages:  # warm: FP and labeled keys fetched once, then cached
            check_many(page, SURFACE)
        for k in setup.stream:
            check(k, SURFACE)
        stats = client.stats
        fetches, checks = stats.fetches, stats.checks

        def scalar(keys: list[str]) -> Callable[[], int]:
            def run() -> int:
                for k in keys:
                    check(k, SURFACE)
                return len(keys)
            return run

        def many() -> int:
            for page in pages:
                check_many(page, SURFACE)
            return len(pages) * PAGE

        def filter_pages() -> int:
            for page in pages:
                filt(page, SURFACE)
            return len(pages) * PAGE

        out = {
            "check_unlabeled_ns": _loop_ns(scalar(setup.unlabeled)),
            "check_stream_ns": _loop_ns(scalar(setup.stream)),
            "check_many_100_ns_per_item": _loop_ns(many),
            "filter_100_ns_per_item": _loop_ns(filter_pages),
        }
        hidden = sum(not d.visible for d in check_many(setup.stream[:1000], SURFACE))
        assert hidden > 0  # the stream reaches labeled keys
        if bloom:
            assert stats.bloom_negatives > 0
        warm_checks = stats.checks - checks
        out["warm_round_trips_per_1000"] = 1000 * (stats.fetches - fetches) / warm_checks
        out["bloom_negatives"] = stats.bloom_negatives
        out["fetches_total"] = stats.fetches
        return out


def test_memory(setup: Setup) -> None:
    blocklist_bytes = deep_size(setup.blocklist)
    bloom = setup.bloom
    RESULTS["memory"] = {
        "labeled_keys": len(setup.blocklist),
        "filter_bytes": bloom.size_bytes,
        "filter_bytes_per_key": bloom.size_bytes / len(setup.blocklist),
        "filter_k": bloom.k,
        "filter_estimated_fp": bloom.estimated_fp,
        "blocklist_bytes": blocklist_bytes,
        "blocklist_bytes_per_key": blocklist_bytes / len(setup.blocklist),
        "blocklist_over_filter": blocklist_bytes / bloom.size_bytes,
    }
    fp = sum(k in bloom for k in setup.unlabeled) / max(1, len(setup.unlabeled))
    RESULTS["memory"]["measured_fp_on_stream"] = fp
    labeled = list(setup.blocklist)
    assert all(k in bloom for k in labeled[:: max(1, len(labeled) // 10_000)])  # no false negative
    assert fp <= 3 * bloom.estimated_fp + 0.01
    assert blocklist_bytes > bloom.size_bytes


def test_blocklist(setup: Setup) -> None:
    RESULTS["blocklist"] = _blocklist_figures(setup)


def test_client_bloom(setup: Setup) -> None:
    RESULTS["client_bloom"] = _client_figures(setup, bloom=True)


def test_client_cache_only(setup: Setup) -> None:
    RESULTS["client_cache_only"] = _client_figures(setup, bloom=False)


def test_report(setup: Setup) -> None:
    assert {"memory", "blocklist", "client_bloom", "client_cache_only"} <= set(RESULTS)
    base, bloom, cache = RESULTS["blocklist"], RESULTS["client_bloom"], RESULTS["client_cache_only"]
    RESULTS["ratios"] = {
        f"{name}_{fig}_vs_blocklist": side[fig] / base[fig]
        for name, side in (("bloom", bloom), ("cache_only", cache))
        for fig in ("check_unlabeled_ns", "check_stream_ns", "check_many_100_ns_per_item",
                    "filter_100_ns_per_item")
    }
    RESULTS["goals"] = {
        "memory_at_most_1_50_of_blocklist": RESULTS["memory"]["blocklist_over_filter"] >= 50,
        "check_many_item_no_slower_than_blocklist":
            bloom["check_many_100_ns_per_item"] <= base["check_many_100_ns_per_item"],
        "filter_item_no_slower_than_blocklist":
            bloom["filter_100_ns_per_item"] <= base["filter_100_ns_per_item"],
        "check_unlabeled_at_most_1_5x_blocklist":
            bloom["check_unlabeled_ns"] <= 1.5 * base["check_unlabeled_ns"],
    }
    RESULTS["setup"] = {
        "filter_keys": N_FILTER,
        "store_labels": N_STORE_LABELS,
        "store_head": setup.head,
        "checks": CHECKS,
        "unlabeled_in_stream": len(setup.unlabeled),
        "labeled_fraction": 0.05,
        "rounds": ROUNDS,
        "full": FULL,
        "method": "offline snapshot of N keys swapped into the client's BloomGate; "
                  "store holds the labeled subset only",
    }
    RESULTS["machine"] = machine_info()
    write_results("bench_end_to_end" if FULL else "bench_end_to_end.quick", RESULTS)
    print(json.dumps(RESULTS, indent=2))
