"""The bloom snapshot the store serves: every key with an active label, as of a sequence number.

Correctness rests on the order of reads in `build_snapshot`: the head S is read
FIRST, then the labeled entities are iterated. Every key labeled at or before S
is committed before the iteration starts, so it is in the filter (a key labeled
after S may be in it too: harmless, a false positive at worst). The snapshot is
labeled S, and a reader that follows the change feed from S misses nothing.

Sizing: for HEADROOM times the labeled keys, and never fewer than MIN_KEYS, so
a reader following the feed has room for the store to double before its filter
reaches its design point (and the SDK's filter grows past it: client/bloom_gate).
Served with the snapshot, `capacity` and `fp_rate` tell a reader that design point.

Kept current incrementally. `BloomSnapshots` holds the filter it last built and
`refresh()` brings it up to the store's head from the change feed: each record
whose entity is labeled after it adds the entity, and the snapshot is then
labeled with the head read with those records (the same invariant: every key
labeled at or before S is in the filter at S). An unchanged store keeps the
same snapshot and ETag, so readers get 304. The filter is rebuilt from scratch
only when it must or when it pays: no filter yet, the feed cannot bridge the
gap (pruned past it, or the store went back), the keys added pass the design
point (`capacity`; the rebuild sizes it anew with headroom), or entities that
lost their labels (retractions, purges of expired labels) reach STALE_SHARE of
the keys, whose bits only raise the FP rate. Refreshes and builds block
(storage reads, hashing), so callers run them in a thread.

ETag: `"<build>.<seq>"`, where `<build>` names one full build of one process:
the bytes behind an ETag never change, and a new ETag means new bytes. A
process that `adopt`s a snapshot built by another (the workers of one master
share one, store/shared_bloom) goes on from its filter under its build name.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model.records import LabelStatus
from ..native.bloom import BloomFilter
from .storage.base import LabelStorage

HEADROOM = 2.0  # size for this many times the keys found: the store may double before a reload
MIN_KEYS = 65_536  # ... and never for fewer (80 KB at 1%): a young store's first import fits
_CHUNK = 10_000  # keys hashed and added per C call
_FEED_PAGE = 5_000  # change records read per storage call while catching up
STALE_SHARE = 0.25  # rebuild once entities that lost their labels reach this share of the keys
MIN_STALE = 1_000  # ... and at least this many (a small store is not rebuilt for every retraction)


@dataclass(frozen=True, slots=True)
class BloomSnapshot:
    """One built snapshot: `data` is BloomFilter.to_bytes() with `seq` set."""

    data: bytes
    seq: int
    key_count: int
    capacity: int  # key count the filter was sized for
    fp_rate: float  # its FP rate at `capacity` keys (at most)
    build_seconds: float  # of the full build or the catch-up that made it
    etag: str  # changes exactly when the bytes do; lets a reader skip an unchanged download


def snapshot_capacity(expected_keys: int) -> int:
    """The key count a filter is sized for: headroom over the expected keys, and a floor."""
    return max(MIN_KEYS, int(expected_keys * HEADROOM) + 1)


def build_snapshot(
    storage: LabelStorage, fp_rate: float, *, timer: Callable[[], float] = time.perf_counter
) -> tuple[BloomFilter, int, float]:
    """A filter of every entity with an active label, with `seq` = the head read before them.

    Returns the filter, the key count it was sized for and the build time in seconds. Blocking.
    """
    t0 = timer()
    seq = storage.head_seq()  # FIRST: every key labeled at or before seq is iterated below
    # Active labels bound the number of labeled entities from above (an entity has >= 1).
    expected = storage.count_labels().get(LabelStatus.ACTIVE, 0)
    capacity = snapshot_capacity(expected)
    bloom = BloomFilter.for_capacity(capacity, fp_rate)
    entities = storage.iter_labeled_entities()
    while chunk := list(itertools.islice(entities, _CHUNK)):
        bloom.add_many(chunk)
    bloom.seq = seq
    return bloom, capacity, timer() - t0


class BloomSnapshots:
    """The current snapshot of one storage, kept up to date by `refresh()`. Thread-safe."""

    def __init__(self, storage: LabelStorage, fp_rate: float, *,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._storage = storage
        self.fp_rate = fp_rate
        self._timer = timer
        self._lock = threading.Lock()  # one build or refresh at a time
        self._process = secrets.token_hex(4)  # builds of another process are other bytes
        self._builds = itertools.count(1)
        self._build = ""
        self._bloom: BloomFilter | None = None  # the filter behind `current`, updated in place
        self._capacity = 0
        self.stale = 0  # entities that lost their last active label since the full build
        self.full_builds = 0
        self.current: BloomSnapshot | None = None

    def rebuild(self) -> BloomSnapshot:
        """Build from scratch now (waiting for a build in progress first) and serve it."""
        with self._lock:
            return self._rebuild()

    def refresh(self) -> BloomSnapshot:
        """Bring the snapshot up to the store's head: from the change feed, or rebuilt if due.

        Returns the same snapshot (same ETag) while the store has not changed.
        """
        with self._lock:
            bloom, current = self._bloom, self.current
            if bloom is None or current is None:
                return self._rebuild()
            t0 = self._timer()
            moved = self._catch_up(bloom)
            if moved is None or self._due_for_rebuild(bloom):
                return self._rebuild()
            if not moved:
                return current
            return self._publish(self._timer() - t0)

    def latest(self) -> BloomSnapshot:
        """The current snapshot, building the first one if there is none yet."""
        current = self.current
        if current is not None:
            return current
        with self._lock:
            current = self.current
            return current if current is not None else self._rebuild()

    def adopt(self, snapshot: BloomSnapshot) -> None:
        """Go on from a snapshot another process built: serve it as is (same ETag) and
        bring its filter up to date from the change feed on the next `refresh()`."""
        bloom = BloomFilter.from_bytes(snapshot.data)
        with self._lock:
            self._bloom, self._capacity, self.stale = bloom, snapshot.capacity, 0
            self._build = snapshot.etag.strip('"').rpartition(".")[0]
            self.current = snapshot

    def _rebuild(self) -> BloomSnapshot:
        bloom, capacity, seconds = build_snapshot(self._storage, self.fp_rate, timer=self._timer)
        self._bloom, self._capacity, self.stale = bloom, capacity, 0
        self.full_builds += 1
        data = bloom.to_bytes()
        current = self.current
        if current is not None and current.data == data:
            return current  # the same bytes: keep the ETag readers hold
        self._build = f"{self._process}-{next(self._builds)}"
        return self._publish(seconds, data)

    def _catch_up(self, bloom: BloomFilter) -> bool | None:
        """Apply the feed after bloom.seq; whether the head moved, None if the feed cannot tell."""
        start = after = bloom.seq
        while True:
            page = self._storage.changes(after, limit=_FEED_PAGE)
            if after < page.oldest - 1 or start > page.head:
                return None  # pruned past the filter's seq, or the store went back
            labeled = [c.entity for c in page.changes if c.labeled]
            for i in range(0, len(labeled), _CHUNK):
                bloom.add_many(labeled[i:i + _CHUNK])
            self.stale += sum(not c.labeled for c in page.changes)
            if page.changes and page.changes[-1].seq < page.head:
                after = page.changes[-1].seq
                continue
            if page.head == start:
                return False
            bloom.seq = page.head  # every record up to the head this page was read at is in
            return True

    def _due_for_rebuild(self, bloom: BloomFilter) -> bool:
        if bloom.key_count > self._capacity:
            return True  # past its design point: resize with headroom
        return self.stale >= max(MIN_STALE, int(bloom.key_count * STALE_SHARE))

    def _publish(self, seconds: float, data: bytes | None = None) -> BloomSnapshot:
        bloom = self._bloom
        assert bloom is not None
        snapshot = BloomSnapshot(
            data=bloom.to_bytes() if data is None else data,
            seq=bloom.seq,
            key_count=bloom.key_count,
            capacity=self._capacity,
            fp_rate=self.fp_rate,
            build_seconds=seconds,
            etag=f'"{self._build}.{bloom.seq}"',
        )
        self.current = snapshot
        return snapshot
