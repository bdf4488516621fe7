"""Fetching cache misses from the store across threads: single flight, coalesced, bounded.

Concurrent callers missing the same key share one fetch, and misses of
different callers are merged into batched reads (see client/coalesce for the rules:
no wait when nothing is in flight, a short window otherwise, at most
`max_in_flight` requests at once). There is no background thread: the calling
threads send the batches themselves. A caller whose keys still wait unsent
sends the next batch when it is due and a slot is free (that batch may carry
other callers' keys, oldest first); otherwise it sleeps on a condition that
every finished request signals. Results land in the cache before the futures
resolve, except for keys the change feed evicted while the read was in flight
(see client/coalesce). A caller waits at most `wait_timeout` for reads other threads
send; a thread sends no batch after its deadline, but one it is sending
lasts as long as the read and its retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Protocol

from .._errors import EnforceError, StoreUnavailableError
from ..model.label import Label
from .cache import LabelCache
from .coalesce import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_WINDOW,
    BatchQueue,
    FetchOutcome,
    Flight,
    Result,
    retry_delay,
    round_begins,
    round_failed,
    round_succeeded,
    timed_out,
)
from .stats import Stats

__all__ = ["FetchMany", "FetchOutcome", "LabelReader", "SingleFlightFetcher"]

FetchMany = Callable[[list[str]], Mapping[str, Sequence[Label]]]


class LabelReader(Protocol):
    """What the client needs of a store: a batch read (LabelStoreClient, or a test double)."""

    def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]: ...

    def close(self) -> None: ...


class SingleFlightFetcher:
    """Thread-safe fetch of cache misses: per-key single flight, coalesced batches, bounded."""

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
        window: float = DEFAULT_WINDOW,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_many = fetch_many
        self._cache = cache
        self._stats = stats
        self.wait_timeout = wait_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._sleep = sleep
        self._clock = clock
        self._queue: BatchQueue[Future[Result]] = BatchQueue(
            max_batch_keys=max_batch_keys, max_in_flight=max_in_flight, window=window, clock=clock
        )
        self._lock = threading.Condition(threading.Lock())

    @property
    def max_batch_keys(self) -> int:
        return self._queue.max_batch_keys

    @max_batch_keys.setter
    def max_batch_keys(self, value: int) -> None:
        self._queue.max_batch_keys = value

    def in_flight(self) -> tuple[int, int]:
        """(store requests in flight, keys waiting unsent): for tests and introspection."""
        with self._lock:
            return self._queue.in_flight, len(self._queue.pending)

    def after_fork(self, fetch_many: FetchMany | None = None) -> None:
        """In a forked child: drop the parent's waiters and a lock another thread may have held."""
        self._lock = threading.Condition(threading.Lock())
        self._queue.reset()
        if fetch_many is not None:
            self._fetch_many = fetch_many

    def fetch(self, keys: Sequence[str]) -> FetchOutcome:
        """Fetch labels of `keys` (canonical, distinct), filling the cache."""
        deadline = self._clock() + self.wait_timeout
        with self._lock:
            mine, theirs = self._queue.claim(keys, Future, self._cache.evicted_since)
        if theirs:
            self._stats.coalesced_waits += len(theirs)
        waits = mine + theirs
        self._send_while_pending([key for key, _ in waits], deadline)
        futures = {fut for _, fut in waits}
        wait_futures(futures, timeout=max(0.0, deadline - self._clock()))
        out = FetchOutcome()
        for key, fut in waits:
            out.add(key, fut.result() if fut.done() else timed_out(self.wait_timeout))
        return out

    def _send_while_pending(self, keys: list[str], deadline: float) -> None:
        """Send due batches until none of `keys` waits unsent (or the deadline passes)."""
        lock, queue = self._lock, self._queue
        while True:
            with lock:
                while True:
                    keys = [key for key in keys if key in queue.pending]
                    if not keys:
                        return
                    now = self._clock()
                    if now >= deadline:
                        return  # the futures stay unresolved here: fetch() reports a timeout
                    if queue.ready(now):
                        batch = queue.take(self._cache.mark())
                        break
                    delay = queue.delay(now)
                    lock.wait(deadline - now if delay is None else min(delay, deadline - now))
            self._send(batch)

    def _send(self, batch: Flight[Future[Result]]) -> None:
        """One store round trip for `batch`; resolves its keys' futures, frees the slot."""
        results: Mapping[str, Result]
        t0 = round_begins(self._stats, len(batch))
        try:
            results = round_succeeded(
                self._stats, self._cache, batch, self._read_with_retries(list(batch)), t0
            )
            error: EnforceError | None = None
        except Exception as exc:  # bad data or a bug below: never into the caller
            error = round_failed(self._stats, exc, t0)
            results = {}
        with self._lock:
            futures = self._queue.done(batch)
            self._lock.notify_all()
        for key, fut in futures:
            if fut.done():
                continue
            if key in results:
                fut.set_result(results[key])
            else:
                fut.set_result(error or StoreUnavailableError("fetch did not complete"))

    def _read_with_retries(self, batch: list[str]) -> Mapping[str, Sequence[Label]]:
        attempt = 0
        while True:
            try:
                return self._fetch_many(batch)
            except Exception as exc:
                attempt += 1
                delay = retry_delay(exc, attempt, self.retries, self.retry_backoff)
                if delay is None:
                    raise
                self._sleep(delay)
