"""Where the SDK's config comes from: one interface, a local-file source and a static source.

A ConfigSource hands the client its first config from `start()` and then calls
`on_update(config, meta)` with each newer valid version. Versions that are
not newer than the one applied are ignored; an invalid document never reaches
`on_update` (the old config keeps serving). The ZooKeeper source plugs into
the same interface.

Thread-safety: `reload()` / `push()` may be called from any thread; updates
are serialised by a lock so `on_update` sees versions in increasing order.
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .document import EnforcementConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigMeta:
    """Where an applied config came from and when it was applied (epoch seconds)."""

    version: int
    origin: str  # "file:/etc/enforce.toml", "static", "zookeeper:host:2181/path", ...
    applied_at: float


OnUpdate = Callable[[EnforcementConfig, ConfigMeta], None]


class ConfigSource(abc.ABC):
    """A provider of validated EnforcementConfig versions."""

    @abc.abstractmethod
    def start(self, on_update: OnUpdate) -> tuple[EnforcementConfig, ConfigMeta]:
        """Return the initial config; later call `on_update` with each newer valid version.

        Raises ConfigError when no valid initial config can be had.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Stop background work and release resources. Idempotent."""

    def after_fork(self) -> None:  # noqa: B027 - optional hook
        """Re-create background resources (threads, sessions) in a forked child process."""


class _VersionedSource(ConfigSource):
    """Shared bookkeeping: the applied version, the callback, newer-only updates."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._on_update: OnUpdate | None = None
        self._current: tuple[EnforcementConfig, ConfigMeta] | None = None

    def after_fork(self) -> None:
        """A parent thread may have held the lock at fork(): the child gets a fresh one."""
        self._lock = threading.Lock()

    @property
    def current(self) -> tuple[EnforcementConfig, ConfigMeta] | None:
        """The last applied config and its meta, or None before start()."""
        return self._current

    def _start(self, on_update: OnUpdate, config: EnforcementConfig,
               origin: str) -> tuple[EnforcementConfig, ConfigMeta]:
        with self._lock:
            self._on_update = on_update
            self._current = (config, ConfigMeta(config.version, origin, self._clock()))
            return self._current

    def _offer(self, config: EnforcementConfig, origin: str) -> bool:
        """Apply `config` if newer than the applied one; return whether it was applied."""
        with self._lock:
            if self._current is not None and config.version <= self._current[0].version:
                log.info("config version %d from %s ignored: version %d is applied",
                         config.version, origin, self._current[0].version)
                return False
            meta = ConfigMeta(config.version, origin, self._clock())
            self._current = (config, meta)
            if self._on_update is not None:
                self._on_update(config, meta)
            log.debug("config version %d applied from %s", config.version, origin)
            return True


class FileConfigSource(_VersionedSource):
    """A local `.toml` or `.json` file: the embedded default for development and tests."""

    def __init__(self, path: str | os.PathLike[str], *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.origin = f"file:{self.path}"

    def start(self, on_update: OnUpdate) -> tuple[EnforcementConfig, ConfigMeta]:
        return self._start(on_update, EnforcementConfig.load(self.path), self.origin)

    def reload(self) -> bool:
        """Re-read the file; apply it if valid and newer. Return whether it was applied.

        An invalid file raises ConfigError (and logs it); the applied config is kept.
        """
        try:
            config = EnforcementConfig.load(self.path)
        except ConfigError as exc:
            log.warning("config reload from %s rejected, keeping the applied version: %s",
                        self.origin, exc)
            raise
        return self._offer(config, self.origin)


class StaticConfigSource(_VersionedSource):
    """A config given in code; `push()` offers newer versions (for tests and embedding)."""

    def __init__(self, config: EnforcementConfig | Mapping[str, Any], *, origin: str = "static",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.origin = origin
        self._initial = _as_config(config)

    def start(self, on_update: OnUpdate) -> tuple[EnforcementConfig, ConfigMeta]:
        return self._start(on_update, self._initial, self.origin)

    def push(self, config: EnforcementConfig | Mapping[str, Any]) -> bool:
        """Validate and apply a newer version; ConfigError if invalid, False if not newer."""
        return self._offer(_as_config(config), self.origin)


def _as_config(value: EnforcementConfig | Mapping[str, Any]) -> EnforcementConfig:
    if isinstance(value, EnforcementConfig):
        return value
    return EnforcementConfig.from_dict(value)


def coerce_config_source(
    value: str | os.PathLike[str] | Mapping[str, Any] | EnforcementConfig | ConfigSource,
) -> ConfigSource:
    """What `EnforcementClient(config=...)` accepts: a path, a dict, a config or a source."""
    if isinstance(value, ConfigSource):
        return value
    if isinstance(value, EnforcementConfig | Mapping):
        return StaticConfigSource(value)
    if isinstance(value, str | os.PathLike):
        return FileConfigSource(value)
    raise ConfigError(
        "must be a file path, a dict, an EnforcementConfig or a ConfigSource, "
        f"got {type(value).__name__}",
        field="config",
    )
