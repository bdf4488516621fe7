"""Exact PDQ range queries at threshold 31: ImageIndex beside FAISS, in one run.

N random 256-bit hashes (seeded); Q queries, half a stored hash with 5..31 random bits
flipped (each has at least that match), half random. Per query: all held hashes within
31 bits. Cases:
- ours: `ImageIndex.query` (C popcount scan over packed hashes, plus the Python wrapper);
- FAISS `IndexBinaryFlat.range_search` (brute force, the recall reference);
- FAISS `IndexBinaryMultiHash(256, 16, 16)` as HMA's PDQ multi-hash index builds it, with
  nflip = 31 // 16 = 1 so pigeonhole makes it exact at 31.
Reported: p50/p99 ms per query, memory (ours: the bytes the index holds; FAISS: RSS
growth while building, a coarse figure), and recall against the flat index.

Run directly (`python benchmarks/bench_image_index.py`); ENFORCE_BENCH_FULL=1 uses 1M
hashes. No timing assertions under pytest.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil  # type: ignore[import-untyped]

from enforce_sdk.native.image_index import ImageIndex

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, percentile, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
COUNT = int(os.environ.get("ENFORCE_BENCH_IMAGE_INDEX", 1_000_000 if FULL else 20_000))
QUERIES = 200 if FULL else 20
THRESHOLD = 31


def make_data(count: int, queries: int, seed: int = 18) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    near = stored[rng.integers(0, count, queries // 2)].copy()
    for row in near:
        bits = rng.choice(256, int(rng.integers(5, THRESHOLD + 1)), replace=False)
        for bit in bits:
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    far = rng.integers(0, 256, (queries - queries // 2, 32), dtype=np.uint8)
    return stored, np.concatenate([near, far])


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def run(count: int, queries: int) -> dict[str, Any]:
    stored, probes = make_data(count, queries)
    hexes = [row.tobytes().hex() for row in stored]
    results: dict[str, Any] = {}

    ours = ImageIndex(count)
    for h in hexes:
        ours.add(h)
    answers: dict[str, list[set[str]]] = {}

    flat = faiss.IndexBinaryFlat(256)
    before = _rss()
    flat.add(stored)
    flat_mem = _rss() - before
    multi = faiss.IndexBinaryMultiHash(256, 16, 16)
    before = _rss()
    multi.add(stored)
    multi_mem = _rss() - before
    multi.nflip = THRESHOLD // 16

    def faiss_case(index: Any) -> Any:
        def one(q: np.ndarray) -> set[str]:
            lims, _dist, ids = index.range_search(q[np.newaxis], THRESHOLD + 1)  # strict <
            return {hexes[i] for i in ids[lims[0]:lims[1]]}
        return one

    cases = {
        "ours (ImageIndex)": lambda q: {h for h, _d in ours.query(q.tobytes().hex(), THRESHOLD)},
        "FAISS IndexBinaryFlat": faiss_case(flat),
        "FAISS IndexBinaryMultiHash": faiss_case(multi),
    }
    memory = {"ours (ImageIndex)": ours.memory_bytes, "FAISS IndexBinaryFlat": flat_mem,
              "FAISS IndexBinaryMultiHash": multi_mem}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name in cases:
        answers[name] = []
    for q in probes:  # interleaved per query
        for name, fn in cases.items():
            start = time.perf_counter()
            found = fn(q)
            times[name].append((time.perf_counter() - start) * 1e3)
            answers[name].append(found)
    reference = answers["FAISS IndexBinaryFlat"]
    total = sum(len(r) for r in reference)
    for name in cases:
        ordered = sorted(times[name])
        hits = sum(len(a & r) for a, r in zip(answers[name], reference, strict=True))
        extra = sum(len(a - r) for a, r in zip(answers[name], reference, strict=True))
        results[name] = {
            "p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99),
            "memory_bytes": memory[name], "bytes_per_hash": memory[name] / count,
            "recall": hits / total if total else 1.0, "extra": extra,
        }
    results["matches_total"] = total
    return results


def main() -> None:
    load_before = os.getloadavg()
    results = run(COUNT, QUERIES)
    print(f"\n{COUNT} hashes, {QUERIES} queries at <= {THRESHOLD}, "
          f"{results['matches_total']} matches in all")
    print(f"{'case':<30}{'p50 ms':>9}{'p99 ms':>9}{'B/hash':>9}{'recall':>8}{'extra':>7}")
    for name, row in results.items():
        if isinstance(row, dict):
            print(f"{name:<30}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
                  f"{row['bytes_per_hash']:>9.1f}{row['recall']:>8.3f}{row['extra']:>7}")
    path = write_results("bench_image_index", {
        "count": COUNT, "queries": QUERIES, "threshold": THRESHOLD, "results": results,
        "load_average_before_after": [load_before, os.getloadavg()],
        "machine": machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"wrote {path}")


def test_every_case_is_exact_on_a_small_set() -> None:
    results = run(3000, 10)
    assert results["matches_total"] >= 5  # the near half finds its source at least
    for name in ("ours (ImageIndex)", "FAISS IndexBinaryFlat", "FAISS IndexBinaryMultiHash"):
        assert results[name]["recall"] == 1.0 and results[name]["extra"] == 0, name


if __name__ == "__main__":
    main()
