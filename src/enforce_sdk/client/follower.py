"""Following the store's change feed: every changed key is evicted from the label cache.

A background thread long-polls `GET /v1/changes` from a sequence position. For
each page it evicts the changed entities from the cache (so the next check
fetches fresh labels) and hands the records to listeners (the bloom filter adds
keys that gained a label). When the store says the position is past the feed's
retention, changes were missed: the cache is cleared and listeners are told to
resynchronise (the bloom filter reloads a snapshot) and may name an older
position to follow from (the snapshot's). Poll hooks run on the follower thread
before every poll and may rewind the position, so a listener that swaps in
state built as of an older sequence number gets the changes since replayed
(listeners must apply records idempotently). Poll hooks also hear when each
poll goes out and how it ended (caught up with the store's head or not, or
failed), so they can tell "current" from "behind". A poll long-polls only
once the follower is caught up (its last page was empty or reached the
store's head); after a start, a failure, a resync or a rewind it asks without
waiting, so it learns where the head is at once. Errors are
counted and retried with bounded backoff; `lag()` says how long ago a poll was
last applied (a resync is not one), which callers turn into a `degraded` flag
past a bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .._errors import EnforceError, FeedTooOldError, StoreResponseError
from ..model.records import ChangeRecord
from .cache import LabelCache
from .stats import Stats

log = logging.getLogger(__name__)


class ChangesPageLike(Protocol):
    @property
    def changes(self) -> Sequence[ChangeRecord]: ...

    @property
    def head(self) -> int: ...

    @property
    def next(self) -> int: ...


class FeedReader(Protocol):
    """What the follower needs of a store (LabelStoreClient, or a test double)."""

    def changes(self, after: int, limit: int = 1000, wait: float = 0.0) -> ChangesPageLike: ...

    def close(self) -> None: ...


class FeedListener(Protocol):
    def on_changes(self, changes: Sequence[ChangeRecord]) -> None:
        """Records applied in order; called on the follower thread."""

    def on_resync(self, head: int) -> int | None:
        """The feed lost continuity (retention passed): rebuild state from a snapshot.

        Returns the sequence number the rebuilt state reflects, to follow from
        (records after it are replayed), or None to follow from `head`.
        """


class PollHook(Protocol):
    """Called on the follower thread around every poll, in this order."""

    def before_poll(self, position: int) -> int | None:
        """Before each poll: a position to rewind to, or None."""

    def poll_sent(self, wait: float) -> None:
        """The poll is being sent now; the store may hold it up to `wait` s for a change."""

    def after_poll(self, position: int, caught_up: bool) -> None:
        """The poll was applied (records or not) up to `position`.

        `caught_up`: nothing more to read (the page was empty or reached the store's head).
        """

    def poll_failed(self) -> None:
        """The poll failed, or found the position past retention (a resync follows)."""


class FeedFollower:
    """Applies the change feed to a LabelCache (and listeners) on a daemon thread."""

    def __init__(
        self,
        open_reader: Callable[[], FeedReader],
        cache: LabelCache,
        stats: Stats,
        *,
        wait: float = 10.0,
        page_size: int = 1000,
        max_backoff: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_reader = open_reader
        self._cache = cache
        self._stats = stats
        self.wait = wait
        self.page_size = page_size
        self.max_backoff = max_backoff
        self._timer = timer
        self.listeners: list[FeedListener] = []
        self.poll_hooks: list[PollHook] = []
        self._too_old_in_row = 0
        self.position: int | None = None  # last sequence number applied
        self._caught_up = False  # the last poll reached the store's head (so: long-poll)
        self._applied_at: float | None = None  # timer() when a poll was last applied
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: FeedReader | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self, position: int | None = None) -> None:
        """Start following from `position` (default: the store's head, found on the thread)."""
        if self._thread is not None:
            return
        self.position = position
        self._caught_up = False
        self._stop.clear()
        self._reader = self._open_reader()
        self._thread = threading.Thread(target=self._run, name="enforce-sdk-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()  # unblocks a long-poll in flight
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def after_fork(self) -> None:
        """In a forked child: the parent's thread and connections do not exist here; start anew."""
        running = self._thread is not None
        self._thread = None
        self._reader = None
        self._stop = threading.Event()
        if running:
            self.start(self.position)

    # -- state ----------------------------------------------------------------

    def lag(self) -> float:
        """Seconds since a poll was last applied (inf before the first page)."""
        if self._applied_at is None:
            return float("inf")
        return self._timer() - self._applied_at

    def wait_applied(self, seq: int, timeout: float) -> bool:
        """Block until the follower has applied `seq` (for tests and tools)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.position is not None and self.position >= seq:
                return True
            time.sleep(0.01)
        return self.position is not None and self.position >= seq

    # -- the loop -------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            reader = self._reader
            if reader is None:
                return
            try:
                self.poll_once(reader)
                self._stats.store_reachable = True
                backoff = 0.05
            except Exception as exc:  # never let the thread die; say so and retry
                if self._stop.is_set():
                    return
                self._stats.feed_errors += 1
                self._stats.note_failure("change feed", exc)
                level = logging.WARNING if isinstance(exc, EnforceError) else logging.ERROR
                log.log(level, "change feed poll failed (retrying in %.2fs): %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)

    def poll_once(self, reader: FeedReader) -> int:
        """One long-poll and its application; returns how many records were applied."""
        if self.position is None:
            self._resync(reader, notify=False)
            return 0
        for hook in self.poll_hooks:
            rewind = hook.before_poll(self.position)
            if rewind is not None and rewind < self.position:
                log.info("change feed rewound from %s to %s for replay", self.position, rewind)
                self.position = rewind
                self._caught_up = False
        wait = self.wait if self._caught_up else 0.0
        for hook in self.poll_hooks:
            hook.poll_sent(wait)
        try:
            page = reader.changes(self.position, limit=self.page_size, wait=wait)
        except FeedTooOldError:
            self._poll_failed()
            log.warning("change feed position %s is past retention: resynchronising", self.position)
            self._too_old_in_row += 1
            if self._too_old_in_row > 1:  # the listeners' snapshot is older than retention too
                self._stop.wait(min(self.max_backoff, 0.05 * 2 ** self._too_old_in_row))
            self._resync(reader, notify=True)
            return 0
        except BaseException:
            self._poll_failed()
            raise
        self._too_old_in_row = 0
        problem = page_problem(page, self.position)
        if problem is not None:  # a buggy or hostile store or proxy: trust nothing of it
            self._poll_failed()
            self._stats.feed_bad_pages += 1
            log.error("change feed page after %s is malformed (%s): resynchronising",
                      self.position, problem)
            self._resync(reader, notify=True)
            return 0
        records = page.changes
        if records:
            self._cache.evict({c.entity for c in records})
            for listener in self.listeners:
                listener.on_changes(records)
            self._stats.feed_changes += len(records)
        self.position = page.next
        self._caught_up = not records or page.next >= page.head
        self._applied_at = self._timer()
        for hook in self.poll_hooks:
            hook.after_poll(page.next, self._caught_up)
        return len(records)

    def _poll_failed(self) -> None:
        self._caught_up = False
        for hook in self.poll_hooks:
            hook.poll_failed()

    def _resync(self, reader: FeedReader, *, notify: bool) -> None:
        """Jump to the store's head; the changes in between are unknown, so drop the cache.

        Not a poll applied: lag() and the hooks' view of freshness wait for the next one.
        """
        try:
            head = reader.changes(0, limit=1).head
        except FeedTooOldError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            head = detail.get("head", 0)
        if not _is_seq(head):  # never follow from an absurd head: retried by the loop
            raise StoreResponseError(200, f"change feed head {head!r} is not a sequence number")
        position = head
        if notify:
            self._cache.clear()
            for listener in self.listeners:
                start = listener.on_resync(head)
                if start is not None:
                    position = min(position, start)
        self.position = position
        self._caught_up = False


MAX_SEQ = 2**63 - 1  # sequence numbers are signed 64-bit in every backend


def _is_seq(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_SEQ


def page_problem(page: ChangesPageLike, position: int) -> str | None:
    """What is wrong with a change-feed page read after `position`, or None.

    A page moves forward: `next` is a sequence number at or past `position` and
    not past `head`; its records are ascending, after `position` and up to `next`.
    A page that breaks this (a cursor going backwards or past 2^63, wrong types)
    would otherwise be followed for good: the follower resyncs instead.
    """
    head, nxt = page.head, page.next
    if not _is_seq(head):
        return f"head {head!r} is not a sequence number"
    if not _is_seq(nxt):
        return f"next {nxt!r} is not a sequence number"
    if nxt < position:
        return f"next {nxt} goes back from {position}"
    if nxt > head:
        return f"next {nxt} is past head {head}"
    last = position
    for record in page.changes:
        seq = getattr(record, "seq", None)
        if not _is_seq(seq) or not last < seq <= nxt:  # type: ignore[operator]
            return f"record seq {seq!r} is not ascending within ({position}, {nxt}]"
        if type(getattr(record, "entity", None)) is not str:
            return f"record {seq} has no entity key"
        last = seq  # type: ignore[assignment]
    return None
