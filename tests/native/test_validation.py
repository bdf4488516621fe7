"""The binding checks every argument before calling C, whoever the caller, and sizing stays
within what can be allocated.

`_native` is called directly here (not only through BloomFilter), because it is the layer
that must never hand C a value cffi would reject with a bare OverflowError/TypeError, or an
array C would misread or read past the end of.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from enforce_sdk import InvalidInputError
from enforce_sdk.native import binding as _native
from enforce_sdk.native.bloom import BloomFilter

MAX_BLOCKS = _native.MAX_BLOCKS
U64 = r"must be in 0\.\.2\*\*64-1"


def _bloom() -> _native.NativeBloom:
    return _native.NativeBloom.create(64, 6, 0)


def _unaligned_u64(n: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    raw = bytearray(8 * (n + 1))
    arr = np.frombuffer(memoryview(raw)[1 : 1 + 8 * n], dtype=np.uint64)
    assert not arr.flags.aligned
    return arr


def _unaligned_copy(sigs: np.ndarray[Any, np.dtype[np.uint64]]) -> Any:
    arr = _unaligned_u64(len(sigs))
    arr[:] = sigs
    return arr


SCALAR_CASES: list[tuple[Callable[[], object], str]] = [
    # sizing
    (lambda: _native.plan(0, 0.01), "expected_keys: must be at least 1, got 0"),
    (lambda: _native.plan(-1, 0.01), "expected_keys: must be at least 1, got -1"),
    (lambda: _native.plan(2**64, 0.01), "expected_keys: must be at most 18446744073709551615"),
    (lambda: _native.plan(10.0, 0.01), "expected_keys: must be an int, got float"),
    (lambda: _native.plan(True, 0.01), "expected_keys: must be an int, got bool"),
    (lambda: _native.plan(10, 1.5), r"fp_rate: must be in \(0, 1\), got 1.5"),
    (lambda: _native.plan(10, float("nan")), r"fp_rate: must be in \(0, 1\)"),
    (lambda: _native.plan(10, "0.1"), "fp_rate: must be a number, got str"),
    (lambda: BloomFilter.for_capacity(2**64), "expected_keys: must be at most"),
    (lambda: BloomFilter.for_capacity(10, seed=2**64), "seed: " + U64),
    # the model
    (lambda: _native.model_fp(0, 3, 1), "block_count: must be at least 1, got 0"),
    (lambda: _native.model_fp(MAX_BLOCKS + 1, 3, 1), f"block_count: must be at most {MAX_BLOCKS}"),
    (lambda: _native.model_fp(10, 0, 1), "k: must be at least 1, got 0"),
    (lambda: _native.model_fp(10, 17, 1), "k: must be at most 16, got 17"),
    (lambda: _native.model_fp(10, 3.0, 1), "k: must be an int, got float"),
    (lambda: _native.model_fp(10, 3, -1), "keys: " + U64),
    (lambda: _native.model_fp(10, 3, 2**64), "keys: " + U64),
    (lambda: BloomFilter(10, 3).model_fp(-1), "keys: " + U64),
    (lambda: BloomFilter(10, 3).model_fp(2.5), "keys: must be an int, got float"),
    (lambda: BloomFilter(10, 3).model_fp(2**64), "keys: " + U64),
    # allocation
    (lambda: _native.NativeBloom.create(0, 3, 0), "block_count: must be at least 1, got 0"),
    (lambda: _native.NativeBloom.create(MAX_BLOCKS + 1, 3, 0), "block_count: must be at most"),
    (lambda: _native.NativeBloom.create(10.0, 3, 0), "block_count: must be an int, got float"),
    (lambda: _native.NativeBloom.create(10, 0, 0), "k: must be at least 1"),
    (lambda: _native.NativeBloom.create(10, 17, 0), "k: must be at most 16"),
    (lambda: _native.NativeBloom.create(10, 3, -1), "seed: " + U64),
    (lambda: _native.NativeBloom.create(10, 3, 2**64), "seed: " + U64),
    (lambda: _native.NativeBloom.create(10, 3, None), "seed: must be an int, got NoneType"),
    # scalar signatures and seq
    (lambda: _bloom().add_sig(-1), "sig: " + U64),
    (lambda: _bloom().add_sig(2**64), "sig: " + U64),
    (lambda: _bloom().add_sig(1.0), "sig: must be an int, got float"),
    (lambda: _bloom().contains_sig(-1), "sig: " + U64),
    (lambda: _bloom().contains_sig(2**64), "sig: " + U64),
    (lambda: _bloom().contains_sig("1"), "sig: must be an int, got str"),
    (lambda: _bloom().contains_sig(True), "sig: must be an int, got bool"),
    (lambda: BloomFilter(10, 3).contains_signature(2**64), "sig: " + U64),
    (lambda: setattr(_bloom(), "seq", -1), "seq: " + U64),
    (lambda: setattr(_bloom(), "seq", 2**64), "seq: " + U64),
    (lambda: setattr(_bloom(), "seq", 1.5), "seq: must be an int, got float"),
    # other C calls
    (lambda: _bloom().union_from(BloomFilter(64, 6)), "other: must be a NativeBloom"),
    (
        lambda: _native.NativeBloom.from_snapshot("ENFBLOOM", "x"),
        "snapshot: must be a bytes-like object, got str",
    ),
    (lambda: _native.NativeBloom.from_snapshot(memoryview(bytes(128))[::2], "x"), "contiguous"),
    (lambda: _native.crc32c("123"), "data: must be bytes, got str"),
    (lambda: _native.crc32c(b"123", -1), r"crc: must be an int in 0\.\.2\*\*32-1"),
    (lambda: _native.crc32c(b"123", 2**32), r"crc: must be an int in 0\.\.2\*\*32-1"),
]


@pytest.mark.parametrize(("call", "match"), SCALAR_CASES)
def test_bad_arguments_raise_invalid_input_naming_the_argument(
    call: Callable[[], object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call()


ARRAY_CASES: list[tuple[Callable[[], object], str]] = [
    (lambda: np.arange(100, dtype=np.uint8), "sigs: must have dtype uint64 .*got \\|u1"),
    (lambda: np.arange(100, dtype=np.uint32), "sigs: must have dtype uint64 .*got <u4"),
    (lambda: np.arange(100, dtype=np.int64), "sigs: must have dtype uint64"),
    (lambda: np.arange(100, dtype=np.float64), "sigs: must have dtype uint64"),
    (lambda: np.arange(100, dtype=">u8"), "sigs: must have dtype uint64 .*got >u8"),
    (lambda: np.arange(200, dtype=np.uint64)[::2], "sigs: must be a C-contiguous, aligned"),
    (lambda: _unaligned_u64(100), "sigs: must be a C-contiguous, aligned"),
    (lambda: np.arange(100, dtype=np.uint64).reshape(10, 10), r"sigs: must be 1-D, got shape"),
    (lambda: [1, 2, 3], "sigs: must be a numpy uint64 array, got list"),
    (lambda: b"\x00" * 800, "sigs: must be a numpy uint64 array, got bytes"),
]


@pytest.mark.parametrize(("make", "match"), ARRAY_CASES)
def test_signature_arrays_c_would_misread_are_refused(
    make: Callable[[], object], match: str
) -> None:
    """C gets the buffer and len(sigs): any other layout would be misread or overrun."""
    bloom = _bloom()
    with pytest.raises(InvalidInputError, match=match):
        bloom.add_sigs(make())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=match):
        bloom.contains_sigs(make())  # type: ignore[arg-type]
    assert bloom.key_count == 0


@pytest.mark.parametrize(
    "convert",
    [
        lambda s: s.astype(">u8"),
        lambda s: np.repeat(s, 2)[::2],
        lambda s: s.reshape(1, -1),
        lambda s: np.frombuffer(s.tobytes(), dtype=np.uint64),  # read-only
        _unaligned_copy,
    ],
)
def test_the_public_api_still_converts_other_layouts(convert: Callable[[Any], Any]) -> None:
    """BloomFilter converts (as_sig_array) what _native refuses, and answers correctly."""
    bloom = BloomFilter(64, 6, seed=3)
    keys = [f"pin:{i}" for i in range(200)]
    sigs = bloom.signatures(keys)
    arg = convert(sigs)
    assert bloom.add_signatures(arg) == bloom.key_count > 150
    assert bloom.contains_signatures(arg).all()
    assert bloom.contains_many(keys).all()


def test_sizing_never_exceeds_the_largest_filter() -> None:
    """plan() used to start its search above MAX_BLOCKS and return an unallocatable size."""
    blocks, k = _native.plan(2**42, 0.5)  # about 256 keys per block: fits
    assert 1 <= blocks <= MAX_BLOCKS
    assert _native.model_fp(blocks, k, 2**42) <= 0.5
    with pytest.raises(
        InvalidInputError,
        match=r"expected_keys: 8796093022208 keys at fp_rate 0\.5 need more than the largest "
        r"filter \(17179869184 blocks, 1 TiB\); lower expected_keys, raise fp_rate",
    ):
        _native.plan(2**43, 0.5)
    with pytest.raises(InvalidInputError, match=r"expected_keys: .* fp_rate 0\.5 .*largest"):
        BloomFilter.for_capacity(2**43, 0.5)
    with pytest.raises(InvalidInputError, match=r"expected_keys: .* fp_rate 0\.01 .*largest"):
        BloomFilter.for_capacity(2**64 - 1, 0.01)


def test_the_model_answers_quickly_at_any_key_count() -> None:
    """A saturated filter's FP is 1.0 at once (it used to loop for hours, or forever at 2**64-1)."""
    code = (
        "from enforce_sdk.native import binding as n\n"
        "print(n.model_fp(2, 1, 2**63), n.model_fp(1, 16, 2**64 - 1),"
        " n.model_fp(3, 16, 2**64 - 1), n.model_fp(2**34, 6, 2**64 - 1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert out.stdout.split() == ["1.0"] * 4
    # Just below saturation the value still comes from the full sum.
    assert 0.999999 < _native.model_fp(1, 1, 10_000) < 1.0
