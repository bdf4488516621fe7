"""SingleFlightFetcher: concurrent misses of one key share one fetch; errors reach every waiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from enforce_sdk import Enforcement, Label, Source, SourceType, StoreUnavailableError
from enforce_sdk.client.cache import LabelCache
from enforce_sdk.client.fetch import SingleFlightFetcher
from enforce_sdk.client.stats import Stats


def label(entity: str) -> Label:
    return Label(
        entity=entity,
        source=Source("review_tool", SourceType.HUMAN, "alice"),
        enforcement=Enforcement.BLOCK,
        reason="spam",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class GatedStore:
    """A fake store whose fetches block until released, recording every request."""

    def __init__(self, labeled: set[str]) -> None:
        self.labeled = labeled
        self.requests: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail: Exception | None = None

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]:
        self.requests.append(list(keys))
        self.entered.set()
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        return {k: [label(k)] for k in keys if k in self.labeled}


def make(
    store: GatedStore, max_batch_keys: int = 1000
) -> tuple[SingleFlightFetcher, LabelCache, Stats]:
    cache = LabelCache(max_entries=1000, ttl=60, negative_ttl=10, serve_stale_for=60)
    stats = Stats()
    return (
        SingleFlightFetcher(
            store.get_many, cache, stats, max_batch_keys=max_batch_keys, wait_timeout=5
        ),
        cache,
        stats,
    )


def test_concurrent_misses_of_one_key_make_one_request() -> None:
    store = GatedStore({"pin:1"})
    fetcher, cache, stats = make(store)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(fetcher.fetch(["pin:1", "pin:2"])))
    first.start()
    assert store.entered.wait(5)
    others = [
        threading.Thread(target=lambda: results.append(fetcher.fetch(["pin:1"]))) for _ in range(5)
    ]
    for t in others:
        t.start()
    # release only once all five joined the read in flight (a late one would ask again)
    deadline = time.monotonic() + 10
    while stats.coalesced_waits < 5:
        assert time.monotonic() < deadline, "the other callers never joined the read"
        time.sleep(0.002)
    assert fetcher.in_flight() == (1, 0)
    store.release.set()
    for t in [first, *others]:
        t.join(10)
    assert store.requests == [["pin:1", "pin:2"]]
    assert stats.fetches == 1 and stats.coalesced_waits == 5
    assert all(r.labels["pin:1"] == (label("pin:1"),) and r.error is None for r in results)  # type: ignore[attr-defined]
    assert cache.get_fresh("pin:2") == ()


def test_fetch_error_reaches_owner_and_waiters_and_is_counted() -> None:
    store = GatedStore(set())
    store.fail = StoreUnavailableError("connection refused")
    fetcher, cache, stats = make(store)
    results: list[object] = []
    owner = threading.Thread(target=lambda: results.append(fetcher.fetch(["pin:1"])))
    owner.start()
    assert store.entered.wait(5)
    waiter = threading.Thread(target=lambda: results.append(fetcher.fetch(["pin:1"])))
    waiter.start()
    store.release.set()
    owner.join(10)
    waiter.join(10)
    assert len(results) == 2
    assert all(isinstance(r.error, StoreUnavailableError) for r in results)  # type: ignore[attr-defined]
    assert stats.fetch_errors == 1
    assert cache.entry("pin:1") is None
    # the key is no longer in flight: a later fetch asks the store again
    store.fail = None
    assert fetcher.fetch(["pin:1"]).error is None
    assert len(store.requests) == 2


def test_unexpected_exception_becomes_store_unavailable() -> None:
    store = GatedStore(set())
    store.release.set()
    store.fail = ValueError("garbage from the store")
    fetcher, _, _ = make(store)
    outcome = fetcher.fetch(["pin:1"])
    assert isinstance(outcome.error, StoreUnavailableError)
    assert "garbage" in str(outcome.error)


@pytest.mark.parametrize(("n", "chunks"), [(10, 1), (25, 3)])
def test_requests_are_chunked_only_by_the_batch_limit(n: int, chunks: int) -> None:
    store = GatedStore({"pin:3"})
    store.release.set()
    fetcher, _, stats = make(store, max_batch_keys=10)
    outcome = fetcher.fetch([f"pin:{i}" for i in range(n)])
    assert len(store.requests) == chunks == stats.fetches
    assert len(outcome.labels) == n and outcome.labels["pin:3"] == (label("pin:3"),)


def test_transport_errors_and_5xx_are_retried_but_4xx_is_not() -> None:
    from enforce_sdk import StoreResponseError

    calls: list[int] = []
    failures: list[Exception] = [StoreUnavailableError("reset"), StoreResponseError(503, "busy")]

    def flaky(keys: list[str]) -> Mapping[str, Sequence[Label]]:
        calls.append(len(keys))
        if failures:
            raise failures.pop(0)
        return {}

    cache = LabelCache(max_entries=10, ttl=60, negative_ttl=10, serve_stale_for=60)
    slept: list[float] = []
    fetcher = SingleFlightFetcher(
        flaky,
        cache,
        Stats(),
        max_batch_keys=10,
        wait_timeout=5,
        retries=2,
        retry_backoff=0.01,
        sleep=slept.append,
    )
    assert fetcher.fetch(["pin:1"]).error is None
    assert len(calls) == 3 and slept == [0.01, 0.02]

    failures[:] = [StoreResponseError(400, "bad key")]
    outcome = fetcher.fetch(["pin:2"])
    assert isinstance(outcome.error, StoreResponseError) and outcome.error.status == 400
    assert len(calls) == 4  # no retry on a client error
