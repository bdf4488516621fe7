"""PDQ image signatures: agreement with the reference implementation, variants, batch, errors.

The reference is the `pdqhash` package (Meta's C++ PDQ, built from its sdist; a dev
dependency only). Photographs are scikit-image's shipped `skimage.data` images.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pdqhash
import pytest
import skimage.data
from PIL import Image

from enforce_sdk._errors import InvalidInputError
from enforce_sdk.native.images import (
    DIHEDRAL_NAMES,
    MAX_PIXELS,
    ImageSignature,
    image_signature,
    image_signature_variants,
    image_signatures,
    pdq_distance,
)

# Every distinct image skimage ships in its wheel (no download): photographs, micrographs,
# scans and textures, grey and colour, 102x102 to 1411x1411.
PHOTOS = (
    "astronaut", "brick", "camera", "cat", "cell", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon",
    "page", "retina", "rocket", "text",
)
MAX_BITS = 10  # the bound on the distance to the reference
MAX_QUALITY_GAP = 5


def photo(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    assert image.dtype == np.uint8, name
    return np.asarray(image)


def rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.stack([image] * 3, axis=-1)


def reference(image: np.ndarray) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb(image)))
    return np.packbits(bits).tobytes().hex(), int(quality)


def reference_variants(image: np.ndarray) -> list[str]:
    vectors, _quality = pdqhash.compute_dihedral(np.ascontiguousarray(rgb(image)))
    return [np.packbits(v).tobytes().hex() for v in vectors]


def generated() -> list[tuple[str, np.ndarray]]:
    """Noise, smooth fields, hard edges and odd sizes, grey and RGB, from fixed seeds."""
    rng = np.random.default_rng(18)
    images: list[tuple[str, np.ndarray]] = []
    for rows, cols in [(5, 5), (7, 300), (64, 64), (65, 63), (128, 128), (512, 512),
                       (333, 517), (1000, 701)]:
        y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
        smooth = 128 + 60 * np.sin(x / (3 + cols / 20)) + 60 * np.cos(y / (2 + rows / 15))
        edges = np.where((x // max(cols // 7, 1) + y // max(rows // 5, 1)) % 2 == 0, 30, 220)
        noise = rng.integers(0, 256, (rows, cols, 3))
        images += [
            (f"smooth {rows}x{cols}", smooth.clip(0, 255).astype(np.uint8)),
            (f"edges {rows}x{cols}", edges.astype(np.uint8)),
            (f"noise {rows}x{cols}", noise.astype(np.uint8)),
            (f"mixed {rows}x{cols}", np.stack([smooth, edges, noise[..., 0]], -1)
             .clip(0, 255).astype(np.uint8)),
        ]
    return images


@pytest.mark.parametrize("name", PHOTOS)
def test_photographs_agree_with_the_reference(name: str) -> None:
    image = photo(name)
    ours = image_signature(image)
    ref_hash, ref_quality = reference(image)
    assert ours.distance(ref_hash) <= MAX_BITS
    assert abs(ours.quality - ref_quality) <= MAX_QUALITY_GAP


def test_generated_images_agree_with_the_reference() -> None:
    far = []
    inputs = generated()
    inputs += [(f"{name} as RGB", rgb(image)) for name, image in inputs if image.ndim == 2]
    for name, image in inputs:
        ours = image_signature(image)
        ref_hash, ref_quality = reference(image)
        if ours.distance(ref_hash) > MAX_BITS or abs(ours.quality - ref_quality) > 5:
            far.append((name, ours.distance(ref_hash), ours.quality, ref_quality))
    assert far == []


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "text"])
def test_dihedral_variants_agree_with_the_reference(name: str) -> None:
    image = photo(name)
    ours = image_signature_variants(image)
    assert len(ours) == len(DIHEDRAL_NAMES) == 8
    assert ours[0] == image_signature(image)
    for mine, theirs in zip(ours, reference_variants(image), strict=True):
        assert mine.distance(theirs) <= MAX_BITS
        assert mine.quality == ours[0].quality


Transform = Callable[[np.ndarray], np.ndarray]
TRANSFORMS: dict[str, Transform] = {
    "original": lambda a: a,
    "rotate90": np.rot90,  # counter-clockwise
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, -1),
    "flipx": np.flipud,
    "flipy": np.fliplr,
    "flipplus1": lambda a: np.swapaxes(a, 0, 1),
    "flipminus1": lambda a: np.swapaxes(np.rot90(a, 2), 0, 1),
}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_each_variant_is_the_hash_of_the_transformed_image(name: str) -> None:
    image = photo(name)
    variants = image_signature_variants(image)
    for index, variant_name in enumerate(DIHEDRAL_NAMES):
        moved = image_signature(TRANSFORMS[variant_name](image))
        distances = [moved.distance(v) for v in variants]
        # the variant named for the transform is the one that matches (PDQ's threshold 31);
        # it is not exact because decimation samples shift by a pixel under a mirror
        assert distances[index] <= 31, (variant_name, distances)
        assert min(d for i, d in enumerate(distances) if i != index) > 31, variant_name


def test_batch_forms_equal_one_at_a_time() -> None:
    photos = [photo(n) for n in ("astronaut", "camera", "coffee", "brick", "moon")]
    singles = [image_signature(p) for p in photos]
    assert image_signatures(photos) == singles
    colour = np.stack([rgb(p) for p in photos if p.shape[:2] == (512, 512)])
    assert image_signatures(colour) == [image_signature(c) for c in colour]
    grey = np.stack([p for p in photos if p.ndim == 2 and p.shape == (512, 512)])
    assert image_signatures(grey) == [image_signature(g) for g in grey]
    assert image_signatures([]) == []
    assert image_signatures(np.zeros((0, 8, 8, 3), np.uint8)) == []


def test_views_and_pillow_images_hash_like_their_pixels() -> None:
    image = photo("coffee")
    assert image_signature(image[::2, ::3]) == image_signature(image[::2, ::3].copy())
    assert image_signature(Image.fromarray(image)) == image_signature(image)
    grey = photo("camera")
    assert image_signature(Image.fromarray(grey)) == image_signature(grey)
    assert image_signature(grey[:, :, np.newaxis]) == image_signature(grey)
    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGBA").save(buffer, format="PNG")
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    assert decoded.mode == "RGBA"
    assert image_signature(decoded) == image_signature(image)


def test_signature_value() -> None:
    sig = image_signature(photo("astronaut"))
    assert len(sig.hash) == 64 and sig.hash == sig.hash.lower()
    int(sig.hash, 16)
    assert sig.key == "image:" + sig.hash
    assert 0 <= sig.quality <= 100
    assert sig.distance(sig) == 0
    assert sig.distance(sig.hash.upper()) == 0
    other = ImageSignature(format(int(sig.hash, 16) ^ 0b1011, "064x"), sig.quality)
    assert sig.distance(other) == pdq_distance(sig.hash, other.hash) == 3


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        (np.zeros((32, 32), np.float64), "dtype is float64"),
        (np.full((32, 32), np.nan), "dtype is float64"),
        (np.zeros((32, 32), bool), "dtype is bool"),
        (np.zeros((32, 32), np.uint16), "dtype is uint16"),
        (np.zeros((32, 32, 4), np.uint8), "drop the alpha channel"),
        (np.zeros((32, 32, 2), np.uint8), "shape (32, 32, 2)"),
        (np.zeros((2, 32, 32, 3), np.uint8), "shape (2, 32, 32, 3)"),
        (np.zeros(32, np.uint8), "shape (32,)"),
        (np.zeros((0, 0), np.uint8), "0x0 pixels is below"),
        (np.zeros((4, 100, 3), np.uint8), "4x100 pixels is below"),
        (np.broadcast_to(np.uint8(0), (20000, 20000)), "over the limit"),
        ([[0] * 8] * 8, "got list"),
        (b"\x89PNG", "got bytes"),
        (None, "got NoneType"),
    ],
)
def test_hostile_images_are_refused_by_name(image: object, needle: str) -> None:
    with pytest.raises(InvalidInputError, match="image") as caught:
        image_signature(image)
    assert needle in str(caught.value)


def test_the_pixel_limit_is_pdqs_documented_one() -> None:
    assert MAX_PIXELS == 1 << 28


def test_hostile_batches_are_refused_by_name() -> None:
    good = np.zeros((8, 8), np.uint8)
    with pytest.raises(InvalidInputError, match=r"images\[1\]: dtype is float32"):
        image_signatures([good, good.astype(np.float32)])
    with pytest.raises(InvalidInputError, match="images: a stack must be"):
        image_signatures(np.zeros((8, 8), np.uint8))
    with pytest.raises(InvalidInputError, match="images: must be a numpy stack"):
        image_signatures("astronaut.png")
    with pytest.raises(InvalidInputError, match=r"images\[0\]: dtype is int64"):
        image_signatures(np.zeros((3, 8, 8), np.int64))


@pytest.mark.parametrize("bad", ["", "ab", "x" * 64, 7, None])
def test_distance_refuses_what_is_not_a_pdq_hash(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        pdq_distance("0" * 64, bad)  # type: ignore[arg-type]


def test_threads_hash_as_one_thread_does() -> None:
    from concurrent.futures import ThreadPoolExecutor

    photos = [photo(n) for n in ("astronaut", "camera", "coffee", "rocket")] * 4
    serial = [image_signature(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:  # the C call releases the GIL and shares no state
        assert list(pool.map(image_signature, photos)) == serial
