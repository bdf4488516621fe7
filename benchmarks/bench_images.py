"""PDQ image hashing, ms per image: ours beside pdqhash and imagehash.phash in one run.

Cases, on 512x512 RGB uint8 images (seeded smooth fields with noise and edges, so
every image is distinct; the same pixels for every case):
- ours single: `image_signature(img)` per image (checks + one C call);
- ours batch: `image_signatures(stack)` on an N x 512 x 512 x 3 stack (one C call);
- pdqhash: `pdqhash.compute(img)` per image (Meta's C++ PDQ through Cython; its numpy
  float64 luma included, as a caller pays it);
- imagehash.phash: `imagehash.phash(pil)` per image on a prebuilt Pillow image (a 64-bit
  DCT hash, not PDQ; the common Python baseline).
Each case is timed on one image (`x1`) and on 100 (`x100`); medians of REPEATS
interleaved runs with min-max. Goal: none set by the issue beyond "measure it";
hashing pixels is the caller's cost and this is its size.

Run directly (`python benchmarks/bench_images.py`) for the table and
.benchmarks/bench_images.json, or under pytest (each case once, small sizes).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from enforce_sdk.native.images import image_signature, image_signatures

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_results  # noqa: E402

FULL = os.environ.get("ENFORCE_BENCH_FULL") == "1"
SIDE = 512
BATCH = 100 if FULL else 8
REPEATS = 3


def make_images(count: int, side: int = SIDE, seed: int = 18) -> np.ndarray:
    """count x side x side x 3 uint8: smooth fields of seeded frequencies plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    out = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        fx, fy = (float(v) for v in rng.uniform(5, 60, 2))
        phase = float(rng.uniform(0, 6.3))
        base = 128 + 70 * np.sin(x / fx + phase) * np.cos(y / fy)
        edge = np.where(x + y * rng.uniform(0.2, 3) > side * rng.uniform(0.3, 1.5), 40, -40)
        for c in range(3):
            noise = rng.normal(0, 12, (side, side))
            out[i, :, :, c] = (base + edge * (c - 1) + noise).clip(0, 255).astype(np.uint8)
    return out


def cases(stack: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Each case hashes every image of the stack once."""
    images = list(stack)
    pils = [Image.fromarray(img) for img in images]
    return {
        "ours single": lambda: [image_signature(img) for img in images],
        "ours batch": lambda: image_signatures(stack),
        "pdqhash": lambda: [pdqhash.compute(img) for img in images],
        "imagehash.phash": lambda: [imagehash.phash(p) for p in pils],
    }


def measure(stack: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms per image per case; cases interleaved so machine noise hits all alike."""
    runs = cases(stack)
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
            samples[name].append(elapsed / len(stack) * 1e3)
    return {
        name: {"median_ms_per_image": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in samples.items()
    }


def print_table(title: str, figures: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}\n{'case':<18}{'median ms/image':>16}{'min':>9}{'max':>9}")
    for name, f in figures.items():
        print(f"{name:<18}{f['median_ms_per_image']:>16.3f}{f['min']:>9.3f}{f['max']:>9.3f}")


def main() -> None:
    stack = make_images(BATCH)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for label, part in (("x1", stack[:1]), (f"x{BATCH}", stack)):
        figures = measure(part, REPEATS)
        print_table(f"{label}: {len(part)} image(s) of {SIDE}x{SIDE} RGB", figures)
        results[label] = figures
    path = write_results(
        "bench_images",
        {
            "side": SIDE,
            "batch": BATCH,
            "repeats": REPEATS,
            "load_average_before_after": [load_before, os.getloadavg()],
            "figures": results,
            "machine": machine_info(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    print(f"wrote {path}")


# -- pytest --------------------------------------------------------------------------------


def test_images_are_distinct_and_seeded() -> None:
    stack = make_images(3, side=64)
    assert stack.shape == (3, 64, 64, 3) and stack.dtype == np.uint8
    assert len({img.tobytes() for img in stack}) == 3
    assert np.array_equal(make_images(2, side=64), make_images(2, side=64))


def test_every_case_runs_and_ours_match_the_reference() -> None:
    stack = make_images(2, side=96)
    figures = measure(stack, 1)
    assert set(figures) == {"ours single", "ours batch", "pdqhash", "imagehash.phash"}
    for img, ours in zip(stack, image_signatures(stack), strict=True):
        bits, _quality = pdqhash.compute(img)
        assert ours.distance(np.packbits(bits).tobytes().hex()) <= 10


if __name__ == "__main__":
    main()
