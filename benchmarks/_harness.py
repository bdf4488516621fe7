"""What every benchmark shares: machine and version facts, memory sizing, result files."""

from __future__ import annotations

import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parents[1] / ".benchmarks"
_PACKAGES = (
    "enforce-sdk",
    "httpx",
    "msgpack",
    "cachetools",
    "numpy",
    "cffi",
    "starlette",
    "uvicorn",
    "kazoo",
    "redis",
    "xxhash",
    "mmh3",
    "rbloom",
    "pybloomfiltermmap3",
)


def machine_info() -> dict[str, Any]:
    """The machine and the versions a figure was measured with."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "load_average_1_5_15": list(os.getloadavg()),  # other work on the host skews figures
        "sqlite": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of already sorted values (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def time_calls(fn: Callable[[int], object], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Time `rounds` sequential calls fn(i) after `warmup` untimed ones: microseconds, calls/s."""
    for i in range(warmup):  # connections, caches
        fn(i)
    gc.collect()
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    for i in range(rounds):
        t = clock()
        fn(i)
        samples.append(clock() - t)
    total = clock() - start
    samples.sort()
    return {
        "rounds": rounds,
        "per_s": rounds / total,
        "p50_us": percentile(samples, 0.50) * 1e6,
        "p99_us": percentile(samples, 0.99) * 1e6,
        "median_us": statistics.median(samples) * 1e6,
    }


def deep_size(mapping: dict[str, Any]) -> int:
    """Bytes held by a dict of str keys: the table plus every key (values assumed shared)."""
    return sys.getsizeof(mapping) + sum(sys.getsizeof(k) for k in mapping)


def write_results(name: str, results: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
