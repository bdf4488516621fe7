"""`enforce-sdk image hash FILE...`: PDQ signatures of image files (docs/images.md).

Also `entity_of_image_file`, which `labels put image:FILE` uses to label a file's
signature.

Decoding files needs Pillow (`pip install 'enforce-sdk[images]'`). Each file is
hashed as Pillow decodes it (any mode, converted to RGB; grey stays grey; an
animated image's first frame). A file that cannot be read or decoded is reported
on stderr and the others still run; the exit code is then 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._errors import InvalidInputError
from ..native.images import ImageSignature, image_signature
from ._common import EXIT_REJECTED, fail

_NO_PILLOW = (
    "decoding image files needs Pillow: pip install 'enforce-sdk[images]' (or pillow); "
    "numpy arrays can be hashed in Python without it"
)


@click.group()
def image() -> None:
    """Image signatures (PDQ perceptual hashes)."""


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        fail(_NO_PILLOW)
    return Image


def hash_file(path: Path) -> ImageSignature:
    """The PDQ signature of an image file; OSError/ValueError/InvalidInputError on failure."""
    pil = _pillow()
    with pil.open(path) as opened:
        opened.load()
        return image_signature(opened)


def entity_of_image_file(entity: str) -> tuple[str, ImageSignature | None]:
    """`image:FILE` -> (`image:<its PDQ hash>`, the signature) when FILE is an existing file.

    Any other entity, a PDQ key (`image:<64 hex>`) included, comes back unchanged with
    None. A file that cannot be hashed stops the command (exit 1).
    """
    kind, _, rest = entity.strip().partition(":")
    if kind.lower() != "image" or not rest or not Path(rest).is_file():
        return entity, None
    if len(rest) == 64 and all(c in "0123456789abcdefABCDEF" for c in rest):
        return entity, None  # a hash, even if a file of that name exists
    unreadable = (OSError, ValueError, InvalidInputError, _pillow().DecompressionBombError)
    try:
        sig = hash_file(Path(rest))
    except unreadable as exc:
        fail(f"{rest}: cannot hash: {exc}", EXIT_REJECTED)
    return sig.key, sig


@image.command("hash")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per file (file, hash, key, quality).")
def hash_command(files: tuple[Path, ...], as_json: bool) -> None:
    """Print each file's PDQ hash (64 hex) and quality (0..100; below 50 says little)."""
    # Pillow's UnidentifiedImageError is an OSError; its decompression-bomb guard is not.
    unreadable = (OSError, ValueError, InvalidInputError, _pillow().DecompressionBombError)
    failed = 0
    for path in files:
        try:
            sig = hash_file(path)
        except unreadable as exc:
            failed += 1
            click.echo(f"{path}: cannot hash: {exc}", err=True)
            continue
        if as_json:
            record = {"file": str(path), "hash": sig.hash, "key": sig.key,
                      "quality": sig.quality}
            click.echo(json.dumps(record, sort_keys=True))
        else:
            click.echo(f"{sig.hash}  {sig.quality:3d}  {path}")
    if failed:
        raise SystemExit(EXIT_REJECTED)
