"""The seeded sample generator: deterministic for a seed, valid, realistic in shape."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk import Label, SourceType, canonical_key
from enforce_sdk.demo.sample import (
    BOT_DETECTOR,
    REASONS,
    REVIEW_TOOL,
    SAMPLE_EPOCH,
    SPAM_DOMAIN_MODEL,
    sample_labels,
    universe_keys,
)


def _dicts(labels: list[Label]) -> list[dict[str, object]]:
    return [lb.to_dict() for lb in labels]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32))
def test_same_seed_same_labels(n: int, seed: int) -> None:
    assert _dicts(list(sample_labels(n, seed=seed))) == _dicts(list(sample_labels(n, seed=seed)))


def test_different_seeds_differ() -> None:
    assert _dicts(list(sample_labels(50, seed=1))) != _dicts(list(sample_labels(50, seed=2)))


@settings(max_examples=10, deadline=None)
@given(n=st.integers(0, 500))
def test_yields_exactly_n(n: int) -> None:
    assert sum(1 for _ in sample_labels(n, seed=7)) == n


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 1000))
def test_labels_are_valid_and_round_trip(n: int, seed: int) -> None:
    for label in sample_labels(n, seed=seed):
        assert canonical_key(label.entity) == label.entity
        assert Label.from_dict(label.to_dict()) == label
        assert Label.from_dict(label.to_wire()) == label
        assert label.reason in REASONS
        assert label.created_at < SAMPLE_EPOCH
        if label.expires_at is not None:
            assert label.expires_at > label.created_at
        if label.source.type is SourceType.AUTOMATED:
            assert label.confidence is not None and 0.0 <= label.confidence <= 1.0
        else:
            assert label.confidence is None


def test_keys_are_unique_per_entity_and_source() -> None:
    keys = [lb.key for lb in sample_labels(5000, seed=3)]
    assert len(keys) == len(set(keys))


def test_shape_has_every_producer_kind_and_skew() -> None:
    labels = list(sample_labels(5000, seed=0))
    systems = Counter(lb.source.system for lb in labels)
    assert set(systems) == {REVIEW_TOOL, SPAM_DOMAIN_MODEL, BOT_DETECTOR}
    kinds = Counter(lb.entity.partition(":")[0] for lb in labels)
    assert set(kinds) == {"pin", "user", "domain", "image"}
    assert {lb.reason for lb in labels} == set(REASONS)
    assert any(lb.expires_at is not None for lb in labels)
    assert any(lb.expires_at is None for lb in labels)
    assert all(lb.entity.startswith("user:") for lb in labels if lb.source.system == BOT_DETECTOR)
    per_entity = Counter(lb.entity for lb in labels)
    # Zipf-ish: popular entities carry labels from several sources, most carry one.
    assert per_entity.most_common(1)[0][1] >= 5
    assert sum(1 for c in per_entity.values() if c == 1) > len(per_entity) // 2
    systems_of: dict[str, set[str]] = {}
    for lb in labels:
        systems_of.setdefault(lb.entity, set()).add(lb.source.system)
    assert any(len(s) >= 2 for s in systems_of.values())


def test_now_shifts_times() -> None:
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    for label in sample_labels(200, seed=5, now=now):
        assert now - timedelta(days=91) < label.created_at < now


def test_universe_is_deterministic_and_mostly_unlabeled() -> None:
    labeled = sorted({lb.entity for lb in sample_labels(2000, seed=4)})
    keys = universe_keys(20000, 0.05, seed=4, labeled=labeled)
    assert keys == universe_keys(20000, 0.05, seed=4, labeled=labeled)
    assert keys != universe_keys(20000, 0.05, seed=5, labeled=labeled)
    hits = sum(k in set(labeled) for k in keys) / len(keys)
    assert 0.04 < hits < 0.06
    assert all(canonical_key(k) == k for k in set(keys))


def test_universe_unlabeled_keys_never_labeled_by_sample() -> None:
    all_labeled = {lb.entity for lb in sample_labels(3000, seed=9)}
    keys = universe_keys(5000, 0.0, seed=9)
    assert not all_labeled.intersection(keys)


def test_universe_default_pool_is_sample_entities_and_popularity_is_skewed() -> None:
    keys = universe_keys(10000, 0.5, seed=2)
    pool = {lb.entity for lb in sample_labels(max(100, 10000 // 20), seed=2)}
    labeled_hits = [k for k in keys if k in pool]
    assert 0.45 < len(labeled_hits) / len(keys) < 0.55
    top = Counter(keys).most_common(1)[0][1]
    assert top > 10 * (len(keys) / len(set(keys)))
