"""The native gate beside the blocklist it replaces and the Python path it fronts.

One process, one run: a filter of N labeled keys sized as the store sizes it
(ENFORCE_BENCH_FULL=1: 10,000,000 keys, else 1,000,000), a stream of 200,000
checks (95% unlabeled, Zipf-skewed: demo.sample.universe_keys), and per case:

- `set`: `key in labeled_set`, the old in-process blocklist's membership test;
- `dict_get`: `blocklist.get(key, ALLOW) < hide`, the old blocklist's decision;
- `gate`: `client.check(key, surface)` with the native gate (the default);
- `python`: the same client code with the gate off (ENFORCE_SDK_NATIVE_GATE=0),
  i.e. the read path before the gate;
- `check_many(100)` and `filter(100)` per item, both ways;
- `labeled_memo`: check() of a labeled entity whose decision is memoised, on an
  entity that also carries an expired label (the memo fix), both ways.

The clients have no store round trips during timing: the store is an in-process
double and the cache is warm; the bloom gate holds the filter (current). Three
runs; each figure is the median of its runs' medians with the min and max; the
ratios are taken within each run. Written to .benchmarks/bench_gate.json with
machine and versions; `./dev bench` runs it.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402
from enforce_sdk import (  # noqa: E402
    BloomFilter,
    Enforcement,
    EnforcementClient,
    Label,
    Source,
    SourceType,
)
from enforce_sdk.client.bloom_gate import BloomGate  # noqa: E402
from enforce_sdk.client.native_gate import ENV  # noqa: E402
from enforce_sdk.config.document import BloomSettings  # noqa: E402
from enforce_sdk.demo.sample import universe_keys  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
NOW = datetime.now(UTC)
MODEL = Source("spam_model", SourceType.AUTOMATED, "v1")
CONFIG = {
    "version": 1,
    "surfaces": {"home_feed": {"hide_from": "limit"}},
    "cache": {"ttl": "1h", "negative_ttl": "1h", "max_entries": 4_000_000},
}
PAGE = 100


class MemoryStore:
    def __init__(self, labels: Mapping[str, Sequence[Label]]) -> None:
        self.labels = labels

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        return {k: self.labels[k] for k in keys if k in self.labels}

    def close(self) -> None:
        pass


def make_client(store: MemoryStore, bloom: BloomFilter, gate: bool) -> EnforcementClient:
    os.environ[ENV] = "1" if gate else "0"
    try:
        client = EnforcementClient("http://unused", CONFIG, store=store)
    finally:
        os.environ.pop(ENV, None)
    core = client._core
    bloom_gate = BloomGate(lambda etag, timeout: None, core.stats, BloomSettings(enabled=False))
    core.bloom_gate = bloom_gate
    bloom_gate.watch(core._push_bloom_state)
    bloom_gate.bloom = bloom
    bloom_gate.fresh_until = float("inf")  # current for the whole run
    assert (core.native_gate is not None) == gate
    return client


def per_call_ns(fn: Callable[[Any], object], args: Sequence[Any], per: int = 1) -> float:
    """Median ns per item: the stream in slices of 1,000 calls, each slice timed once."""
    clock = time.perf_counter_ns
    samples = []
    gc.collect()
    gc.disable()
    try:
        for start in range(0, len(args), 1000):
            part = args[start:start + 1000]
            t = clock()
            for a in part:
                fn(a)
            samples.append((clock() - t) / (len(part) * per))
    finally:
        gc.enable()
    return statistics.median(samples)


def one_run(n_labeled: int, checks: int, seed: int) -> dict[str, float]:
    labeled = [f"pin:{i * 7919 % (n_labeled * 20)}" for i in range(n_labeled)]
    labeled_set = set(labeled)
    blocklist = dict.fromkeys(labeled, Enforcement.BLOCK)
    bloom = BloomFilter.for_capacity(max(2 * n_labeled, 65_536), 0.01)
    bloom.add_many(labeled)
    memo_keys = labeled[:200]
    labels: dict[str, list[Label]] = {
        k: [Label(k, MODEL, Enforcement.BLOCK, "spam", NOW - timedelta(hours=2)),
            Label(k, MODEL, Enforcement.REMOVE, "spam", NOW - timedelta(hours=3),
                  expires_at=NOW - timedelta(hours=1))]  # expired: the memo must hold
        for k in memo_keys
    }
    store = MemoryStore(labels)
    stream = universe_keys(checks, 0.05, seed=seed, labeled=labeled)
    unlabeled = [k for k in stream if k not in labeled_set]
    pages = [stream[i:i + PAGE] for i in range(0, len(stream) - PAGE + 1, PAGE)]
    hide = Enforcement.LIMIT
    allow = Enforcement.ALLOW
    out: dict[str, float] = {}
    out["set"] = per_call_ns(lambda k: k in labeled_set, unlabeled)
    out["dict_get"] = per_call_ns(lambda k: blocklist.get(k, allow) < hide, unlabeled)
    out["set_page_item"] = per_call_ns(lambda p: [k in labeled_set for k in p], pages, PAGE)
    for name, gate in (("gate", True), ("python", False)):
        client = make_client(store, bloom, gate)
        try:
            out.update(time_client(client, name, pages, unlabeled, memo_keys))
        finally:
            client.close()
    return out


def time_client(client: EnforcementClient, name: str, pages: list[list[str]],
                unlabeled: list[str], memo_keys: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in pages:  # warm: labeled keys of the stream get their (negative) entries
        client.check_many(p, "home_feed")
    for k in memo_keys:
        client.check(k, "home_feed")
        client.check(k, "home_feed")
    out[f"check_{name}"] = per_call_ns(lambda k: client.check(k, "home_feed"), unlabeled)
    out[f"check_many_{name}"] = per_call_ns(lambda p: client.check_many(p, "home_feed"),
                                            pages, PAGE)
    out[f"filter_{name}"] = per_call_ns(lambda p: client.filter(p, "home_feed"), pages, PAGE)
    memo_stream = [memo_keys[i % len(memo_keys)] for i in range(20_000)]
    out[f"labeled_memo_{name}"] = per_call_ns(lambda k: client.check(k, "home_feed"),
                                              memo_stream)
    return out


RATIOS = {
    "check_gate_vs_set": ("check_gate", "set"),
    "check_gate_vs_dict_get": ("check_gate", "dict_get"),
    "check_python_vs_set": ("check_python", "set"),
    "check_many_gate_vs_set": ("check_many_gate", "set_page_item"),
    "filter_gate_vs_set": ("filter_gate", "set_page_item"),
    "check_many_python_vs_set": ("check_many_python", "set_page_item"),
    "filter_python_vs_set": ("filter_python", "set_page_item"),
    "check_python_vs_gate": ("check_python", "check_gate"),
}


def run(n_labeled: int, checks: int, runs: int = 3) -> dict[str, Any]:
    results = [one_run(n_labeled, checks, seed=3 + r) for r in range(runs)]

    def summary(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    figures = {name: summary([r[name] for r in results]) for name in results[0]}
    ratios = {name: summary([r[a] / r[b] for r in results]) for name, (a, b) in RATIOS.items()}
    return {"labeled_keys": n_labeled, "checks": checks, "runs": runs,
            "ns": figures, "ratios": ratios}


def test_bench_gate_runs_small() -> None:
    """Runs once in the default test run, at a small size: the cases run and agree."""
    out = run(n_labeled=20_000, checks=4_000, runs=1)
    assert set(out["ns"]) >= {"set", "dict_get", "check_gate", "check_python",
                              "labeled_memo_gate", "filter_gate"}
    assert all(v["median"] > 0 for v in out["ns"].values())


if __name__ == "__main__":
    figures = run(n_labeled=10_000_000 if FULL else 1_000_000, checks=200_000)
    figures["machine"] = machine_info()
    path = write_results("bench_gate", figures)
    for name, v in figures["ns"].items():
        print(f"{name:>22}: {v['median']:8.1f} ns  ({v['min']:.1f}-{v['max']:.1f})")
    for name, v in figures["ratios"].items():
        print(f"{name:>26}: {v['median']:6.2f}x  ({v['min']:.2f}-{v['max']:.2f})")
    print("written to", path)
