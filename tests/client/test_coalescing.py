"""Request coalescing, for the thread fetcher and the asyncio fetcher alike.

Deterministic: the fake store holds every read until the test releases it,
the window clock is a fake the test advances, and the tests wait for states
(keys queued, reads in flight) by polling with a deadline, never for time.
Each test runs against both faces: `SyncFace` calls SingleFlightFetcher.fetch
on threads; `AsyncFace` runs AsyncSingleFlightFetcher on an event loop in a
thread and submits coroutines to it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforce_sdk import Enforcement, Label, Source, SourceType, StoreUnavailableError
from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.async_fetch import AsyncSingleFlightFetcher
from enforce_sdk.client.cache import LabelCache
from enforce_sdk.client.client import EnforcementClient
from enforce_sdk.client.coalesce import BatchQueue, FetchOutcome, Flight
from enforce_sdk.client.fetch import SingleFlightFetcher
from enforce_sdk.client.follower import FeedFollower
from enforce_sdk.client.stats import Stats
from enforce_sdk.model.records import Action, ChangeRecord
from tests.client.test_client_unit import CONFIG, NOW
from tests.helpers import FakeClock

DEADLINE = 10.0


def label(entity: str) -> Label:
    return Label(
        entity,
        Source("review_tool", SourceType.HUMAN, "a"),
        Enforcement.BLOCK,
        "spam",
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def eventually(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.002)


async def eventually_async(cond: Callable[[], bool], what: str) -> None:
    """`eventually` for a coroutine: polls without blocking its event loop."""
    deadline = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.002)


class GatedStore:
    """Every read blocks until `release` is set; records requests and peak concurrency.

    A read answers what was labeled when it began (a write during it is not seen).
    """

    def __init__(self, labeled: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.labeled = labeled
        self.requests: list[list[str]] = []
        self.release = threading.Event()
        self.fail: Exception | None = None
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        with self._lock:
            self.requests.append(list(keys))
            self.active += 1
            self.peak = max(self.peak, self.active)
            answer = {k: [label(k)] for k in keys if k in self.labeled}  # as of the read's start
        try:
            assert self.release.wait(DEADLINE)
            if self.fail is not None:
                raise self.fail
            return answer
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        pass


class SyncFace:
    def __init__(self, store: GatedStore, clock: FakeClock, **kw: Any) -> None:
        self.stats = Stats()
        self.cache = LabelCache(max_entries=10_000, ttl=60, negative_ttl=60, serve_stale_for=60)
        self.fetcher = SingleFlightFetcher(
            store.get_many, self.cache, self.stats, wait_timeout=DEADLINE, clock=clock, **kw
        )

    def submit(self, keys: list[str]) -> Future[FetchOutcome]:
        fut: Future[FetchOutcome] = Future()
        threading.Thread(
            target=lambda: fut.set_result(self.fetcher.fetch(keys)), daemon=True
        ).start()
        return fut

    def in_flight(self) -> tuple[int, int]:
        return self.fetcher.in_flight()

    def close(self) -> None:
        pass


class AsyncFace:
    def __init__(self, store: GatedStore, clock: FakeClock, **kw: Any) -> None:
        self.stats = Stats()
        self.cache = LabelCache(max_entries=10_000, ttl=60, negative_ttl=60, serve_stale_for=60)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def read(keys: list[str]) -> Mapping[str, Sequence[Label]]:
            return await asyncio.to_thread(store.get_many, keys)

        async def build() -> AsyncSingleFlightFetcher:
            return AsyncSingleFlightFetcher(
                read, self.cache, self.stats, wait_timeout=DEADLINE, clock=clock, **kw
            )

        self.fetcher = asyncio.run_coroutine_threadsafe(build(), self.loop).result(DEADLINE)

    def submit(self, keys: list[str]) -> Future[FetchOutcome]:
        return asyncio.run_coroutine_threadsafe(self.fetcher.fetch(keys), self.loop)

    def in_flight(self) -> tuple[int, int]:
        async def read() -> tuple[int, int]:
            return self.fetcher.in_flight()

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(DEADLINE)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fetcher.aclose(), self.loop).result(DEADLINE)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)
        self.loop.close()


Face = SyncFace | AsyncFace
MakeFace = Callable[..., Face]


@pytest.fixture(params=["threads", "asyncio"])
def make_face(request: pytest.FixtureRequest) -> Iterator[MakeFace]:
    made: list[Face] = []
    stores: list[GatedStore] = []

    def make(store: GatedStore, clock: FakeClock | None = None, **kw: Any) -> Face:
        kw.setdefault("max_batch_keys", 100)
        cls = SyncFace if request.param == "threads" else AsyncFace
        face = cls(store, clock or FakeClock(), **kw)
        made.append(face)
        stores.append(store)
        return face

    yield make
    for store in stores:
        store.release.set()
    for face in made:
        face.close()


def test_a_caller_alone_is_sent_at_once_whatever_the_window(make_face: MakeFace) -> None:
    store = GatedStore({"pin:1"})
    store.release.set()
    face = make_face(store, window=3600.0)  # the clock never moves: only "nothing in flight" sends
    outcome = face.submit(["pin:1", "pin:2"]).result(DEADLINE)
    assert outcome.error is None and outcome.labels == {"pin:1": (label("pin:1"),), "pin:2": ()}
    assert store.requests == [["pin:1", "pin:2"]]


def test_misses_arriving_while_a_read_is_in_flight_are_merged_into_one_batch(
    make_face: MakeFace,
) -> None:
    store = GatedStore({"pin:5"})
    face = make_face(store, window=3600.0)
    first = face.submit(["pin:0"])
    eventually(lambda: len(store.requests) == 1, "the first read")
    later = [face.submit([f"pin:{i}", "pin:0"]) for i in range(1, 9)]
    eventually(lambda: face.in_flight() == (1, 8), "eight keys queued behind the read")
    assert len(store.requests) == 1  # nothing else went while the window is open
    store.release.set()
    results = [f.result(DEADLINE) for f in (first, *later)]
    assert len(store.requests) == 2
    assert sorted(store.requests[1]) == sorted(f"pin:{i}" for i in range(1, 9))
    assert all(r.error is None and r.labels["pin:0"] == () for r in results)
    assert results[5].labels["pin:5"] == (label("pin:5"),)
    assert face.stats.fetches == 2 and face.stats.coalesced_waits == 8  # pin:0 single flight


def test_waiting_keys_go_when_the_window_closes_even_with_a_read_in_flight(
    make_face: MakeFace,
) -> None:
    store = GatedStore()
    clock = FakeClock()
    face = make_face(store, clock, window=0.01)
    face.submit(["pin:0"])
    eventually(lambda: len(store.requests) == 1, "the first read")
    face.submit(["pin:1"])
    face.submit(["pin:2"])
    eventually(lambda: face.in_flight() == (1, 2), "two keys queued")
    clock.now += 0.011  # the window is over
    eventually(lambda: len(store.requests) == 2, "the queued keys sent")
    assert sorted(store.requests[1]) == ["pin:1", "pin:2"]
    assert face.in_flight() == (2, 0)


def test_no_more_than_max_in_flight_reads_and_the_rest_wait_for_a_slot(
    make_face: MakeFace,
) -> None:
    store = GatedStore()
    face = make_face(store, window=0.0, max_in_flight=2)
    futures = [face.submit([f"pin:{i}"]) for i in range(2)]
    eventually(lambda: len(store.requests) == 2, "two reads in flight")
    futures += [face.submit([f"pin:{i}"]) for i in range(2, 6)]
    eventually(lambda: face.in_flight() == (2, 4), "four keys waiting for a slot")
    assert len(store.requests) == 2
    store.release.set()
    assert all(f.result(DEADLINE).error is None for f in futures)
    assert store.peak <= 2
    assert sorted(k for r in store.requests for k in r) == sorted(f"pin:{i}" for i in range(6))
    assert len(store.requests) <= 4  # the four waiting keys went in at most two batches


def test_batches_are_bounded_by_the_store_limit(make_face: MakeFace) -> None:
    store = GatedStore()
    face = make_face(store, window=3600.0, max_batch_keys=3)
    first = face.submit(["pin:0"])
    eventually(lambda: len(store.requests) == 1, "the first read")
    later = face.submit([f"pin:{i}" for i in range(1, 8)])
    eventually(lambda: face.in_flight()[1] + sum(map(len, store.requests[1:])) == 7, "queued")
    store.release.set()
    assert later.result(DEADLINE).error is None and first.result(DEADLINE).error is None
    assert all(len(r) <= 3 for r in store.requests)
    assert sorted(k for r in store.requests[1:] for k in r) == sorted(
        f"pin:{i}" for i in range(1, 8)
    )


def test_a_failed_read_reaches_every_caller_it_carried(make_face: MakeFace) -> None:
    store = GatedStore()
    store.fail = StoreUnavailableError("connection refused")
    face = make_face(store, window=3600.0)
    first = face.submit(["pin:0"])
    eventually(lambda: len(store.requests) == 1, "the first read")
    others = [face.submit([f"pin:{i}"]) for i in (1, 2)]
    eventually(lambda: face.in_flight() == (1, 2), "queued")
    store.release.set()
    outcomes = [f.result(DEADLINE) for f in (first, *others)]
    assert all(isinstance(o.error, StoreUnavailableError) and not o.labels for o in outcomes)
    assert face.stats.fetch_errors == 2 and face.cache.entry("pin:1") is None
    store.fail = None  # nothing stays in flight: the next caller asks again
    assert face.submit(["pin:1"]).result(DEADLINE).error is None


# -- reads racing the change feed ----------------------------------------------------------


class OneChange:
    """A change feed (FeedReader) whose only record is a write of `entity`."""

    def __init__(self, entity: str) -> None:
        self.record = ChangeRecord(1, entity, "s/human/n", Action.PUT, NOW, True)

    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> Any:
        page = [self.record] if after < 1 else []
        return SimpleNamespace(changes=page, head=1, next=1)

    def close(self) -> None:
        pass


def feed_applies_a_write_of(face: Face, entity: str) -> None:
    """What the follower does when the store's feed shows a write of `entity`: evict it."""
    feed = OneChange(entity)
    follower = FeedFollower(lambda: feed, face.cache, face.stats, wait=0)
    follower.position = 0
    assert follower.poll_once(feed) == 1


def test_a_read_in_flight_when_the_feed_evicts_its_key_is_answered_but_not_cached(
    make_face: MakeFace,
) -> None:
    store = GatedStore({"pin:1", "pin:2"})
    face = make_face(store, window=0.0)
    pending = face.submit(["pin:1", "pin:2", "pin:3"])
    eventually(lambda: len(store.requests) == 1, "the read in flight")
    store.labeled = {"pin:2"}  # pin:1's label is retracted now; the read began before
    feed_applies_a_write_of(face, "pin:1")
    store.release.set()
    outcome = pending.result(DEADLINE)
    assert outcome.labels["pin:1"] == (label("pin:1"),)  # its callers get what was read
    assert face.cache.entry("pin:1") is None  # ... but the old labels are not cached
    assert face.cache.get_fresh("pin:2") == (label("pin:2"),)  # keys not evicted are
    assert face.cache.get_fresh("pin:3") == ()
    later = face.submit(["pin:1"]).result(DEADLINE)
    assert later.labels["pin:1"] == () and len(store.requests) == 2


def test_a_miss_after_the_feed_evicted_a_key_does_not_join_the_older_read(
    make_face: MakeFace,
) -> None:
    store = GatedStore({"pin:1"})
    face = make_face(store, window=0.0)
    before = face.submit(["pin:1"])
    eventually(lambda: len(store.requests) == 1, "the read in flight")
    store.labeled = set()  # retracted after that read began
    feed_applies_a_write_of(face, "pin:1")
    after = face.submit(["pin:1"])  # a check that starts after the feed said so
    eventually(lambda: len(store.requests) == 2, "a read of its own")
    also = face.submit(["pin:1"])  # joins the newer read
    eventually(lambda: face.stats.coalesced_waits == 1, "the third caller to join")
    store.release.set()
    assert before.result(DEADLINE).labels["pin:1"] == (label("pin:1"),)
    assert after.result(DEADLINE).labels["pin:1"] == ()
    assert also.result(DEADLINE).labels["pin:1"] == ()
    assert face.cache.get_fresh("pin:1") == ()
    assert len(store.requests) == 2 and face.in_flight() == (0, 0)


def test_the_sync_client_coalesces_concurrent_checks() -> None:
    store = GatedStore({"pin:3"})
    client = EnforcementClient(
        "http://unused",
        CONFIG,
        store=store,
        coalesce_window=3600.0,
        wall_clock=lambda: NOW.timestamp(),
    )
    results: dict[int, bool] = {}

    def check(i: int) -> None:
        results[i] = client.check(f"pin:{i}", "home_feed").visible

    threads = [threading.Thread(target=check, args=(i,)) for i in range(20)]
    threads[0].start()
    eventually(lambda: len(store.requests) == 1, "the first read")
    for t in threads[1:]:
        t.start()
    eventually(lambda: client._fetcher.in_flight() == (1, 19), "19 keys queued")
    store.release.set()
    for t in threads:
        t.join(DEADLINE)
    assert results == {i: i != 3 for i in range(20)}
    assert client.stats.fetches == 2 and client.stats.fetched_keys == 20
    client.close()


def test_the_async_client_coalesces_concurrent_checks() -> None:
    store = GatedStore({"pin:3"})

    class Reader:
        async def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
            return await asyncio.to_thread(store.get_many, keys)

        async def aclose(self) -> None:
            pass

    client = AsyncEnforcementClient(
        "http://unused",
        CONFIG,
        store=Reader(),
        coalesce_window=3600.0,
        wall_clock=lambda: NOW.timestamp(),
    )

    async def scenario() -> list[bool]:
        first = asyncio.create_task(client.check("pin:0", "home_feed"))
        await eventually_async(lambda: bool(store.requests), "the first read")
        rest = [asyncio.create_task(client.check(f"pin:{i}", "home_feed")) for i in range(1, 20)]
        await eventually_async(lambda: client._fetcher().in_flight() == (1, 19), "19 keys queued")
        store.release.set()
        decisions = await asyncio.gather(first, *rest)
        await client.aclose()
        return [d.visible for d in decisions]

    assert asyncio.run(asyncio.wait_for(scenario(), DEADLINE)) == [i != 3 for i in range(20)]
    assert client.stats.fetches == 2 and client.stats.fetched_keys == 20


# -- BatchQueue properties --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(st.lists(st.integers(0, 30), max_size=12), max_size=12),
    max_batch=st.integers(1, 8),
    max_in_flight=st.integers(1, 4),
)
def test_every_key_is_sent_exactly_once_within_the_bounds(
    arrivals: list[list[int]], max_batch: int, max_in_flight: int
) -> None:
    clock = FakeClock()
    queue: BatchQueue[object] = BatchQueue(
        max_batch_keys=max_batch, max_in_flight=max_in_flight, window=1.0, clock=clock
    )
    sent: list[Flight[object]] = []
    open_batches: list[Flight[object]] = []
    claimed = 0
    for keys in arrivals:
        mine, _ = queue.claim([f"k{k}" for k in keys], object)
        claimed += len(mine)
        while queue.ready(clock()):
            batch = queue.take()
            assert 0 < len(batch) <= max_batch
            sent.append(batch)
            open_batches.append(batch)
        assert queue.in_flight == len(open_batches) <= max_in_flight
        clock.now += 0.5
        if open_batches and len(open_batches) == max_in_flight:
            queue.done(open_batches.pop(0))
    while queue.pending or open_batches:
        if open_batches:
            queue.done(open_batches.pop(0))
        while queue.ready(clock()):
            batch = queue.take()
            sent.append(batch)
            open_batches.append(batch)
    flat = [k for b in sent for k in b]
    assert len(flat) == claimed  # each claimed key went exactly once
    assert set(flat) == {f"k{k}" for keys in arrivals for k in keys}
    for batch in sent:  # single flight: a key is never twice in one batch
        assert len(batch) == len(set(batch))
    assert queue.futures == {} and queue.in_flight == 0


@pytest.mark.parametrize("client_cls", [EnforcementClient, AsyncEnforcementClient])
@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"coalesce_window": -0.001}, "coalesce_window"),
        ({"coalesce_window": "1ms"}, "coalesce_window"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": 2.5}, "max_in_flight"),
    ],
)
def test_bad_coalescing_arguments_are_refused_naming_the_argument(
    client_cls: type, kw: dict[str, Any], field: str
) -> None:
    from enforce_sdk import InvalidInputError

    with pytest.raises(InvalidInputError) as exc:
        client_cls("http://unused", CONFIG, **kw)
    assert exc.value.field == field
