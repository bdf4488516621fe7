"""ScalableBloom and BloomLayers: the FP rate stays bounded as keys arrive, nothing is ever missed."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforce_sdk import InvalidInputError
from enforce_sdk.native.bloom import BloomFilter, surely_unlabeled
from enforce_sdk.native.scalable_bloom import (
    DEFAULT_FP_RATE,
    BloomLayers,
    ScalableBloom,
    capacity_at,
)

FP = 0.01
ABSENT = [f"user:{i}" for i in range(100_000)]  # never added below (other kind)


def measured_fp(bloom: BloomFilter) -> float:
    return float(bloom.contains_many(ABSENT).mean())


def test_one_layer_is_served_as_the_filter_itself() -> None:
    """Until it grows, lookups go to the plain filter: the hot path pays nothing."""
    base = BloomFilter.for_capacity(1000, FP)
    grown = ScalableBloom(base, 1000, FP)
    assert grown.view is base and grown.layers == 1
    published: list[BloomFilter] = []
    assert grown.add_many([f"pin:{i}" for i in range(1000)], published.append) == 0
    assert grown.view is base and published == [] and grown.fill == pytest.approx(1.0, abs=0.02)


def test_a_young_filter_fed_200_000_keys_keeps_its_fp_rate() -> None:
    """The scenario of issue 11: a snapshot sized for 1,024 keys, then a bulk import."""
    base = BloomFilter.for_capacity(1024, FP)
    saturated = base.copy()
    grown = ScalableBloom(base, 1024, FP)
    added: list[str] = []
    worst = 0.0
    for batch in range(100):
        keys = [f"pin:{batch}-{i}" for i in range(2000)]
        grown.add_many(keys)
        saturated.add_many(keys)
        added += keys
        if batch % 10 == 9:
            view = grown.view
            assert view.contains_many(added).all()  # no false negative, ever
            worst = max(worst, measured_fp(view))
    assert measured_fp(saturated) == 1.0  # what a filter that cannot grow comes to
    assert worst <= 1.5 * FP  # the bound is fp_rate x (1 + 1/4 + 1/8 + ...) < 1.5 x fp_rate
    assert grown.design_fp() < 1.5 * FP
    assert grown.view.model_fp() <= grown.design_fp()
    # capacities 1024, 2048, 6144, 18432, 55296, 165888: six layers hold 200,000 keys
    assert grown.layers == 6 and grown.capacity >= 200_000
    # The price, until a fresh snapshot folds the layers back: a filter sized for 200,000
    # keys at 1% takes 1.24 B/key; these layers take about 3 B/key (tighter rates, and the
    # newest layer's room for the next doubling).
    assert grown.view.size_bytes < 3.5 * 200_000


def test_growth_publishes_the_new_view_before_any_key_goes_into_the_new_layer() -> None:
    grown = ScalableBloom(BloomFilter.for_capacity(100, FP), 100, FP)
    seen: list[tuple[int, int]] = []

    def publish(view: BloomFilter) -> None:
        assert isinstance(view, BloomLayers)
        seen.append((len(view.layers), view.layers[-1].key_count))

    keys = [f"pin:{i}" for i in range(800)]
    assert grown.add_many(keys, publish) == 2  # capacities 100, 200, 600
    assert seen == [(2, 0), (3, 0)]
    assert grown.view.contains_many(keys).all()
    assert [layer.key_count for layer in grown.view.layers][:2] == [100, 200]


def test_keys_already_present_are_not_added_again_once_grown() -> None:
    grown = ScalableBloom(BloomFilter.for_capacity(100, FP), 100, FP)
    grown.add_many([f"pin:{i}" for i in range(150)])
    assert grown.layers == 2
    top = grown.view.layers[-1]
    before = top.key_count
    grown.add_many([f"pin:{i}" for i in range(100)])  # relabeled entities: already present
    assert top.key_count == before


def test_a_layer_that_cannot_be_made_leaves_the_filter_filling_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grown = ScalableBloom(BloomFilter.for_capacity(10, FP), 10, FP)

    def too_large(*args: object, **kw: object) -> BloomFilter:
        raise InvalidInputError("too large", field="expected_keys")

    monkeypatch.setattr(BloomFilter, "for_capacity", too_large)
    keys = [f"pin:{i}" for i in range(100)]
    assert grown.add_many(keys) == 0
    assert grown.layers == 1 and grown.view.contains_many(keys).all()


def test_capacity_at_is_the_design_point_of_the_sizing_model() -> None:
    bloom = BloomFilter.for_capacity(50_000, FP)
    n = capacity_at(bloom, FP)
    assert bloom.model_fp(n) <= FP < bloom.model_fp(n + 1)
    assert 50_000 <= n < 51_000  # the smallest filter for 50,000 keys: little slack
    assert capacity_at(bloom, 0.5) > capacity_at(bloom, FP) > capacity_at(bloom, 0.001)
    # no capacity given (an older store): the design point at the default rate
    assert ScalableBloom(bloom).capacity == capacity_at(bloom, DEFAULT_FP_RATE)


def test_layers_answer_as_the_union_of_their_filters() -> None:
    a = BloomFilter.for_capacity(500, FP, seed=7)
    b = BloomFilter.for_capacity(2000, FP / 4, seed=7)
    a.add_many([f"pin:{i}" for i in range(500)])
    b.add_many([f"user:{i}" for i in range(500)])
    layers = BloomLayers([a, b])
    probe = [f"pin:{i}" for i in range(0, 1000, 3)] + [f"user:{i}" for i in range(0, 1000, 7)]
    expected = a.contains_many(probe) | b.contains_many(probe)
    assert (layers.contains_many(probe) == expected).all()
    assert [layers.contains(k) for k in probe] == expected.tolist()
    assert [k in layers for k in probe] == expected.tolist()
    sigs = layers.signatures(probe)
    assert (layers.contains_signatures(sigs) == expected).all()
    assert [layers.contains_signature(int(s)) for s in sigs] == expected.tolist()
    assert layers.contains_many([]).tolist() == []
    # adds go to the newest layer; figures cover every layer
    assert layers.add("board:1") and "board:1" in b and "board:1" not in a
    assert layers.add_many(["board:2", "board:3"]) == 2
    assert layers.add_signatures(layers.signatures(["board:4"])) == 1
    assert layers.add_signature(layers.signature("board:5"))
    assert layers.key_count == a.key_count + b.key_count
    assert layers.size_bytes == a.size_bytes + b.size_bytes
    assert layers.block_count == a.block_count + b.block_count
    assert 0 < layers.estimated_fp < 1 and 0 < layers.model_fp() < 1
    assert layers.info()["layers"][1]["k"] == b.k and "BloomLayers([" in repr(layers)
    layers.seq = 9
    assert (a.seq, b.seq, layers.seq) == (9, 9, 9)


def test_layers_refuse_what_has_no_meaning_for_them() -> None:
    a, b = BloomFilter.for_capacity(10, FP), BloomFilter.for_capacity(20, FP)
    layers = BloomLayers([a, b])
    for call in (layers.to_bytes, lambda: layers.save("x"), lambda: layers.snapshot_size,
                 lambda: layers.update(a), lambda: layers.union(a),
                 lambda: layers.model_fp(5)):
        with pytest.raises(InvalidInputError):
            call()
    assert not layers.compatible(layers)
    with pytest.raises(InvalidInputError):
        BloomLayers([])
    with pytest.raises(InvalidInputError):
        BloomLayers([a, BloomFilter.for_capacity(10, FP, seed=1)])  # one seed for all
    with pytest.raises(InvalidInputError):
        BloomLayers([a, layers])  # nesting
    with pytest.raises(InvalidInputError):
        ScalableBloom(layers)
    with pytest.raises(InvalidInputError):
        ScalableBloom(a, 10, 1.5)


def test_layers_copy_and_pickle_whole() -> None:
    a, b = BloomFilter.for_capacity(10, FP), BloomFilter.for_capacity(20, FP)
    a.add("pin:1")
    b.add("pin:2")
    layers = BloomLayers([a, b])
    for other in (layers.copy(), pickle.loads(pickle.dumps(layers))):
        assert isinstance(other, BloomLayers) and "pin:1" in other and "pin:2" in other
        other.add("pin:3")
        assert "pin:3" not in layers


def test_bad_keys_raise_as_for_a_plain_filter() -> None:
    """The page precheck relies on it: such a page takes the path that validates."""
    layers = BloomLayers([BloomFilter.for_capacity(10, FP), BloomFilter.for_capacity(20, FP)])
    with pytest.raises(InvalidInputError, match=r"keys\[1\]"):
        layers.contains_many(["pin:1", "pin:\n2"])
    assert surely_unlabeled(layers, ["pin:1", "pin:\n2"]) is None
    assert surely_unlabeled(layers, ["pin:1", 5]) is None  # type: ignore[list-item]
    assert surely_unlabeled(layers, ["pin:1", "PIN:2"]) == [0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(st.integers(0, 3000), max_size=60), max_size=30),
    capacity=st.integers(0, 40),
)
def test_never_a_false_negative_across_growths(batches: list[list[int]], capacity: int) -> None:
    """Against a Python set; every published view holds every key added before it."""
    grown = ScalableBloom(BloomFilter.for_capacity(max(capacity, 1), 0.1), capacity, 0.1)
    truth: set[str] = set()
    views: list[tuple[BloomFilter, int]] = []

    def publish(view: BloomFilter) -> None:
        assert all(k in view for k in truth)
        views.append((view, len(truth)))

    for batch in batches:
        keys = [f"pin:{i}" for i in batch]
        grown.add_many(keys, publish)
        truth.update(keys)
        assert all(k in grown.view for k in truth)
        probe = sorted(truth)
        if probe:
            assert grown.view.contains_many(probe).all()
    # each growth published a view with one more layer, ending with the one served
    assert [len(v.layers) for v, _ in views if isinstance(v, BloomLayers)] == list(
        range(2, 2 + len(views)))
    assert grown.layers == 1 + len(views) and (not views or views[-1][0] is grown.view)


def test_a_capacity_beyond_the_model_cannot_let_the_filter_saturate() -> None:
    base = BloomFilter.for_capacity(1000, FP)
    assert ScalableBloom(base, 10**9, FP).capacity == capacity_at(base, FP)
    assert ScalableBloom(base, 1000, FP).capacity == 1000  # the store's own figure, if lower
