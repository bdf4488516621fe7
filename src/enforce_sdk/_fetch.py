"""Fetching cache misses from the store: single flight across threads, one round trip per call.

Concurrent callers missing the same key share one fetch: the first caller to
claim a key fetches it (together with all its other unclaimed misses, in one
request chunked only by the store's batch limit); later callers wait on that
fetch's future, bounded by a deadline. Results land in the cache before the
futures resolve, so a waiter can also read them from there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol

from ._cache import LabelCache, Labels
from ._errors import EnforceError, StoreResponseError, StoreUnavailableError
from ._model import Label
from ._stats import Stats

FetchMany = Callable[[list[str]], Mapping[str, Sequence[Label]]]


class LabelReader(Protocol):
    """What the client needs of a store: a batch read (LabelStoreClient, or a test double)."""

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]: ...

    def close(self) -> None: ...


class FetchOutcome:
    """Labels per fetched key, plus the error that kept any key from being fetched."""

    __slots__ = ("error", "labels")

    def __init__(self) -> None:
        self.labels: dict[str, Labels] = {}
        self.error: EnforceError | None = None


class SingleFlightFetcher:
    """Thread-safe fetch of cache misses with per-key single flight."""

    def __init__(
        self,
        fetch_many: FetchMany,
        cache: LabelCache,
        stats: Stats,
        *,
        max_batch_keys: int,
        wait_timeout: float,
        retries: int = 0,
        retry_backoff: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._fetch_many = fetch_many
        self._cache = cache
        self._stats = stats
        self.max_batch_keys = max_batch_keys
        self.wait_timeout = wait_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._sleep = sleep
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[Labels]] = {}

    def after_fork(self) -> None:
        """In a forked child: drop futures and the lock another thread may have held."""
        self._lock = threading.Lock()
        self._inflight = {}

    def fetch(self, keys: Sequence[str]) -> FetchOutcome:
        """Fetch labels of `keys` (canonical, distinct), filling the cache."""
        out = FetchOutcome()
        mine: list[str] = []
        theirs: list[tuple[str, Future[Labels]]] = []
        with self._lock:
            for key in keys:
                fut = self._inflight.get(key)
                if fut is None:
                    self._inflight[key] = Future()
                    mine.append(key)
                else:
                    theirs.append((key, fut))
        if mine:
            self._fetch_own(mine, out)
        if theirs:
            self._stats.coalesced_waits += len(theirs)
            for key, fut in theirs:
                try:
                    out.labels[key] = fut.result(timeout=self.wait_timeout)
                except FutureTimeout:
                    out.error = out.error or StoreUnavailableError(
                        f"timed out after {self.wait_timeout:g}s waiting for a concurrent fetch"
                    )
                except EnforceError as exc:
                    out.error = out.error or exc
        return out

    def _fetch_with_retries(self, chunk: list[str]) -> Mapping[str, Sequence[Label]]:
        """One store read; transport failures and 5xx answers are retried with backoff."""
        attempt = 0
        while True:
            try:
                return self._fetch_many(chunk)
            except (StoreUnavailableError, StoreResponseError) as exc:
                retryable = not isinstance(exc, StoreResponseError) or exc.status >= 500
                if not retryable or attempt >= self.retries:
                    raise
                attempt += 1
                self._sleep(self.retry_backoff * (2 ** (attempt - 1)))

    def _fetch_own(self, keys: list[str], out: FetchOutcome) -> None:
        error: EnforceError | None = None
        fetched: dict[str, Labels] = {}
        try:
            for start in range(0, len(keys), self.max_batch_keys):
                chunk = keys[start : start + self.max_batch_keys]
                t0 = self._stats.clock_ns()
                self._stats.fetches += 1
                self._stats.fetched_keys += len(chunk)
                try:
                    result = self._fetch_with_retries(chunk)
                except EnforceError:
                    self._stats.fetch_errors += 1
                    raise
                except Exception as exc:  # bad data or a bug below: never into the caller
                    self._stats.fetch_errors += 1
                    raise StoreUnavailableError(f"fetch failed: {exc!r}") from exc
                finally:
                    self._stats.fetch_latency.record(self._stats.clock_ns() - t0)
                self._cache.fill(result, chunk)
                for key in chunk:
                    fetched[key] = tuple(result.get(key, ()))
        except EnforceError as exc:
            error = exc
        with self._lock:
            futures = [(key, self._inflight.pop(key, None)) for key in keys]
        for key, fut in futures:
            if fut is None:
                continue
            if key in fetched:
                fut.set_result(fetched[key])
            else:
                fut.set_exception(error or StoreUnavailableError("fetch did not complete"))
        out.labels.update(fetched)
        if error is not None:
            out.error = error
