"""BloomGate when the feed fills its filter past the design point the store sized it for.

Driven by hand over the fake store of test_bloom_gate (fake loader, fake clock): the
filter grows a layer instead of saturating, publishes the grown view before any key
goes into the new layer, asks for a fresh snapshot at once, and a staged snapshot
grows while it replays. The no-false-negative property with growth all along is
test_bloom_gate's property (its `design` parameter).
"""

from __future__ import annotations

from enforce_sdk.client.bloom_gate import BloomGate
from enforce_sdk.client.stats import Stats
from enforce_sdk.config.document import BloomSettings
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.native.scalable_bloom import BloomLayers, capacity_at
from tests.client.test_bloom_gate import FakeStore, Rig

FP = 0.01


def write_many(store: FakeStore, first: int, count: int) -> list[str]:
    keys = [f"pin:{i}" for i in range(first, first + count)]
    for key in keys:
        store.write(key, True)
    return keys


def absent(rig: Rig, keys: list[str]) -> list[str]:
    bloom = rig.gate.bloom
    assert bloom is not None
    return [k for k, present in zip(keys, bloom.contains_many(keys).tolist(), strict=True)
            if not present]


def test_a_filter_at_its_design_point_grows_instead_of_saturating() -> None:
    store = FakeStore(design=10)
    store.build()
    rig = Rig(store, page_size=7)
    assert type(rig.gate.bloom) is BloomFilter  # one layer: the plain filter, no hot-path cost
    keys = write_many(store, 100, 200)
    while rig.follower.position != store.head:
        rig.poll()
        assert absent(rig, keys[: rig.follower.position]) == []  # never a false negative
    bloom = rig.gate.bloom
    assert isinstance(bloom, BloomLayers) and len(bloom.layers) >= 3  # 10, 20, 60, 180
    stats = rig.stats.to_dict()
    assert stats["bloom_layers"] == len(bloom.layers)
    assert 0 < stats["bloom_fill"] <= 1.0
    assert 0 < stats["bloom_estimated_fp"] < 1.5 * FP
    # the layers' design rates add up to less than 1.5 x the snapshot's
    unlabeled = [f"user:{i}" for i in range(20_000)]
    assert bloom.contains_many(unlabeled).mean() < 1.5 * FP


def test_a_growth_asks_for_a_fresh_snapshot_at_the_next_poll() -> None:
    store = FakeStore(design=4)
    store.build()
    rig = Rig(store)
    write_many(store, 0, 10)
    rig.poll()  # the filter grows; the clock does not move
    assert isinstance(rig.gate.bloom, BloomLayers) and store.loads == 1
    rig.poll()  # no new build yet: the store answers "unchanged" (a 304)
    assert store.loads == 1 and isinstance(rig.gate.bloom, BloomLayers)
    store.design = 64
    store.build()  # the store rebuilt, with headroom
    rig.poll()  # not due for 5 s, so it waits its turn
    assert store.loads == 1
    rig.now[0] += 5.0
    rig.poll()  # at the head: installed at once, one layer again
    assert store.loads == 2 and type(rig.gate.bloom) is BloomFilter
    assert rig.stats.to_dict()["bloom_layers"] == 1
    write_many(store, 10, 5)
    rig.poll()
    assert type(rig.gate.bloom) is BloomFilter  # room for them: no growth
    assert absent(rig, [f"pin:{i}" for i in range(15)]) == []


def test_a_growth_brings_a_rebuilt_snapshot_in_early() -> None:
    store = FakeStore(design=4)
    store.build()
    rig = Rig(store)
    write_many(store, 0, 3)
    rig.poll()
    assert type(rig.gate.bloom) is BloomFilter
    store.design = 64
    store.build()  # rebuilt, but the next scheduled load is 5 s away
    write_many(store, 3, 10)
    rig.poll()  # grows: the next load is due now
    assert isinstance(rig.gate.bloom, BloomLayers) and store.loads == 1
    rig.poll()  # loads the snapshot at 3 < 13: staged; rewinds to 3 and replays 4..13
    assert store.loads == 2 and rig.follower.position == 13
    assert isinstance(rig.gate.bloom, BloomLayers)  # the grown filter serves meanwhile
    assert absent(rig, [f"pin:{i}" for i in range(13)]) == []
    rig.poll()  # caught up: the staged filter serves, with room for 64 keys
    assert type(rig.gate.bloom) is BloomFilter and rig.gate.seq == 3
    assert absent(rig, [f"pin:{i}" for i in range(13)]) == []


def test_a_staged_snapshot_grows_while_it_replays() -> None:
    store = FakeStore(design=5)
    store.build()
    rig = Rig(store)
    keys = write_many(store, 0, 30)
    store.build(behind=30)  # a lagging replica's snapshot at 0, full at 5 keys
    rig.poll()  # grows: the next load is due now
    assert rig.follower.poll_hooks[0].before_poll(store.head) == 0  # older: staged, rewind
    rig.follower.position = 0
    active = rig.gate.bloom
    rig.follower.poll_once(store)  # replays 1..30 into both: each grows
    assert rig.gate.bloom is active  # not served before it has caught up
    rig.follower.poll_once(store)
    staged = rig.gate.bloom
    assert staged is not active and isinstance(staged, BloomLayers)
    assert absent(rig, keys) == []


def test_a_filter_assigned_from_outside_is_adopted_and_grows() -> None:
    """As bench_end_to_end swaps in an offline snapshot: its design comes from the default
    rate, and feed adds still reach the filter that serves."""
    store = FakeStore()
    store.build()
    rig = Rig(store)
    mine = BloomFilter.for_capacity(20, FP)
    rig.gate.bloom = mine
    keys = write_many(store, 0, 3)
    rig.poll()
    assert rig.gate.bloom is mine and absent(rig, keys) == []
    keys += write_many(store, 3, capacity_at(mine, FP))
    rig.poll()
    grown = rig.gate.bloom
    assert isinstance(grown, BloomLayers) and grown.layers[0] is mine
    assert absent(rig, keys) == []


def test_an_older_store_without_a_design_point_gets_the_default_rate() -> None:
    store = FakeStore()  # design None: no X-Bloom-Capacity / X-Bloom-FP-Rate
    store.build()  # sized for 64 keys at 1%
    rig = Rig(store)
    served = store.served
    assert served is not None
    write_many(store, 0, capacity_at(served, FP) - served.key_count)
    rig.poll()
    assert type(rig.gate.bloom) is BloomFilter  # full to its design point, not past it
    write_many(store, 1000, 10)
    rig.poll()
    assert isinstance(rig.gate.bloom, BloomLayers)


def test_gauges_without_a_filter() -> None:
    stats = Stats()
    BloomGate(lambda etag, timeout: None, stats, BloomSettings(enabled=False))
    out = stats.to_dict()
    assert (out["bloom_fill"], out["bloom_layers"], out["bloom_estimated_fp"]) == (0, 0, 0)
