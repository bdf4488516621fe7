"""Key signatures and the blocked bloom filter the SDK uses to skip lookups of unlabeled keys.

A `BloomFilter` never reports a key it holds as absent. Its snapshot (`to_bytes`,
`save`) carries the change sequence number `seq` it reflects, so a reader knows
where to resume the change feed. Layout, sizing and the snapshot format are in
docs/native.md.

Thread safety: lookups (`in`, `contains*`) are safe concurrently with each other
and with writers; writers (`add*`, `update`, `seq = ...`) are serialised by an
internal lock. After fork() the filter is valid in the child.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError, SnapshotError
from ..model.keys import CANONICAL_PATTERN, is_canonical
from . import binding as _native
from .lazy_numpy import LazyNumpy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Signatures = npt.NDArray[np.uint64]
else:
    np = LazyNumpy(globals())  # imported on the first mask (surely_unlabeled), then cached

DEFAULT_SEED: int = _native.DEFAULT_SEED
HASH_ID: int = _native.HASH_ID
HASH_NAME: str = _native.HASH_NAME
SNAPSHOT_VERSION: int = _native.SNAPSHOT_VERSION


def signature(key: str, seed: int = DEFAULT_SEED) -> int:
    """The 64-bit signature (sig64 v1) of a key's UTF-8 bytes; stable across platforms."""
    return _native.sig64(key, seed)


def signatures(keys: Sequence[str], seed: int = DEFAULT_SEED) -> Signatures:
    """Signatures of many keys in one C call per chunk (keys must not contain '\\n')."""
    return _native.sig64_many(keys, seed)


class BloomFilter:
    """A cache-line-blocked bloom filter over canonical entity keys (512-bit blocks)."""

    __slots__ = ("_native",)

    def __init__(self, block_count: int, k: int, *, seed: int = DEFAULT_SEED) -> None:
        """An empty filter of `block_count` 64-byte blocks setting `k` bits per key.

        block_count must be in 1..MAX_BLOCKS (2**34, 1 TiB), k in 1..16, seed in
        0..2**64-1; otherwise InvalidInputError naming the argument.
        """
        self._native = _native.NativeBloom.create(block_count, k, seed)

    @classmethod
    def for_capacity(
        cls, expected_keys: int, fp_rate: float = 0.01, *, seed: int = DEFAULT_SEED
    ) -> BloomFilter:
        """The smallest filter whose FP rate at `expected_keys` keys is <= fp_rate.

        The FP rate is computed exactly for the blocked layout (keys spread
        binomially over blocks), not with the textbook unblocked formula.
        InvalidInputError if expected_keys is not in 1..2**64-1, fp_rate not in
        (0, 1), or no filter of at most MAX_BLOCKS blocks reaches fp_rate.
        """
        _native.check_u64(seed, "seed")
        blocks, k = _native.plan(expected_keys, fp_rate)
        return cls(blocks, k, seed=seed)

    @classmethod
    def _wrap(cls, native: _native.NativeBloom) -> BloomFilter:
        bloom = cls.__new__(cls)
        bloom._native = native
        return bloom

    # -- snapshots ---------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> BloomFilter:
        """Load a snapshot; a truncated, corrupt, foreign or future one raises SnapshotError."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInputError(f"must be bytes, got {type(data).__name__}", field="snapshot")
        return cls._wrap(_native.NativeBloom.from_snapshot(data, "(bytes)"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BloomFilter:
        """Load a snapshot file (mapped, checked whole, then copied once)."""
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    return cls._wrap(_native.NativeBloom.from_snapshot(b"", repr(str(path))))
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    return cls._wrap(_native.NativeBloom.from_snapshot(view, repr(str(path))))
        except OSError as exc:
            raise SnapshotError(f"cannot read bloom snapshot {str(path)!r}: {exc}") from exc

    def to_bytes(self) -> bytes:
        """The snapshot: header (parameters, seq, checksums) and bit array."""
        return bytes(self._native.snapshot())

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickle as a snapshot (e.g. to hand a filter to worker processes)."""
        return (BloomFilter.from_bytes, (self.to_bytes(),))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the snapshot atomically (temp file, fsync, rename)."""
        data = self._native.snapshot()
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- keys --------------------------------------------------------------------------------

    def add(self, key: str) -> bool:
        """Add a key; True if it set a new bit (and was counted in key_count)."""
        return self._native.add_key(key)

    def add_many(self, keys: Sequence[str]) -> int:
        """Add a batch (validated whole first); returns how many were counted."""
        return self._native.add_keys(keys)

    def contains(self, key: str) -> bool:
        """False means surely never added; True means probably added."""
        return self._native.contains_key(key)

    def __contains__(self, key: object) -> bool:
        return self._native.contains_key(key)

    def contains_many(self, keys: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Membership of each key, as a numpy bool array (one C call per chunk)."""
        return self._native.contains_keys(keys)

    # -- precomputed signatures (must come from `signature(key, self.seed)`) ------------------

    def signature(self, key: str) -> int:
        """The signature of `key` under this filter's seed."""
        return _native.sig64(key, self._native.seed)

    def signatures(self, keys: Sequence[str]) -> Signatures:
        return _native.sig64_many(keys, self._native.seed)

    def add_signature(self, sig: int) -> bool:
        return self._native.add_sig(sig)

    def add_signatures(self, sigs: Signatures | Sequence[int]) -> int:
        return self._native.add_sigs(_native.as_sig_array(sigs))

    def contains_signature(self, sig: int) -> bool:
        return self._native.contains_sig(sig)

    def contains_signatures(self, sigs: Signatures | Sequence[int]) -> npt.NDArray[np.bool_]:
        return self._native.contains_sigs(_native.as_sig_array(sigs))

    # -- combining ---------------------------------------------------------------------------

    def _check_other(self, other: object) -> BloomFilter:
        if not isinstance(other, BloomFilter):
            raise InvalidInputError(
                f"must be a BloomFilter, got {type(other).__name__}", field="other"
            )
        return other

    def update(self, other: BloomFilter) -> None:
        """In place: add every key of `other` (same block_count, k and seed only).

        key_count becomes the sum (an upper bound); seq the larger of the two, since
        the union holds every key either filter held.
        """
        self._native.union_from(self._check_other(other)._native)

    def union(self, other: BloomFilter) -> BloomFilter:
        """A new filter holding the keys of both (see `update`)."""
        other = self._check_other(other)
        if not self.compatible(other):
            self._native.union_from(other._native)  # raises the mismatch error
        result = self.copy()
        result.update(other)
        return result

    def compatible(self, other: BloomFilter) -> bool:
        """Whether `other` has the same parameters, so the two can be united."""
        return (self.block_count, self.k, self.seed) == (other.block_count, other.k, other.seed)

    def __or__(self, other: BloomFilter) -> BloomFilter:
        return self.union(other)

    def __ior__(self, other: BloomFilter) -> BloomFilter:
        self.update(other)
        return self

    def copy(self) -> BloomFilter:
        return BloomFilter._wrap(self._native.copy())

    # -- properties --------------------------------------------------------------------------

    @property
    def block_count(self) -> int:
        return self._native.blocks

    @property
    def k(self) -> int:
        """Bits set per key (all in the key's block)."""
        return self._native.k

    @property
    def seed(self) -> int:
        return self._native.seed

    @property
    def hash_id(self) -> int:
        return HASH_ID

    @property
    def hash_name(self) -> str:
        return HASH_NAME

    @property
    def format_version(self) -> int:
        return SNAPSHOT_VERSION

    @property
    def key_count(self) -> int:
        """Keys counted so far: adds that set at least one new bit (duplicates not counted)."""
        return self._native.key_count

    @property
    def size_bytes(self) -> int:
        """Size of the bit array."""
        return self._native.blocks * _native.BLOCK_BYTES

    @property
    def snapshot_size(self) -> int:
        return self._native.snapshot_size()

    @property
    def bytes_per_key(self) -> float:
        """size_bytes / key_count (inf while empty)."""
        count = self.key_count
        return self.size_bytes / count if count else math.inf

    @property
    def estimated_fp(self) -> float:
        """FP rate for a random absent key, computed from the bits actually set."""
        return self._native.fill_fp()

    def model_fp(self, keys: int | None = None) -> float:
        """FP rate the sizing model predicts at `keys` keys (default: key_count).

        keys must be an int in 0..2**64-1 (InvalidInputError otherwise).
        """
        n = self.key_count if keys is None else keys
        return _native.model_fp(self.block_count, self.k, n)

    @property
    def seq(self) -> int:
        """The change sequence number this filter reflects (carried by snapshots)."""
        return self._native.seq

    @seq.setter
    def seq(self, value: int) -> None:
        self._native.seq = value

    def info(self) -> dict[str, Any]:
        """Parameters and figures, e.g. for `enforce-sdk bloom info`."""
        return {
            "format_version": self.format_version,
            "hash_id": self.hash_id,
            "hash_name": self.hash_name,
            "seed": self.seed,
            "block_count": self.block_count,
            "k": self.k,
            "size_bytes": self.size_bytes,
            "key_count": self.key_count,
            "bytes_per_key": self.bytes_per_key,
            "estimated_fp": self.estimated_fp,
            "seq": self.seq,
        }

    def __repr__(self) -> str:
        return (
            f"BloomFilter(block_count={self.block_count}, k={self.k}, seed={self.seed}, "
            f"key_count={self.key_count}, seq={self.seq})"
        )


# A page whose lines are canonical or domain keys (those are then checked one by one).
_DOMAIN = r"domain:[^\n]*"


_PAGE_LINES = re.compile(rf"(?:(?:{CANONICAL_PATTERN}|{_DOMAIN})\n)*(?:{CANONICAL_PATTERN}|{_DOMAIN})")


_DOMAIN_LINES = re.compile(rf"^{_DOMAIN}$", re.MULTILINE)


def surely_unlabeled(bloom: BloomFilter, keys: Sequence[str]) -> list[int] | None:
    """Indexes of the raw keys that are canonical and absent from the filter (one C call).

    None when the page cannot be prechecked as a whole (a key that is not a string or
    holds a newline): the caller takes the normal path, which validates.
    """
    try:
        mask = bloom.contains_many(keys)
    except (InvalidInputError, TypeError):
        return None
    absent: list[int] = np.flatnonzero(~mask).tolist()
    if not absent:
        return absent
    candidates = [keys[i] for i in absent]
    joined = "\n".join(candidates)
    if _PAGE_LINES.fullmatch(joined) and all(
        is_canonical(d) for d in _DOMAIN_LINES.findall(joined)
    ):
        return absent
    return [i for i, key in zip(absent, candidates, strict=True) if is_canonical(key)]
