"""EnforcementClient: check, check_many and filter, answered in-process (threads).

Read path per item: canonical key -> label cache -> (misses) one batched store
fetch -> the surface's selector and resolver -> Decision. Everything but the
fetch is the shared sans-IO core (_core); this face does the I/O with threads:
a `SingleFlightFetcher` merges concurrent misses into batched reads (_fetch).
The serving contract: misuse by the caller (unknown surface, malformed key)
raises at once; anything else that goes wrong (store down, timeout, garbage, a
bug) is answered by the surface's fail mode, flagged `degraded`, logged and
counted: never raised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from ._cache import LabelCache
from ._coalesce import DEFAULT_MAX_IN_FLIGHT, DEFAULT_WINDOW, FetchOutcome, validate_coalescing
from ._config import EnforcementConfig, StoreSettings
from ._config_source import ConfigMeta
from ._core import MEMO_SECONDS, ConfigInput, EnforcementCore, Related, T, track_for_fork
from ._decision import Decision
from ._fetch import LabelReader, SingleFlightFetcher
from ._follower import FeedFollower
from ._stats import Stats
from ._store_client import LabelStoreClient

__all__ = ["MEMO_SECONDS", "EnforcementClient"]


class EnforcementClient:
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
        validate_coalescing(coalesce_window, max_in_flight)
        self._core = core = EnforcementCore(
            store_url,
            config,
            token=token,
            timer=timer,
            wall_clock=wall_clock,
            follow_changes=store is None if follow_changes is None else follow_changes,
            feed_wait=feed_wait,
        )
        self._store_url = store_url
        self._token = token
        self._owns_store = store is None
        self._store: LabelReader = store or self._open_store()
        settings = core.config.store
        self._fetcher = SingleFlightFetcher(
            self._store.get_many,
            core.cache,
            core.stats,
            max_batch_keys=settings.max_batch_keys,
            wait_timeout=_wait_timeout(settings),
            retries=settings.retries,
            retry_backoff=settings.retry_backoff,
            window=coalesce_window,
            max_in_flight=max_in_flight,
        )
        core.on_store_settings(self._on_store_settings)
        self._pid = os.getpid()  # the process this client's resources belong to
        track_for_fork(self)

    def _open_store(self) -> LabelStoreClient:
        settings = self._core.config.store
        return LabelStoreClient(
            self._store_url,
            token=self._token,
            timeout=settings.timeout,
            max_batch_keys=settings.max_batch_keys,
        )

    def _on_store_settings(self, settings: StoreSettings) -> None:
        """Apply a swapped config's store settings to the fetcher and the owned connection."""
        store = self._store
        if self._owns_store and isinstance(store, LabelStoreClient):
            store.timeout = settings.timeout  # read by every request as it starts
            store.max_batch_keys = settings.max_batch_keys
        fetcher = self._fetcher
        fetcher.max_batch_keys = settings.max_batch_keys
        fetcher.retries = settings.retries
        fetcher.retry_backoff = settings.retry_backoff
        fetcher.wait_timeout = _wait_timeout(settings)

    # -- state ----------------------------------------------------------------

    @property
    def config(self) -> EnforcementConfig:
        return self._core.config

    @property
    def config_meta(self) -> ConfigMeta:
        return self._core.config_meta

    @property
    def stats(self) -> Stats:
        return self._core.stats

    @property
    def cache(self) -> LabelCache:
        return self._core.cache

    @property
    def follower(self) -> FeedFollower | None:
        return self._core.follower

    @property
    def _closed(self) -> bool:
        return self._core.closed

    # -- public API ------------------------------------------------------------

    def check(self, entity: str, surface: str, related: Related | None = None) -> Decision:
        """The decision for one entity on one surface."""
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
        return self._decide(surface, entities, related)

    def filter(
        self,
        items: Iterable[T],
        surface: str,
        *,
        key: Callable[[T], str] = str,
        related: Callable[[T], Related | None] | None = None,
    ) -> list[T]:
        """The items visible on the surface, in order (one store round trip at most)."""
        page, keys, rel = EnforcementCore.page(items, key, related)
        return EnforcementCore.visible(page, self._decide(surface, keys, rel))

    def close(self) -> None:
        if not self._core.close():
            return
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> EnforcementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def after_fork(self) -> None:
        """Re-create connections, locks and the follower thread in a forked child.

        Called automatically (os.register_at_fork) for every live client. A no-op
        in the process that made the client (or last re-created it): calling it
        yourself, or twice in one child, changes nothing.
        """
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self._core.after_fork()
        if self._owns_store and not self._core.closed:
            # the parent's pool shares sockets with the parent, and its lock may be held:
            # abandon it (closing could block or disturb the parent's connections)
            self._store = self._open_store()
        self._fetcher.after_fork(self._store.get_many)

    # -- the I/O ---------------------------------------------------------------

    def _decide(
        self, surface: str, entities: Iterable[str], related: Iterable[Related | None] | None
    ) -> list[Decision]:
        core = self._core
        batch = core.begin(surface, entities, related)
        outcome: FetchOutcome | Exception | None = None
        if batch.missing:
            try:
                outcome = self._fetcher.fetch(batch.missing)
            except Exception as exc:  # a bug below: answered by fail mode in finish()
                outcome = exc
        return core.finish(batch, outcome)


def _wait_timeout(settings: StoreSettings) -> float:
    """How long a caller waits for a store read: every attempt, the backoffs between, 1 s slack."""
    backoffs = settings.retry_backoff * float(2**settings.retries - 1)  # doubling each time
    return settings.timeout * (settings.retries + 1) + backoffs + 1.0
