"""HeadWatcher: lets change-feed long-polls sleep until the store's head moves.

Writes through this process call `advance` with the new head and wake every
waiter at once. While anyone waits, one shared poller task re-reads the head
from storage every `poll_interval` seconds, so writes made by other store
processes in front of the same backend wake waiters too: the cost is one cheap
storage read per interval per process, however many clients long-poll.

The head can move back: a restored backup, or (Redis Cluster) a failover that
lost commits not yet known replicated. Local writes only ever raise it, but the
poller's read of storage is authoritative and sets it, lower too. Every change
bumps `version`, so a long-poll that found nothing new at a head this watcher
still believes to be higher can wait for the next change instead of re-reading
storage back to back (`wait_past(..., since=version)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class HeadWatcher:
    """The newest sequence number this process knows of, and a way to wait for it to move.

    `advance` is called after writes here; a poller task re-reads storage while
    anyone waits, to notice writes made by other processes on the same backend.
    Not thread-safe: use it from the event loop only.
    """

    def __init__(self, read_head: Callable[[], Awaitable[int]], poll_interval: float) -> None:
        self.head = 0
        self.version = 0  # bumped on every change of `head`
        self._read_head = read_head
        self._poll_interval = poll_interval
        self._event = asyncio.Event()
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiters(self) -> int:
        """How many requests are waiting right now."""
        return self._waiters

    def advance(self, head: int) -> None:
        """A head seen after a write or read here: only ever raises it."""
        if head > self.head:
            self._set(head)

    def observe(self, head: int) -> None:
        """The head as storage reports it now: set it, also when lower (it went back)."""
        if head != self.head:
            self._set(head)

    def _set(self, head: int) -> None:
        self.head = head
        self.version += 1
        self._wake()

    def close(self) -> None:
        """Release every waiter (server shutting down) and refuse to wait from now on."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_past(self, seq: int, timeout: float, *, since: int | None = None) -> bool:
        """Wait up to `timeout` s for the head to pass `seq`; return whether it did.

        `since`: a `version` read before the caller's last storage read, which found
        nothing past `seq`; then a head past `seq` counts only once it changed after
        that version (the head this watcher held then was stale, e.g. it went back).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiters += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="enforce-store-head-poller")

        def waiting() -> bool:
            return self.head <= seq or (since is not None and self.version == since)

        try:
            while waiting() and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), remaining)
            return not waiting()
        finally:
            self._waiters -= 1

    async def _poll(self) -> None:
        while self._waiters > 0 and not self._closed:
            try:
                before = self.version
                head = await self._read_head()
                # A local write that landed during the read is newer than what was read.
                if self.version == before:
                    self.observe(head)
                else:
                    self.advance(head)
            except Exception as exc:  # keep waiters served by their deadline
                log.warning("change feed poll of storage head failed: %s", exc)
            await asyncio.sleep(self._poll_interval)

    async def stop(self) -> None:
        self.close()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
