"""FeedFollower against a fake feed: eviction, listeners, resync past retention, errors, fork."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from enforce_sdk import FeedTooOldError, StoreUnavailableError
from enforce_sdk.client.cache import LabelCache
from enforce_sdk.client.follower import FeedFollower
from enforce_sdk.client.stats import Stats
from enforce_sdk.model.records import Action, ChangeRecord

AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Page:
    changes: list[ChangeRecord]
    head: int
    next: int


@dataclass
class FakeFeed:
    records: list[ChangeRecord] = field(default_factory=list)
    oldest: int = 1
    fail: Exception | None = None
    calls: int = 0
    closed: bool = False

    def add(self, entity: str, labeled: bool = True) -> None:
        seq = len(self.records) + 1
        self.records.append(ChangeRecord(seq, entity, "s/human/n", Action.PUT, AT, labeled))

    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> Page:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        head = len(self.records)
        if after < self.oldest - 1:
            raise FeedTooOldError(410, {"error": "too_old", "oldest": self.oldest, "head": head})
        page = [r for r in self.records if r.seq > after][:limit]
        return Page(page, head, page[-1].seq if page else after)

    def close(self) -> None:
        self.closed = True


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.resyncs: list[int] = []

    def on_changes(self, changes: Sequence[ChangeRecord]) -> None:
        self.seen.extend(c.entity for c in changes)

    def on_resync(self, head: int) -> None:
        self.resyncs.append(head)


def setup(feed: FakeFeed) -> tuple[FeedFollower, LabelCache, Stats, Recorder]:
    now = [0.0]
    cache = LabelCache(max_entries=100, ttl=3600, negative_ttl=3600, serve_stale_for=0)
    stats = Stats()
    follower = FeedFollower(lambda: feed, cache, stats, wait=0, timer=lambda: now[0])
    recorder = Recorder()
    follower.listeners.append(recorder)
    return follower, cache, stats, recorder


def test_starts_at_head_then_evicts_changed_keys_and_tells_listeners() -> None:
    feed = FakeFeed()
    feed.add("pin:old")
    follower, cache, stats, rec = setup(feed)
    follower.poll_once(feed)
    assert follower.position == 1 and rec.seen == []  # history before start is not replayed
    cache.fill({}, ["pin:1", "pin:2"])
    feed.add("pin:1")
    assert follower.poll_once(feed) == 1
    assert cache.entry("pin:1") is None and cache.entry("pin:2") is not None
    assert rec.seen == ["pin:1"] and follower.position == 2 and stats.feed_changes == 1
    assert follower.lag() == 0.0


def test_position_past_retention_clears_cache_and_resyncs_listeners() -> None:
    feed = FakeFeed()
    follower, cache, _, rec = setup(feed)
    follower.position = 0
    for i in range(5):
        feed.add(f"pin:{i}")
    feed.oldest = 4  # changes 1..3 were pruned: position 0 is too old
    cache.fill({}, ["pin:9"])
    follower.poll_once(feed)
    assert rec.resyncs == [5] and follower.position == 5
    assert len(cache) == 0


def test_errors_are_counted_and_the_thread_keeps_going() -> None:
    feed = FakeFeed()
    feed.fail = StoreUnavailableError("down")
    follower, _, stats, rec = setup(feed)
    follower.start(position=0)
    deadline = time.monotonic() + 5
    while stats.feed_errors < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert follower.lag() == float("inf")
    feed.fail = None
    feed.add("pin:1")
    assert follower.wait_applied(1, timeout=5)
    assert rec.seen == ["pin:1"]
    follower.stop()
    assert feed.closed


def test_after_fork_restarts_a_running_follower_from_its_position() -> None:
    feed = FakeFeed()
    follower, _, _, rec = setup(feed)
    follower.start(position=0)
    assert follower.wait_applied(0, timeout=5)
    old_thread = follower._thread
    follower.after_fork()  # as in a child: the parent's thread is gone
    assert follower._thread is not None and follower._thread is not old_thread
    feed.add("pin:5")
    assert follower.wait_applied(1, timeout=5)
    follower.stop()
    if old_thread is not None:
        old_thread.join(2)
    assert not any(t.name == "enforce-sdk-feed" and t.is_alive() for t in threading.enumerate())
    assert rec.seen.count("pin:5") >= 1
