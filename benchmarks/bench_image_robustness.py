"""PDQ agreement and robustness on real photographs: ours beside the reference (pdqhash).

1. Agreement: the Hamming distance between our hash and pdqhash's, and the quality gap,
   on every photograph scikit-image ships and on the generated images of
   tests/native/test_images.py (the distribution, not only the maximum).
2. Robustness: for each transform (resize to 50%, JPEG quality 50, brighten +20%, mirror,
   a 5% crop on each side) the distance between a photograph's hash and its copy's
   hash, by ours and by the reference, and the share matched at PDQ's threshold 31;
   the mirror is matched through the dihedral variants (the nearest of the 8). Then the
   false-match rate over every pair of distinct photographs.

Run directly (`python benchmarks/bench_image_robustness.py`): tables and
.benchmarks/bench_image_robustness.json. No timing here; figures are deterministic.
"""

from __future__ import annotations

import io
import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import skimage.data
from PIL import Image, ImageEnhance

from enforce_sdk.native.images import image_signature, image_signature_variants, pdq_distance

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.native.test_images import PHOTOS, generated  # noqa: E402

from benchmarks._harness import machine_info, write_results  # noqa: E402

THRESHOLD = 31


def photo(name: str) -> np.ndarray:
    return np.asarray(getattr(skimage.data, name)())


def rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image if image.ndim == 3 else np.stack([image] * 3, -1))


def ref_hash(image: np.ndarray) -> tuple[str, int]:
    bits, quality = pdqhash.compute(rgb(image))
    return np.packbits(bits).tobytes().hex(), int(quality)


def ref_variants(image: np.ndarray) -> list[str]:
    vectors, _quality = pdqhash.compute_dihedral(rgb(image))
    return [np.packbits(v).tobytes().hex() for v in vectors]


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb(image))


def resize_half(image: np.ndarray) -> np.ndarray:
    pil = _pil(image)
    return np.asarray(pil.resize((max(pil.width // 2, 5), max(pil.height // 2, 5)),
                                 Image.Resampling.BILINEAR))


def jpeg_50(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    _pil(image).save(buffer, format="JPEG", quality=50)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def brighten_20(image: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(_pil(image)).enhance(1.2))


def mirror(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb(image)[:, ::-1])


def crop_5(image: np.ndarray) -> np.ndarray:
    rows, cols = image.shape[:2]
    dr, dc = rows // 20, cols // 20
    return np.ascontiguousarray(rgb(image)[dr:rows - dr, dc:cols - dc])


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "resize 50%": resize_half,
    "JPEG q50": jpeg_50,
    "brighten +20%": brighten_20,
    "mirror (dihedral)": mirror,
    "crop 5%": crop_5,
}


def distribution(values: list[int]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1],
            "values": ordered}


def agreement() -> dict[str, Any]:
    bits: list[int] = []
    gaps: list[int] = []
    inputs = [(n, rgb(photo(n))) for n in PHOTOS] + [(n, rgb(i)) for n, i in generated()]
    for _name, image in inputs:
        ours = image_signature(image)
        theirs, quality = ref_hash(image)
        bits.append(ours.distance(theirs))
        gaps.append(abs(ours.quality - quality))
    return {"images": len(inputs), "photographs": len(PHOTOS),
            "distance_bits": distribution(bits), "quality_gap": distribution(gaps),
            "identical_hashes": sum(b == 0 for b in bits)}


def robustness() -> dict[str, Any]:
    table: dict[str, Any] = {}
    originals = {n: rgb(photo(n)) for n in PHOTOS}
    ours_orig = {n: image_signature_variants(img) for n, img in originals.items()}
    ref_orig = {n: ref_variants(img) for n, img in originals.items()}
    for label, transform in TRANSFORMS.items():
        ours_d: list[int] = []
        ref_d: list[int] = []
        agree = 0
        for name, image in originals.items():
            copy = transform(image)
            mine = image_signature(copy).hash
            theirs = ref_hash(copy)[0]
            if label.startswith("mirror"):
                d_ours = min(pdq_distance(mine, v.hash) for v in ours_orig[name])
                d_ref = min(pdq_distance(theirs, v) for v in ref_orig[name])
            else:
                d_ours = pdq_distance(mine, ours_orig[name][0].hash)
                d_ref = pdq_distance(theirs, ref_orig[name][0])
            ours_d.append(d_ours)
            ref_d.append(d_ref)
            agree += (d_ours <= THRESHOLD) == (d_ref <= THRESHOLD)
        table[label] = {
            "ours": distribution(ours_d), "reference": distribution(ref_d),
            "ours_matched": sum(d <= THRESHOLD for d in ours_d) / len(ours_d),
            "reference_matched": sum(d <= THRESHOLD for d in ref_d) / len(ref_d),
            "decisions_agree": agree / len(ours_d),
        }
    pairs = list(itertools.combinations(PHOTOS, 2))
    false_ours = sum(pdq_distance(ours_orig[a][0].hash, ours_orig[b][0].hash) <= THRESHOLD
                     for a, b in pairs)
    false_ref = sum(pdq_distance(ref_orig[a][0], ref_orig[b][0]) <= THRESHOLD for a, b in pairs)
    closest = min(pdq_distance(ours_orig[a][0].hash, ours_orig[b][0].hash) for a, b in pairs)
    table["distinct pairs"] = {"pairs": len(pairs), "ours_false_matches": false_ours,
                               "reference_false_matches": false_ref,
                               "ours_closest_pair_bits": closest}
    return table


def main() -> None:
    agree = agreement()
    print(f"agreement over {agree['images']} images: distance bits "
          f"min/median/max {agree['distance_bits']['min']}/"
          f"{agree['distance_bits']['median']}/{agree['distance_bits']['max']}, "
          f"identical {agree['identical_hashes']}; quality gap max {agree['quality_gap']['max']}")
    print(f"distances: {agree['distance_bits']['values']}")
    robust = robustness()
    print(f"\n{'transform':<20}{'ours med/max':>14}{'ref med/max':>14}{'ours@31':>9}"
          f"{'ref@31':>8}{'agree':>7}")
    for label in TRANSFORMS:
        row = robust[label]
        print(f"{label:<20}{row['ours']['median']:>8}/{row['ours']['max']:<5}"
              f"{row['reference']['median']:>8}/{row['reference']['max']:<5}"
              f"{row['ours_matched']:>9.2f}{row['reference_matched']:>8.2f}"
              f"{row['decisions_agree']:>7.2f}")
    print(robust["distinct pairs"])
    path = write_results("bench_image_robustness", {
        "agreement": agree, "robustness": robust, "machine": machine_info()})
    print(f"wrote {path}")


def test_transforms_keep_shape_and_type() -> None:
    image = rgb(photo("coffee"))
    for transform in TRANSFORMS.values():
        out = transform(image)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


if __name__ == "__main__":
    main()
