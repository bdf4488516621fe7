"""BloomGate with a FeedFollower over an in-process fake store: the no-false-negative invariant.

The fake keeps the whole history, so "is k labeled as of position q" is known
exactly, and serves the snapshot of its last build (which may be older than the
follower's position, the case the rewind exists for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforce_sdk._errors import FeedTooOldError, StoreUnavailableError
from enforce_sdk.client.bloom_gate import BloomGate
from enforce_sdk.client.cache import LabelCache
from enforce_sdk.client.follower import FeedFollower
from enforce_sdk.client.stats import Stats
from enforce_sdk.config.document import BloomSettings
from enforce_sdk.model.records import Action, ChangeRecord
from enforce_sdk.native.bloom import BloomFilter
from enforce_sdk.store_client.client import BloomDownload

AT = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = [f"pin:{i}" for i in range(12)]


@dataclass
class Page:
    changes: list[ChangeRecord]
    head: int
    next: int


@dataclass
class FakeStore:
    """Change feed, label history and bloom snapshots of a store, in memory."""

    records: list[ChangeRecord] = field(default_factory=list)
    oldest: int = 1
    served: BloomFilter | None = None
    builds: int = 0
    down: bool = False
    loads: int = 0
    design: int | None = None  # the capacity its snapshots say they were sized for (X-Bloom-Capacity)
    # called with `wait` when a poll finds nothing new and may wait: a long-poll's time passes
    on_wait: Callable[[float], None] | None = None

    @property
    def head(self) -> int:
        return len(self.records)

    def write(self, entity: str, labeled: bool) -> None:
        action = Action.PUT if labeled else Action.DELETE
        self.records.append(ChangeRecord(self.head + 1, entity, "s/human/n", action, AT, labeled))

    def labeled_at(self, entity: str, q: int) -> bool:
        state = False
        for r in self.records[:q]:
            if r.entity == entity:
                state = r.labeled
        return state

    def build(self, behind: int = 0) -> None:
        """What the store does: head first, then every key labeled as of it.

        `behind` > 0 builds as of an older position (a lagging replica's snapshot).
        """
        seq = max(0, self.head - behind)
        bloom = BloomFilter.for_capacity(64, 0.01)
        bloom.add_many([k for k in KEYS if self.labeled_at(k, seq)] or ["none:x"])
        bloom.seq = seq
        self.served = bloom
        self.builds += 1

    def prune_all(self) -> None:
        self.oldest = self.head + 1

    # the FeedReader face
    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> Page:
        if self.down:
            raise StoreUnavailableError("down")
        if after < self.oldest - 1:
            raise FeedTooOldError(410, {"error": "too_old", "oldest": self.oldest,
                                        "head": self.head})
        page = [r for r in self.records if r.seq > after][:limit]
        if not page and wait > 0 and self.on_wait is not None:
            self.on_wait(wait)
        return Page(page, self.head, page[-1].seq if page else after)

    def close(self) -> None:
        pass

    # the snapshot loader face
    def load(self, etag: str | None, timeout: float) -> BloomDownload | None:
        if self.down:
            raise StoreUnavailableError("down")
        assert self.served is not None
        tag = f"b{self.builds}"
        if etag == tag:
            return None
        self.loads += 1
        return BloomDownload(BloomFilter.from_bytes(self.served.to_bytes()), tag, self.design,
                             None if self.design is None else 0.01)


class Rig:
    """A follower driven by hand (no thread) with a gate, as the core wires them."""

    def __init__(
        self, store: FakeStore, *, page_size: int = 1000, wait: float = 0.0,
        max_staleness: float = 30.0,
    ) -> None:
        self.store = store
        self.now = [0.0]
        self.stats = Stats()
        cache = LabelCache(max_entries=100, ttl=3600, negative_ttl=3600, serve_stale_for=0)
        self.follower = FeedFollower(lambda: store, cache, self.stats, wait=wait,
                                     page_size=page_size, max_backoff=0.0,
                                     timer=lambda: self.now[0])
        self.gate = BloomGate(store.load, self.stats,
                              BloomSettings(enabled=True, max_staleness=max_staleness,
                                            refresh_interval=5.0),
                              timer=lambda: self.now[0])
        self.follower.listeners.append(self.gate)
        self.follower.poll_hooks.append(self.gate)
        self.resyncs = 0
        self.follower.listeners.append(self)
        self.follower.position = self.gate.load_initial()
        self.high_water = self.follower.position or 0

    def poll(self) -> None:
        """One poll; the applied position is the highest reached since the last resync."""
        resyncs = self.resyncs
        self.follower.poll_once(self.store)
        position = self.follower.position
        assert position is not None
        if self.resyncs > resyncs:  # the SDK now knows only what the new snapshot says
            self.high_water = position
        self.high_water = max(self.high_water, position)

    # a second listener, to see resyncs
    def on_changes(self, changes: object) -> None:
        pass

    def on_resync(self, head: int) -> None:
        self.resyncs += 1

    def false_negatives(self) -> list[str]:
        """Keys labeled as of the applied position (and still labeled) the gate calls absent."""
        return self.absent_labeled_since(self.high_water)

    def absent_labeled_since(self, position: int) -> list[str]:
        """Keys labeled from `position` to the head that the active filter calls absent."""
        bloom = self.gate.bloom
        if bloom is None:
            return []
        head = self.store.head
        return [
            k for k in KEYS
            if all(self.store.labeled_at(k, q) for q in range(position, head + 1))
            and k not in bloom
        ]


def test_scheduled_reload_at_an_older_snapshot_replays_before_serving() -> None:
    store = FakeStore()
    store.write("pin:0", True)
    store.build()  # S = 1
    rig = Rig(store)
    assert rig.follower.position == 1 and "pin:0" in rig.gate.bloom  # type: ignore[operator]
    store.write("pin:1", True)  # 2
    store.write("pin:2", True)  # 3
    store.build()  # S2 = 3
    store.write("pin:3", True)  # 4
    store.write("pin:4", True)  # 5
    rig.poll()
    assert rig.follower.position == 5 and not rig.false_negatives()
    # The store now serves its snapshot at 3, older than the follower's 5.
    rig.now[0] += 10
    old_active = rig.gate.bloom
    assert rig.follower.poll_hooks[0].before_poll(5) == 3  # rewind to S2
    assert rig.gate.bloom is old_active  # the S2 filter is not serving yet: it lacks 4 and 5
    assert "pin:3" in old_active and "pin:4" in old_active  # type: ignore[operator]
    rig.follower.position = 3
    rig.follower.poll_once(store)  # replays 4..5 into both filters
    assert rig.follower.position == 5
    rig.follower.poll_once(store)  # before_poll: caught up -> swap
    assert rig.gate.bloom is not old_active and rig.gate.seq == 3
    swapped = rig.gate.bloom
    assert swapped is not None
    assert all(k in swapped for k in ("pin:0", "pin:1", "pin:2", "pin:3", "pin:4"))
    assert rig.stats.snapshot_loads == 2


def test_a_newer_snapshot_replaces_the_filter_at_once_and_drops_retracted_keys() -> None:
    store = FakeStore()
    store.write("pin:0", True)
    store.build()
    rig = Rig(store)
    store.write("pin:0", False)
    rig.poll()
    assert "pin:0" in rig.gate.bloom  # type: ignore[operator]  # a filter never forgets...
    store.build()
    rig.now[0] += 10
    rig.poll()
    assert rig.gate.seq == 2 and "pin:0" not in rig.gate.bloom  # type: ignore[operator]


def test_unchanged_snapshot_is_not_downloaded_again() -> None:
    store = FakeStore()
    store.build()
    rig = Rig(store)
    rig.now[0] += 10
    rig.poll()
    assert store.loads == 1 and rig.stats.snapshot_loads == 1


def test_failed_initial_load_means_no_negatives_until_a_load_succeeds() -> None:
    store = FakeStore()
    store.write("pin:0", True)
    store.build()
    store.down = True
    rig = Rig(store)
    assert rig.gate.bloom is None and rig.follower.position is None
    store.down = False
    rig.poll()  # follower starts at head
    assert rig.gate.bloom is None
    rig.now[0] += 10
    rig.poll()  # load: snapshot at 1 == position -> installed at once
    assert rig.gate.bloom is not None and "pin:0" in rig.gate.bloom


def test_feed_past_retention_reloads_the_snapshot_and_follows_from_its_seq() -> None:
    store = FakeStore()
    store.build()
    rig = Rig(store)
    store.write("pin:5", True)
    store.write("pin:6", True)
    store.build()  # 2
    store.write("pin:7", True)  # 3
    store.oldest = 3  # records 1..2 pruned; position 0 is too old
    rig.poll()
    assert rig.follower.position == 2 and rig.gate.seq == 2 and rig.resyncs == 1
    rig.poll()
    assert rig.follower.position == 3
    assert all(k in rig.gate.bloom for k in ("pin:5", "pin:6", "pin:7"))  # type: ignore[operator]


def test_disabling_drops_the_filter_and_enabling_loads_one() -> None:
    store = FakeStore()
    store.build()
    rig = Rig(store)
    rig.gate.configure(BloomSettings(enabled=False))
    assert rig.gate.bloom is None and rig.follower.poll_hooks[0].before_poll(0) is None
    rig.gate.configure(BloomSettings(enabled=True))
    rig.poll()
    assert rig.gate.bloom is not None


def test_a_snapshot_older_than_the_feed_retention_is_reported_stale() -> None:
    store = FakeStore()
    store.write("pin:0", True)
    store.build()  # S = 1: the only snapshot the store will serve
    rig = Rig(store)
    rig.poll()
    assert not rig.gate.stale()
    store.write("pin:1", True)  # 2
    store.write("pin:2", True)  # 3
    store.prune_all()  # the feed now starts after 3: the snapshot at 1 is older than that
    for _ in range(10):  # 50 s of "too old -> reload the same snapshot -> too old"
        rig.now[0] += 5.0
        rig.poll()
    assert rig.resyncs == 10 and rig.gate.seq == 1
    assert rig.gate.bloom is not None and "pin:1" not in rig.gate.bloom  # labeled, absent...
    assert rig.gate.stale()  # ... and said so (max_staleness 30 s)
    assert rig.follower.lag() >= 50.0  # a resync is not a poll applied
    store.build()  # the store rebuilds: the next resync follows on from 3, at the head
    rig.poll()
    rig.poll()
    assert rig.gate.seq == 3 and not rig.gate.stale()


def test_an_idle_long_poll_keeps_the_filter_fresh_and_an_overdue_one_does_not() -> None:
    store = FakeStore()
    store.write("pin:0", True)
    store.build()
    rig = Rig(store, wait=10.0, max_staleness=5.0)  # max_staleness below the feed's wait
    seen: list[bool] = []

    def idle(wait: float) -> None:  # nothing changes while the store holds the poll
        for _ in range(4):
            rig.now[0] += wait / 4
            seen.append(rig.gate.stale())

    store.on_wait = idle
    rig.poll()  # the first poll after the start asks without waiting: it learns the head
    assert seen == [] and not rig.gate.stale()
    for _ in range(3):
        rig.poll()  # 10 s each
    assert seen == [False] * 12 and not rig.gate.stale()

    def overdue(wait: float) -> None:  # the poll hangs past its wait, then times out
        rig.now[0] += wait + 2.0
        seen.append(rig.gate.stale())
        raise StoreUnavailableError("read timeout")

    store.on_wait = overdue
    with pytest.raises(StoreUnavailableError):
        rig.follower.poll_once(store)
    assert seen[-1] and rig.gate.stale()
    store.on_wait = idle
    rig.poll()  # after a failure: no wait, at the head again
    assert not rig.gate.stale()
    store.down = True  # now polls fail at once: stale after max_staleness, not after the wait
    with pytest.raises(StoreUnavailableError):
        rig.follower.poll_once(store)
    rig.now[0] += 4.0
    assert not rig.gate.stale()
    rig.now[0] += 2.0
    assert rig.gate.stale()


def test_turning_the_gate_off_during_a_snapshot_download_leaves_no_filter() -> None:
    store = FakeStore()
    store.build()
    gates: list[BloomGate] = []

    def load_then_disable(etag: str | None, timeout: float) -> BloomDownload | None:
        got = store.load(etag, timeout)
        gates[0].configure(BloomSettings(enabled=False))  # a config swap meanwhile
        return got

    gate = BloomGate(load_then_disable, Stats(), BloomSettings(enabled=True))
    gates.append(gate)
    assert gate.load_initial() is None and gate.bloom is None  # the initial load
    rig = Rig(store)
    gates[0] = rig.gate
    rig.gate._load = load_then_disable
    store.write("pin:1", True)
    store.prune_all()
    rig.poll()  # too old: resync, whose download the swap overtakes
    assert rig.resyncs == 1 and not rig.gate.enabled and rig.gate.bloom is None
    assert rig.follower.position == store.head  # followed from the head, not a snapshot


OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(KEYS[:6]), st.booleans()),
    st.tuples(st.just("build"), st.integers(0, 3)),
    st.tuples(st.just("poll"), st.booleans()),  # True: a scheduled snapshot load is due first
    st.tuples(st.just("prune")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=4, max_size=40), page_size=st.integers(1, 4),
       design=st.sampled_from([None, 1, 2]))
def test_never_absent_for_a_key_labeled_at_the_applied_position(
    ops: list[tuple[object, ...]], page_size: int, design: int | None
) -> None:
    """`design` 1 or 2: snapshots say they are full at 1 or 2 keys, so the active and the
    staged filters grow layers all along (None: the default rate's design point)."""
    store = FakeStore(design=design)
    store.build()
    rig = Rig(store, page_size=page_size)
    heads: list[tuple[float, int]] = [(rig.now[0], store.head)]  # (time, the store's head)
    for op in ops:
        if op[0] == "write":
            store.write(str(op[1]), bool(op[2]))
        elif op[0] == "build":
            store.build(int(op[1]))  # type: ignore[call-overload]
        elif op[0] == "prune":
            store.prune_all()
        else:
            if op[1]:
                rig.now[0] += 5.0
            rig.poll()
        heads.append((rig.now[0], store.head))
        assert rig.false_negatives() == [], (rig.high_water, rig.follower.position)
        # Not stale: behind the store by at most max_staleness, so every key labeled since
        # the store's head of max_staleness ago is in the filter (a resync is no excuse).
        if not rig.gate.stale():
            then = rig.now[0] - rig.gate.max_staleness
            old_head = max((h for t, h in heads if t < then), default=0)
            assert rig.absent_labeled_since(old_head) == [], (old_head, rig.follower.position)
    # Drained and reloaded, the gate is exact about the current head, and fresh.
    store.oldest = 1
    store.build()
    rig.now[0] += 5.0
    for _ in range(2 * len(store.records) + 4):
        rig.poll()
    assert rig.false_negatives() == []
    assert rig.follower.position == store.head
    assert not rig.gate.stale()
