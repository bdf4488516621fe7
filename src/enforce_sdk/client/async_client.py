"""AsyncEnforcementClient: `await check / check_many / filter`, for asyncio services.

The same Decisions and semantics as EnforcementClient: both are thin faces over
the shared I/O-free read path (client/read_path) behind the shared base
(client/base), and this one only does the fetch with asyncio. A
cache hit never awaits: `await client.check(...)` on a hit runs the same code
as the sync fast path and returns without yielding to the loop.

Event loops: the client may be created outside any loop (at import time, in a
pre-fork server's master) and used inside one. Each event loop that uses it
gets its own coalescing fetcher, created on first use; the label cache,
config, stats, change-feed follower (a thread) and store reader are shared by
all. So one client is safe to use from several loops, even in several threads;
state of a loop that has closed is dropped when another loop first uses the
client.

Store reads run on I/O threads of the client's own (client/threaded_reader),
each bounded whole by the store timeout: a busy event loop (a host under load,
its loop lagging by a second) delays when a coroutine sees its answer, but no
longer turns an answer the store gave in time into a degraded decision.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable

from .._errors import StoreUnavailableError
from ..config.document import StoreSettings
from ..policy.decision import Decision
from ..store_client.client import LabelStoreClient
from .async_fetch import AsyncLabelReader, AsyncSingleFlightFetcher
from .base import BaseEnforcementClient, apply_store_settings
from .batch import FilterKeys, Related
from .coalesce import DEFAULT_MAX_IN_FLIGHT, DEFAULT_WINDOW, FetchOutcome
from .read_path import ReadPath, T
from .runtime import ConfigInput
from .status import (
    PROBE_INTERVAL,
    PROBE_KEY,
    check_timeout,
    feed_not_ready,
    feed_started,
    probe_failed,
    store_not_ready,
)
from .threaded_reader import ThreadedStoreReader

__all__ = ["AsyncEnforcementClient"]

# Store reads run on at most this many I/O threads (max_in_flight caps reads per loop; more
# threads than this only contend for the GIL: 256 of them timed reads out under load).
MAX_IO_THREADS = 16


class _LoopState:
    """What one event loop uses: its fetcher and the reader it sends with."""

    __slots__ = ("fetcher", "reader")

    def __init__(self, fetcher: AsyncSingleFlightFetcher, reader: AsyncLabelReader) -> None:
        self.fetcher = fetcher
        self.reader = reader

class AsyncEnforcementClient(BaseEnforcementClient):
    """Decides, per surface, whether to show entities, from labels in the Label Store (asyncio).

    Safe to share between coroutines, event loops and threads, and in pre-fork
    servers (a client created before fork() starts afresh in every child).
    Use `async with`, or `await aclose()`.

    `coalesce_window` (seconds) is how long a cache miss may wait to join a
    batched store read while another read is in flight; `max_in_flight` caps
    the concurrent store reads per event loop. A caller alone never waits.
    A `store` given here (an object with `async get_many(keys)` and
    `async aclose()`) is shared by every loop and not closed by the client.
    """

    def __init__(
        self,
        store_url: str,
        config: ConfigInput,
        *,
        token: str | None = None,
        store: AsyncLabelReader | None = None,
        timer: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        follow_changes: bool | None = None,
        feed_wait: float = 10.0,
        coalesce_window: float = DEFAULT_WINDOW,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        super().__init__(
            store_url,
            config,
            token=token,
            owns_store=store is None,
            timer=timer,
            wall_clock=wall_clock,
            follow_changes=follow_changes,
            feed_wait=feed_wait,
            coalesce_window=coalesce_window,
            max_in_flight=max_in_flight,
        )
        self._borrowed = store
        # the owned store: one reader on I/O threads, shared by every loop
        self._io = None if store is not None else ThreadedStoreReader(
            self._open_store, max_threads=min(max_in_flight, MAX_IO_THREADS))
        self._loops_lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._last: tuple[asyncio.AbstractEventLoop, AsyncSingleFlightFetcher] | None = None
        # Decision hooks (client/hooks) see check() through a wrapper, only while registered.
        self._core.hooks.changed = self._hooks_changed

    def _hooks_changed(self) -> None:
        self.check = (self._check_observed  # type: ignore[method-assign]
                      if self._core.hooks.observing else type(self).check.__get__(self))

    async def _check_observed(self, entity: str, surface: str,
                              related: Related | None = None) -> Decision:
        decision = await type(self).check(self, entity, surface, related)
        self._core.hooks.observe((decision,))
        return decision

    async def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Wait until the store answers a read with this client's token and the change
        feed has started; NotReadyError names what is not usable (client/status)."""
        timeout = check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Exception | None = None
        while True:
            try:
                await self._probe()
            except Exception as exc:
                refused = probe_failed(exc, self._store_url)
                if refused is not None:
                    raise refused from exc
                last = exc
                self._core.stats.note_failure("readiness probe", exc)
            else:
                self._core.stats.note_success()
                break
            if loop.time() >= deadline:
                raise store_not_ready(self._store_url, timeout, last) from last
            await asyncio.sleep(min(PROBE_INTERVAL, max(0.0, deadline - loop.time())))
        while not feed_started(self._core):
            if loop.time() >= deadline:
                raise feed_not_ready(self._core, timeout)
            await asyncio.sleep(0.02)

    async def _probe(self) -> None:
        if self._borrowed is not None:
            await self._borrowed.get_many([PROBE_KEY])
        elif self._io is not None:
            await asyncio.to_thread(self._io.client.get_many, [PROBE_KEY])

    # -- public API ------------------------------------------------------------

    async def check(self, entity: str, surface: str, related: Related | None = None) -> Decision:
        """The decision for one entity on one surface."""
        gate = self._core.native_gate
        if gate is not None:
            decision = gate.check(entity, surface, related)
            if decision is not None:
                return decision  # type: ignore[no-any-return]
        decision = self._core.cached(entity, surface, related)
        if decision is None:
            related_page = None if related is None else (related,)
            decision = (await self._decide(surface, (entity,), related_page))[0]
        return decision

    async def check_many(
        self,
        entities: Iterable[str],
        surface: str,
        related: Iterable[Related | None] | None = None,
    ) -> list[Decision]:
        """Decisions for a page of entities, in order, with at most one store round trip.

        `entities` and `related` may be any iterables (a generator is read once);
        `related`, if given, has one entry (a mapping or None) per entity.
        """
        decisions = await self._decide(surface, entities, related)
        hooks = self._core.hooks
        if hooks.observing:
            hooks.observe(decisions)
        return decisions

    async def filter(
        self,
        items: Iterable[T],
        surface: str,
        *,
        key: Callable[[T], str] = str,
        related: Callable[[T], Related | None] | None = None,
    ) -> list[T]:
        """The items visible on the surface, in order (one store round trip at most)."""
        hooks = self._core.hooks
        if hooks.observing:  # the hooks see every decision: no native shortcut to the items
            page, keys, rel = ReadPath.page(items, key, related)
            decisions = await self._decide(surface, keys, rel)
            hooks.observe(decisions)
            return ReadPath.visible(page, decisions)
        gate = self._core.native_gate
        if gate is not None:
            answer = gate.filter(items, surface, key, related)
            if type(answer) is list:
                return answer
            if answer is not None:  # the items were read: finish the rest here
                page, keys, rel, done = answer
                decisions = await self._decide(surface, FilterKeys(keys), rel, done)
                return ReadPath.visible(page, decisions)
        page, keys, rel = ReadPath.page(items, key, related)
        return ReadPath.visible(page, await self._decide(surface, keys, rel))

    async def aclose(self) -> None:
        """Stop the follower, cancel reads waiting to be sent, close the store connections.

        Fetchers of other loops still running are closed on their own loop; those
        of loops already closed are dropped. Reads in flight end by their deadline.
        """
        if not self._core.closed:
            await asyncio.to_thread(self._core.close)
        with self._loops_lock:
            states, self._loops, self._last = self._loops, {}, None
        current = asyncio.get_running_loop()
        for loop, state in states.items():
            if loop is current:
                await self._close_state(state)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(self._close_state(state), loop)
        if self._io is not None:
            self._io.close()

    async def __aenter__(self) -> AsyncEnforcementClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _reset_connections(self) -> None:
        # the parent's per-loop fetchers, I/O threads and connections are abandoned, not closed
        self._loops_lock = threading.Lock()
        self._loops = {}
        self._last = None
        if self._io is not None:
            self._io.after_fork()

    # -- the I/O ---------------------------------------------------------------

    async def _decide(
        self,
        surface: str,
        entities: Iterable[str],
        related: Iterable[Related | None] | None,
        done: list[Decision | None] | None = None,
    ) -> list[Decision]:
        """Decisions for a page: the native gate's, then the read path's for the rest."""
        core = self._core
        finished, done = core.native_page(surface, entities, related, done)
        if finished is not None:
            return finished
        batch = core.begin(surface, entities, related, done)
        outcome: FetchOutcome | Exception | None = None
        if batch.missing:
            try:
                outcome = await self._fetcher().fetch(batch.missing)
            except Exception as exc:  # a bug below: answered by fail mode in finish()
                outcome = exc
        return core.finish(batch, outcome)

    def _fetcher(self) -> AsyncSingleFlightFetcher:
        """The running loop's fetcher, made on the loop's first miss."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        with self._loops_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._new_state(loop)
            self._last = (loop, state.fetcher)
        return state.fetcher

    def _new_state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        if self._core.closed:
            raise StoreUnavailableError("the client is closed")
        for old in [lp for lp in self._loops if lp.is_closed()]:
            del self._loops[old]  # its connections died with the loop
        reader: AsyncLabelReader = self._borrowed or self._io  # type: ignore[assignment]
        fetcher = AsyncSingleFlightFetcher(
            reader.get_many, self._core.cache, self._core.stats, loop=loop,
            threaded=self._io if self._borrowed is None else None,
            **self._fetcher_settings(),
        )
        state = self._loops[loop] = _LoopState(fetcher, reader)
        return state

    async def _close_state(self, state: _LoopState) -> None:
        await state.fetcher.aclose()

    def _open_store(self) -> LabelStoreClient:
        settings = self._core.config.store
        return LabelStoreClient(self._store_url, token=self._token, timeout=settings.timeout,
                                max_batch_keys=settings.max_batch_keys)

    def _on_store_settings(self, settings: StoreSettings) -> None:
        """Apply a swapped config's store settings to every loop's fetcher and reader."""
        with self._loops_lock:
            states = list(self._loops.values())
        io = getattr(self, "_io", None)  # None also while constructing
        if io is not None:
            io.client.max_batch_keys = settings.max_batch_keys
            io.client.timeout = settings.timeout  # read by every request as it starts
        for state in states:
            apply_store_settings(state.fetcher, settings)
