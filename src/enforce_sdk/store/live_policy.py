"""The SDK config as the store sees it: the surfaces the SDKs decide with, kept live.

The store explains decisions per surface and checks labels against the same
config document the SDKs read (a file or ZooKeeper). It may not import the
SDK's config wing (docs/architecture.md), so whoever starts the store injects a
`PolicyFeed`: a function that starts watching the document, sets a first
`PolicyView` on the `LivePolicy` it is given before returning (or raises), sets
each newer valid version after that, and returns a function that stops it.
`enforce-sdk serve --sdk-config` builds one from the SDK's config sources; tests
and embedders can write their own.

A feed is started in each store process's lifespan (after a master forks its
workers), so every worker watches the document itself. Without a feed
`current()` is None: the store serves labels and explains nothing.

Thread-safety: `set` may be called from any thread (a ZooKeeper watch, a file
poller); readers take `current()` once per request and use that one immutable
view throughout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..policy.resolver import Resolver
from ..policy.surface import SurfaceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PolicyView:
    """One applied version of the SDK config document, as the store uses it."""

    version: int
    origin: str  # "file:/etc/enforce/sdk.toml", "zookeeper:h:2181/enforce", ...
    surfaces: Mapping[str, SurfaceConfig]
    resolvers: Mapping[str, Resolver]  # one per surface, built once per version
    document: Mapping[str, Any]  # the validated document as plain data


class LivePolicy:
    """The newest PolicyView a feed set, and who wants to hear of the next one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view: PolicyView | None = None
        self._subscribers: list[Callable[[PolicyView], None]] = []

    def current(self) -> PolicyView | None:
        """The applied view, or None when no feed has set one."""
        return self._view

    def set(self, view: PolicyView) -> None:
        """Apply `view` unless it is older than the applied one; then tell subscribers.

        A subscriber that raises is logged and skipped: one broken listener does not
        keep the new version from the others or from readers.
        """
        with self._lock:
            if self._view is not None and view.version < self._view.version:
                log.warning("SDK config version %d from %s is older than the applied %d: "
                            "ignored", view.version, view.origin, self._view.version)
                return
            self._view = view
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(view)
            except Exception:
                log.exception("a listener of SDK config version %d failed", view.version)

    def subscribe(self, callback: Callable[[PolicyView], None]) -> None:
        """Call `callback(view)` on every later `set` (not with the current view)."""
        with self._lock:
            self._subscribers.append(callback)


PolicyFeed = Callable[[LivePolicy], Callable[[], None]]
"""Starts feeding a LivePolicy (its first view set before returning, or raises);
returns a function that stops the feed (idempotent)."""
