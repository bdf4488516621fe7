"""PDQ image signatures: a 256-bit perceptual hash of an image's pixels, computed in C.

`image_signature(image)` takes a numpy uint8 array, H x W (grey) or H x W x 3 (RGB),
or a Pillow image (any mode; converted to RGB, or read as grey when it is "L"), and
returns an `ImageSignature`: the hash as 64 lower-case hex characters (the id of its
canonical `image:` key) and PDQ's quality score 0..100 (below 50 the hash says
little: flat or tiny images). Two hashes of the same picture after resizing or
recompression differ in few bits; PDQ's usual match threshold is a Hamming
distance <= 31. The algorithm, the bit order and the variants are in docs/images.md.

Hashing is the caller's cost (about a millisecond for a 512x512 RGB image, see
docs/benchmarks.md); the C code releases the GIL and holds no global state, so
threads hash in parallel and a forked child hashes as the parent did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError
from . import binding as _native
from .lazy_numpy import LazyNumpy

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyNumpy(globals())

HASH_HEX_LENGTH = 2 * _native.PDQ_HASH_BYTES  # 64
MIN_DIMENSION: int = _native.PDQ_MIN_DIM
MAX_PIXELS: int = _native.PDQ_MAX_PIXELS
# PDQ's names and order for the 8 dihedral variants (docs/images.md says which is which).
DIHEDRAL_NAMES = (
    "original", "rotate90", "rotate180", "rotate270",
    "flipx", "flipy", "flipplus1", "flipminus1",
)


@dataclass(frozen=True, slots=True)
class ImageSignature:
    """A PDQ hash (64 lower-case hex characters) and the image's PDQ quality (0..100)."""

    hash: str
    quality: int

    @property
    def key(self) -> str:
        """The canonical entity key of this signature: `image:<hash>`."""
        return "image:" + self.hash

    def distance(self, other: ImageSignature | str) -> int:
        """Hamming distance (0..256) to another signature or a 64-hex PDQ hash."""
        theirs = other.hash if isinstance(other, ImageSignature) else other
        return pdq_distance(self.hash, theirs)


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hashes given as 64 hex characters each."""
    return (_hash_int(a, "a") ^ _hash_int(b, "b")).bit_count()


def _hash_int(text: object, field: str) -> int:
    if not isinstance(text, str) or len(text) != HASH_HEX_LENGTH:
        raise InvalidInputError(f"must be {HASH_HEX_LENGTH} hex characters", field=field)
    try:
        return int(text, 16)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not hex", field=field) from None


def _is_pillow(image: object) -> bool:
    module = type(image).__module__
    return module.startswith("PIL.") and hasattr(image, "convert")


def _pixels(image: object, field: str = "image") -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A C-contiguous uint8 H x W or H x W x 3 array of `image`, or InvalidInputError."""
    if _is_pillow(image):
        pil: Any = image
        if pil.mode not in ("L", "RGB"):
            pil = pil.convert("RGB")
        image = np.asarray(pil)
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(
            "must be a numpy uint8 array (H x W or H x W x 3) or a Pillow image, "
            f"got {type(image).__name__}", field=field)
    if image.dtype != np.uint8:
        raise InvalidInputError(
            f"dtype is {image.dtype}; PDQ reads uint8 pixels 0..255 "
            "(scale and convert first, e.g. (x * 255).clip(0, 255).astype('uint8'))",
            field=field)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        hint = " (drop the alpha channel: image[..., :3])" if (
            image.ndim == 3 and image.shape[2] == 4) else ""
        raise InvalidInputError(
            f"shape {tuple(image.shape)} is not H x W (grey) or H x W x 3 (RGB){hint}",
            field=field)
    rows, cols = int(image.shape[0]), int(image.shape[1])
    if rows < MIN_DIMENSION or cols < MIN_DIMENSION:
        raise InvalidInputError(
            f"image of {rows}x{cols} pixels is below PDQ's minimum of "
            f"{MIN_DIMENSION}x{MIN_DIMENSION}", field=field)
    if rows * cols > MAX_PIXELS:
        raise InvalidInputError(
            f"image of {rows}x{cols} = {rows * cols} pixels is over the limit of "
            f"{MAX_PIXELS} (downscale it first)", field=field)
    return np.ascontiguousarray(image)


def _signatures(raw: bytes, quality: list[int], variants: int) -> list[ImageSignature]:
    size = _native.PDQ_HASH_BYTES
    return [
        ImageSignature(raw[i * size:(i + 1) * size].hex(), quality[i // variants])
        for i in range(len(raw) // size)
    ]


def image_signature(image: object) -> ImageSignature:
    """The PDQ signature of one image (numpy uint8 H x W / H x W x 3, or Pillow)."""
    pixels = _pixels(image)
    raw, quality = _native.pdq_hash_stack(pixels[np.newaxis], 1)
    return _signatures(raw, quality, 1)[0]


def image_signature_variants(image: object) -> tuple[ImageSignature, ...]:
    """The 8 dihedral PDQ signatures of an image, in the order of DIHEDRAL_NAMES.

    Entry k is (up to float rounding) the signature of the image transformed by
    DIHEDRAL_NAMES[k]; match a query against all 8 to catch rotated or mirrored copies.
    """
    pixels = _pixels(image)
    raw, quality = _native.pdq_hash_stack(pixels[np.newaxis], _native.PDQ_VARIANTS)
    return tuple(_signatures(raw, quality, _native.PDQ_VARIANTS))


def image_signatures(images: object) -> list[ImageSignature]:
    """PDQ signatures of many images, in order.

    `images` is either a numpy stack, N x H x W (grey) or N x H x W x 3 (RGB), hashed
    in one C call, or a sequence of images of any sizes (each as for image_signature;
    runs of consecutive images of one shape are hashed in one C call each).
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise InvalidInputError(
                f"a stack must be N x H x W or N x H x W x 3, got shape {tuple(images.shape)}",
                field="images")
        if images.shape[0] == 0:
            return []
        _pixels(images[0], "images[0]")  # dtype and shape checked once for the stack
        raw, quality = _native.pdq_hash_stack(np.ascontiguousarray(images), 1)
        return _signatures(raw, quality, 1)
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise InvalidInputError(
            f"must be a numpy stack or a sequence of images, got {type(images).__name__}",
            field="images")
    pixels = [_pixels(image, f"images[{i}]") for i, image in enumerate(images)]
    result: list[ImageSignature] = []
    start = 0
    while start < len(pixels):
        end = start + 1
        while end < len(pixels) and pixels[end].shape == pixels[start].shape:
            end += 1
        stack = pixels[start] if end - start == 1 else np.stack(pixels[start:end])
        if end - start == 1:
            stack = stack[np.newaxis]
        raw, quality = _native.pdq_hash_stack(stack, 1)
        result.extend(_signatures(raw, quality, 1))
        start = end
    return result
