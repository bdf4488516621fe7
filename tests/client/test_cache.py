"""LabelCache: TTL, negative entries, stale window, size bound, eviction; fake clock, no sleeps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.client.cache import NO_LABELS, LabelCache
from tests.helpers import FakeClock


def label(entity: str, system: str = "review_tool") -> Label:
    return Label(
        entity=entity,
        source=Source(system, SourceType.HUMAN, "alice"),
        enforcement=Enforcement.BLOCK,
        reason="spam",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kw: float) -> LabelCache:
    opts: dict[str, float] = {
        "max_entries": 100,
        "ttl": 60,
        "negative_ttl": 10,
        "serve_stale_for": 300,
    }
    opts.update(kw)
    return LabelCache(
        max_entries=int(opts["max_entries"]),
        ttl=opts["ttl"],
        negative_ttl=opts["negative_ttl"],
        serve_stale_for=opts["serve_stale_for"],
        timer=clock,
    )


def test_positive_entry_fresh_until_ttl_then_stale_then_gone(clock: FakeClock) -> None:
    cache = make(clock)
    lab = label("pin:1")
    cache.fill({"pin:1": [lab]}, ["pin:1"])
    assert cache.get_fresh("pin:1") == (lab,)
    clock.tick(59.9)
    assert cache.get_fresh("pin:1") == (lab,)
    clock.tick(0.2)
    assert cache.get_fresh("pin:1") is None
    assert cache.get_stale("pin:1") == (lab,)
    clock.tick(300)
    assert cache.get_stale("pin:1") is None


def test_asked_keys_without_labels_get_negative_entries_with_their_own_ttl(
    clock: FakeClock,
) -> None:
    cache = make(clock)
    cache.fill({"pin:1": [label("pin:1")]}, ["pin:1", "pin:2"])
    assert cache.get_fresh("pin:2") == NO_LABELS
    clock.tick(10.5)
    assert cache.get_fresh("pin:2") is None  # negative TTL is 10 s
    assert cache.get_fresh("pin:1") is not None  # positive TTL is 60 s


def test_unknown_key_is_a_miss(clock: FakeClock) -> None:
    cache = make(clock)
    assert cache.get_fresh("pin:404") is None
    assert cache.get_stale("pin:404") is None
    assert cache.entry("pin:404") is None


def test_size_bound_evicts_least_recently_filled(clock: FakeClock) -> None:
    cache = make(clock, max_entries=3)
    for i in range(3):
        cache.fill({}, [f"pin:{i}"])
    cache.fill({}, ["pin:0"])  # refill moves pin:0 to the back
    cache.fill({}, ["pin:3"])
    assert len(cache) == 3
    assert cache.entry("pin:1") is None
    assert {k for k in ("pin:0", "pin:2", "pin:3") if cache.entry(k) is not None} == {
        "pin:0",
        "pin:2",
        "pin:3",
    }


def test_evict_drops_keys_and_counts_only_cached_ones(clock: FakeClock) -> None:
    cache = make(clock)
    cache.fill({}, ["pin:1", "pin:2"])
    assert cache.evict(["pin:1", "pin:9"]) == 1
    assert cache.entry("pin:1") is None
    assert cache.entry("pin:2") is not None


def test_configure_shrinks_to_new_bound(clock: FakeClock) -> None:
    cache = make(clock, max_entries=10)
    cache.fill({}, [f"pin:{i}" for i in range(10)])
    cache.configure(max_entries=4, ttl=60, negative_ttl=10, serve_stale_for=300)
    assert len(cache) == 4
    assert cache.entry("pin:9") is not None and cache.entry("pin:0") is None


def test_concurrent_fills_and_reads_keep_the_bound_and_never_tear(clock: FakeClock) -> None:
    cache = make(clock, max_entries=500)
    labs = {f"pin:{i}": [label(f"pin:{i}")] for i in range(2000)}
    errors: list[str] = []

    def writer(offset: int) -> None:
        for i in range(offset, 2000, 4):
            cache.fill({f"pin:{i}": labs[f"pin:{i}"]}, [f"pin:{i}"])

    def reader() -> None:
        for _ in range(20):
            for i in range(0, 2000, 7):
                entry = cache.entry(f"pin:{i}")
                if entry is not None and entry[0] and entry[0][0].entity != f"pin:{i}":
                    errors.append(f"pin:{i}")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 500


def test_a_fill_skips_keys_evicted_after_its_mark_even_if_they_were_not_cached(
    clock: FakeClock,
) -> None:
    cache = make(clock)
    mark = cache.mark()  # a read of pin:1..3 begins
    cache.evict(["pin:1"])  # the feed: pin:1 changed (nothing cached yet)
    cache.fill({"pin:1": [label("pin:1")], "pin:2": [label("pin:2")]},
               ["pin:1", "pin:2", "pin:3"], since=mark)
    assert cache.entry("pin:1") is None
    assert cache.get_fresh("pin:2") == (label("pin:2"),) and cache.get_fresh("pin:3") == ()
    # a read that began after the eviction is cached
    cache.fill({"pin:1": [label("pin:1")]}, ["pin:1"], since=cache.mark())
    assert cache.get_fresh("pin:1") == (label("pin:1"),)


def test_a_fill_older_than_a_clear_or_than_the_eviction_memory_caches_nothing(
    clock: FakeClock,
) -> None:
    cache = LabelCache(max_entries=100, ttl=60, negative_ttl=10, serve_stale_for=0,
                       timer=clock, eviction_memory=2)
    mark = cache.mark()
    cache.clear()  # a resync: every key may have changed
    cache.fill({}, ["pin:1"], since=mark)
    assert len(cache) == 0
    mark = cache.mark()
    cache.evict(["pin:7", "pin:8"])
    cache.fill({}, ["pin:1"], since=mark)  # pin:7, pin:8 remembered: pin:1 is fine
    assert cache.get_fresh("pin:1") == ()
    cache.evict(["pin:9"])  # pin:7 forgotten: a fill from before it cannot tell
    assert cache.evicted_since("pin:1", mark) and not cache.evicted_since("pin:1", cache.mark())
    cache.fill({}, ["pin:2"], since=mark)
    assert cache.entry("pin:2") is None
    cache.fill({}, ["pin:2"], since=cache.mark())
    assert cache.get_fresh("pin:2") == ()
