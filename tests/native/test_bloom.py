"""BloomFilter: no false negatives, FP at the target, sizing, union, bad input, threads, fork."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforce_sdk import InvalidInputError
from enforce_sdk.native.bloom import BloomFilter, signature, signatures
from tests.native.sig64_reference import block_and_positions

KEY = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=40
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), KEY),
        st.tuples(st.just("add_many"), st.lists(KEY, max_size=30)),
        st.tuples(st.just("add_sigs"), st.lists(KEY, max_size=30)),
        st.tuples(st.just("roundtrip"), st.none()),
        st.tuples(st.just("union"), st.lists(KEY, max_size=30)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, capacity=st.integers(1, 300), fp=st.sampled_from([0.5, 0.1, 0.01, 0.001]))
def test_never_a_false_negative(ops: list[tuple[str, object]], capacity: int, fp: float) -> None:
    """Against a Python set, across every way keys get in (and survive) a filter."""
    bloom = BloomFilter.for_capacity(capacity, fp, seed=capacity)
    truth: set[str] = set()
    inserted = 0  # key_count may not exceed keys inserted (union counts both sides)
    for op, arg in ops:
        inserted += len(arg) if isinstance(arg, list) else 1 if arg is not None else 0
        if op == "add":
            assert isinstance(arg, str)
            bloom.add(arg)
            truth.add(arg)
        elif op == "add_many":
            assert isinstance(arg, list)
            bloom.add_many(arg)
            truth.update(arg)
        elif op == "add_sigs":
            assert isinstance(arg, list)
            bloom.add_signatures(bloom.signatures(arg))
            truth.update(arg)
        elif op == "roundtrip":
            seq = bloom.seq + 1
            bloom.seq = seq
            bloom = BloomFilter.from_bytes(bloom.to_bytes())
            assert bloom.seq == seq
        else:
            assert isinstance(arg, list)
            other = BloomFilter(bloom.block_count, bloom.k, seed=bloom.seed)
            other.add_many(arg)
            bloom = bloom.union(other) if len(arg) % 2 else (bloom | other)
            truth.update(arg)
        keys = sorted(truth)
        assert all(key in bloom for key in keys)
        assert bloom.contains_many(keys).all()
        assert bloom.contains_signatures(signatures(keys, bloom.seed)).all()
        assert bloom.key_count <= inserted


def test_measured_fp_within_15_percent_of_target_at_one_million_keys() -> None:
    n = 1_000_000
    bloom = BloomFilter.for_capacity(n, 0.01)
    bloom.add_many([f"pin:{i}" for i in range(n)])
    absent = [f"user:{i}" for i in range(n)]
    measured = float(bloom.contains_many(absent).mean())
    assert abs(measured - 0.01) <= 0.0015, measured
    assert abs(bloom.estimated_fp - 0.01) <= 0.0015, bloom.estimated_fp
    # Blocking costs a little over the unblocked 1.198 B/key; it must stay modest.
    assert 1.2 <= bloom.size_bytes / n <= 1.3
    assert n - 20_000 <= bloom.key_count <= n  # keys whose bits were all set already


@pytest.mark.parametrize("fp", [0.1, 0.01, 0.001, 0.0001])
def test_sizing_meets_the_model_target_and_is_tight(fp: float) -> None:
    n = 200_000
    bloom = BloomFilter.for_capacity(n, fp)
    assert bloom.model_fp(n) <= fp
    smaller = BloomFilter(bloom.block_count - 1, bloom.k)
    assert smaller.model_fp(n) > fp
    # Never less than the unblocked optimum (1.44 * log2(1/fp) bits/key).
    assert bloom.size_bytes * 8 / n >= 1.44 * np.log2(1 / fp)


def test_measured_fp_small_filter_follows_the_model() -> None:
    bloom = BloomFilter.for_capacity(5_000, 0.05, seed=9)
    bloom.add_many([f"a:{i}" for i in range(5_000)])
    measured = float(bloom.contains_many([f"b:{i}" for i in range(200_000)]).mean())
    assert abs(measured - bloom.model_fp(5_000)) < 0.006
    assert abs(measured - bloom.estimated_fp) < 0.006


def test_bit_layout_matches_the_documented_derivation() -> None:
    """Block = high 64 bits of sig*blocks; positions from fold(sig, K5) in 9-bit slices."""
    for k in (1, 7, 8, 16):
        bloom = BloomFilter(37, k, seed=5)
        sig = signature("pin:42", 5)
        bloom.add("pin:42")
        body = np.frombuffer(bloom.to_bytes()[64:], dtype="<u8").reshape(37, 8)
        block, positions = block_and_positions(sig, 37, k)
        expected = np.zeros((37, 8), dtype=np.uint64)
        for pos in positions:
            expected[block, pos // 64] |= np.uint64(1 << (pos % 64))
        assert np.array_equal(body, expected), k


def test_add_reports_new_bits_and_counts_keys_once() -> None:
    bloom = BloomFilter.for_capacity(100, 0.01)
    assert bloom.add("pin:1") is True
    assert bloom.add("pin:1") is False
    assert bloom.add_many(["pin:1", "pin:2", "pin:2", "pin:3"]) == 2
    assert bloom.key_count == 3
    assert bloom.add_signature(bloom.signature("pin:4")) is True
    assert bloom.add_signatures([bloom.signature("pin:4"), bloom.signature("pin:5")]) == 1
    assert bloom.key_count == 5
    assert "pin:5" in bloom and bloom.contains("pin:5")
    assert bloom.contains_signature(bloom.signature("pin:3"))
    assert bloom.bytes_per_key == bloom.size_bytes / 5


def test_empty_filter_and_empty_batches() -> None:
    bloom = BloomFilter.for_capacity(10, 0.01)
    assert "pin:1" not in bloom
    assert bloom.key_count == 0 and bloom.bytes_per_key == float("inf")
    assert bloom.estimated_fp == 0.0
    assert bloom.add_many([]) == 0
    assert bloom.contains_many([]).shape == (0,)
    assert bloom.contains_signatures(np.array([], dtype=np.uint64)).shape == (0,)
    assert signatures([]).shape == (0,)
    bloom.add("")
    assert "" in bloom and bloom.contains_many([""]).tolist() == [True]


def test_contains_many_returns_a_numpy_bool_array() -> None:
    bloom = BloomFilter.for_capacity(10_000, 0.001)
    bloom.add_many([f"pin:{i}" for i in range(0, 20_000, 2)])
    got = bloom.contains_many(tuple(f"pin:{i}" for i in range(20_000)))
    assert got.dtype == np.bool_ and got.shape == (20_000,)
    assert got[::2].all()
    assert got[1::2].mean() < 0.005


def test_union_keeps_both_and_takes_the_larger_seq() -> None:
    a = BloomFilter.for_capacity(1000, 0.01)
    b = BloomFilter.for_capacity(1000, 0.01)
    a.add_many([f"a:{i}" for i in range(500)])
    b.add_many([f"b:{i}" for i in range(500)])
    a.seq, b.seq = 10, 20
    u = a.union(b)
    assert u.contains_many([f"a:{i}" for i in range(500)] + [f"b:{i}" for i in range(500)]).all()
    assert u.seq == 20 and u.key_count == a.key_count + b.key_count
    assert "b:1" not in a or a.contains_many([f"b:{i}" for i in range(500)]).mean() < 0.05
    a |= b
    assert a.to_bytes() == u.to_bytes()


@pytest.mark.parametrize(
    "other",
    [
        lambda a: BloomFilter(a.block_count + 1, a.k, seed=a.seed),
        lambda a: BloomFilter(a.block_count, a.k + 1, seed=a.seed),
        lambda a: BloomFilter(a.block_count, a.k, seed=a.seed + 1),
    ],
)
def test_union_of_different_parameters_is_refused(other: object) -> None:
    a = BloomFilter.for_capacity(1000, 0.01)
    a.add("pin:1")
    before = a.to_bytes()
    b = other(a)  # type: ignore[operator]
    b.add("pin:2")
    with pytest.raises(InvalidInputError, match=r"filters differ: blocks .* only equal parameters"):
        a.union(b)
    with pytest.raises(InvalidInputError, match="filters differ"):
        a.update(b)
    assert a.to_bytes() == before
    with pytest.raises(InvalidInputError, match="other: must be a BloomFilter, got set"):
        a.union(set())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: BloomFilter.for_capacity(0, 0.01), "expected_keys: must be at least 1, got 0"),
        (lambda: BloomFilter.for_capacity(-5, 0.01), "expected_keys: must be at least 1"),
        (lambda: BloomFilter.for_capacity(10.0, 0.01), "expected_keys: must be an int"),
        (lambda: BloomFilter.for_capacity(True, 0.01), "expected_keys: must be an int, got bool"),
        (lambda: BloomFilter.for_capacity(10, 0.0), r"fp_rate: must be in \(0, 1\), got 0.0"),
        (lambda: BloomFilter.for_capacity(10, 1.0), r"fp_rate: must be in \(0, 1\)"),
        (lambda: BloomFilter.for_capacity(10, -0.1), r"fp_rate: must be in \(0, 1\)"),
        (lambda: BloomFilter.for_capacity(10, float("nan")), r"fp_rate: must be in \(0, 1\)"),
        (lambda: BloomFilter.for_capacity(10, "0.01"), "fp_rate: must be a number, got str"),
        (lambda: BloomFilter(0, 3), "block_count: must be at least 1, got 0"),
        (lambda: BloomFilter(10, 0), "k: must be at least 1, got 0"),
        (lambda: BloomFilter(10, 17), "k: must be at most 16, got 17"),
        (lambda: BloomFilter(2**40, 3), "block_count: must be at most"),
        (lambda: BloomFilter(10, 3, seed=-1), "seed: must be in 0..2"),
    ],
)
def test_bad_construction_is_named(call: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call()  # type: ignore[operator]


def test_bad_keys_are_named_and_nothing_is_added() -> None:
    bloom = BloomFilter.for_capacity(1000, 0.01)
    with pytest.raises(InvalidInputError, match="key: must be str, got int"):
        bloom.add(1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="key: must be str, got bytes"):
        b"pin:1" in bloom  # noqa: B015
    with pytest.raises(InvalidInputError, match=r"key: must be str, got NoneType"):
        bloom.contains(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"keys\[2\]: must be str, got int"):
        bloom.add_many(["pin:1", "pin:2", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"keys\[1\]: must not contain a newline"):
        bloom.add_many(["pin:1", "pin:\n2"])
    with pytest.raises(InvalidInputError, match="keys: must be a sequence of str keys, not a"):
        bloom.contains_many("pin:1")
    with pytest.raises(InvalidInputError, match=r"keys\[0\]: must be str"):
        bloom.contains_many([b"x"])  # type: ignore[list-item]
    assert bloom.key_count == 0 and "pin:1" not in bloom
    with pytest.raises(InvalidInputError, match="sigs: must be non-negative"):
        bloom.add_signatures(np.array([1, -1]))
    with pytest.raises(InvalidInputError, match="sigs: must be an integer array, got dtype"):
        bloom.add_signatures(np.array([1.5]))
    with pytest.raises(InvalidInputError, match=r"sigs\[1\]: must be in 0..2\*\*64-1"):
        bloom.add_signatures([1, 2**64])
    with pytest.raises(InvalidInputError, match="sigs: must be a uint64 array or a list of ints"):
        bloom.contains_signatures(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="sig: must be an int"):
        bloom.add_signature("1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"seq: must be in 0\.\.2"):
        bloom.seq = -1
    assert bloom.key_count == 0


def test_signature_arrays_of_other_integer_dtypes() -> None:
    bloom = BloomFilter.for_capacity(100, 0.01)
    bloom.add_signatures(np.array([5, 6], dtype=np.int64))
    bloom.add_signatures(np.array([7], dtype=np.uint32))
    assert bloom.contains_signatures([5, 6, 7]).all()
    assert bloom.contains_signatures(np.array([[5, 6]], dtype=np.uint64)).all()


def test_readers_run_concurrently_with_a_writer() -> None:
    """Keys added before a check started are always found, while adds continue."""
    bloom = BloomFilter.for_capacity(200_000, 0.01)
    batches = [[f"pin:{b}:{i}" for i in range(2_000)] for b in range(100)]
    done = 0
    errors: list[str] = []

    def writer() -> None:
        nonlocal done
        for i, batch in enumerate(batches):
            bloom.add_many(batch)
            done = i + 1

    def reader() -> None:
        while done < len(batches):
            ready = done
            for batch in batches[:ready]:
                if not bloom.contains_many(batch).all():
                    errors.append(f"false negative in a batch added before the check ({ready})")
                    return

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert bloom.contains_many([k for b in batches for k in b]).all()


def test_concurrent_writers_do_not_lose_bits() -> None:
    bloom = BloomFilter(64, 8)  # small: writers hit the same words all the time
    parts = [[f"t{t}:{i}" for i in range(20_000)] for t in range(4)]

    def writer(keys: list[str]) -> None:
        for start in range(0, len(keys), 100):
            bloom.add_many(keys[start : start + 100])
        for key in keys[:500]:
            bloom.add(key)

    threads = [threading.Thread(target=writer, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert bloom.contains_many([k for p in parts for k in p]).all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_filter_is_valid_after_fork() -> None:
    bloom = BloomFilter.for_capacity(10_000, 0.01)
    keys = [f"pin:{i}" for i in range(10_000)]
    bloom.add_many(keys)
    pid = os.fork()
    if pid == 0:  # child: check, add, snapshot, and report through the exit code
        try:
            ok = bloom.contains_many(keys).all() and all(k in bloom for k in keys[:100])
            bloom.add("pin:child")
            ok = ok and "pin:child" in bloom
            ok = ok and BloomFilter.from_bytes(bloom.to_bytes()).contains_many(keys).all()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bloom.key_count <= 10_000  # the child's add did not reach the parent
