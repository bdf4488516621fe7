"""Bloom filters at 1% target: ours (blocked, C via cffi) beside rbloom and pybloomfiltermmap3.

Per library, in one run, interleaved and repeated (medians):
- build: size for N keys at 1%, then add all N (ours: `add_many`, the others: `update`);
- contains, scalar: `key in bloom` over a sample of present and of absent keys;
- contains, batch (ours only: `contains_many`; the others have no batch lookup);
- bytes per key and measured FP (absent keys).
Lookups use fresh str objects every repeat, as product code gets from canonical_key(),
so no library profits from a str hash cached by an earlier pass. rbloom hashes with
Python's per-process randomised `hash()` by default, which cannot be persisted; the row
"rbloom stable hash" uses the hash_func its docs suggest for save/load (blake2b).
Also: snapshot save/load of a 10**8-key (about 120 MB) filter.

Growth (issue 11): a client's filter loaded from an empty store's snapshot, then fed
200,000 keys by the change feed: measured FP rate (100,000 absent keys) and memory every
20,000 keys, for the old store sizing (1,024 keys), the new one (2x, floor 65,536) without
and with the SDK's growth (ScalableBloom), beside a fresh snapshot of all 200,000 keys. And
the lookup cost of a grown filter (BloomLayers, 2 and 3 layers) beside the plain filter the
gate serves until it grows: `contains` of an absent key, `contains_many` and the page
precheck `surely_unlabeled` of 100-key pages.

Goals: scalar no slower than rbloom; batch >= 4x faster per key than rbloom scalar;
<= 1.3 B/key at measured FP <= 1%.

Run directly (`python benchmarks/bench_bloom.py`; ENFORCE_BENCH_FULL=1 for 10M keys) for
the summary table and .benchmarks/bench_bloom.json, or as pytest-benchmark. The default
test run executes each case once at a small size.
"""

from __future__ import annotations

import gc
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pybloomfilter
import pytest
import rbloom

from enforce_sdk.native.bloom import BloomFilter, surely_unlabeled
from enforce_sdk.native.scalable_bloom import ScalableBloom

ROOT = Path(__file__).resolve().parents[1]
for extra in (str(ROOT), str(ROOT / "benchmarks")):
    if extra not in sys.path:
        sys.path.insert(0, extra)

from bench_hash import fresh, make_keys  # noqa: E402
from benchmarks._harness import machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
N_KEYS = 10_000_000 if FULL else 20_000
LOOKUPS = 1_000_000 if FULL else 5_000
REPEATS = 5 if FULL else 1
FP = 0.01
SNAPSHOT_KEYS = 100_000_000 if FULL else 1_000_000


def _stable_hash(key: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(key.encode(), digest_size=16).digest(), "little", signed=True
    )


BUILDERS: dict[str, Callable[[list[str]], Any]] = {
    "enforce": lambda keys: _build_ours(keys),
    "rbloom": lambda keys: _build_rbloom(keys, None),
    "rbloom stable hash": lambda keys: _build_rbloom(keys, _stable_hash),
    "pybloomfiltermmap3": lambda keys: _build_pybloom(keys),
}


def _build_ours(keys: list[str]) -> BloomFilter:
    bloom = BloomFilter.for_capacity(len(keys), FP)
    bloom.add_many(keys)
    return bloom


def _build_rbloom(keys: list[str], hash_func: Callable[[str], int] | None) -> Any:
    bloom = (
        rbloom.Bloom(len(keys), FP)
        if hash_func is None
        else rbloom.Bloom(len(keys), FP, hash_func=hash_func)
    )
    bloom.update(keys)
    return bloom


def _build_pybloom(keys: list[str]) -> Any:
    bloom = pybloomfilter.BloomFilter(len(keys), FP)
    bloom.update(keys)
    return bloom


def size_bytes(name: str, bloom: Any) -> int:
    if name == "enforce":
        return int(bloom.size_bytes)
    if name.startswith("rbloom"):
        return int(bloom.size_in_bits) // 8
    return int(bloom.num_bits) // 8


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def _scalar(bloom: Any, keys: list[str]) -> int:
    return sum(1 for k in keys if k in bloom)


def measure(n_keys: int, lookups: int, repeats: int) -> dict[str, Any]:
    """Median figures per library; see the module docstring for the cases."""
    keys = make_keys(n_keys)
    absent_all = make_keys(max(lookups, 200_000), seed=99)  # disjoint texts (other seed)
    rng = np.random.default_rng(5)
    present = [keys[i] for i in rng.choice(len(keys), size=min(lookups, len(keys)), replace=False)]
    absent = absent_all[:lookups]
    build_s: dict[str, list[float]] = {name: [] for name in BUILDERS}
    per_key: dict[str, list[float]] = {}
    filters: dict[str, Any] = {}
    key_set = set(keys)
    fp_probe = [k for k in absent_all if k not in key_set]
    del key_set
    for _ in range(repeats):
        for name, build in BUILDERS.items():
            if name == "rbloom stable hash" and n_keys > 2_000_000:
                continue  # ~1 us/key in Python: measured on lookups only, built once below
            filters.pop(name, None)
            elapsed, filters[name] = _timed(lambda build=build: build(keys))
            build_s[name].append(elapsed)
        if "rbloom stable hash" not in filters:
            filters["rbloom stable hash"] = _build_rbloom(keys, _stable_hash)
        for name, bloom in filters.items():
            for label, sample in (("present", present), ("absent", absent)):
                probe = fresh(sample)
                elapsed, found = _timed(lambda bloom=bloom, probe=probe: _scalar(bloom, probe))
                if label == "present":
                    assert found == len(probe), f"{name} reported a false negative"
                per_key.setdefault(f"{name} scalar {label}", []).append(elapsed / len(probe) * 1e9)
            if name == "enforce":
                for label, sample in (("present", present), ("absent", absent)):
                    probe = fresh(sample)
                    elapsed, found = _timed(
                        lambda bloom=bloom, probe=probe: bloom.contains_many(probe)
                    )
                    if label == "present":
                        assert found.all()
                    per_key.setdefault(f"enforce batch {label}", []).append(
                        elapsed / len(probe) * 1e9
                    )
    per_key_median = {name: statistics.median(v) for name, v in per_key.items()}
    libraries: dict[str, Any] = {}
    for name, bloom in filters.items():
        fp = sum(1 for k in fp_probe if k in bloom) / len(fp_probe)
        libraries[name] = {
            "build_s_median": statistics.median(build_s[name]) if build_s[name] else None,
            "build_ns_per_key": (
                statistics.median(build_s[name]) / n_keys * 1e9 if build_s[name] else None
            ),
            "bytes_per_key": size_bytes(name, bloom) / n_keys,
            "measured_fp": fp,
            "fp_probe_keys": len(fp_probe),
        }
    ours = filters["enforce"]
    libraries["enforce"]["estimated_fp"] = ours.estimated_fp
    libraries["enforce"]["k"] = ours.k
    return {
        "keys": n_keys,
        "lookups": len(present),
        "repeats": repeats,
        "ns_per_lookup_median": per_key_median,
        "ns_per_lookup_samples": per_key,
        "libraries": libraries,
    }


def measure_snapshot(capacity: int, repeats: int) -> dict[str, float]:
    """Save and load of a filter sized for `capacity` keys at 1% (10**8: about 120 MB)."""
    bloom = BloomFilter.for_capacity(capacity, FP)
    bloom.add_many(make_keys(200_000))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bloom.snap"
        saves, loads = [], []
        for _ in range(max(repeats, 3)):
            saves.append(_timed(lambda: bloom.save(path))[0])
            elapsed, loaded = _timed(lambda: BloomFilter.load(path))
            loads.append(elapsed)
            assert loaded.key_count == bloom.key_count
            del loaded
        size = path.stat().st_size
    return {
        "capacity": capacity,
        "file_bytes": size,
        "save_ms_median": statistics.median(saves) * 1e3,
        "load_ms_median": statistics.median(loads) * 1e3,
        "load_mb_per_s": size / statistics.median(loads) / 1e6,
    }


def _store_capacity(keys: int, headroom: float, floor: int) -> int:
    return max(floor, int(keys * headroom) + 1)


def measure_growth(total: int = 200_000, step: int = 20_000, probe: int = 100_000) -> dict[str, Any]:
    """FP rate and bytes of the client's filter as `total` keys arrive after an empty snapshot."""
    keys = [f"pin:{i}" for i in range(total)]
    absent = [f"pin:{10**9 + i}" for i in range(probe)]
    designs: dict[str, Any] = {
        "store 1024, no growth (before)": BloomFilter.for_capacity(_store_capacity(0, 1.25, 1024), FP),
        "store 2x/65536, no growth": BloomFilter.for_capacity(_store_capacity(0, 2.0, 65_536), FP),
        "store 2x/65536 + growth (now)": ScalableBloom(
            BloomFilter.for_capacity(_store_capacity(0, 2.0, 65_536), FP), 65_536, FP),
    }
    rows: list[dict[str, Any]] = []
    for start in range(0, total, step):
        chunk = keys[start:start + step]
        row: dict[str, Any] = {"keys": start + step}
        for name, bloom in designs.items():
            bloom.add_many(chunk)
            view = bloom.view if isinstance(bloom, ScalableBloom) else bloom
            assert view.contains_many(keys[:start + step]).all(), f"{name}: a false negative"
            row[name] = {"fp": float(view.contains_many(absent).mean()),
                         "bytes": view.size_bytes}
        rows.append(row)
    fresh = BloomFilter.for_capacity(_store_capacity(total, 2.0, 65_536), FP)
    fresh.add_many(keys)
    return {"rows": rows, "fresh_snapshot": {"fp": float(fresh.contains_many(absent).mean()),
                                             "bytes": fresh.size_bytes},
            "target_fp": FP, "probe_keys": probe}


def measure_layer_lookups(total: int = 200_000, lookups: int = 100_000,
                          repeats: int = REPEATS) -> dict[str, dict[str, float]]:
    """ns per key of the read path's lookups: the plain filter against grown ones."""
    keys = [f"pin:{i}" for i in range(total)]
    plain = BloomFilter.for_capacity(2 * total, FP)
    plain.add_many(keys)
    filters: dict[str, BloomFilter] = {"plain filter (1 layer)": plain}
    for layers, count in ((2, 190_000), (3, total)):
        grown = ScalableBloom(BloomFilter.for_capacity(65_536, FP), 65_536, FP)
        grown.add_many(keys[:count])
        assert grown.layers == layers
        filters[f"BloomLayers, {layers} layers"] = grown.view
    absent = [f"pin:{10**9 + i}" for i in range(lookups)]
    pages = [absent[i:i + 100] for i in range(0, lookups, 100)]
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in filters}
    for _ in range(max(repeats, 3)):
        for name, bloom in filters.items():
            probe = fresh(absent)
            cases: dict[str, Callable[[], Any]] = {
                "contains": lambda bloom=bloom, probe=probe: [bloom.contains(k) for k in probe],
                "contains_many(100)": lambda bloom=bloom: [bloom.contains_many(p) for p in pages],
                "surely_unlabeled(100)": lambda bloom=bloom: [surely_unlabeled(bloom, p)
                                                              for p in pages],
            }
            for case, fn in cases.items():
                elapsed, _ = _timed(fn)
                samples[name].setdefault(case, []).append(elapsed / lookups * 1e9)
    return {name: {case: statistics.median(v) for case, v in per.items()}
            for name, per in samples.items()}


def print_growth(growth: dict[str, Any], lookups: dict[str, dict[str, float]]) -> None:
    names = [n for n in growth["rows"][0] if n != "keys"]
    print(f"\ngrowth: FP rate (bytes) after an empty store's snapshot, target {FP}")
    print(f"{'keys':>8}" + "".join(f"{n:>34}" for n in names))
    for row in growth["rows"]:
        cells = "".join(f"{row[n]['fp']:>22.4f} ({row[n]['bytes']:>9})" for n in names)
        print(f"{row['keys']:>8}{cells}")
    fresh_snap = growth["fresh_snapshot"]
    print(f"fresh snapshot of all keys (2x headroom): FP {fresh_snap['fp']:.4f}, "
          f"{fresh_snap['bytes']} bytes")
    print("\nlookups, ns per key (absent keys)")
    cases = list(next(iter(lookups.values())))
    print(f"{'filter':<26}" + "".join(f"{c:>24}" for c in cases))
    for name, per in lookups.items():
        print(f"{name:<26}" + "".join(f"{per[c]:>24.0f}" for c in cases))


def summarise(result: dict[str, Any]) -> dict[str, float]:
    med = result["ns_per_lookup_median"]
    ours = result["libraries"]["enforce"]
    ratios = {}
    for label in ("present", "absent"):
        ratios[f"ours_scalar_over_rbloom_scalar_{label}"] = (
            med[f"enforce scalar {label}"] / med[f"rbloom scalar {label}"]
        )
        ratios[f"rbloom_scalar_over_ours_batch_{label}"] = (
            med[f"rbloom scalar {label}"] / med[f"enforce batch {label}"]
        )
        ratios[f"rbloom_stable_scalar_over_ours_scalar_{label}"] = (
            med[f"rbloom stable hash scalar {label}"] / med[f"enforce scalar {label}"]
        )
    ratios["goal_scalar_not_slower_than_rbloom"] = float(
        max(ratios[f"ours_scalar_over_rbloom_scalar_{x}"] for x in ("present", "absent")) <= 1.0
    )
    ratios["goal_batch_4x_rbloom_scalar"] = float(
        min(ratios[f"rbloom_scalar_over_ours_batch_{x}"] for x in ("present", "absent")) >= 4.0
    )
    ratios["goal_size_and_fp"] = float(ours["bytes_per_key"] <= 1.3 and ours["measured_fp"] <= FP)
    return ratios


def _cell(value: float | None, width: int, fmt: str = ".0f") -> str:
    return f"{'-' if value is None else format(value, fmt):>{width}}"


def print_table(
    result: dict[str, Any], snapshot: dict[str, float], ratios: dict[str, float]
) -> None:
    med = result["ns_per_lookup_median"]
    print(f"\n{result['keys']} keys, {result['lookups']} lookups, {result['repeats']} repeats")
    head = f"{'library':<20}{'build s':>9}{'ns/key':>8}{'B/key':>7}{'FP':>8}"
    head += f"{'in present':>12}{'in absent':>11}{'batch pres':>12}{'batch abs':>11}"
    print(head)
    for name, lib in result["libraries"].items():
        row = f"{name:<20}" + _cell(lib["build_s_median"], 9, ".2f")
        row += _cell(lib["build_ns_per_key"], 8) + _cell(lib["bytes_per_key"], 7, ".3f")
        row += _cell(lib["measured_fp"], 8, ".4f")
        row += _cell(med[f"{name} scalar present"], 12) + _cell(med[f"{name} scalar absent"], 11)
        row += _cell(med.get(f"{name} batch present"), 12)
        row += _cell(med.get(f"{name} batch absent"), 11)
        print(row)
    print(
        f"snapshot {snapshot['file_bytes'] / 1e6:.1f} MB: save {snapshot['save_ms_median']:.0f} "
        f"ms, load {snapshot['load_ms_median']:.0f} ms ({snapshot['load_mb_per_s']:.0f} MB/s)"
    )
    for name, value in ratios.items():
        print(f"{name:<48}{value:>8.2f}")


def main() -> None:
    load_before = os.getloadavg()
    result = measure(N_KEYS, LOOKUPS, REPEATS)
    snapshot = measure_snapshot(SNAPSHOT_KEYS, REPEATS)
    ratios = summarise(result)
    print_table(result, snapshot, ratios)
    growth = measure_growth()
    lookups = measure_layer_lookups()
    print_growth(growth, lookups)
    path = write_results(
        "bench_bloom",
        {
            **result,
            "snapshot": snapshot,
            "ratios": ratios,
            "growth": growth,
            "layer_lookups_ns": lookups,
            "target_fp": FP,
            "load_average_before_after": [load_before, os.getloadavg()],
            "machine": machine_info(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    print(f"wrote {path}")


# -- pytest(-benchmark) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    keys = make_keys(N_KEYS)
    return {"keys": keys, **{name: build(keys) for name, build in BUILDERS.items()}}


@pytest.mark.parametrize("library", list(BUILDERS))
def test_build(benchmark: Any, library: str) -> None:
    keys = make_keys(min(N_KEYS, 200_000))
    benchmark.group = "bloom build"
    bloom = benchmark(BUILDERS[library], keys)
    assert all(k in bloom for k in keys[:1000])


@pytest.mark.parametrize("library", list(BUILDERS))
def test_contains_scalar(benchmark: Any, built: dict[str, Any], library: str) -> None:
    probe = fresh(built["keys"][:LOOKUPS])
    benchmark.group = "bloom contains scalar (present)"
    assert benchmark(_scalar, built[library], probe) == len(probe)


def test_contains_batch(benchmark: Any, built: dict[str, Any]) -> None:
    probe = fresh(built["keys"][:LOOKUPS])
    benchmark.group = "bloom contains scalar (present)"
    assert benchmark(built["enforce"].contains_many, probe).all()


def test_summary_runs_small() -> None:
    result = measure(5_000, 1_000, 1)
    ratios = summarise(result)
    assert result["libraries"]["enforce"]["bytes_per_key"] < 1.35
    assert 0 <= result["libraries"]["enforce"]["measured_fp"] < 0.03
    assert set(ratios) >= {"goal_batch_4x_rbloom_scalar", "goal_size_and_fp"}
    snapshot = measure_snapshot(10_000, 1)
    assert snapshot["file_bytes"] > 10_000


def test_growth_runs_small() -> None:
    growth = measure_growth(total=20_000, step=10_000, probe=5_000)
    last = growth["rows"][-1]
    assert last["store 1024, no growth (before)"]["fp"] > 0.5  # saturated
    assert last["store 2x/65536 + growth (now)"]["fp"] < 2 * FP
    lookups = measure_layer_lookups(total=200_000, lookups=2_000, repeats=1)
    assert set(lookups) == {"plain filter (1 layer)", "BloomLayers, 2 layers",
                            "BloomLayers, 3 layers"}


if __name__ == "__main__":
    main()
