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

`BloomSnapshots` keeps the last built snapshot and serialises builds; builds
block (storage reads, hashing), so callers run them in a thread.
"""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True, slots=True)
class BloomSnapshot:
    """One built snapshot: `data` is BloomFilter.to_bytes() with `seq` set."""

    data: bytes
    seq: int
    key_count: int
    capacity: int  # key count the filter was sized for
    fp_rate: float  # its FP rate at `capacity` keys (at most)
    build_seconds: float
    etag: str  # changes with every build; lets a reader skip an unchanged download


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
    """The last built snapshot of one storage; one build at a time. Thread-safe."""

    def __init__(self, storage: LabelStorage, fp_rate: float) -> None:
        self._storage = storage
        self.fp_rate = fp_rate
        self._build_lock = threading.Lock()
        self._builds = itertools.count(1)
        self.current: BloomSnapshot | None = None

    def rebuild(self) -> BloomSnapshot:
        """Build a new snapshot now (waiting for a build in progress first) and serve it."""
        with self._build_lock:
            bloom, capacity, seconds = build_snapshot(self._storage, self.fp_rate)
            snapshot = BloomSnapshot(
                data=bloom.to_bytes(),
                seq=bloom.seq,
                key_count=bloom.key_count,
                capacity=capacity,
                fp_rate=self.fp_rate,
                build_seconds=seconds,
                etag=f'"{bloom.seq}-{next(self._builds)}"',
            )
            self.current = snapshot
            return snapshot

    def latest(self) -> BloomSnapshot:
        """The last built snapshot, building the first one if there is none yet."""
        current = self.current
        if current is not None:
            return current
        with self._build_lock:
            current = self.current
        return current if current is not None else self.rebuild()
