"""Fetching cache misses from the store in one event loop: single flight, coalesced, bounded.

The asyncio counterpart of client/fetch, with the same rules (coalesce.BatchQueue
decides which keys go and when). Batches are sent by the fetcher, not by the
caller's coroutine: a caller cancelled mid-check (a request timeout) does not
cancel a read other callers are waiting on. A window timer (`loop.call_later`)
sends keys that fall due while a slot is free; a finished read sends what waits
for its slot. Bound to the loop it is created in. Reads racing the change feed
are handled as in client/fetch (see client/coalesce).

Two ways to read. With an async reader (`async get_many`), a task per batch
awaits it on the loop. With a threaded one (`submit(keys)` returning a
concurrent future: client/threaded_reader, the client's own store), the read
runs on an I/O thread and ONE callback, posted to the loop when the read ends,
resolves every waiter of the batch. That callback is queued before any timer
that falls due while the loop is busy, so a caller whose read ended in time
finds its answer even if its own wait timed out in the same turn of a lagging
loop (see `fetch`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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

AsyncFetchMany = Callable[[list[str]], Awaitable[Mapping[str, Sequence[Label]]]]


class AsyncLabelReader(Protocol):
    """What the async client needs of a store: an async batch read (or a test double)."""

    async def get_many(self, keys: list[str]) -> Mapping[str, Sequence[Label]]: ...

    async def aclose(self) -> None: ...


class ThreadedReader(Protocol):
    """A store read run off the loop (client/threaded_reader.ThreadedStoreReader)."""

    def submit(self, keys: list[str]) -> concurrent.futures.Future[dict[str, list[Label]]]:
        ...


class AsyncSingleFlightFetcher:
    """Fetch of cache misses for the coroutines of one event loop. Not thread-safe."""

    def __init__(
        self,
        fetch_many: AsyncFetchMany,
        cache: LabelCache,
        stats: Stats,
        *,
        max_batch_keys: int,
        wait_timeout: float,
        retries: int = 0,
        retry_backoff: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        window: float = DEFAULT_WINDOW,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
        threaded: ThreadedReader | None = None,
    ) -> None:
        self._fetch_many = fetch_many
        self._threaded = threaded  # reads on I/O threads, resolved by one loop callback
        self._cache = cache
        self._stats = stats
        self.wait_timeout = wait_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self._sleep = sleep
        self._clock = clock
        self.loop = loop or asyncio.get_running_loop()
        self._queue: BatchQueue[asyncio.Future[Result]] = BatchQueue(
            max_batch_keys=max_batch_keys, max_in_flight=max_in_flight, window=window, clock=clock
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def max_batch_keys(self) -> int:
        return self._queue.max_batch_keys

    @max_batch_keys.setter
    def max_batch_keys(self, value: int) -> None:
        self._queue.max_batch_keys = value

    def in_flight(self) -> tuple[int, int]:
        """(store requests in flight, keys waiting unsent): for tests and introspection."""
        return self._queue.in_flight, len(self._queue.pending)

    async def fetch(self, keys: Sequence[str]) -> FetchOutcome:
        """Fetch labels of `keys` (canonical, distinct), filling the cache."""
        out = FetchOutcome()
        if not keys:
            return out
        mine, theirs = self._queue.claim(keys, self.loop.create_future, self._cache.evicted_since)
        if theirs:
            self._stats.coalesced_waits += len(theirs)
        if mine:
            self._pump()
        waits = mine + theirs
        await asyncio.wait({fut for _, fut in waits}, timeout=self.wait_timeout)
        for key, fut in waits:
            out.add(key, fut.result() if fut.done() else timed_out(self.wait_timeout))
        return out

    async def aclose(self) -> None:
        """Cancel reads in flight and unsent keys (their waiters get StoreUnavailableError)."""
        self._closed = True
        queue = self._queue
        unsent = list(queue.pending)
        queue.pending.clear()
        for key in unsent:
            fut = queue.futures.pop(key)
            if not fut.done():
                fut.set_result(StoreUnavailableError("client closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _pump(self) -> None:
        """Start every batch that is due and has a slot; arm the window timer for the rest."""
        if self._closed:
            return
        queue = self._queue
        now = self._clock()
        while queue.ready(now):
            batch = queue.take(self._cache.mark())
            if self._threaded is not None:
                self._submit(batch, round_begins(self._stats, len(batch)), 0)
                continue
            task = self.loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._timer is None:
            delay = queue.delay(now)
            if delay is not None:
                self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    async def _send(self, batch: Flight[asyncio.Future[Result]]) -> None:
        """One store round trip for `batch`; resolves its keys' futures, frees the slot."""
        results: Mapping[str, Result] = {}
        error: EnforceError | None = None
        t0 = round_begins(self._stats, len(batch))
        try:
            fetched = await self._read_with_retries(list(batch))
            results = round_succeeded(self._stats, self._cache, batch, fetched, t0)
        except asyncio.CancelledError:
            error = StoreUnavailableError("store read cancelled (client closing)")
            raise
        except Exception as exc:  # bad data or a bug below: never into the caller
            error = round_failed(self._stats, exc, t0)
        finally:
            for key, fut in self._queue.done(batch):
                if not fut.done():
                    fut.set_result(
                        results[key]
                        if key in results
                        else error or StoreUnavailableError("fetch did not complete")
                    )
            self._pump()

    # -- reads on I/O threads ------------------------------------------------------------------

    def _submit(self, batch: Flight[asyncio.Future[Result]], t0: int, attempt: int) -> None:
        """Start (or retry) a batch's read on an I/O thread; its end is posted to the loop."""
        assert self._threaded is not None
        try:
            read = self._threaded.submit(list(batch))
        except Exception as exc:  # the reader is closed, or a bug: never into the caller
            self._read_ended(batch, t0, attempt, None, exc)
            return
        loop = self.loop

        def post(done: concurrent.futures.Future[dict[str, list[Label]]]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._read_done, batch, t0, attempt, done)

        read.add_done_callback(post)

    def _read_done(self, batch: Flight[asyncio.Future[Result]], t0: int, attempt: int,
                   done: concurrent.futures.Future[dict[str, list[Label]]]) -> None:
        if done.cancelled():
            self._read_ended(batch, t0, attempt, None,
                             StoreUnavailableError("store read cancelled (client closing)"))
            return
        exc = done.exception()
        if exc is None:
            self._read_ended(batch, t0, attempt, done.result(), None)
            return
        if not isinstance(exc, Exception):  # e.g. SystemExit on the I/O thread: no retry
            exc = StoreUnavailableError(f"store read ended by {exc!r}")
        delay = None if self._closed else retry_delay(exc, attempt + 1, self.retries,
                                                      self.retry_backoff)
        if delay is None:
            self._read_ended(batch, t0, attempt, None, exc)
        else:
            self.loop.call_later(delay, self._submit, batch, t0, attempt + 1)

    def _read_ended(self, batch: Flight[asyncio.Future[Result]], t0: int, attempt: int,
                    fetched: Mapping[str, Sequence[Label]] | None,
                    exc: Exception | None) -> None:
        """Resolve every waiter of the batch at once, free its slot, send what waits."""
        results: Mapping[str, Result] = {}
        error: EnforceError | None = None
        try:
            if exc is not None:
                raise exc
            assert fetched is not None
            results = round_succeeded(self._stats, self._cache, batch, fetched, t0)
        except Exception as failure:  # bad data or a bug below: never into the caller
            error = round_failed(self._stats, failure, t0)
        for key, fut in self._queue.done(batch):
            if not fut.done():
                fut.set_result(results[key] if key in results
                               else error or StoreUnavailableError("fetch did not complete"))
        self._pump()

    async def _read_with_retries(self, batch: list[str]) -> Mapping[str, Sequence[Label]]:
        attempt = 0
        while True:
            try:
                return await self._fetch_many(batch)
            except Exception as exc:
                attempt += 1
                delay = retry_delay(exc, attempt, self.retries, self.retry_backoff)
                if delay is None:
                    raise
                await self._sleep(delay)
