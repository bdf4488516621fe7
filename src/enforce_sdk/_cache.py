"""The SDK's label cache: raw labels per entity, with TTL, negative entries and a size bound.

Why not cachetools.TTLCache: measured on this machine, its get() costs about
1.7 us per hit (1.8 us behind a lock) against about 55 ns for a plain dict or
OrderedDict get, and the check() budget for a cache hit is 2 us in total. So
the cache is one OrderedDict whose values carry their own deadlines:

- reads never lock: a single `OrderedDict.get` is atomic under the GIL, and an
  entry is an immutable tuple, so a reader sees an old or a new entry whole;
- writes (fills, evictions) take one lock; a refill moves the key to the end,
  and the size bound evicts from the front in O(1), so eviction order is by
  last fill time (hits do not reorder, which is what keeps reads lock-free);
- an entry is *fresh* until `fresh_until`, then *stale* until `stale_until`:
  stale entries are served only when the store cannot be reached.

Only canonical keys are ever stored, which lets the client skip
canonicalisation when a raw key hits. A labeled entry also carries a small
memo of decisions per surface, which the client fills (see _client).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._model import Label

Labels = tuple[Label, ...]
NO_LABELS: Labels = ()
# Decisions memoised on a labeled entry, by surface: (decision, valid until, wall seconds).
Memo = dict[object, tuple[Any, float]]
# (labels, fresh_until, stale_until in timer seconds, memo or None for a negative entry)
Entry = tuple[Labels, float, float, Memo | None]


class LabelCache:
    """Raw labels per canonical entity key. Thread-safe; reads are lock-free."""

    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        negative_ttl: float,
        serve_stale_for: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.timer = timer
        self.configure(
            max_entries=max_entries,
            ttl=ttl,
            negative_ttl=negative_ttl,
            serve_stale_for=serve_stale_for,
        )

    def configure(
        self, *, max_entries: int, ttl: float, negative_ttl: float, serve_stale_for: float
    ) -> None:
        """Apply new settings (a config swap); existing entries keep their deadlines."""
        self.max_entries = max_entries
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.serve_stale_for = serve_stale_for
        with self._lock:
            self._trim()

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread of the parent may have held it)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key: str) -> Entry | None:
        """The raw entry (fresh or not), or None. The hot path reads this directly."""
        return self._entries.get(key)

    def get_fresh(self, key: str, now: float | None = None) -> Labels | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] > (self.timer() if now is None else now):
            return entry[0]
        return None

    def get_stale(self, key: str, now: float | None = None) -> Labels | None:
        """Labels of an entry past its TTL but still within the stale bound."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[2] > (self.timer() if now is None else now):
            return entry[0]
        return None

    def fill(
        self, fetched: Mapping[str, Sequence[Label]], asked: Iterable[str], now: float | None = None
    ) -> None:
        """Store a fetch result: keys in `fetched` get their labels, other `asked` keys a negative entry."""
        t = self.timer() if now is None else now
        positive = (t + self.ttl, t + self.ttl + self.serve_stale_for)
        negative = (t + self.negative_ttl, t + self.negative_ttl + self.serve_stale_for)
        entries = self._entries
        with self._lock:
            for key in asked:
                labels = fetched.get(key)
                if labels:
                    entries[key] = (tuple(labels), *positive, {})
                else:
                    entries[key] = (NO_LABELS, *negative, None)
                entries.move_to_end(key)
            self._trim()

    def evict(self, keys: Iterable[str]) -> int:
        """Drop the given keys (a change-feed notification); return how many were cached."""
        n = 0
        with self._lock:
            for key in keys:
                if self._entries.pop(key, None) is not None:
                    n += 1
        return n

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _trim(self) -> None:
        entries = self._entries
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
