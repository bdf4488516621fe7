"""Pre-fork servers: have every live client re-create its threads and connections in a child.

Held by weak references, so tracking never keeps a client from being collected.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

log = logging.getLogger(__name__)

class ForkAware(Protocol):
    def after_fork(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[Any] = weakref.WeakSet()


def track_for_fork(client: ForkAware) -> None:
    """Have `client.after_fork()` called in every forked child while the client is alive.

    Held by a weak reference, so tracking never keeps a client from being collected.
    """
    _FORK_AWARE.add(client)


def _after_fork_in_child() -> None:
    for client in list(_FORK_AWARE):
        try:
            client.after_fork()
        except Exception:  # one client's failure must not stop the others (or the child)
            log.exception("after_fork failed for %r", client)


os.register_at_fork(after_in_child=_after_fork_in_child)
