"""The thin binding to the compiled `_enforce_native` module (and its only importer).

Everything crossing into C is validated here first (types, ranges, buffer
sizes); every C return code is checked right after the call and turned into a
project error. Constants and error codes are read from the compiled C.

Thread safety: readers (`contains*`, `snapshot`, properties) never lock; C reads
and writes whole 64-bit words with relaxed atomics and writers only set bits.
Writers (`add*`, `union_from`, `seq`) are serialised by a per-filter lock,
because cffi releases the GIL around each C call. After fork() the filter is
plain memory and valid in the child; the locks are re-created there.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ._errors import InvalidInputError, NativeError, SnapshotError

try:
    from ._enforce_native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "enforce_sdk's native extension (enforce_sdk._enforce_native) is not built; "
        "reinstall the package with a C compiler available (pip install -e .)"
    ) from exc

HASH_ID: int = lib.ENF_HASH_ID
HASH_NAME: str = ffi.string(lib.enf_hash_name(lib.ENF_HASH_ID)).decode()
SNAPSHOT_VERSION: int = lib.ENF_SNAPSHOT_VERSION
SNAPSHOT_HEADER_SIZE: int = lib.ENF_SNAPSHOT_HEADER_SIZE
BLOCK_BYTES: int = lib.ENF_BLOCK_BYTES
BLOCK_BITS: int = lib.ENF_BLOCK_BITS
MAX_K: int = lib.ENF_MAX_K
MAX_BLOCKS: int = lib.ENF_MAX_BLOCKS
DEFAULT_SEED: int = lib.ENF_DEFAULT_SEED
U64_MAX = (1 << 64) - 1

# Keys per C call in batch paths: the joined buffer stays in L2 while C reads it.
BATCH_CHUNK = 8192

_SNAPSHOT_CODES = frozenset(
    {
        lib.ENF_ERR_SNAP_TRUNCATED,
        lib.ENF_ERR_SNAP_MAGIC,
        lib.ENF_ERR_SNAP_VERSION,
        lib.ENF_ERR_SNAP_HEADER,
        lib.ENF_ERR_SNAP_PARAMS,
        lib.ENF_ERR_SNAP_BODY,
        lib.ENF_ERR_SNAP_TRAILING,
        lib.ENF_ERR_SNAP_HASH,
    }
)

# Hot-path functions bound once (module attribute lookups cost on every call), typed
# here so callers need no run-time cast.
_sig64: Callable[[bytes, int, int], int] = lib.enf_sig64
_contains_key: Callable[[Any, bytes, int], int] = lib.enf_bloom_contains_key
_add_key: Callable[[Any, bytes, int], int] = lib.enf_bloom_add_key
_contains_sig: Callable[[Any, int], int] = lib.enf_bloom_contains_sig


def error_message(code: int) -> str:
    """C's description of an ENF_* return code."""
    return str(ffi.string(lib.enf_strerror(code)).decode())


def _check(code: int, what: str) -> None:
    if code != lib.ENF_OK:
        raise NativeError(f"{what}: {error_message(code)} (code {code})")


def _snapshot_error(code: int, source: str) -> SnapshotError:
    message = f"bloom snapshot {source} rejected: {error_message(code)}"
    if code == lib.ENF_ERR_SNAP_VERSION:
        message += f" (this build reads format version {SNAPSHOT_VERSION})"
    return SnapshotError(message)


def check_u64(value: object, field: str) -> int:
    """An int in 0..2**64-1 (not bool), else InvalidInputError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"must be an int, got {type(value).__name__}", field=field)
    if not 0 <= value <= U64_MAX:
        raise InvalidInputError(f"must be in 0..2**64-1, got {value}", field=field)
    return value


def encode_key(key: object, field: str = "key") -> bytes:
    """UTF-8 bytes of a str key, else InvalidInputError."""
    if not isinstance(key, str):
        raise InvalidInputError(f"must be str, got {type(key).__name__}", field=field)
    try:
        return key.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"is not encodable as UTF-8: {exc.reason}", field=field) from exc


def as_key_list(keys: object) -> Sequence[str]:
    """A batch of keys as an indexable sequence (a lone str or bytes is refused)."""
    if isinstance(keys, str | bytes | bytearray):
        raise InvalidInputError(
            f"must be a sequence of str keys, not a single {type(keys).__name__}", field="keys"
        )
    if isinstance(keys, list | tuple):
        return keys
    if isinstance(keys, Iterable):
        return list(keys)
    raise InvalidInputError(
        f"must be a sequence of str keys, got {type(keys).__name__}", field="keys"
    )


def _join(keys: Sequence[str], start: int) -> bytes:
    """'\\n'-joined UTF-8 of a chunk of keys; names the first non-str key on error.

    A key containing '\\n' is caught by C (the key count does not match) and
    then named by `_batch_error`.
    """
    try:
        return "\n".join(keys).encode()
    except (TypeError, UnicodeEncodeError):
        for i, key in enumerate(keys):
            encode_key(key, field=f"keys[{start + i}]")
        raise  # pragma: no cover - one of the keys must have failed above


def _batch_error(code: int, keys: Sequence[str], start: int) -> Exception:
    if code == lib.ENF_ERR_BATCH:
        for i, key in enumerate(keys):
            if "\n" in key:
                return InvalidInputError("must not contain a newline", field=f"keys[{start + i}]")
    return NativeError(f"processing a batch of keys: {error_message(code)} (code {code})")


def _chunks(keys: Sequence[str]) -> Iterable[tuple[int, Sequence[str], bytes]]:
    for start in range(0, len(keys), BATCH_CHUNK):
        part = keys[start : start + BATCH_CHUNK]
        yield start, part, _join(part, start)


def sig64(key: object, seed: object) -> int:
    """sig64 v1 of one key's UTF-8 bytes."""
    if type(key) is str and type(seed) is int and 0 <= seed <= U64_MAX:  # the common case
        try:
            data = key.encode()
        except UnicodeEncodeError:
            data = encode_key(key)
        return _sig64(data, len(data), seed)
    data = encode_key(key)
    return _sig64(data, len(data), check_u64(seed, "seed"))


def sig64_many(keys: object, seed: object) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """sig64 v1 of each key, as one uint64 array."""
    seed = check_u64(seed, "seed")
    key_list = as_key_list(keys)
    out = np.empty(len(key_list), dtype=np.uint64)
    if not key_list:
        return out
    dest = ffi.from_buffer("uint64_t[]", out)
    for start, part, buf in _chunks(key_list):
        code = lib.enf_sig64_lines(buf, len(buf), len(part), seed, dest + start)
        if code != lib.ENF_OK:
            raise _batch_error(code, part, start)
    return out


def as_sig_array(sigs: object) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """A C-contiguous uint64 array of signatures; refuses negatives, floats, bools."""
    if isinstance(sigs, np.ndarray):
        if sigs.dtype == np.uint64:
            return np.ascontiguousarray(sigs).reshape(-1)
        if sigs.dtype.kind == "i":
            if sigs.size and int(sigs.min()) < 0:
                raise InvalidInputError("must be non-negative 64-bit signatures", field="sigs")
            return np.ascontiguousarray(sigs, dtype=np.uint64).reshape(-1)
        if sigs.dtype.kind == "u":
            return np.ascontiguousarray(sigs, dtype=np.uint64).reshape(-1)
        raise InvalidInputError(f"must be an integer array, got dtype {sigs.dtype}", field="sigs")
    if not isinstance(sigs, list | tuple):
        raise InvalidInputError(
            f"must be a uint64 array or a list of ints, got {type(sigs).__name__}", field="sigs"
        )
    values = sigs
    for i, value in enumerate(values):
        check_u64(value, f"sigs[{i}]")
    return np.array(values, dtype=np.uint64)


def plan(keys: int, fp: float) -> tuple[int, int]:
    """(blocks, k) of the smallest blocked filter with FP <= fp at `keys` keys."""
    blocks = ffi.new("uint64_t *")
    k = ffi.new("uint32_t *")
    code = lib.enf_bloom_plan(keys, fp, blocks, k)
    _check(code, f"sizing a filter for {keys} keys at fp {fp}")
    return int(blocks[0]), int(k[0])


def model_fp(blocks: int, k: int, keys: int) -> float:
    """Expected FP rate of a (blocks, k) filter holding `keys` keys."""
    return float(lib.enf_bloom_model_fp(blocks, k, keys))


def crc32c(data: bytes, crc: int = 0, *, portable: bool = False) -> int:
    """CRC32C of bytes (for tests and tools that inspect snapshots).

    `portable` forces the table-driven code used on CPUs without a CRC instruction.
    """
    fn = lib.enf_crc32c_portable if portable else lib.enf_crc32c
    return int(fn(crc, data, len(data)))


_LIVE: weakref.WeakSet[NativeBloom] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by a parent thread at fork time would stay locked forever.
    for bloom in list(_LIVE):
        bloom._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class NativeBloom:
    """Owns one C `enf_bloom`; freed when the object is collected."""

    __slots__ = ("__weakref__", "_lock", "_ptr")

    def __init__(self, ptr: Any) -> None:
        size = int(lib.enf_bloom_blocks(ptr)) * BLOCK_BYTES
        self._ptr = ffi.gc(ptr, lib.enf_bloom_free, size=size)
        self._lock = threading.Lock()
        _LIVE.add(self)

    @classmethod
    def create(cls, blocks: int, k: int, seed: int) -> NativeBloom:
        out = ffi.new("enf_bloom **")
        _check(lib.enf_bloom_new(blocks, k, seed, out), f"allocating {blocks} blocks")
        return cls(out[0])

    @classmethod
    def from_snapshot(cls, data: Any, source: str) -> NativeBloom:
        """Validate a whole snapshot (any buffer: bytes, mmap, ...) and load it."""
        out = ffi.new("enf_bloom **")
        with ffi.from_buffer(data) as buf:
            code = lib.enf_snapshot_read(buf, len(buf), out)
        if code in _SNAPSHOT_CODES:
            raise _snapshot_error(code, source)
        _check(code, f"loading bloom snapshot {source}")
        return cls(out[0])

    def copy(self) -> NativeBloom:
        out = ffi.new("enf_bloom **")
        with self._lock:
            _check(lib.enf_bloom_copy(self._ptr, out), "copying a filter")
        return NativeBloom(out[0])

    @property
    def blocks(self) -> int:
        return int(lib.enf_bloom_blocks(self._ptr))

    @property
    def k(self) -> int:
        return int(lib.enf_bloom_k(self._ptr))

    @property
    def seed(self) -> int:
        return int(lib.enf_bloom_seed(self._ptr))

    @property
    def key_count(self) -> int:
        return int(lib.enf_bloom_key_count(self._ptr))

    @property
    def seq(self) -> int:
        return int(lib.enf_bloom_seq(self._ptr))

    @seq.setter
    def seq(self, value: int) -> None:
        with self._lock:
            lib.enf_bloom_set_seq(self._ptr, value)

    def fill_fp(self) -> float:
        return float(lib.enf_bloom_fill_fp(self._ptr))

    def add_key(self, key: object) -> bool:
        data = encode_key(key)
        with self._lock:
            return _add_key(self._ptr, data, len(data)) == 1

    def contains_key(self, key: object) -> bool:
        if type(key) is str:
            try:
                data = key.encode()
            except UnicodeEncodeError:
                data = encode_key(key)
        else:
            data = encode_key(key)
        return _contains_key(self._ptr, data, len(data)) == 1

    def add_sig(self, sig: int) -> bool:
        with self._lock:
            return bool(lib.enf_bloom_add_sig(self._ptr, sig))

    def contains_sig(self, sig: int) -> bool:
        return _contains_sig(self._ptr, sig) == 1

    def add_sigs(self, sigs: np.ndarray[Any, np.dtype[np.uint64]]) -> int:
        """Add validated signatures; returns how many set new bits (were counted)."""
        with self._lock:
            before = int(lib.enf_bloom_key_count(self._ptr))
            if len(sigs):
                lib.enf_bloom_add_sigs(self._ptr, ffi.from_buffer("uint64_t[]", sigs), len(sigs))
            return int(lib.enf_bloom_key_count(self._ptr)) - before

    def contains_sigs(
        self, sigs: np.ndarray[Any, np.dtype[np.uint64]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        out = np.zeros(len(sigs), dtype=np.bool_)
        if len(sigs):
            lib.enf_bloom_contains_sigs(
                self._ptr,
                ffi.from_buffer("uint64_t[]", sigs),
                len(sigs),
                ffi.from_buffer("uint8_t[]", out),
            )
        return out

    def add_keys(self, keys: object) -> int:
        """Add a batch; every key is validated and hashed before anything is added."""
        return self.add_sigs(sig64_many(keys, self.seed))

    def contains_keys(self, keys: object) -> np.ndarray[Any, np.dtype[np.bool_]]:
        key_list = as_key_list(keys)
        out = np.zeros(len(key_list), dtype=np.bool_)
        if not key_list:
            return out
        dest = ffi.from_buffer("uint8_t[]", out)
        ptr = self._ptr
        for start, part, buf in _chunks(key_list):
            code = lib.enf_bloom_contains_lines(ptr, buf, len(buf), len(part), dest + start)
            if code != lib.ENF_OK:
                raise _batch_error(code, part, start)
        return out

    def union_from(self, other: NativeBloom) -> None:
        if other is self:
            return
        with self._lock:
            code = lib.enf_bloom_union(self._ptr, other._ptr)
        if code == lib.ENF_ERR_MISMATCH:
            raise InvalidInputError(
                f"filters differ: blocks {self.blocks} vs {other.blocks}, k {self.k} vs "
                f"{other.k}, seed {self.seed} vs {other.seed}; only equal parameters unite",
                field="other",
            )
        _check(code, "uniting filters")

    def snapshot_size(self) -> int:
        return int(lib.enf_snapshot_size(self._ptr))

    def snapshot(self) -> bytearray:
        """The full snapshot (header + body) as a new buffer."""
        with self._lock:
            size = int(lib.enf_snapshot_size(self._ptr))
            out = bytearray(size)
            code = lib.enf_snapshot_write(self._ptr, ffi.from_buffer("uint8_t[]", out), size)
        _check(code, "writing a snapshot")
        return out
