"""EnforcementClient: check, check_many and filter, answered in-process (threads).

Read path per item: canonical key -> label cache -> (misses) one batched store
fetch -> the surface's selector and resolver -> Decision. Everything but the
fetch is the shared I/O-free read path (client/read_path) behind the shared
base (client/base); this face does the I/O with threads: a
`SingleFlightFetcher` merges concurrent misses into batched reads (client/fetch).
The serving contract: misuse by the caller (unknown surface, malformed key)
raises at once; anything else that goes wrong (store down, timeout, garbage, a
bug) is answered by the surface's fail mode, flagged `degraded`, logged and
counted: never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..config.document import StoreSettings
from ..policy.decision import Decision
from ..store_client.client import LabelStoreClient
from .base import BaseEnforcementClient, apply_store_settings
from .batch import FilterKeys, Related
from .coalesce import DEFAULT_MAX_IN_FLIGHT, DEFAULT_WINDOW, FetchOutcome
from .fetch import LabelReader, SingleFlightFetcher
from .read_path import MEMO_SECONDS, ReadPath, T
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

__all__ = ["MEMO_SECONDS", "EnforcementClient"]


class EnforcementClient(BaseEnforcementClient):
    """Decides, per surface, whether to show entities, from labels in the Label Store.

    Thread-safe, and safe in pre-fork servers: a client created before fork()
    re-creates its connections, locks and follower thread in every child.
    Use as a context manager, or call close().

    `coalesce_window` (seconds) is how long a cache miss may wait to join a
    batched store read while another read is in flight; `max_in_flight` caps
    this client's concurrent store reads. A caller alone never waits.
    """

    def __init__(
        self,
        store_url: str,
        config: ConfigInput,
        *,
        token: str | None = None,
        store: LabelReader | None = None,
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
        self._owns_store = store is None
        self._store: LabelReader = store or self._open_store()
        core = self._core
        self._fetcher = SingleFlightFetcher(
            self._store.get_many, core.cache, core.stats, **self._fetcher_settings()
        )
        if core.native_gate is not None:
            # check() as one native call: the gate's answer, else the Python path's
            # (check() below, minus its own gate call). Same arguments, same contract.
            self.check = core.native_gate.bound(self._check_python)  # type: ignore[method-assign]
        # Decision hooks (client/hooks) see check() through a wrapper, only while registered.
        self._check_unobserved = self.check
        core.hooks.changed = self._hooks_changed

    def _hooks_changed(self) -> None:
        observing = self._core.hooks.observing
        self.check = (self._check_observed if observing  # type: ignore[method-assign]
                      else self._check_unobserved)

    def _check_observed(self, entity: str, surface: str,
                        related: Related | None = None) -> Decision:
        decision = self._check_unobserved(entity, surface, related)
        self._core.hooks.observe((decision,))
        return decision

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Block until the store answers a read with this client's token and the change
        feed has started; NotReadyError names what is not usable (client/status)."""
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                self._store.get_many([PROBE_KEY])
            except Exception as exc:
                refused = probe_failed(exc, self._store_url)
                if refused is not None:
                    raise refused from exc
                last = exc
                self._core.stats.note_failure("readiness probe", exc)
            else:
                self._core.stats.note_success()
                break
            if time.monotonic() >= deadline:
                raise store_not_ready(self._store_url, timeout, last) from last
            time.sleep(min(PROBE_INTERVAL, max(0.0, deadline - time.monotonic())))
        while not feed_started(self._core):
            if time.monotonic() >= deadline:
                raise feed_not_ready(self._core, timeout)
            time.sleep(0.02)

    def _open_store(self) -> LabelStoreClient:
        settings = self._core.config.store
        return LabelStoreClient(
            self._store_url,
            token=self._token,
            timeout=settings.timeout,
            max_batch_keys=settings.max_batch_keys,
        )

    def _on_store_settings(self, settings: StoreSettings) -> None:
        store = self._store
        if self._owns_store and isinstance(store, LabelStoreClient):
            store.timeout = settings.timeout  # read by every request as it starts
            store.max_batch_keys = settings.max_batch_keys
        apply_store_settings(self._fetcher, settings)

    # -- public API ------------------------------------------------------------

    def check(self, entity: str, surface: str, related: Related | None = None) -> Decision:
        """The decision for one entity on one surface."""
        gate = self._core.native_gate
        if gate is not None:
            decision = gate.check(entity, surface, related)
            if decision is not None:
                return decision  # type: ignore[no-any-return]
        return self._check_python(entity, surface, related)

    def _check_python(self, entity: str, surface: str, related: Related | None) -> Decision:
        decision = self._core.cached(entity, surface, related)
        if decision is None:
            decision = self._decide(surface, (entity,), None if related is None else (related,))[0]
        return decision

    def check_many(
        self,
        entities: Iterable[str],
        surface: str,
        related: Iterable[Related | None] | None = None,
    ) -> list[Decision]:
        """Decisions for a page of entities, in order, with at most one store round trip.

        `entities` and `related` may be any iterables (a generator is read once);
        `related`, if given, has one entry (a mapping or None) per entity.
        """
        decisions = self._decide(surface, entities, related)
        hooks = self._core.hooks
        if hooks.observing:
            hooks.observe(decisions)
        return decisions

    def filter(
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
            decisions = self._decide(surface, keys, rel)
            hooks.observe(decisions)
            return ReadPath.visible(page, decisions)
        gate = self._core.native_gate
        if gate is not None:
            answer = gate.filter(items, surface, key, related)
            if type(answer) is list:
                return answer
            if answer is not None:  # the items were read: finish the rest here
                page, keys, rel, done = answer
                decisions = self._decide(surface, FilterKeys(keys), rel, done)
                return ReadPath.visible(page, decisions)
        page, keys, rel = ReadPath.page(items, key, related)
        return ReadPath.visible(page, self._decide(surface, keys, rel))

    def close(self) -> None:
        if not self._core.close():
            return
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> EnforcementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reset_connections(self) -> None:
        if self._owns_store and not self._core.closed:
            # the parent's pool shares sockets with the parent, and its lock may be held
            self._store = self._open_store()
        self._fetcher.after_fork(self._store.get_many)

    # -- the I/O ---------------------------------------------------------------

    def _decide(
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
                outcome = self._fetcher.fetch(batch.missing)
            except Exception as exc:  # a bug below: answered by fail mode in finish()
                outcome = exc
        return core.finish(batch, outcome)
