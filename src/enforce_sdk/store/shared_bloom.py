"""One bloom snapshot for all the workers of a store master, built once and shared as a file.

Worker processes behind one listening port (store/workers) must serve the same
snapshot: the same bytes under the same ETag, whichever worker a reader's
request lands on, or a reader would download it again on every switch. So one
snapshot file lives in the master's run directory. Worker 0 keeps it current
(`refresh`, every `bloom.rebuild_interval_seconds`); every worker serves what
the file holds, re-reading it when it was replaced (one stat per request).

Builders take an exclusive lock on a lock file beside it, so one process at a
time builds or catches up, and each first adopts the file if another process
replaced it (an admin's `POST /v1/bloom/rebuild` served by another worker, or a
worker 0 before a restart): the work is done once, not per process, and a
snapshot goes on from the last one under its ETag. The file is replaced
atomically (written aside, renamed over), so a reader opens either the old or
the new one, whole. It is derived state: no fsync, and the master removes the
run directory when it stops.

File format: `EBS1`, a 4-byte big-endian header length, a JSON header (the
BloomSnapshot fields but `data`), then the snapshot bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .._errors import StorageError
from .bloom_snapshot import BloomSnapshot, BloomSnapshots
from .storage.base import LabelStorage

_MAGIC = b"EBS1"
_LENGTH = struct.Struct(">I")
_Stamp = tuple[int, int, int]  # st_ino, st_mtime_ns, st_size: a replaced file differs


def write_snapshot_file(path: Path, snapshot: BloomSnapshot) -> None:
    """Write `snapshot` to `path` atomically (a temp file beside it, renamed over)."""
    header = json.dumps({
        "etag": snapshot.etag, "seq": snapshot.seq, "key_count": snapshot.key_count,
        "capacity": snapshot.capacity, "fp_rate": snapshot.fp_rate,
        "build_seconds": snapshot.build_seconds,
    }).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + _LENGTH.pack(len(header)) + header)
            f.write(snapshot.data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _parse(raw: bytes, path: Path) -> BloomSnapshot:
    start = len(_MAGIC) + _LENGTH.size
    if raw[:len(_MAGIC)] != _MAGIC or len(raw) < start:
        raise StorageError(f"{path} is not a shared bloom snapshot file")
    (length,) = _LENGTH.unpack_from(raw, len(_MAGIC))
    try:
        h = json.loads(raw[start:start + length])
        return BloomSnapshot(data=raw[start + length:], seq=int(h["seq"]),
                             key_count=int(h["key_count"]), capacity=int(h["capacity"]),
                             fp_rate=float(h["fp_rate"]), build_seconds=float(h["build_seconds"]),
                             etag=str(h["etag"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: bad shared bloom snapshot header: {exc}") from exc


class SharedBloomSnapshots:
    """The snapshot every worker of one master serves, kept in `path`. Thread-safe.

    The same face as BloomSnapshots (`current`, `latest`, `refresh`, `rebuild`),
    so the service does not care whether it runs alone or as one of several.
    """

    def __init__(self, storage: LabelStorage, fp_rate: float, path: Path, *,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._own = BloomSnapshots(storage, fp_rate, timer=timer)
        self.fp_rate = fp_rate
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._mutex = threading.Lock()  # guards the two fields below
        self._served: BloomSnapshot | None = None  # the file's snapshot as last read
        self._stamp: _Stamp | None = None  # of the file it was read from

    @property
    def full_builds(self) -> int:
        """Full builds made by this process (adopted snapshots are not)."""
        return self._own.full_builds

    @property
    def current(self) -> BloomSnapshot | None:
        """The shared snapshot if it was read and the file has not been replaced since;
        else None (call `latest()` in a thread). One stat: cheap enough per request."""
        served = self._served
        if served is None or _stamp_of(self.path) != self._stamp:
            return None
        return served

    def latest(self) -> BloomSnapshot:
        """The shared snapshot: the file's, re-read if replaced; built and shared if none yet."""
        with self._mutex:
            shared = self._load()
        return shared if shared is not None else self.refresh()

    def refresh(self) -> BloomSnapshot:
        """Bring the shared snapshot up to the store's head (see BloomSnapshots.refresh)."""
        with self._building() as shared:
            return self._share(self._own.refresh(), shared)

    def rebuild(self) -> BloomSnapshot:
        """Build from scratch now and share it (same ETag if the bytes did not change)."""
        with self._building() as shared:
            return self._share(self._own.rebuild(), shared)

    @contextlib.contextmanager
    def _building(self) -> Iterator[BloomSnapshot | None]:
        """Hold the builders' lock, and the in-process mutex; adopt a newer file first."""
        with self._mutex, open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            shared = self._load()
            own = self._own.current
            if shared is not None and (own is None or own.etag != shared.etag):
                self._own.adopt(shared)
            yield shared

    def _share(self, snapshot: BloomSnapshot, shared: BloomSnapshot | None) -> BloomSnapshot:
        if shared is None or snapshot.etag != shared.etag:
            write_snapshot_file(self.path, snapshot)
            self._stamp, self._served = _stamp_of(self.path), snapshot
        return snapshot

    def _load(self) -> BloomSnapshot | None:
        """The file's snapshot, read only if it was replaced since the last read."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp == self._stamp and self._served is not None:
                    return self._served
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the shared bloom snapshot {self.path}: {exc}") from exc
        self._served, self._stamp = _parse(raw, self.path), stamp
        return self._served


def _stamp_of(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
