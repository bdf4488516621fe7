"""The thin binding to the compiled `_enforce_native` module (and its only importer).

Everything crossing into C is validated here first, whoever the caller: ints
must be `int` (not bool) in the C type's range, counts within the limits C
enforces, signature arrays 1-D, C-contiguous, aligned numpy uint64, buffers
bytes-like. Bad input raises `InvalidInputError` naming the argument (never a
bare OverflowError/TypeError from cffi, and never a C read past a buffer). Every
C return code is checked right after the call and turned into a project error.
Constants and error codes are read from the compiled C.

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
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._errors import InvalidInputError, NativeError, SnapshotError
from .lazy_numpy import LazyNumpy

if TYPE_CHECKING:
    import numpy as np

try:
    from ._enforce_native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "enforce_sdk's native extension (enforce_sdk.native._enforce_native) is not built; "
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
U32_MAX = (1 << 32) - 1
_U64: np.dtype[np.uint64]  # native byte order: what C reads; set when numpy loads


def _numpy_loaded(numpy: ModuleType) -> None:
    global _U64
    _U64 = numpy.dtype(numpy.uint64)


# numpy loads on first use (see lazy_numpy): `import enforce_sdk` does not import it.
if not TYPE_CHECKING:
    np = LazyNumpy(globals(), on_load=_numpy_loaded)

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
        lib.ENF_ERR_SNAP_HEADER_CRC,
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


def check_count(value: object, field: str, maximum: int) -> int:
    """An int in 1..maximum (not bool), else InvalidInputError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"must be an int, got {type(value).__name__}", field=field)
    if value < 1:
        raise InvalidInputError(f"must be at least 1, got {value}", field=field)
    if value > maximum:
        raise InvalidInputError(f"must be at most {maximum}, got {value}", field=field)
    return value


def check_fp_rate(value: object, field: str = "fp_rate") -> float:
    """A number strictly between 0 and 1 (NaN refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"must be a number, got {type(value).__name__}", field=field)
    if not (0.0 < value < 1.0):
        raise InvalidInputError(f"must be in (0, 1), got {value!r}", field=field)
    return float(value)


def check_sig_array(sigs: object, field: str = "sigs") -> np.ndarray[Any, np.dtype[np.uint64]]:
    """`sigs` itself if C may read len(sigs) uint64 words from it, else InvalidInputError.

    C is handed the array's buffer and its length, so anything but a 1-D,
    C-contiguous, aligned, native-order uint64 array would be misread (or read
    past its end). Use `as_sig_array` to convert other inputs.
    """
    if type(sigs) is np.ndarray and sigs.ndim == 1 and sigs.dtype == _U64:  # the common case
        flags = sigs.flags
        if flags.c_contiguous and flags.aligned:
            return sigs
    if not isinstance(sigs, np.ndarray):
        raise InvalidInputError(
            f"must be a numpy uint64 array, got {type(sigs).__name__}", field=field
        )
    if sigs.dtype != _U64:
        raise InvalidInputError(
            f"must have dtype uint64 (native byte order), got {sigs.dtype.str}", field=field
        )
    if sigs.ndim != 1:
        raise InvalidInputError(f"must be 1-D, got shape {sigs.shape}", field=field)
    if not (sigs.flags.c_contiguous and sigs.flags.aligned):
        raise InvalidInputError("must be a C-contiguous, aligned array", field=field)
    return sigs


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
    """Signatures as an array `check_sig_array` accepts, copied only if needed.

    Takes integer arrays of any layout or a list/tuple of ints; refuses
    negatives, floats and bools.
    """
    if isinstance(sigs, np.ndarray):
        if sigs.ndim == 1 and sigs.dtype == _U64:
            flags = sigs.flags
            if flags.c_contiguous and flags.aligned:
                return sigs  # already what C reads: no copy, no new view
        if sigs.dtype.kind == "i":
            if sigs.size and int(sigs.min()) < 0:
                raise InvalidInputError("must be non-negative 64-bit signatures", field="sigs")
        elif sigs.dtype.kind != "u":
            raise InvalidInputError(
                f"must be an integer array, got dtype {sigs.dtype}", field="sigs"
            )
        # Native-order uint64, C-contiguous and aligned (copies only if it is not).
        return np.require(sigs, dtype=_U64, requirements=("C", "A")).reshape(-1)
    if not isinstance(sigs, list | tuple):
        raise InvalidInputError(
            f"must be a uint64 array or a list of ints, got {type(sigs).__name__}", field="sigs"
        )
    values = sigs
    for i, value in enumerate(values):
        check_u64(value, f"sigs[{i}]")
    return np.array(values, dtype=np.uint64)


def plan(expected_keys: object, fp_rate: object) -> tuple[int, int]:
    """(blocks, k) of the smallest blocked filter with FP <= fp_rate at `expected_keys` keys.

    InvalidInputError if even the largest filter (MAX_BLOCKS blocks) cannot reach it.
    """
    keys = check_count(expected_keys, "expected_keys", U64_MAX)
    fp = check_fp_rate(fp_rate)
    blocks = ffi.new("uint64_t *")
    k = ffi.new("uint32_t *")
    code = lib.enf_bloom_plan(keys, fp, blocks, k)
    if code == lib.ENF_ERR_TOO_LARGE:
        raise InvalidInputError(
            f"{keys} keys at fp_rate {fp!r} need more than the largest filter "
            f"({MAX_BLOCKS} blocks, {MAX_BLOCKS * BLOCK_BYTES >> 40} TiB); "
            "lower expected_keys, raise fp_rate, or split the keys over several filters",
            field="expected_keys",
        )
    _check(code, f"sizing a filter for {keys} keys at fp_rate {fp!r}")
    return int(blocks[0]), int(k[0])


def model_fp(block_count: object, k: object, keys: object) -> float:
    """Expected FP rate of a (block_count, k) filter holding `keys` keys."""
    return float(
        lib.enf_bloom_model_fp(
            check_count(block_count, "block_count", MAX_BLOCKS),
            check_count(k, "k", MAX_K),
            check_u64(keys, "keys"),
        )
    )


def crc32c(data: object, crc: object = 0, *, portable: bool = False) -> int:
    """CRC32C of bytes (for tests and tools that inspect snapshots).

    `portable` forces the table-driven code used on CPUs without a CRC instruction.
    """
    if not isinstance(data, bytes):
        raise InvalidInputError(f"must be bytes, got {type(data).__name__}", field="data")
    if isinstance(crc, bool) or not isinstance(crc, int) or not 0 <= crc <= U32_MAX:
        raise InvalidInputError(f"must be an int in 0..2**32-1, got {crc!r}", field="crc")
    fn = lib.enf_crc32c_portable if portable else lib.enf_crc32c
    return int(fn(crc, data, len(data)))


PDQ_HASH_BYTES: int = lib.ENF_PDQ_HASH_BYTES
PDQ_VARIANTS: int = lib.ENF_PDQ_VARIANTS
PDQ_MIN_DIM: int = lib.ENF_PDQ_MIN_DIM
PDQ_MAX_PIXELS: int = lib.ENF_PDQ_MAX_PIXELS


def pdq_hash_stack(stack: Any, variants: int) -> tuple[bytes, list[int]]:
    """PDQ hashes of a C-contiguous uint8 stack N x H x W (grey) or N x H x W x 3 (RGB).

    One C call for the stack: `variants` (1 or 8) hashes of PDQ_HASH_BYTES per image, in
    image order, and one quality per image. The caller (native/images.py) checks shapes
    first; this re-checks what C relies on so no call can read past the array.
    """
    if not (isinstance(stack, np.ndarray) and stack.dtype == np.uint8
            and stack.flags.c_contiguous and stack.ndim in (3, 4)):
        raise InvalidInputError("must be a C-contiguous uint8 stack", field="image")
    count, rows, cols = (int(d) for d in stack.shape[:3])
    channels = int(stack.shape[3]) if stack.ndim == 4 else 1
    out = bytearray(count * variants * PDQ_HASH_BYTES)
    quality = ffi.new("int[]", max(count, 1))
    code = lib.enf_pdq_hash_batch(
        ffi.from_buffer(stack), count, rows * cols * channels, rows, cols, channels,
        variants, ffi.from_buffer(out), quality)
    _check(code, f"PDQ hash of {count} image(s) of {rows}x{cols}x{channels}")
    return bytes(out), [int(quality[i]) for i in range(count)]


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
    def create(cls, block_count: object, k: object, seed: object) -> NativeBloom:
        blocks = check_count(block_count, "block_count", MAX_BLOCKS)
        bits = check_count(k, "k", MAX_K)
        out = ffi.new("enf_bloom **")
        code = lib.enf_bloom_new(blocks, bits, check_u64(seed, "seed"), out)
        _check(code, f"allocating {blocks} blocks")
        return cls(out[0])

    @classmethod
    def from_snapshot(cls, data: Any, source: str) -> NativeBloom:
        """Validate a whole snapshot (any contiguous buffer: bytes, mmap, ...) and load it."""
        try:
            view = memoryview(data)
        except TypeError:
            raise InvalidInputError(
                f"must be a bytes-like object, got {type(data).__name__}", field="snapshot"
            ) from None
        out = ffi.new("enf_bloom **")
        with view:  # released before returning, so the caller can close an mmap
            if not view.c_contiguous:
                raise InvalidInputError("must be a contiguous buffer", field="snapshot")
            with ffi.from_buffer(view) as buf:
                code = lib.enf_snapshot_read(buf, view.nbytes, out)
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
    def seq(self, value: object) -> None:
        seq = check_u64(value, "seq")
        with self._lock:
            lib.enf_bloom_set_seq(self._ptr, seq)

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

    def add_sig(self, sig: object) -> bool:
        value = check_u64(sig, "sig")
        with self._lock:
            return bool(lib.enf_bloom_add_sig(self._ptr, value))

    def contains_sig(self, sig: object) -> bool:
        if type(sig) is not int or not 0 <= sig <= U64_MAX:
            sig = check_u64(sig, "sig")
        return _contains_sig(self._ptr, sig) == 1

    def add_sigs(self, sigs: np.ndarray[Any, np.dtype[np.uint64]]) -> int:
        """Add a 1-D uint64 array (see check_sig_array); returns how many were counted."""
        check_sig_array(sigs)
        with self._lock:
            before = int(lib.enf_bloom_key_count(self._ptr))
            if len(sigs):
                lib.enf_bloom_add_sigs(self._ptr, ffi.from_buffer("uint64_t[]", sigs), len(sigs))
            return int(lib.enf_bloom_key_count(self._ptr)) - before

    def contains_sigs(
        self, sigs: np.ndarray[Any, np.dtype[np.uint64]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Membership of each signature of a 1-D uint64 array (see check_sig_array)."""
        check_sig_array(sigs)
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
        if not isinstance(other, NativeBloom):
            raise InvalidInputError(
                f"must be a NativeBloom, got {type(other).__name__}", field="other"
            )
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


# -- the native gate (native/gate.c): the read path's I/O-free answers in one C call --------

try:
    from ._gate import SAMPLE as GATE_SAMPLE
    from ._gate import Gate as Gate

    GATE_BUILT = True
except ImportError:  # pragma: no cover - an install without it takes the Python path
    GATE_SAMPLE = 1
    GATE_BUILT = False


def filter_address(native: NativeBloom) -> int:
    """The address of a filter's `enf_bloom`, for the gate (keep `native` alive meanwhile)."""
    return int(ffi.cast("uintptr_t", native._ptr))
