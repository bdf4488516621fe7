"""Sans-IO bookkeeping of request coalescing, shared by the thread and asyncio fetchers.

Concurrent checks that miss the cache are merged into batched store reads:

- single flight: a key already waiting or in flight is not asked again; its
  caller waits on the same future;
- no wait alone: when no store request is in flight, waiting keys go at once;
- coalescing: while a request is in flight, new misses wait up to `window`
  seconds (counted from the oldest waiting key) to join one batch;
- bounds: a batch holds at most `max_batch_keys` keys (the store's limit), and
  at most `max_in_flight` requests are in flight per fetcher; keys wait for a
  free slot, so concurrent load never piles up on the HTTP connection pool.

`BatchQueue` only decides (which keys, when); the fetchers do the waiting and
the I/O with threads (`client/fetch`) or asyncio (`client/async_fetch`). The functions
below account for one store round trip the same way in both.

Against the change feed: each batch (a `Flight`) carries the cache's eviction
mark taken when it was sent. Its answer is not cached for keys evicted since
(see LabelCache.fill), and a caller missing a key that was evicted after its
read in flight was sent does not join that read (its answer may predate the
change): the key is queued again for a read of its own.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from .._errors import EnforceError, InvalidInputError, StoreResponseError, StoreUnavailableError
from ..model.label import Label
from .cache import LabelCache, Labels
from .stats import Stats

DEFAULT_WINDOW = 0.001  # seconds a miss may wait to join a batch while a request is in flight
DEFAULT_MAX_IN_FLIGHT = 4  # store requests in flight per fetcher (one per event loop when async)

F = TypeVar("F")
# What a key's future resolves to: its labels, or the error that kept it from being fetched.
Result = Labels | EnforceError


def validate_coalescing(window: float, max_in_flight: int) -> None:
    """Check the clients' coalescing arguments (at the boundary, before anything starts)."""
    if isinstance(window, bool) or not isinstance(window, int | float) or not window >= 0:
        raise InvalidInputError(
            f"must be a number of seconds >= 0, got {window!r}", field="coalesce_window"
        )
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise InvalidInputError(
            f"must be an integer >= 1, got {max_in_flight!r}", field="max_in_flight"
        )


class FetchOutcome:
    """Labels per fetched key, plus the error that kept any key from being fetched."""

    __slots__ = ("error", "labels")

    def __init__(self) -> None:
        self.labels: dict[str, Labels] = {}
        self.error: EnforceError | None = None

    def add(self, key: str, result: Result) -> None:
        if isinstance(result, EnforceError):
            self.error = self.error or result
        else:
            self.labels[key] = result


class Flight(list[str], Generic[F]):
    """One batch sent to the store: its keys (oldest first), their futures, the eviction mark."""

    __slots__ = ("futures", "mark")

    def __init__(self, keys: list[str], futures: list[F], mark: int) -> None:
        super().__init__(keys)
        self.futures = futures
        self.mark = mark


class BatchQueue(Generic[F]):
    """Which keys wait, which are in flight, and when the next batch goes. Not thread-safe.

    `F` is the future type of the face (concurrent.futures.Future or asyncio.Future).
    """

    def __init__(
        self,
        *,
        max_batch_keys: int,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_keys < 1:
            raise InvalidInputError(f"must be >= 1, got {max_batch_keys!r}", field="max_batch_keys")
        validate_coalescing(window, max_in_flight)
        self.max_batch_keys = max_batch_keys
        self.max_in_flight = max_in_flight
        self.window = window
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every key and request (a forked child: the parent's waiters are not here)."""
        self.futures: dict[str, F] = {}  # every key waiting or in flight: the future to join
        self.pending: dict[str, None] = {}  # keys not yet sent, oldest first
        self.marks: dict[str, int] = {}  # keys in flight: the eviction mark of their read
        self.in_flight = 0
        self._due = math.inf  # clock() time by which the pending keys must go

    def claim(
        self,
        keys: Iterable[str],
        new_future: Callable[[], F],
        evicted_since: Callable[[str, int], bool] | None = None,
    ) -> tuple[list[tuple[str, F]], list[tuple[str, F]]]:
        """Queue the keys nobody asked for yet; return (queued, already waiting or in flight).

        With `evicted_since(key, mark)`, a key in flight whose read began before its
        last eviction is queued again (the read in flight may predate the change).
        """
        futures = self.futures
        marks = self.marks
        mine: list[tuple[str, F]] = []
        theirs: list[tuple[str, F]] = []
        for key in keys:
            fut = futures.get(key)
            if (
                fut is not None
                and evicted_since is not None
                and key in marks
                and evicted_since(key, marks[key])
            ):
                del marks[key]
                fut = None  # its read in flight answers its own callers only
            if fut is None:
                fut = futures[key] = new_future()
                self.pending[key] = None
                mine.append((key, fut))
            else:
                theirs.append((key, fut))
        if mine and self._due == math.inf:
            self._due = self.clock() + self.window
        return mine, theirs

    def ready(self, now: float) -> bool:
        """Whether a batch should be sent now: keys wait, a slot is free, and the batch is due."""
        return (
            bool(self.pending)
            and self.in_flight < self.max_in_flight
            and (
                self.in_flight == 0 or now >= self._due or len(self.pending) >= self.max_batch_keys
            )
        )

    def delay(self, now: float) -> float | None:
        """Seconds until waiting keys fall due; None when nothing waits or all slots are busy."""
        if not self.pending or self.in_flight >= self.max_in_flight:
            return None
        return max(0.0, self._due - now)

    def take(self, mark: int = 0) -> Flight[F]:
        """The next batch, oldest keys first (call when ready()); counts one request in flight.

        `mark` is the cache's eviction mark, taken now: before the store is read.
        """
        pending, futures, marks = self.pending, self.futures, self.marks
        n = min(len(pending), self.max_batch_keys)
        batch = list(itertools.islice(pending, n))
        for key in batch:
            del pending[key]
            marks[key] = mark
        if not pending:
            self._due = math.inf
        self.in_flight += 1
        return Flight(batch, [futures[key] for key in batch], mark)

    def done(self, flight: Flight[F]) -> list[tuple[str, F]]:
        """A request ended: free its slot; return its keys' futures for the caller to resolve."""
        self.in_flight -= 1
        futures, marks = self.futures, self.marks
        for key, fut in zip(flight, flight.futures, strict=True):
            if futures.get(key) is fut:  # not queued again meanwhile
                del futures[key]
                marks.pop(key, None)
        return list(zip(flight, flight.futures, strict=True))


# -- one store round trip, accounted the same way by every face ---------------------------


def retry_delay(exc: Exception, attempt: int, retries: int, backoff: float) -> float | None:
    """Seconds to wait before retry number `attempt` (1-based), or None if `exc` is final.

    Transport failures and 5xx answers are retried with exponential backoff; 4xx are not.
    """
    if not isinstance(exc, StoreUnavailableError | StoreResponseError):
        return None
    if isinstance(exc, StoreResponseError) and exc.status < 500:
        return None
    if attempt > retries:
        return None
    return float(backoff * (2 ** (attempt - 1)))


def round_begins(stats: Stats, keys: int) -> int:
    """Count a store round trip for `keys` keys; return its start time for round_ends."""
    stats.fetches += 1
    stats.fetched_keys += keys
    return stats.clock_ns()


def round_succeeded(
    stats: Stats,
    cache: LabelCache,
    flight: Flight[F],
    result: Mapping[str, Sequence[Label]],
    t0: int,
) -> dict[str, Labels]:
    """Record the round trip and fill the cache; return labels per asked key.

    Keys evicted since the flight's mark are answered but not cached.
    """
    stats.fetch_latency.record(stats.clock_ns() - t0)
    stats.store_reachable = True
    cache.fill(result, flight, since=flight.mark)
    return {key: tuple(result.get(key, ())) for key in flight}


class FetchFailedError(StoreUnavailableError):
    """A read that raised something other than an EnforceError: bad data or a bug below.

    The store may well be reachable, so decisions call it a store error, not
    "store unreachable" (which is a transport failure or a timeout).
    """


def round_failed(stats: Stats, exc: Exception, t0: int) -> EnforceError:
    """Record a failed round trip; anything but an EnforceError becomes FetchFailedError."""
    stats.fetch_latency.record(stats.clock_ns() - t0)
    stats.fetch_errors += 1
    stats.note_failure("store read", exc)
    if isinstance(exc, EnforceError):
        return exc
    error = FetchFailedError(f"fetch failed: {exc!r}")
    error.__cause__ = exc
    return error


def timed_out(wait: float) -> StoreUnavailableError:
    return StoreUnavailableError(f"timed out after {wait:g}s waiting for a store read")
