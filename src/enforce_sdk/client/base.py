"""What both client faces share, as httpx's BaseClient serves Client and AsyncClient.

`BaseEnforcementClient` holds every attribute and everything that is not a
send: construction of the runtime (config, cache, stats, follower, bloom gate),
the state properties, fork tracking and the store settings a fetcher takes.
`EnforcementClient` (threads) and `AsyncEnforcementClient` (asyncio) add only
their fetch and the methods whose signatures differ (`def` vs `async def`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..config.document import EnforcementConfig, StoreSettings
from ..config.source import ConfigMeta
from .cache import LabelCache
from .coalesce import DEFAULT_MAX_IN_FLIGHT, DEFAULT_WINDOW, validate_coalescing
from .follower import FeedFollower
from .fork import track_for_fork
from .hooks import Hooks
from .runtime import ClientRuntime, ConfigInput
from .stats import Stats
from .status import ClientStatus, client_status


class BaseEnforcementClient:
    """State and lifecycle shared by the sync and async clients (not used on its own)."""

    def __init__(
        self,
        store_url: str,
        config: ConfigInput,
        *,
        token: str | None,
        owns_store: bool,
        timer: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        follow_changes: bool | None = None,
        feed_wait: float = 10.0,
        coalesce_window: float = DEFAULT_WINDOW,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        validate_coalescing(coalesce_window, max_in_flight)
        self._core = ClientRuntime(
            store_url,
            config,
            token=token,
            timer=timer,
            wall_clock=wall_clock,
            follow_changes=owns_store if follow_changes is None else follow_changes,
            feed_wait=feed_wait,
        )
        self._store_url = store_url
        self._token = token
        self._window = coalesce_window
        self._max_in_flight = max_in_flight
        self._core.on_store_settings(self._on_store_settings)
        self._pid = os.getpid()  # the process this client's resources belong to
        track_for_fork(self)

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
    def hooks(self) -> Hooks:
        """Register `on_config_change`, `on_degraded` and `on_decision` hooks (client/hooks)."""
        return self._core.hooks

    def status(self) -> ClientStatus:
        """A snapshot of the client's state, read without I/O (client/status)."""
        return client_status(self._core, self._store_url)

    @property
    def _closed(self) -> bool:
        return self._core.closed

    # -- what a face's fetcher takes from the config ----------------------------

    def _fetcher_settings(self) -> dict[str, Any]:
        """Keyword arguments of a new (Async)SingleFlightFetcher, from the applied config."""
        settings = self._core.config.store
        return {
            "max_batch_keys": settings.max_batch_keys,
            "wait_timeout": wait_timeout(settings),
            "retries": settings.retries,
            "retry_backoff": settings.retry_backoff,
            "window": self._window,
            "max_in_flight": self._max_in_flight,
        }

    def _on_store_settings(self, settings: StoreSettings) -> None:
        """Apply a swapped config's store settings to the face's fetchers and connections."""
        raise NotImplementedError

    # -- pre-fork servers -------------------------------------------------------

    def after_fork(self) -> None:
        """Start afresh in a forked child: new locks, follower thread and connections.

        Called automatically (os.register_at_fork) for every live client. The
        parent's connections are abandoned, not closed (closing could block or
        disturb the parent's). A no-op in the process that made the client (or
        last re-created it): calling it yourself, or twice in one child, changes
        nothing.
        """
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self._core.after_fork()
        self._reset_connections()

    def _reset_connections(self) -> None:
        """In a forked child, after the runtime restarted: the face's own connections."""
        raise NotImplementedError


def apply_store_settings(fetcher: Any, settings: StoreSettings) -> None:
    """A swapped config's store settings on a running fetcher (read as each request starts)."""
    fetcher.max_batch_keys = settings.max_batch_keys
    fetcher.retries = settings.retries
    fetcher.retry_backoff = settings.retry_backoff
    fetcher.wait_timeout = wait_timeout(settings)


def wait_timeout(settings: StoreSettings) -> float:
    """How long a caller waits for a store read: every attempt, the backoffs between, 1 s slack."""
    backoffs = settings.retry_backoff * float(2**settings.retries - 1)  # doubling each time
    return settings.timeout * (settings.retries + 1) + backoffs + 1.0
