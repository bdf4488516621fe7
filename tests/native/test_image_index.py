"""ImageIndex against a brute-force Python set: never a miss within the threshold, never
a hit outside it, through adds and removes (the table's backward-shift deletion and the
array's move-last-into-hole included)."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk._errors import InvalidInputError
from enforce_sdk.native.image_index import ImageIndex, hash_bytes
from enforce_sdk.native.images import ImageSignature, pdq_distance


def flip(hash_hex: str, bits: list[int]) -> str:
    value = int(hash_hex, 16)
    for bit in bits:
        value ^= 1 << bit
    return format(value, "064x")


# Hashes clustered around a few centres so queries find neighbours at every distance.
centres = st.lists(st.integers(0, (1 << 256) - 1).map(lambda v: format(v, "064x")),
                   min_size=1, max_size=4)


@st.composite
def workload(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[str], int]:
    points = draw(centres)
    near = st.builds(flip, st.sampled_from(points), st.lists(st.integers(0, 255), max_size=40))
    ops = draw(st.lists(st.tuples(st.sampled_from(["add", "add", "remove"]), near),
                        max_size=120))
    queries = draw(st.lists(near, min_size=1, max_size=8))
    return ops, queries, draw(st.integers(0, 64))


@settings(max_examples=150, deadline=None)
@given(workload(), st.integers(0, 40))
def test_queries_equal_brute_force_through_adds_and_removes(
    load: tuple[list[tuple[str, str]], list[str], int], capacity: int
) -> None:
    ops, queries, threshold = load
    index = ImageIndex(capacity)
    held: set[str] = set()
    for op, value in ops:
        if op == "add":
            assert index.add(value) == (value not in held)
            held.add(value)
        else:
            assert index.remove(value) == (value in held)
            held.discard(value)
        assert len(index) == len(held)
    for query in queries:
        expected = sorted(((h, pdq_distance(h, query)) for h in held
                           if pdq_distance(h, query) <= threshold), key=lambda m: (m[1], m[0]))
        assert index.query(query, threshold) == expected
        assert (query in index) == (query in held)


def test_many_hashes_and_every_removal_order() -> None:
    rng = random.Random(18)
    hashes = list({format(rng.getrandbits(256), "064x") for _ in range(3000)})
    index = ImageIndex()
    for h in hashes:
        assert index.add(h)
    assert len(index) == len(hashes)
    rng.shuffle(hashes)
    for i, h in enumerate(hashes):
        assert index.remove(h)
        if i % 500 == 0:  # the rest are all still found exactly, the removed ones not
            rest = hashes[i + 1:]
            assert all(index.query(r, 0) == [(r, 0)] for r in rest[:50])
            assert index.query(h, 0) == []
    assert len(index) == 0


def test_keys_signatures_and_hex_name_one_hash() -> None:
    hex_hash = "0123456789abcdef" * 4
    index = ImageIndex()
    assert index.add(ImageSignature(hex_hash, 90))
    assert not index.add("image:" + hex_hash.upper())
    assert not index.add(hex_hash.upper())
    assert index.query(flip(hex_hash, [1, 2, 3]), 3) == [(hex_hash, 3)]
    assert index.query(flip(hex_hash, [1, 2, 3]), 2) == []
    assert index.remove(f" IMAGE:{hex_hash} ")
    assert len(index) == 0


def test_memory_is_at_most_48_bytes_per_hash_once_reserved() -> None:
    count = 100_000
    index = ImageIndex(count)
    rng = random.Random(7)
    for _ in range(count):
        index.add(format(rng.getrandbits(256), "064x"))
    assert len(index) == count
    assert index.memory_bytes / count <= 48


@pytest.mark.parametrize(
    ("value", "needle"),
    [("abc", "64 hex"), ("g" * 64, "not hex"), ("image:abc", "not a PDQ image key"),
     ("pin:1", "not a PDQ image key"), (b"\x00" * 32, "got bytes"), (None, "got NoneType")],
)
def test_bad_hashes_are_refused_by_name(value: object, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        hash_bytes(value, "signature")
    with pytest.raises(InvalidInputError, match="signature"):
        ImageIndex().add(value)


@pytest.mark.parametrize("bad", [-1, 257, True, 3.0, None])
def test_bad_distances_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="max_distance"):
        ImageIndex().query("0" * 64, bad)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_and_writes_its_copy() -> None:
    index = ImageIndex()
    index.add("f" * 64)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = index.query("f" * 64, 0) == [("f" * 64, 0)] and index.add("e" * 64)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(index) == 1
