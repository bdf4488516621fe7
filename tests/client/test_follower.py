"""FeedFollower against a fake feed: eviction, listeners, resync past retention, errors, fork."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from enforce_sdk import FeedTooOldError, StoreResponseError, StoreUnavailableError
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
        records = list(self.records)  # one view: a test thread may add() meanwhile
        head = len(records)
        if after < self.oldest - 1:
            raise FeedTooOldError(410, {"error": "too_old", "oldest": self.oldest, "head": head})
        page = [r for r in records if r.seq > after][:limit]
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


class PoisonedFeed(FakeFeed):
    """A feed whose next page is replaced, once, by a malformed one."""

    poison: Page | None = None

    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> Page:
        poison, self.poison = self.poison, None
        if poison is not None and after > 0:
            self.calls += 1
            return poison
        return super().changes(after, limit, wait)


def _rec(seq: object, entity: object = "pin:x") -> ChangeRecord:
    return ChangeRecord(seq, entity, "s/human/n", Action.PUT, AT, True)  # type: ignore[arg-type]


@pytest.mark.parametrize("poison", [
    Page([], head=3, next=-5),  # cursor before the start
    Page([], head=3, next=2**80),  # absurd cursor
    Page([], head=2**80, next=2**80),  # absurd head
    Page([], head=3, next=1),  # backwards from 2
    Page([], head=3, next=9),  # past the head
    Page([_rec(3), _rec(2)], head=3, next=3),  # records descending
    Page([_rec("3")], head=3, next=3),  # a seq of the wrong type
    Page([_rec(3, entity=None)], head=3, next=3),  # a record without an entity
], ids=["negative", "past-2^63", "absurd-head", "backwards", "past-head", "descending",
        "seq-type", "no-entity"])
def test_a_malformed_page_is_counted_and_answered_with_a_resync(poison: Page) -> None:
    feed = PoisonedFeed()
    feed.add("pin:a")
    feed.add("pin:b")
    follower, cache, stats, rec = setup(feed)
    follower.poll_once(feed)  # starts at the head, 2
    assert follower.position == 2
    cache.fill({}, ["pin:z"])
    feed.add("pin:c")
    feed.poison = poison
    assert follower.poll_once(feed) == 0
    assert stats.feed_bad_pages == 1 and rec.resyncs == [3] and follower.position == 3
    assert len(cache) == 0  # what the malformed page hid is unknown: the cache is dropped
    feed.add("pin:d")  # and it keeps following
    assert follower.poll_once(feed) == 1 and rec.seen == ["pin:d"] and follower.position == 4


def test_an_absurd_head_on_resync_is_not_followed() -> None:
    follower, _cache, _stats, _rec = setup(FakeFeed())

    class AbsurdHead(FakeFeed):
        def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> Page:
            return Page([], head=2**80, next=0)

    with pytest.raises(StoreResponseError, match="is not a sequence number"):
        follower.poll_once(AbsurdHead())
    assert follower.position is None  # the loop retries with backoff; nothing followed
