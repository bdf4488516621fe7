"""The last good config on local disk: written after every swap, read when ZooKeeper is down.

`LastGoodCopy.save()` hands a validated document to a writer thread (so disk
latency never delays a swap; a burst of versions costs one write), which
replaces the file atomically: temp file, fsync, rename, fsync the directory.
`load()` validates the copy like any other version before it may serve.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigError, EnforceError
from .document import EnforcementConfig
from .zk_document import decode_document

log = logging.getLogger(__name__)

_FORMAT = 1

Validator = Callable[[Mapping[str, Any]], EnforcementConfig]


class LastGoodCopy:
    """The disk copy of the config at `layout_path` (a ZooKeeper node path), kept at `path`."""

    def __init__(
        self,
        path: Path,
        layout_path: str,
        *,
        max_bytes: int,
        validate: Validator,
        wall_clock: Callable[[], float],
    ) -> None:
        self.path = path
        self._layout_path = layout_path
        self._max_bytes = max_bytes
        self._validate = validate
        self._wall = wall_clock
        self.writes = 0
        self.write_errors = 0
        self.after_fork()

    def after_fork(self) -> None:
        """New locks and no writer thread (a parent's thread does not survive fork())."""
        self._cond = threading.Condition(threading.Lock())
        self._pending: tuple[Mapping[str, Any], float] | None = None
        self._writing = False
        self._thread: threading.Thread | None = None

    def save(self, document: Mapping[str, Any], modified_at: float) -> None:
        """Queue `document` for the writer thread; only the newest pending one is kept."""
        with self._cond:
            self._pending = (document, modified_at)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._writer, name="enforce-zk-config-cache", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued copies are written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._writing,
                                       timeout)

    def _writer(self) -> None:
        cond = self._cond
        while True:
            with cond:
                if not cond.wait_for(lambda: self._pending is not None, timeout=30.0):
                    self._thread = None  # idle: exit; the next save starts a new one
                    return
                pending, self._pending = self._pending, None
                self._writing = True
            try:
                if pending is not None:
                    self._write(*pending)
            finally:
                with cond:
                    self._writing = False
                    cond.notify_all()

    def _write(self, document: Mapping[str, Any], modified_at: float) -> None:
        path = self.path
        body = json.dumps(
            {"format": _FORMAT, "path": self._layout_path, "saved_at": self._wall(),
             "modified_at": modified_at, "document": document},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self.writes += 1
        except OSError as exc:
            self.write_errors += 1
            log.warning("config: cannot write the last good config to %s: %s", path, exc)

    def load(self, reject: Callable[[str], None]) -> tuple[EnforcementConfig, float | None] | None:
        """The copy, validated, and when it was written to ZooKeeper (else saved).

        None if absent or unusable; an unusable copy is reported to `reject`.
        """
        path = self.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("config: cannot read the disk copy %s: %s", path, exc)
            return None
        try:
            envelope = decode_document(raw, max_bytes=2 * self._max_bytes)
            if envelope.get("format") != _FORMAT:
                raise ConfigError(f"unknown format {envelope.get('format')!r}", field="cache")
            if envelope.get("path") != self._layout_path:
                raise ConfigError(
                    f"holds {envelope.get('path')!r}, not {self._layout_path!r}", field="cache"
                )
            document = envelope.get("document")
            if not isinstance(document, dict):
                raise ConfigError("has no document", field="cache")
            config = self._validate(document)
        except EnforceError as exc:
            reject(f"disk copy {path}: {exc}")
            return None
        for key in ("modified_at", "saved_at"):
            when = envelope.get(key)
            if isinstance(when, int | float) and not isinstance(when, bool):
                return config, float(when)
        return config, None
