"""Signature hashing, ns per key: sig64 scalar and batch beside xxh3 and mmh3 in one run.

Cases (same seeded canonical keys, 10-60 bytes, for all):
- sig64 scalar: `signature(key)` per key (validation + encode + one C call);
- sig64 batch: `signatures(keys)`, including the Python cost of building the
  '\\n'-joined buffer and the numpy result;
- sig64 C only: the C batch loop over an already-built buffer (for reference);
- xxh3 loop: `xxhash.xxh3_64_intdigest(key.encode())` per key;
- mmh3 loop: `mmh3.hash64(key.encode())` per key.
Goal: batch >= 2x faster per key than the xxh3 loop.

Run as pytest-benchmark (`pytest benchmarks/bench_hash.py --benchmark-enable`) or
directly (`python benchmarks/bench_hash.py`) for interleaved medians, a summary
table and .benchmarks/bench_hash.json (machine, versions). The default test run
executes each case once on a small key set; ENFORCE_BENCH_FULL=1 uses the full size.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mmh3
import numpy as np
import pytest
import xxhash

from enforce_sdk.native.bloom import signature, signatures

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
HASH_KEYS = 1_000_000 if FULL else 20_000
REPEATS = 9 if FULL else 3

_KINDS = ("pin", "user", "board", "domain", "image", "link")


def make_keys(count: int, seed: int = 2026) -> list[str]:
    """Seeded canonical-looking keys of 10..60 bytes; distinct for distinct indexes."""
    rng = random.Random(seed)
    keys = []
    for i in range(count):
        kind = _KINDS[rng.randrange(len(_KINDS))]
        if kind == "pin":
            key = f"pin:{rng.randrange(10**9, 10**18)}{i}"
        elif kind == "user":
            key = f"user:{rng.randrange(10**6, 10**12)}u{i}"
        elif kind == "board":
            key = f"board:{rng.randrange(10**8):x}-{i}"
        elif kind == "domain":
            key = f"domain:site{i}-{rng.randrange(10**6)}.example.com"
        elif kind == "image":
            key = f"image:{rng.getrandbits(rng.choice((128, 160, 192))):048x}{i:x}"[:60]
        else:
            key = f"link:{rng.getrandbits(64):x}{i}"
        keys.append(key)
    return keys


def fresh(keys: list[str]) -> list[str]:
    """New str objects with the same text, so no cached str hash or UTF-8 form is reused."""
    return [k.encode().decode() for k in keys]


def _c_only(keys: list[str]) -> Callable[[], Any]:
    from enforce_sdk.native.binding import ffi, lib  # the only place a benchmark reaches into C

    buf = "\n".join(keys).encode()
    out = np.empty(len(keys), dtype=np.uint64)
    dest = ffi.from_buffer("uint64_t[]", out)
    return lambda: lib.enf_sig64_lines(buf, len(buf), len(keys), 0, dest)


def cases(keys: list[str]) -> dict[str, Callable[[], Any]]:
    """Each case hashes every key once."""
    xxh3 = xxhash.xxh3_64_intdigest
    mm = mmh3.hash64
    sig = signature
    return {
        "sig64 scalar": lambda: [sig(k) for k in keys],
        "sig64 batch": lambda: signatures(keys),
        "sig64 C only": _c_only(keys),
        "xxh3 loop": lambda: [xxh3(k.encode()) for k in keys],
        "mmh3 loop": lambda: [mm(k.encode()) for k in keys],
    }


def measure(keys: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Median ns/key per case; cases are interleaved so shared-machine noise hits all."""
    runs = cases(keys)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
            finally:
                gc.enable()
            samples[name].append(elapsed / len(keys) * 1e9)
    return {
        name: {"median_ns_per_key": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in samples.items()
    }


def summarise(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    med = {name: f["median_ns_per_key"] for name, f in figures.items()}
    return {
        "xxh3_loop_over_sig64_batch": med["xxh3 loop"] / med["sig64 batch"],
        "mmh3_loop_over_sig64_batch": med["mmh3 loop"] / med["sig64 batch"],
        "xxh3_loop_over_sig64_scalar": med["xxh3 loop"] / med["sig64 scalar"],
        "goal_batch_2x_faster_than_xxh3_loop": float(med["xxh3 loop"] / med["sig64 batch"] >= 2.0),
    }


def print_table(figures: dict[str, dict[str, float]], ratios: dict[str, float]) -> None:
    print(f"\n{'case':<16}{'median ns/key':>15}{'min':>9}{'max':>9}")
    for name, f in figures.items():
        print(f"{name:<16}{f['median_ns_per_key']:>15.1f}{f['min']:>9.1f}{f['max']:>9.1f}")
    for name, value in ratios.items():
        print(f"{name:<40}{value:>8.2f}")


def main() -> None:
    keys = make_keys(HASH_KEYS)
    load_before = os.getloadavg()
    figures = measure(keys, REPEATS)
    ratios = summarise(figures)
    print_table(figures, ratios)
    path = write_results(
        "bench_hash",
        {
            "keys": len(keys),
            "repeats": REPEATS,
            "mean_key_bytes": sum(map(len, keys)) / len(keys),
            "load_average_before_after": [load_before, os.getloadavg()],
            "figures": figures,
            "ratios": ratios,
            "machine": machine_info(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    print(f"wrote {path}")


# -- pytest(-benchmark) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_keys() -> list[str]:
    return make_keys(HASH_KEYS)


@pytest.mark.parametrize(
    "case", ["sig64 scalar", "sig64 batch", "sig64 C only", "xxh3 loop", "mmh3 loop"]
)
def test_hash(benchmark: Any, bench_keys: list[str], case: str) -> None:
    benchmark.group = f"hash {len(bench_keys)} keys"
    result = benchmark(cases(bench_keys)[case])
    if case == "sig64 C only":
        assert result == 0  # ENF_OK: every line hashed
    else:
        assert len(result) == len(bench_keys)
        if case.startswith("sig64"):
            assert int(result[0]) == signature(bench_keys[0])


def test_keys_are_distinct_and_in_range() -> None:
    keys = make_keys(5_000)
    assert len(set(keys)) == len(keys)
    assert all(10 <= len(k.encode()) <= 60 for k in keys)
    assert make_keys(100) == make_keys(100)


def test_batch_and_scalar_cases_agree(bench_keys: list[str]) -> None:
    batch = signatures(bench_keys[:1000])
    assert [int(v) for v in batch] == [signature(k) for k in bench_keys[:1000]]
    figures = measure(bench_keys[:2000], 1)
    assert set(summarise(figures)) >= {"xxh3_loop_over_sig64_batch"}


if __name__ == "__main__":
    main()
