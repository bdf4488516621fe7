"""`enforce-sdk image hash` through click's CliRunner on the group itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image

from enforce_sdk.cli import main
from enforce_sdk.cli._image import image
from enforce_sdk.native.images import image_signature
from tests.fixtures.store_server import StoreServerProcess


def _photo(name: str) -> np.ndarray:
    """A photograph scikit-image ships (its loaders are untyped)."""
    return np.asarray(getattr(skimage.data, name)())


def _save(tmp_path: Path, name: str, pixels: np.ndarray) -> Path:
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def test_hash_prints_each_file_as_the_api_hashes_its_pixels(tmp_path: Path) -> None:
    astronaut, camera = _photo("astronaut"), _photo("camera")
    files = [_save(tmp_path, "a.png", astronaut), _save(tmp_path, "c.png", camera)]
    result = CliRunner().invoke(image, ["hash", *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for line, pixels, path in zip(lines, [astronaut, camera], files, strict=True):
        sig = image_signature(pixels)  # PNG is lossless: the same pixels
        assert line.split() == [sig.hash, str(sig.quality), str(path)]


def test_hash_json(tmp_path: Path) -> None:
    pixels = _photo("coffee")
    path = _save(tmp_path, "coffee.jpg", pixels)
    result = CliRunner().invoke(image, ["hash", "--json", str(path)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    expected = image_signature(Image.open(path))
    assert record == {"file": str(path), "hash": expected.hash, "key": expected.key,
                      "quality": expected.quality}
    assert image_signature(pixels).distance(record["hash"]) <= 31  # JPEG moved few bits


def test_unreadable_files_are_reported_and_the_rest_still_hash(tmp_path: Path) -> None:
    good = _save(tmp_path, "good.png", _photo("camera"))
    text = tmp_path / "notes.png"
    text.write_text("not an image", encoding="utf-8")
    tiny = _save(tmp_path, "tiny.png", np.zeros((3, 3), np.uint8))
    missing = tmp_path / "missing.png"
    result = CliRunner().invoke(image, ["hash", str(text), str(good), str(tiny), str(missing)])
    assert result.exit_code == 1
    assert image_signature(_photo("camera")).hash in result.stdout
    assert f"{text}: cannot hash" in result.stderr
    assert "3x3 pixels is below PDQ's minimum" in result.stderr
    assert f"{missing}: cannot hash" in result.stderr


def test_without_pillow_the_command_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path, "a.png", _photo("camera"))
    monkeypatch.setitem(sys.modules, "PIL", None)
    result = CliRunner().invoke(image, ["hash", str(path)])
    assert result.exit_code == 2
    assert "enforce-sdk[images]" in result.output


def test_labels_put_image_file_labels_its_signature(
    tmp_path: Path, store_server: StoreServerProcess
) -> None:
    path = _save(tmp_path, "astronaut.png", _photo("astronaut"))
    expected = image_signature(_photo("astronaut"))
    env = {"ENFORCE_STORE_URL": store_server.url,
           "ENFORCE_STORE_TOKEN": store_server.tokens["writer"]}
    put = CliRunner().invoke(main, ["labels", "put", f"image:{path}", "--source",
                                    "review_tool/human/rev-1", "--enforcement", "block",
                                    "--reason", "spam"], env=env, catch_exceptions=False)
    assert put.exit_code == 0, put.output
    assert put.stdout.strip() == f"written: {expected.key} review_tool/human/rev-1"
    assert f"hashed: {expected.key} (quality {expected.quality})" in put.stderr
    env["ENFORCE_STORE_TOKEN"] = store_server.tokens["reader"]
    got = CliRunner().invoke(main, ["labels", "get", expected.key, "--json"], env=env,
                             catch_exceptions=False)
    assert json.loads(got.output)["entity"] == expected.key
    # an opaque image id that is no file stays as given; a bad file is refused, exit 1
    env["ENFORCE_STORE_TOKEN"] = store_server.tokens["writer"]
    opaque = CliRunner().invoke(main, ["labels", "put", "image:ABC123", "--source",
                                       "review_tool/human/rev-1", "--enforcement", "block",
                                       "--reason", "spam"], env=env, catch_exceptions=False)
    assert opaque.stdout.strip() == "written: image:abc123 review_tool/human/rev-1"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    bad = CliRunner().invoke(main, ["labels", "put", f"image:{broken}", "--source",
                                    "review_tool/human/rev-1", "--enforcement", "block",
                                    "--reason", "spam"], env=env, catch_exceptions=False)
    assert bad.exit_code == 1 and "cannot hash" in bad.output
