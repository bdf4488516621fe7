"""`ImageIndex`: a set of PDQ hashes answering "every hash within distance d", exactly.

The C side (native/pdq_index.c) scans the packed hashes (32 bytes each) with a popcount
of the XOR: recall is 1.0 by construction, memory is 40-48 bytes per hash once sized
(`reserve`), and a query costs a pass over all hashes (docs/images.md gives figures).
This is the exact baseline the issue's faster designs (multi-index hashing) must
match; it is not yet served by the store nor used by the SDK.

Thread safety: every call holds the index's lock (the C index is not thread-safe; cffi
releases the GIL during the scan). After fork() the index is plain memory, valid in the
child; the lock is re-created there.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from .._errors import InvalidInputError, NativeError
from ..model.keys import pdq_hash_of_key
from . import binding as _native
from .images import HASH_HEX_LENGTH, ImageSignature

# binding stays the only importer of the compiled module; this module reuses its handles
_ffi: Any = getattr(_native, "ffi")  # noqa: B009 - binding does not re-export them
_lib: Any = getattr(_native, "lib")  # noqa: B009
_LIVE: weakref.WeakSet[ImageIndex] = weakref.WeakSet()
MAX_DISTANCE = 256


def _after_fork_in_child() -> None:
    for index in list(_LIVE):
        index._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def hash_bytes(value: object, field: str = "hash") -> bytes:
    """The 32 bytes of a PDQ hash given as an ImageSignature, 64 hex, or an image: key."""
    if isinstance(value, ImageSignature):
        text = value.hash
    elif isinstance(value, str) and ":" in value:
        from_key = pdq_hash_of_key(value)
        if from_key is None:
            raise InvalidInputError(f"{value!r} is not a PDQ image key", field=field)
        text = from_key
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidInputError(
            f"must be an ImageSignature, 64 hex characters or an image: key, got "
            f"{type(value).__name__}", field=field)
    if len(text) != HASH_HEX_LENGTH:
        raise InvalidInputError(f"must be {HASH_HEX_LENGTH} hex characters", field=field)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not hex", field=field) from None


def _check(code: int, what: str) -> None:
    if code != _lib.ENF_OK:
        raise NativeError(f"{what}: {_native.error_message(code)} (code {code})")


class ImageIndex:
    """A set of PDQ hashes with exact range queries by Hamming distance."""

    __slots__ = ("__weakref__", "_lock", "_ptr")

    def __init__(self, capacity: int = 0) -> None:
        """An empty index with room for `capacity` hashes before it grows."""
        capacity = _native.check_u64(capacity, "capacity")
        out = _ffi.new("enf_pdq_index **")
        _check(_lib.enf_pdq_index_new(capacity, out), "ImageIndex")
        self._ptr = _ffi.gc(out[0], _lib.enf_pdq_index_free)
        self._lock = threading.Lock()
        _LIVE.add(self)

    def __len__(self) -> int:
        with self._lock:
            return int(_lib.enf_pdq_index_count(self._ptr))

    @property
    def memory_bytes(self) -> int:
        """Bytes the index holds (its hash array and table at their capacities)."""
        with self._lock:
            return int(_lib.enf_pdq_index_memory(self._ptr))

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` hashes in all (sizes the memory to 40-48 B each)."""
        capacity = _native.check_u64(capacity, "capacity")
        with self._lock:
            _check(_lib.enf_pdq_index_reserve(self._ptr, capacity), "ImageIndex.reserve")

    def add(self, signature: object) -> bool:
        """Add a hash (ImageSignature, 64 hex or image: key); True if it was new."""
        raw = hash_bytes(signature, "signature")
        flag = _ffi.new("int *")
        with self._lock:
            _check(_lib.enf_pdq_index_add(self._ptr, raw, flag), "ImageIndex.add")
        return bool(flag[0])

    def remove(self, signature: object) -> bool:
        """Remove a hash; True if it was held."""
        raw = hash_bytes(signature, "signature")
        flag = _ffi.new("int *")
        with self._lock:
            _check(_lib.enf_pdq_index_remove(self._ptr, raw, flag), "ImageIndex.remove")
        return bool(flag[0])

    def __contains__(self, signature: object) -> bool:
        """Whether this exact hash is held (a table lookup, not a scan)."""
        raw = hash_bytes(signature, "signature")
        with self._lock:
            return bool(_lib.enf_pdq_index_contains(self._ptr, raw))

    def query(self, signature: object, max_distance: int = 31) -> list[tuple[str, int]]:
        """Every held hash within `max_distance` bits, as (hex, distance), nearest first."""
        raw = hash_bytes(signature, "signature")
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or not (
                0 <= max_distance <= MAX_DISTANCE):
            raise InvalidInputError(f"must be an int in 0..{MAX_DISTANCE}",
                                    field="max_distance")
        cap = 64
        while True:
            slots = _ffi.new("uint64_t[]", cap)
            dists = _ffi.new("uint32_t[]", cap)
            with self._lock:
                found = int(_lib.enf_pdq_index_query(self._ptr, raw, max_distance, slots,
                                                     dists, cap))
                if found <= cap:
                    out = _ffi.new("uint8_t[]", 32)
                    matches = []
                    for i in range(found):
                        _lib.enf_pdq_index_get(self._ptr, slots[i], out)
                        matches.append((bytes(_ffi.buffer(out, 32)).hex(), int(dists[i])))
                    break
            cap = found
        matches.sort(key=lambda m: (m[1], m[0]))
        return matches
